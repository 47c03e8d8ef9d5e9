//! The ports: small traits the stage logic needs from the outside world.
//!
//! | port | does | adapters |
//! |---|---|---|
//! | [`TaskQueue`] | SQS-like queues: send, receive with visibility timeout, delete | memory, SQLite, SQS |
//! | [`TaskStore`] | task records + image bytes, conditional transitions | memory, SQLite, DynamoDB |
//! | [`AccountStore`] | balances and per-task holds, atomic and exactly-once | memory, SQLite, DynamoDB |
//! | [`Clock`] | the current Unix time in ms | system, manual (tests) |
//! | [`ImageSolver`] | image → text, sync and CPU-bound | the OCR crate (wired by the binary) |
//! | [`TokenSolver`] | page → widget token, async | the browser pool, the native PoW solvers |
//!
//! [`memory`] holds an in-memory adapter of every storage port, used by the
//! unit tests and usable as a throwaway backend.

pub mod memory;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use crate::domain::{Account, AccountId, Hold, Pool, Task, TaskState, Transition};
use crate::service::{ImageOptions, Report, TaskId};

/// A storage or queue backend failed. Business outcomes (a conditional update
/// that did not apply, an unknown record) are `Ok` values, never this.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend could not be reached or refused the operation; retryable.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A stored record could not be read back (schema drift, corruption).
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// Any other backend error, with its source.
    #[error("storage error: {context}")]
    Backend {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl StoreError {
    pub fn backend(context: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError::Backend { context: context.into(), source: Box::new(source) }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

// ---------------------------------------------------------------- queues

/// Which stream of work a queue carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum QueueKind {
    /// Every accepted task lands here first; `route` takes from it.
    Intake,
    /// The work queue of one solver pool.
    Pool(Pool),
    /// Callbacks to deliver (one message per finished task with a `pingback`).
    Callback,
}

/// A queue: a stream of work, or the dead-letter queue beside it where the
/// adapter moves messages received too many times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Queue {
    pub kind: QueueKind,
    pub dead_letter: bool,
}

impl Queue {
    pub const INTAKE: Queue = Queue { kind: QueueKind::Intake, dead_letter: false };
    pub const CALLBACK: Queue = Queue { kind: QueueKind::Callback, dead_letter: false };

    pub fn pool(pool: Pool) -> Queue {
        Queue { kind: QueueKind::Pool(pool), dead_letter: false }
    }

    /// The dead-letter queue of this queue.
    pub fn dead(self) -> Queue {
        Queue { dead_letter: true, ..self }
    }

    /// A stable name: `intake`, `ocr`, `browser`, `callback`, with `-dlq` for dead letters.
    pub fn name(&self) -> String {
        let base = match self.kind {
            QueueKind::Intake => "intake",
            QueueKind::Callback => "callback",
            QueueKind::Pool(p) => p.as_str(),
        };
        if self.dead_letter {
            format!("{base}-dlq")
        } else {
            base.to_string()
        }
    }

    /// The inverse of [`Queue::name`].
    pub fn from_name(name: &str) -> Option<Queue> {
        let (base, dead) = match name.strip_suffix("-dlq") {
            Some(b) => (b, true),
            None => (name, false),
        };
        let kind = match base {
            "intake" => QueueKind::Intake,
            "callback" => QueueKind::Callback,
            pool => QueueKind::Pool(pool.parse().ok()?),
        };
        Some(Queue { kind, dead_letter: dead })
    }
}

impl fmt::Display for Queue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// Proof of having received a message; needed to delete it or extend its
/// invisibility. Opaque to the core.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Receipt(pub String);

/// One received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub body: String,
    pub receipt: Receipt,
    /// How many times this message has been received, this time included.
    pub receive_count: u32,
}

