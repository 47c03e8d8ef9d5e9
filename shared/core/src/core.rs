//! The stage logic, written once over the ports: submit, route, solve, sweep,
//! poll, report, balance. [`Core`] implements the [`CaptchaService`] facade
//! and offers single-step worker functions that a binary loops and a Lambda
//! handler calls once per event.
//!
//! # Worker API (deterministic single steps)
//!
//! | call | does | returns |
//! |---|---|---|
//! | [`Core::route_once`] | moves up to `route_batch` intake messages to their pool queues | messages handled |
//! | [`Core::solve_once`] | claims up to `max` tasks of a pool, runs the solver inline, finishes them | tasks handled |
//! | [`Core::claim`] + [`Core::finish`] | the same as `solve_once`, split so the solver can run elsewhere (e.g. `spawn_blocking`) | claims / outcome |
//! | [`Core::sweep_once`] | retries stuck tasks, gives up overdue and dead-lettered ones, repairs holds, purges expired results | a [`SweepReport`] |
//! | [`Core::route_message`], [`Core::claim_message`] + [`Core::finish`] | one message from an event source (Lambda + SQS), which deletes it | — |
//! | [`Core::recover_interrupted`] | at startup of a single-process deployment: every `solving` task was interrupted; retry or give up now | tasks recovered |
//!
//! Each returns `Ok(0)` (or an empty report) when there was nothing to do, so
//! a loop can sleep briefly then; a per-message failure is logged and that
//! message left for redelivery, only a failure to reach the queue is an `Err`.

use std::collections::BTreeMap;

use async_trait::async_trait;

/// Runs futures concurrently on the current task (no spawning, no extra crate).
async fn join_all<F: std::future::Future<Output = ()>>(futs: impl IntoIterator<Item = F>) {
    let mut futs: Vec<std::pin::Pin<Box<F>>> = futs.into_iter().map(Box::pin).collect();
    std::future::poll_fn(|cx| {
        futs.retain_mut(|f| f.as_mut().poll(cx).is_pending());
        if futs.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await
}

use crate::admin::AccountAdmin;
use crate::config::{ms, Config};
use crate::domain::{
    new_task_id, ApiKey, ImageFormat, Method, Pool, Task, TaskParams, TaskState, Transition, NEEDS_BROWSER,
};
use crate::error::ErrorCode;
use crate::ports::{HoldOutcome, ImageSolver, Ports, Queue, QueueKind, Receipt, SolveError, StoreError, TokenSolver};
use crate::ratelimit::RateLimiter;
use crate::service::{
    CaptchaService, Engine, PingbackOp, Report, SubmitRequest, TaskId, TaskResult, TaskSpec, TokenOptions,
};
use crate::Account;

/// A stage failed: either a client-visible refusal or a backend failure.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("refused: {0}")]
    Refused(ErrorCode),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<ErrorCode> for CoreError {
    fn from(code: ErrorCode) -> Self {
        CoreError::Refused(code)
    }
}

impl CoreError {
    /// The code a client sees; backend failures become `Internal` (and are logged).
    pub fn code(&self) -> ErrorCode {
        match self {
            CoreError::Refused(code) => *code,
            CoreError::Store(e) => {
                tracing::error!(error = %e, "storage failure");
                ErrorCode::Internal
            }
        }
    }
}

/// Most `queued` tasks [`Core::recover_interrupted`] re-sends at startup.
const MAX_REQUEUE: usize = 1_000_000;

/// A task a worker has taken: marked `solving`, image loaded.
#[derive(Debug, Clone)]
pub struct Claim {
    /// The task as it is now (state `solving`, attempts counted).
    pub task: Task,
    pub image: Vec<u8>,
    queue: Queue,
    /// `None` when the caller's event source deletes the message (Lambda).
    receipt: Option<Receipt>,
}

/// One received pool message, after `claim_one`.
enum ClaimStep {
    Claimed(Box<Claim>),
    /// Duplicate or stale: delete the message.
    Stale,
    /// Already finished (and its message deleted).
    Finished,
}

/// What [`Core::finish`] did with a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    /// Answer stored, hold charged.
    Solved,
    /// Attempt failed; the task went back to the intake queue.
    Retrying,
    /// Given up; hold released.
    Unsolvable,
    /// The task had already been moved on (by the sweeper); nothing changed.
    Superseded,
}

/// What one [`Core::sweep_once`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// `solving` for longer than `solve_timeout`: retried.
    pub retried: usize,
    /// Made unsolvable: overdue, out of attempts, or dead-lettered.
    pub gave_up: usize,
    /// Dead-letter messages consumed.
    pub dead_letters: usize,
    /// Open holds reconciled with their finished (or missing) tasks.
    pub holds_repaired: usize,
    /// Finished tasks deleted after retention and the report window.
    pub purged: usize,
}

