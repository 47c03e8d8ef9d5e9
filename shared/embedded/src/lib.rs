//! # captcha-embedded
//!
//! Every storage port of `captcha-core` ([`TaskQueue`], [`TaskStore`],
//! [`AccountStore`]) on ONE embedded SQLite file, `<data_dir>/captchad.sqlite3`,
//! for the single-process server `captchad` and its account CLI.
//!
//! # Layout
//! - this file: [`EmbeddedStore`], opening (pragmas, schema), connections and
//!   the blocking-call helpers;
//! - [`schema`]: the tables, created or migrated at open;
//! - `queue.rs`: the queue table with visibility timeout, receive counts and
//!   dead-lettering after [`Options::max_receives`] receives;
//! - `tasks.rs`: task records, images and conditional transitions;
//! - `accounts.rs`: accounts and per-task holds, each money step one
//!   conditional transaction.
//!
//! # Durability and concurrency
//! The file is in WAL mode with `synchronous=NORMAL`: a commit survives a
//! `kill -9` of the process (only an OS crash or power loss may lose the last
//! commits). Writes go through one connection behind a mutex (SQLite has one
//! writer anyway, and this keeps in-process writers from sleeping in the busy
//! handler); reads use a small pool of reader connections. Every call runs on
//! tokio's blocking pool and is one short transaction. Another process (the
//! `captchad account …` CLI) may open the same directory while the server
//! runs: `busy_timeout` makes the two take turns.

mod accounts;
mod queue;
pub mod schema;
mod tasks;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use captcha_core::ports::{Clock, Queue, StoreError, SystemClock};
use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags};

/// The database file's name inside the data directory.
pub const DB_FILE: &str = "captchad.sqlite3";

/// How a store is opened; `Options::default()` is what `captchad` uses.
#[derive(Clone)]
pub struct Options {
    /// Time source for queue visibility (tests pass a manual clock).
    pub clock: Arc<dyn Clock>,
    /// A message received this many times moves to its dead-letter queue.
    pub max_receives: u32,
    /// Reader connections (reads run concurrently with the writer).
    pub readers: usize,
    /// How long a statement waits for another process's write lock.
    pub busy_timeout: Duration,
    /// How often a background thread copies the WAL back into the database
    /// (a passive checkpoint, on its own connection, so writers never pay
    /// for it); `None` leaves it to SQLite's automatic checkpoints, which
    /// run inside a committing write and show up as latency spikes.
    pub checkpoint_every: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            clock: Arc::new(SystemClock),
            max_receives: 5,
            readers: 2,
            busy_timeout: Duration::from_secs(5),
            checkpoint_every: Some(Duration::from_millis(500)),
        }
    }
}

/// Opening the store failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot create data directory {path}: {source}")]
    Dir { path: PathBuf, source: std::io::Error },
    #[error("cannot open {path}: {source}")]
    Sqlite { path: PathBuf, source: rusqlite::Error },
    #[error("{path} has schema version {found}, newer than this build knows ({known})")]
    TooNew { path: PathBuf, found: i64, known: i64 },
}

/// The ports on one SQLite file. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    /// The only connection this process writes with.
    writer: Mutex<Connection>,
    /// Read-only connections, used round-robin.
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    clock: Arc<dyn Clock>,
    max_receives: u32,
}

impl EmbeddedStore {
    /// Opens (creating if needed) `<data_dir>/captchad.sqlite3` with default options.
    pub fn open(data_dir: impl AsRef<Path>) -> Result<EmbeddedStore, OpenError> {
        EmbeddedStore::open_with(data_dir, Options::default())
    }

    pub fn open_with(data_dir: impl AsRef<Path>, options: Options) -> Result<EmbeddedStore, OpenError> {
        let dir = data_dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|source| OpenError::Dir { path: dir.to_path_buf(), source })?;
        let path = dir.join(DB_FILE);
        let sqlite = |source| OpenError::Sqlite { path: path.clone(), source };