/// A queue with SQS semantics: at-least-once delivery, a received message is
/// invisible for `visibility` and comes back unless deleted, and after the
/// adapter's maximum receive count it moves to `queue.dead()` instead.
#[async_trait]
pub trait TaskQueue: Send + Sync {
    async fn send(&self, queue: Queue, body: &str) -> StoreResult<()>;
    /// Sends many at once; all or an error.
    async fn send_batch(&self, queue: Queue, bodies: &[String]) -> StoreResult<()>;
    /// Up to `max` visible messages, now hidden for `visibility`. Never waits.
    async fn receive(&self, queue: Queue, max: usize, visibility: Duration) -> StoreResult<Vec<Message>>;
    /// Deletes a received message. A stale receipt (the message was received
    /// again since) or an already deleted message is not an error.
    async fn delete(&self, queue: Queue, receipt: &Receipt) -> StoreResult<()>;
    async fn delete_batch(&self, queue: Queue, receipts: &[Receipt]) -> StoreResult<()>;
    /// Hides a received message for `visibility` from now (0 = visible again).
    async fn change_visibility(&self, queue: Queue, receipt: &Receipt, visibility: Duration) -> StoreResult<()>;
}

// ---------------------------------------------------------------- tasks

/// Task records and their image bytes. Every write is conditional so that a
/// duplicate delivery can never move a task twice.
#[async_trait]
pub trait TaskStore: Send + Sync {
    /// Stores a new task with its image. `Ok(false)` if the id is taken.
    async fn put_new(&self, task: &Task, image: &[u8]) -> StoreResult<bool>;
    async fn get(&self, id: TaskId) -> StoreResult<Option<Task>>;
    /// The image bytes of an unfinished task (dropped once it is terminal).
    async fn image(&self, id: TaskId) -> StoreResult<Option<Vec<u8>>>;
    /// Applies `t` only if the task is in `t.from` with `t.from_attempts`
    /// attempts. `Ok(false)` if it is not (or does not exist).
    async fn transition(&self, id: TaskId, t: &Transition) -> StoreResult<bool>;
    /// Records a report only if none is recorded yet. `Ok(false)` otherwise.
    async fn set_report(&self, id: TaskId, report: Report, at_ms: u64) -> StoreResult<bool>;
    /// Tasks in `state` whose last transition is older than `updated_before_ms`.
    async fn stuck(&self, state: TaskState, updated_before_ms: u64, limit: usize) -> StoreResult<Vec<Task>>;
    /// Unfinished tasks submitted before `created_before_ms`.
    async fn overdue(&self, created_before_ms: u64, limit: usize) -> StoreResult<Vec<Task>>;
    /// Deletes finished tasks that ended before `ended_before_ms` and were
    /// created before `created_before_ms`; returns how many.
    async fn purge(&self, ended_before_ms: u64, created_before_ms: u64, limit: usize) -> StoreResult<usize>;
}

// ---------------------------------------------------------------- accounts

/// Result of asking for a hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldOutcome {
    Held,
    /// Balance minus holds is below the price.
    InsufficientFunds,
    /// The account already has the maximum number of open holds.
    TooManyOpen,
    NoAccount,
    /// A hold for this task id already exists (an id collision).
    DuplicateTask,
}

/// Accounts and the per-task holds on them. Every money operation is atomic
/// and happens at most once per task: `hold` (open), then exactly one of
/// `settle` (charge) or `release` (give back); a settled hold may be
/// `refund`ed once. No interleaving can overdraw an account.
#[async_trait]
pub trait AccountStore: Send + Sync {
    /// Creates an account; `Ok(false)` if the id exists.
    async fn create(&self, account: &Account) -> StoreResult<bool>;
    async fn get(&self, id: &AccountId) -> StoreResult<Option<Account>>;
    async fn list(&self) -> StoreResult<Vec<Account>>;
    /// Adds to the balance; `Ok(None)` if there is no such account.
    async fn top_up(&self, id: &AccountId, amount_micros: u64) -> StoreResult<Option<Account>>;
    /// Reserves `amount` for `task` if balance − held ≥ amount and the account
    /// has fewer than `max_open` open holds — checked and applied atomically.
    async fn hold(
        &self,
        id: &AccountId,
        task: TaskId,
        amount_micros: u64,
        max_open: u32,
        now_ms: u64,
    ) -> StoreResult<HoldOutcome>;
    /// Charges an open hold. `Ok(false)` if the task has no open hold.
    async fn settle(&self, task: TaskId, now_ms: u64) -> StoreResult<bool>;
    /// Gives an open hold back. `Ok(false)` if the task has no open hold.
    async fn release(&self, task: TaskId, now_ms: u64) -> StoreResult<bool>;
    /// Returns a settled charge. `Ok(false)` unless the hold is `Settled`.
    async fn refund(&self, task: TaskId, now_ms: u64) -> StoreResult<bool>;
    async fn hold_of(&self, task: TaskId) -> StoreResult<Option<Hold>>;
    /// Holds still open that were created before `created_before_ms`.
    async fn open_holds(&self, created_before_ms: u64, limit: usize) -> StoreResult<Vec<Hold>>;
    /// Forgets closed holds closed before `closed_before_ms`; returns how many.
    async fn purge_holds(&self, closed_before_ms: u64, limit: usize) -> StoreResult<usize>;
    /// Replaces the callback signing secret; `Ok(false)` if there is no such account.
    async fn set_callback_secret(&self, id: &AccountId, secret: &str) -> StoreResult<bool>;
    /// Replaces the registered callback URLs; `Ok(false)` if there is no such account.
    async fn set_pingback_urls(&self, id: &AccountId, urls: &[String]) -> StoreResult<bool>;
}