impl SweepReport {
    pub fn is_empty(&self) -> bool {
        *self == SweepReport::default()
    }
}

/// The domain core over a set of ports. Cheap to share: wrap it in an `Arc`.
pub struct Core {
    config: Config,
    ports: Ports,
    /// Submits per key per second, per process.
    limiter: RateLimiter,
}

/// How many ids to try before giving up on a collision streak (never happens
/// with 53 random bits unless the store is broken).
const ID_TRIES: usize = 5;

impl Core {
    pub fn new(config: Config, ports: Ports) -> Core {
        let limiter = RateLimiter::new(config.max_requests_per_sec, config.request_burst);
        Core { config, ports, limiter }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn ports(&self) -> &Ports {
        &self.ports
    }

    /// Account administration (the CLI) over the same ports.
    pub fn admin(&self) -> AccountAdmin {
        AccountAdmin::new(self.ports.accounts.clone(), self.ports.clock.clone())
    }

    fn now(&self) -> u64 {
        self.ports.clock.now_ms()
    }

    async fn account_of(&self, key: &str) -> Result<Account, CoreError> {
        let key = ApiKey::parse(key).ok_or(ErrorCode::WrongUserKey)?;
        self.ports.accounts.get(&key.account_id()).await?.ok_or(CoreError::Refused(ErrorCode::KeyDoesNotExist))
    }

    // ------------------------------------------------------------ submit

    /// Validates a submit, holds its price, stores the task and puts it on the
    /// intake queue. Returns once the task is stored and enqueued.
    pub async fn submit_task(&self, req: SubmitRequest) -> Result<TaskId, CoreError> {
        let account = self.account_of(&req.key).await?;
        let now = self.now();
        if !self.limiter.allow(&account.id, now) {
            return Err(ErrorCode::MaxUserTurn.into());
        }
        let method = Method::of(&req.spec);
        let price = self.config.offer(method).ok_or(ErrorCode::TaskNotSupported)?;
        if let TaskSpec::Token { options: TokenOptions { engine: Some(engine), .. }, .. } = &req.spec {
            let pool = match engine {
                Engine::Browser => Pool::Browser,
                Engine::Native => Pool::Native,
            };
            if method.pools().contains(&pool) && !self.config.pools.contains(&pool) {
                return Err(ErrorCode::TaskNotSupported.into());
            }
        }
        let (image, params) = match req.spec {
            TaskSpec::Image { image, options } => {
                self.check_image(&image)?;
                (image, TaskParams::Image(options))
            }
            TaskSpec::Token { method, options } => {
                check_token(method, &options)?;
                (Vec::new(), TaskParams::Token(options))
            }
        };
        if let Some(url) = &req.pingback {
            if !account.pingback_urls.is_empty() && !account.pingback_urls.iter().any(|u| u == url) {
                return Err(ErrorCode::IpAddres.into());
            }
        }

        for _ in 0..ID_TRIES {
            let id = new_task_id();
            match self.ports.accounts.hold(&account.id, id, price, self.config.max_in_flight_per_key, now).await? {
                HoldOutcome::Held => {}
                HoldOutcome::DuplicateTask => continue,
                HoldOutcome::InsufficientFunds => return Err(ErrorCode::ZeroBalance.into()),
                HoldOutcome::TooManyOpen => return Err(ErrorCode::NoSlotAvailable.into()),
                HoldOutcome::NoAccount => return Err(ErrorCode::KeyDoesNotExist.into()),
            }
            let task = Task {
                id,
                account: account.id.clone(),
                method,
                params: params.clone(),
                state: TaskState::Queued,
                attempts: 0,
                price_micros: price,
                created_ms: now,
                routed_ms: None,
                started_ms: None,
                ended_ms: None,
                updated_ms: now,
                answer: None,
                error: None,
                report: None,
                reported_ms: None,
                pingback: req.pingback.clone(),
                soft_id: req.soft_id.clone(),
                protocol: req.protocol,
            };
            match self.ports.tasks.put_new(&task, &image).await {
                Ok(true) => {}
                Ok(false) => {
                    self.ports.accounts.release(id, now).await?;
                    continue;
                }
                Err(e) => {
                    self.release_quietly(id).await;
                    return Err(e.into());
                }
            }
            if let Err(e) = self.ports.queue.send(Queue::INTAKE, &id.to_string()).await {
                let t = Transition::of(&task, TaskState::Unsolvable, now).error("enqueue failed");
                if matches!(self.ports.tasks.transition(id, &t).await, Ok(true)) {
                    self.release_quietly(id).await;
                }
                return Err(e.into());
            }
            return Ok(id);
        }
        tracing::error!("task id collisions {ID_TRIES} times in a row");
        Err(ErrorCode::Internal.into())
    }

    fn check_image(&self, image: &[u8]) -> Result<(), ErrorCode> {
        if image.len() < self.config.min_image_bytes {
            return Err(ErrorCode::ZeroCaptchaFilesize);
        }
        if image.len() > self.config.max_image_bytes {
            return Err(ErrorCode::TooBigCaptchaFilesize);
        }
        ImageFormat::sniff(image).map(|_| ()).ok_or(ErrorCode::ImageTypeNotSupported)
    }

    async fn release_quietly(&self, id: TaskId) {
        if let Err(e) = self.ports.accounts.release(id, self.now()).await {
            tracing::warn!(task = id, error = %e, "release failed; the sweeper will repair the hold");
        }
    }

    // ------------------------------------------------------------ route

    /// Takes up to `route_batch` messages from the intake queue and sends each
    /// task to its pool's queue (`queued → routed`). A message for a task
    /// already routed is re-sent (a crash between the two steps); one for a
    /// task further along is dropped. Returns the messages handled.
    pub async fn route_once(&self) -> Result<usize, StoreError> {
        let msgs =
            self.ports.queue.receive(Queue::INTAKE, self.config.route_batch, self.config.visibility_timeout).await?;
        let n = msgs.len();
        let mut to_pool: BTreeMap<Pool, (Vec<String>, Vec<Receipt>)> = BTreeMap::new();
        let mut dropped = Vec::new();
        for m in msgs {
            match self.route_one(&m.body).await {
                Ok(Some(pool)) => {
                    let entry = to_pool.entry(pool).or_default();
                    entry.0.push(m.body);
                    entry.1.push(m.receipt);
                }
                Ok(None) => dropped.push(m.receipt),
                Err(e) => tracing::warn!(body = %m.body, error = %e, "route failed; message left for redelivery"),
            }
        }
        for (pool, (bodies, receipts)) in to_pool {
            match self.ports.queue.send_batch(Queue::pool(pool), &bodies).await {
                Ok(()) => dropped.extend(receipts),
                Err(e) => tracing::warn!(%pool, error = %e, "send to pool failed; messages left for redelivery"),
            }
        }
        if !dropped.is_empty() {
            self.ports.queue.delete_batch(Queue::INTAKE, &dropped).await?;
        }
        Ok(n)
    }

    /// For event-driven deployments (an SQS event source feeding a Lambda):
    /// routes the task one intake message names and sends it to its pool's
    /// queue. On `Ok` the caller lets the event source delete the message; on
    /// `Err` it reports the message as a batch item failure for redelivery.
    pub async fn route_message(&self, body: &str) -> Result<(), StoreError> {
        if let Some(pool) = self.route_one(body).await? {
            self.ports.queue.send(Queue::pool(pool), body.trim()).await?;
        }
        Ok(())
    }

    /// The pool to send this message's task to, or `None` to drop the message.
    async fn route_one(&self, body: &str) -> Result<Option<Pool>, StoreError> {
        let Some(task) = self.task_of(body).await? else { return Ok(None) };
        let pool = self.pick_pool(&task);
        match (task.state, pool) {
            (TaskState::Queued, None) => {
                // The pool was switched off after the task was accepted.
                self.give_up(&task, "no pool for this method").await?;
                Ok(None)
            }
            (TaskState::Queued, Some(pool)) => {
                let t = Transition::of(&task, TaskState::Routed, self.now());
                Ok(self.ports.tasks.transition(task.id, &t).await?.then_some(pool))
            }
            (TaskState::Routed, pool) => Ok(pool),
            _ => Ok(None),
        }
    }

    /// The router's choice among the pools that can solve a task: the engine
    /// the client forced; else, for ALTCHA and Cap, the native solver unless
    /// it already found the page needs a browser; else the first deployed.
    pub fn pick_pool(&self, task: &Task) -> Option<Pool> {
        let deployed = |p: Pool| self.config.pools.contains(&p).then_some(p);
        let candidates = task.method.pools();
        match task.engine() {
            Some(Engine::Browser) if candidates.contains(&Pool::Browser) => return deployed(Pool::Browser),
            Some(Engine::Native) if candidates.contains(&Pool::Native) => return deployed(Pool::Native),
            _ => {}
        }
        candidates.iter().copied().filter(|p| !(*p == Pool::Native && task.needs_browser())).find_map(deployed)
    }

    /// The task a message names; `None` (after a warning) if the body is not
    /// an id or the task is gone.
    async fn task_of(&self, body: &str) -> Result<Option<Task>, StoreError> {
        let Ok(id) = body.trim().parse::<TaskId>() else {
            tracing::warn!(body, "dropping a message that is not a task id");
            return Ok(None);
        };
        self.ports.tasks.get(id).await
    }

    // ------------------------------------------------------------ solve

    /// Takes up to `max` messages from `pool`'s queue and marks their tasks
    /// `solving` (conditionally: a duplicate or stale message is deleted and
    /// skipped). Each claim must be passed to [`Core::finish`].
    pub async fn claim(&self, pool: Pool, max: usize) -> Result<Vec<Claim>, StoreError> {
        let queue = Queue::pool(pool);
        let msgs = self.ports.queue.receive(queue, max, self.config.visibility_timeout).await?;
        let mut claims = Vec::with_capacity(msgs.len());
        let mut stale = Vec::new();
        for m in msgs {
            match self.claim_one(queue, &m.body, Some(m.receipt.clone())).await {
                Ok(ClaimStep::Claimed(claim)) => claims.push(*claim),
                Ok(ClaimStep::Stale) => stale.push(m.receipt),
                Ok(ClaimStep::Finished) => {}
                Err(e) => tracing::warn!(%pool, error = %e, "claim failed; message left for redelivery"),
            }
        }
        if !stale.is_empty() {
            self.ports.queue.delete_batch(queue, &stale).await?;
        }
        Ok(claims)
    }

    /// For event-driven deployments: claims the task one pool message names
    /// (`None` if the message is stale or a duplicate, or the task could not
    /// be loaded and was finished as unsolvable). Pass the claim to
    /// [`Core::finish`]; the event source deletes the message.
    pub async fn claim_message(&self, pool: Pool, body: &str) -> Result<Option<Claim>, StoreError> {
        match self.claim_one(Queue::pool(pool), body, None).await? {
            ClaimStep::Claimed(claim) => Ok(Some(*claim)),
            ClaimStep::Stale | ClaimStep::Finished => Ok(None),
        }
    }

    async fn claim_one(&self, queue: Queue, body: &str, receipt: Option<Receipt>) -> Result<ClaimStep, StoreError> {
        let Some(task) = self.task_of(body).await? else { return Ok(ClaimStep::Stale) };
        let in_pool = match queue.kind {
            QueueKind::Pool(p) => task.method.pools().contains(&p),
            _ => false,
        };
        if task.state != TaskState::Routed || !in_pool {
            return Ok(ClaimStep::Stale);
        }
        let t = Transition::of(&task, TaskState::Solving, self.now()).attempts(task.attempts + 1);
        if !self.ports.tasks.transition(task.id, &t).await? {
            return Ok(ClaimStep::Stale);
        }
        let mut task = task;
        t.apply(&mut task);
        if task.method.is_token() {
            return Ok(ClaimStep::Claimed(Box::new(Claim { task, image: Vec::new(), queue, receipt })));
        }
        match self.ports.tasks.image(task.id).await? {
            Some(image) => Ok(ClaimStep::Claimed(Box::new(Claim { task, image, queue, receipt }))),
            None => {
                let claim = Claim { task, image: Vec::new(), queue, receipt };
                self.finish(claim, Err(SolveError::Unsolvable("image missing".into()))).await?;
                Ok(ClaimStep::Finished)
            }
        }
    }

    /// Records the outcome of a claim: an answer is stored and the hold
    /// charged exactly once; a failure is retried via the intake queue until
    /// `max_attempts`, then the task is unsolvable and the hold released.
    /// A claim taken with [`Core::claim`] has its message deleted in every case.
    pub async fn finish(&self, claim: Claim, outcome: Result<String, SolveError>) -> Result<Finished, StoreError> {
        let result = self.record(&claim, outcome).await?;
        if let Some(receipt) = &claim.receipt {
            self.ports.queue.delete(claim.queue, receipt).await?;
        }
        Ok(result)
    }

    /// [`Core::finish`] without deleting the message.
    async fn record(&self, claim: &Claim, outcome: Result<String, SolveError>) -> Result<Finished, StoreError> {
        let outcome = match outcome {
            Ok(answer) if answer.trim().is_empty() => Err(SolveError::Failed("empty answer".into())),
            other => other,
        };
        let task = &claim.task;
        let now = self.now();
        let result = match outcome {
            Ok(answer) => {
                let t = Transition::of(task, TaskState::Solved, now).answer(answer);
                if self.ports.tasks.transition(task.id, &t).await? {
                    self.ports.accounts.settle(task.id, now).await?;
                    self.enqueue_callback(task).await;
                    Finished::Solved
                } else {
                    Finished::Superseded
                }
            }
            Err(SolveError::Failed(why)) => self.fail_attempt(task, &why).await?,
            Err(SolveError::NeedsBrowser(why)) => {
                let may_use_browser =
                    task.engine() != Some(Engine::Native) && self.config.pools.contains(&Pool::Browser);
                let why = format!("{NEEDS_BROWSER}{why}");
                if may_use_browser {
                    self.fail_attempt(task, &why).await?
                } else if self.give_up(task, &why).await? {
                    Finished::Unsolvable
                } else {
                    Finished::Superseded
                }
            }
            Err(SolveError::Unsolvable(why)) => {
                if self.give_up(task, &why).await? {
                    Finished::Unsolvable
                } else {
                    Finished::Superseded
                }
            }
        };
        Ok(result)
    }

    /// One `solving` attempt failed: back to the intake queue if attempts
    /// remain, otherwise unsolvable.
    async fn fail_attempt(&self, task: &Task, why: &str) -> Result<Finished, StoreError> {
        if task.attempts < self.config.max_attempts {
            let t = Transition::of(task, TaskState::Queued, self.now()).error(why);
            if !self.ports.tasks.transition(task.id, &t).await? {
                return Ok(Finished::Superseded);
            }
            // If this send fails the task waits in `queued` until the sweeper's
            // deadline makes it unsolvable (and releases the hold).
            self.ports.queue.send(Queue::INTAKE, &task.id.to_string()).await?;
            Ok(Finished::Retrying)
        } else if self.give_up(task, why).await? {
            Ok(Finished::Unsolvable)
        } else {
            Ok(Finished::Superseded)
        }
    }

    /// Makes an unfinished task unsolvable and releases its hold. `false` if
    /// the task had moved on meanwhile.
    async fn give_up(&self, task: &Task, why: &str) -> Result<bool, StoreError> {
        let now = self.now();
        let t = Transition::of(task, TaskState::Unsolvable, now).error(why);
        if !self.ports.tasks.transition(task.id, &t).await? {
            return Ok(false);
        }
        self.ports.accounts.release(task.id, now).await?;
        tracing::info!(task = task.id, attempts = task.attempts, why, "task unsolvable");
        self.enqueue_callback(task).await;
        Ok(true)
    }

    /// Puts a finished task with a `pingback` on the callback queue. A failure
    /// is logged, never fails the task: the result stays readable by polling.
    async fn enqueue_callback(&self, task: &Task) {
        if task.pingback.is_some() {
            if let Err(e) = self.ports.queue.send(Queue::CALLBACK, &task.id.to_string()).await {
                tracing::warn!(task = task.id, error = %e, "could not queue the callback");
            }
        }
    }

    /// For the pingback stage: the finished task a callback message names and
    /// its account (for the signing secret). `None` if the task is gone, not
    /// finished or has no `pingback`: the message is then dropped.
    pub async fn callback_of(&self, body: &str) -> Result<Option<(Task, Account)>, StoreError> {
        let Some(task) = self.task_of(body).await? else { return Ok(None) };
        if !task.state.is_terminal() || task.pingback.is_none() {
            return Ok(None);
        }
        let Some(account) = self.ports.accounts.get(&task.account).await? else { return Ok(None) };
        Ok(Some((task, account)))
    }

    /// The result a poller would see for a task (for callback bodies).
    pub fn result_of(&self, task: &Task) -> TaskResult {
        match task.state {
            TaskState::Solved => TaskResult::Solved {
                method: task.method,
                answer: task.answer.clone().unwrap_or_default(),
                price_micros: task.price_micros,
                created_ms: task.created_ms,
                ended_ms: task.ended_ms.unwrap_or(task.updated_ms),
                attempts: task.attempts,
            },
            TaskState::Unsolvable => TaskResult::Unsolvable,
            _ => TaskResult::NotReady,
        }
    }

    /// [`Core::claim`] up to `max` tasks of `pool`, run `solver` on each
    /// inline (it blocks the calling thread), [`Core::finish`] each. Returns
    /// the number of tasks solved or failed.
    pub async fn solve_once(&self, pool: Pool, solver: &dyn ImageSolver, max: usize) -> Result<usize, StoreError> {
        let claims = self.claim(pool, max).await?;
        let n = claims.len();
        let mut done = Vec::with_capacity(n);
        for claim in claims {
            let outcome = match claim.task.params.image_options() {
                Some(opts) => solver.solve(&claim.image, opts),
                None => Err(SolveError::Unsolvable("not an image task".into())),
            };
            match self.record(&claim, outcome).await {
                Ok(_) => done.extend(claim.receipt),
                Err(e) => tracing::warn!(task = claim.task.id, error = %e, "finish failed; the message comes back"),
            }
        }
        // One delete for the batch (a crash before it only brings back
        // messages whose tasks have moved on; they are dropped as stale).
        if !done.is_empty() {
            self.ports.queue.delete_batch(Queue::pool(pool), &done).await?;
        }
        Ok(n)
    }

    /// [`Core::claim`] up to `max` token tasks of `pool`, solve them
    /// concurrently with `solver`, [`Core::finish`] each. Returns the number
    /// of tasks handled.
    pub async fn solve_tokens_once(
        &self,
        pool: Pool,
        solver: &dyn TokenSolver,
        max: usize,
    ) -> Result<usize, StoreError> {
        let claims = self.claim(pool, max).await?;
        let n = claims.len();
        let solves = claims.into_iter().map(|claim| async move {
            let outcome = match claim.task.params.token_options() {
                Some(opts) => solver.solve(claim.task.method, opts).await,
                None => Err(SolveError::Unsolvable("not a token task".into())),
            };
            if let Err(e) = self.finish(claim, outcome).await {
                tracing::warn!(error = %e, "finish failed; the message comes back");
            }
        });
        join_all(solves).await;
        Ok(n)
    }

    // ------------------------------------------------------------ sweep

    /// Housekeeping, one bounded batch of each kind:
    /// 1. `solving` longer than `solve_timeout` → retried or unsolvable;
    /// 2. unfinished longer than `task_deadline` → unsolvable;
    /// 3. messages in the dead-letter queues → their tasks unsolvable;
    /// 4. holds open longer than `hold_repair_after` → settled or released
    ///    to match their task (repairs a crash between a transition and its
    ///    money step);
    /// 5. finished tasks past both `result_retention` and `report_window`,
    ///    and their closed holds, are deleted.
    pub async fn sweep_once(&self) -> Result<SweepReport, StoreError> {
        let cfg = &self.config;
        let now = self.now();
        let batch = cfg.sweep_batch;
        let mut report = SweepReport::default();

        for task in self.ports.tasks.stuck(TaskState::Solving, now.saturating_sub(ms(cfg.solve_timeout)), batch).await?
        {
            match self.fail_attempt(&task, "solve timed out").await? {
                Finished::Retrying => report.retried += 1,
                Finished::Unsolvable => report.gave_up += 1,
                _ => {}
            }
        }

        for task in self.ports.tasks.overdue(now.saturating_sub(ms(cfg.task_deadline)), batch).await? {
            if self.give_up(&task, "deadline passed").await? {
                report.gave_up += 1;
            }
        }

        // Only the pools this deployment runs have queues (the serverless
        // stack has no native queue); a task left in another pool's queue is
        // given up by the deadline above.
        let mut queues = vec![Queue::INTAKE];
        queues.extend(cfg.pools.iter().map(|p| Queue::pool(*p)));
        for queue in queues {
            let dlq = queue.dead();
            let msgs = self.ports.queue.receive(dlq, batch, cfg.visibility_timeout).await?;
            let mut done = Vec::with_capacity(msgs.len());
            for m in msgs {
                if let Some(task) = self.task_of(&m.body).await?.filter(|t| !t.state.is_terminal()) {
                    if self.give_up(&task, &format!("dead-lettered from {queue}")).await? {
                        report.gave_up += 1;
                    }
                }
                report.dead_letters += 1;
                done.push(m.receipt);
            }
            if !done.is_empty() {
                self.ports.queue.delete_batch(dlq, &done).await?;
            }
        }

        for hold in self.ports.accounts.open_holds(now.saturating_sub(ms(cfg.hold_repair_after)), batch).await? {
            let state = self.ports.tasks.get(hold.task_id).await?.map(|t| t.state);
            let repaired = match state {
                Some(TaskState::Solved) => self.ports.accounts.settle(hold.task_id, now).await?,
                None | Some(TaskState::Unsolvable) => self.ports.accounts.release(hold.task_id, now).await?,
                Some(_) => false,
            };
            if repaired {
                tracing::warn!(task = hold.task_id, ?state, "repaired a hold left open");
                report.holds_repaired += 1;
            }
        }

        report.purged = self
            .ports
            .tasks
            .purge(now.saturating_sub(ms(cfg.result_retention)), now.saturating_sub(ms(cfg.report_window)), batch)
            .await?;
        let keep_holds = ms(cfg.report_window).max(ms(cfg.result_retention)) + ms(cfg.task_deadline);
        self.ports.accounts.purge_holds(now.saturating_sub(keep_holds), batch).await?;
        Ok(report)
    }

    /// For a single-process deployment at startup, before any solve worker
    /// runs: every task still `solving` was interrupted by the previous
    /// process dying, so it is retried (or given up) now rather than after
    /// `solve_timeout`; and every task still `queued` is sent to the intake
    /// queue again, since the process may have died between storing it and
    /// enqueueing it (routing is conditional, so a duplicate message is
    /// dropped). Do not call this while other processes solve tasks.
    pub async fn recover_interrupted(&self) -> Result<usize, StoreError> {
        let queued = self.ports.tasks.stuck(TaskState::Queued, u64::MAX, MAX_REQUEUE).await?;
        for task in &queued {
            self.ports.queue.send(Queue::INTAKE, &task.id.to_string()).await?;
        }
        let mut recovered = queued.len();
        loop {
            let stuck = self.ports.tasks.stuck(TaskState::Solving, u64::MAX, self.config.sweep_batch).await?;
            if stuck.is_empty() {
                return Ok(recovered);
            }
            let mut progressed = false;
            for task in stuck {
                if self.fail_attempt(&task, "interrupted by a restart").await? != Finished::Superseded {
                    recovered += 1;
                    progressed = true;
                }
            }
            if !progressed {
                return Ok(recovered);
            }
        }
    }

    // ------------------------------------------------------------ poll, report, balance

    /// One of this key's tasks; another account's task, or none, is
    /// `WrongCaptchaId` (ids are not secrets, so owners must match).
    async fn own_task(&self, key: &str, id: TaskId) -> Result<Task, CoreError> {
        let account = self.account_of(key).await?;
        Ok(self.ports.tasks.get(id).await?.filter(|t| t.account == account.id).ok_or(ErrorCode::WrongCaptchaId)?)
    }

    /// The result of one of this key's tasks.
    pub async fn poll(&self, key: &str, id: TaskId) -> Result<TaskResult, CoreError> {
        let task = self.own_task(key, id).await?;
        let expired =
            |t: &Task| t.ended_ms.is_some_and(|e| self.now() > e.saturating_add(ms(self.config.result_retention)));
        if task.state.is_terminal() && expired(&task) {
            return Err(ErrorCode::WrongCaptchaId.into());
        }
        Ok(self.result_of(&task))
    }

    /// Records a report on a solved task within `report_window` of its
    /// submission; `Bad` refunds the charge (once).
    pub async fn report_task(&self, key: &str, id: TaskId, report: Report) -> Result<(), CoreError> {
        let task = self.own_task(key, id).await?;
        if task.report.is_some() {
            return Err(ErrorCode::DuplicateReport.into());
        }
        let now = self.now();
        if task.state != TaskState::Solved || now > task.created_ms.saturating_add(ms(self.config.report_window)) {
            return Err(ErrorCode::ReportNotRecorded.into());
        }
        if !self.ports.tasks.set_report(id, report, now).await? {
            return Err(ErrorCode::DuplicateReport.into());
        }
        if report == Report::Bad && !self.ports.accounts.refund(id, now).await? {
            tracing::warn!(task = id, "reportbad on a task whose charge is not refundable");
        }
        Ok(())
    }

    /// Adds, removes or lists the account's registered callback URLs (at most
    /// [`MAX_PINGBACKS`]). The protocol layer has checked the URL's form and
    /// address already.
    pub async fn change_pingbacks(&self, key: &str, op: PingbackOp) -> Result<Vec<String>, CoreError> {
        let account = self.account_of(key).await?;
        let mut urls = account.pingback_urls.clone();
        match op {
            PingbackOp::List => return Ok(urls),
            PingbackOp::Add(url) => {
                if !urls.contains(&url) {
                    if urls.len() >= MAX_PINGBACKS {
                        return Err(ErrorCode::BadParameters.into());
                    }
                    urls.push(url);
                }
            }
            PingbackOp::Remove(url) => urls.retain(|u| *u != url),
            PingbackOp::RemoveAll => urls.clear(),
        }
        if urls != account.pingback_urls && !self.ports.accounts.set_pingback_urls(&account.id, &urls).await? {
            return Err(ErrorCode::KeyDoesNotExist.into());
        }
        Ok(urls)
    }

    /// Balance minus holds, in micro-units.
    pub async fn available_balance(&self, key: &str) -> Result<u64, CoreError> {
        Ok(self.account_of(key).await?.available_micros())
    }
}

#[async_trait]
impl CaptchaService for Core {
    async fn submit(&self, req: SubmitRequest) -> Result<TaskId, ErrorCode> {
        self.submit_task(req).await.map_err(|e| e.code())
    }