        let mut writer = open_connection(&path, false, options.busy_timeout).map_err(sqlite)?;
        schema::migrate(&mut writer, &path)?;
        if options.checkpoint_every.is_some() {
            writer.execute_batch("PRAGMA wal_autocheckpoint = 0;").map_err(sqlite)?;
        }
        let readers = (0..options.readers.max(1))
            .map(|_| open_connection(&path, true, options.busy_timeout).map(Mutex::new))
            .collect::<Result<Vec<_>, _>>()
            .map_err(sqlite)?;
        let store = EmbeddedStore {
            inner: Arc::new(Inner {
                path: path.clone(),
                writer: Mutex::new(writer),
                readers,
                next_reader: AtomicUsize::new(0),
                clock: options.clock,
                max_receives: options.max_receives.max(1),
            }),
        };
        if let Some(every) = options.checkpoint_every {
            let conn = open_connection(&store.inner.path, false, options.busy_timeout).map_err(sqlite)?;
            spawn_checkpointer(Arc::downgrade(&store.inner), conn, every);
        }
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Makes every message visible now. For the single server process at
    /// startup only: messages that the previous process had received when it
    /// died come back at once instead of after their visibility timeout.
    pub async fn make_all_visible(&self) -> Result<usize, StoreError> {
        self.write("make_all_visible", |c, now| {
            c.execute("UPDATE messages SET visible_at = ?1 WHERE visible_at > ?1", [to_i64(now)])
        })
        .await
    }

    /// Messages per queue (visible or not), for diagnostics and metrics.
    pub async fn queue_depths(&self) -> Result<Vec<(Queue, u64)>, StoreError> {
        self.read("queue_depths", |c| {
            let mut stmt = c.prepare_cached("SELECT queue, COUNT(*) FROM messages GROUP BY queue ORDER BY queue")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
            let mut out = Vec::new();
            for row in rows {
                let (name, n) = row?;
                if let Some(q) = Queue::from_name(&name) {
                    out.push((q, u64::try_from(n).unwrap_or(0)));
                }
            }
            Ok(out)
        })
        .await
    }

    /// Runs `f` on the writer connection on the blocking pool; `f` gets the
    /// store clock's current time.
    async fn write<T, F>(&self, what: &'static str, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, u64) -> rusqlite::Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let now = inner.clock.now_ms();
            let mut conn = inner.writer.lock();
            f(&mut conn, now)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("{what}: worker thread failed: {e}")))?
        .map_err(|e| store_error(what, e))
    }

    /// Runs `f` on one of the reader connections on the blocking pool.
    async fn read<T, F>(&self, what: &'static str, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let i = inner.next_reader.fetch_add(1, Ordering::Relaxed) % inner.readers.len();
            let conn = inner.readers[i].lock();
            f(&conn)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("{what}: worker thread failed: {e}")))?
        .map_err(|e| store_error(what, e))
    }
}

/// Runs passive checkpoints every `every` until the store is dropped.
fn spawn_checkpointer(store: std::sync::Weak<Inner>, conn: Connection, every: Duration) {
    let spawned = std::thread::Builder::new().name("sqlite-checkpoint".into()).spawn(move || loop {
        std::thread::sleep(every);
        if store.upgrade().is_none() {
            return;
        }
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "WAL checkpoint failed");
        }
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "no checkpoint thread; the WAL grows until the store is closed");
    }
}

fn open_connection(path: &Path, read_only: bool, busy: Duration) -> rusqlite::Result<Connection> {
    // Readers open read-write (a WAL reader must be able to update the shared
    // memory index) but refuse writes with `query_only`.
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(busy)?;
    if read_only {
        conn.execute_batch("PRAGMA query_only = 1;")?;
    } else {
        // WAL is a property of the file; setting it from the writer suffices.
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(%mode, "SQLite refused WAL mode");
        }
    }
    conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA temp_store = MEMORY; PRAGMA cache_size = -16000; PRAGMA journal_size_limit = 67108864;")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

fn store_error(what: &'static str, e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode as C;
    match &e {
        rusqlite::Error::SqliteFailure(f, _) if matches!(f.code, C::DatabaseBusy | C::DatabaseLocked) => {
            StoreError::Unavailable(format!("{what}: {e}"))
        }
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::IntegralValueOutOfRange(..)
        | rusqlite::Error::InvalidColumnType(..) => StoreError::Corrupt(format!("{what}: {e}")),
        _ => StoreError::backend(what, e),
    }
}

/// SQLite integers are signed; our values (ids < 2^53, micro-units, Unix ms)
/// fit, and anything larger is clamped rather than wrapped.
pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(crate) fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// A value read back that does not decode (e.g. an unknown state number).
pub(crate) fn corrupt(col: usize, what: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(col, rusqlite::types::Type::Integer, format!("unknown {what}").into())
}