// ---------------------------------------------------------------- clock

/// The current time. Every stage reads time only through this.
pub trait Clock: Send + Sync {
    /// Unix time in milliseconds.
    fn now_ms(&self) -> u64;
}

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}

/// A clock that moves only when told (tests).
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    pub fn new(start_ms: u64) -> Arc<ManualClock> {
        Arc::new(ManualClock(AtomicU64::new(start_ms)))
    }

    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(u64::try_from(by.as_millis()).unwrap_or(u64::MAX), Ordering::SeqCst);
    }

    pub fn set(&self, ms: u64) {
        self.0.store(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

// ---------------------------------------------------------------- solver

/// Why a solve attempt produced no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SolveError {
    /// This attempt failed; another may succeed (retried up to `max_attempts`).
    #[error("attempt failed: {0}")]
    Failed(String),
    /// No attempt can ever succeed (e.g. the image does not decode); the task
    /// becomes unsolvable at once.
    #[error("unsolvable: {0}")]
    Unsolvable(String),
    /// The native solver cannot do this page (its widget needs scripts run);
    /// the task goes to the browser pool if it may, else it is unsolvable.
    #[error("needs a browser: {0}")]
    NeedsBrowser(String),
}

/// Reads the text in an image. Synchronous and CPU-bound: call it from a
/// thread that may block (the binary decides where).
pub trait ImageSolver: Send + Sync {
    fn solve(&self, image: &[u8], opts: &ImageOptions) -> Result<String, SolveError>;
}

impl<F> ImageSolver for F
where
    F: Fn(&[u8], &ImageOptions) -> Result<String, SolveError> + Send + Sync,
{
    fn solve(&self, image: &[u8], opts: &ImageOptions) -> Result<String, SolveError> {
        self(image, opts)
    }
}

/// Solves a token task (a widget on a page): the browser pool or the native
/// proof-of-work solvers. Async: it waits on the network and on the page.
#[async_trait]
pub trait TokenSolver: Send + Sync {
    async fn solve(&self, method: crate::Method, options: &crate::TokenOptions) -> Result<String, SolveError>;
}

// ---------------------------------------------------------------- bundle

/// The adapters a [`Core`](crate::Core) runs on, built once by a binary.
#[derive(Clone)]
pub struct Ports {
    pub queue: Arc<dyn TaskQueue>,
    pub tasks: Arc<dyn TaskStore>,
    pub accounts: Arc<dyn AccountStore>,
    pub clock: Arc<dyn Clock>,
}

impl Ports {
    /// All three storage ports from one backend (memory, SQLite).
    pub fn from_store<S>(store: Arc<S>, clock: Arc<dyn Clock>) -> Ports
    where
        S: TaskQueue + TaskStore + AccountStore + 'static,
    {
        Ports { queue: store.clone(), tasks: store.clone(), accounts: store, clock }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names_round_trip() {
        for q in [
            Queue::INTAKE,
            Queue::CALLBACK,
            Queue::pool(Pool::Ocr),
            Queue::pool(Pool::Browser),
            Queue::pool(Pool::Native),
        ] {
            assert_eq!(Queue::from_name(&q.name()), Some(q));
            assert_eq!(Queue::from_name(&q.dead().name()), Some(q.dead()));
        }
        assert_eq!(Queue::pool(Pool::Ocr).dead().name(), "ocr-dlq");
        assert_eq!(Queue::from_name("nope"), None);
    }
}