    async fn result(&self, key: &str, id: TaskId) -> Result<TaskResult, ErrorCode> {
        self.poll(key, id).await.map_err(|e| e.code())
    }

    async fn balance(&self, key: &str) -> Result<u64, ErrorCode> {
        self.available_balance(key).await.map_err(|e| e.code())
    }

    async fn report(&self, key: &str, id: TaskId, report: Report) -> Result<(), ErrorCode> {
        self.report_task(key, id, report).await.map_err(|e| e.code())
    }

    async fn pingbacks(&self, key: &str, op: PingbackOp) -> Result<Vec<String>, ErrorCode> {
        self.change_pingbacks(key, op).await.map_err(|e| e.code())
    }
}

/// Most callback URLs one account may register.
pub const MAX_PINGBACKS: usize = 20;

/// Longest `pageurl` / site key accepted.
const MAX_URL_LEN: usize = 2048;
const MAX_FIELD_LEN: usize = 512;

/// The form checks of a token task: an http(s) page URL (its address is
/// checked by the protocol layer and again when it is loaded) and a site key
/// where the widget needs one.
fn check_token(method: Method, o: &TokenOptions) -> Result<(), ErrorCode> {
    let url = o.page_url.trim();
    let lower = url.to_ascii_lowercase();
    if url.is_empty() || url.len() > MAX_URL_LEN || !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return Err(ErrorCode::PageUrl);
    }
    let key = o.site_key.as_deref().map(str::trim).unwrap_or("");
    if method.needs_site_key()
        && (key.is_empty() || key.len() > MAX_FIELD_LEN || !key.bytes().all(|b| b.is_ascii_graphic()))
    {
        return Err(ErrorCode::GoogleKey);
    }
    if o.engine == Some(Engine::Native) && !matches!(method, Method::Altcha | Method::Cap) {
        return Err(ErrorCode::BadParameters);
    }
    let fields = [&o.action, &o.data, &o.page_data, &o.min_score, &o.user_agent];
    if fields.iter().any(|f| f.as_ref().is_some_and(|v| v.len() > MAX_URL_LEN)) {
        return Err(ErrorCode::BadParameters);
    }
    Ok(())
}
