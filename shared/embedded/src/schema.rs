//! The schema, versioned with `PRAGMA user_version` and migrated at open.
//!
//! All times are Unix milliseconds, all money integer micro-units, states
//! small integers (`TaskState::as_i64`, `HoldState::as_i64`).

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use crate::OpenError;

/// Migrations in order; `user_version` is the number applied so far.
const MIGRATIONS: &[&str] = &[
    // 1: everything.
    "
    CREATE TABLE accounts (
        id          TEXT PRIMARY KEY,           -- hex SHA-256 of the API key
        balance     INTEGER NOT NULL,
        held        INTEGER NOT NULL DEFAULT 0, -- sum of open holds
        open_holds  INTEGER NOT NULL DEFAULT 0, -- number of open holds
        created_ms  INTEGER NOT NULL
    );
    CREATE TABLE holds (
        task_id     INTEGER PRIMARY KEY,
        account_id  TEXT NOT NULL,
        amount      INTEGER NOT NULL,
        state       INTEGER NOT NULL,           -- 0 held, 1 settled, 2 released, 3 refunded
        created_ms  INTEGER NOT NULL,
        closed_ms   INTEGER
    );
    CREATE INDEX holds_open ON holds(state, created_ms);
    CREATE INDEX holds_closed ON holds(closed_ms) WHERE closed_ms IS NOT NULL;
    CREATE TABLE tasks (
        id          INTEGER PRIMARY KEY,
        account_id  TEXT NOT NULL,
        method      TEXT NOT NULL,
        params      TEXT NOT NULL,              -- TaskParams as JSON
        state       INTEGER NOT NULL,
        attempts    INTEGER NOT NULL,
        price       INTEGER NOT NULL,
        created_ms  INTEGER NOT NULL,
        routed_ms   INTEGER,
        started_ms  INTEGER,
        ended_ms    INTEGER,
        updated_ms  INTEGER NOT NULL,
        answer      TEXT,
        error       TEXT,
        report      INTEGER,                    -- 0 bad, 1 good
        reported_ms INTEGER,
        pingback    TEXT,
        soft_id     TEXT
    );
    CREATE INDEX tasks_state_updated ON tasks(state, updated_ms);
    CREATE INDEX tasks_state_created ON tasks(state, created_ms);
    -- Image bytes of unfinished tasks; deleted when the task finishes.
    CREATE TABLE task_images (
        task_id     INTEGER PRIMARY KEY,
        image       BLOB NOT NULL
    );
    -- AUTOINCREMENT: ids are never reused, so a stale receipt never matches a new message.
    CREATE TABLE messages (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        queue         TEXT NOT NULL,
        body          TEXT NOT NULL,
        visible_at    INTEGER NOT NULL,
        receive_count INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX messages_ready ON messages(queue, visible_at, id);
    ",
    // 2: callbacks (signing secret, registered URLs) and the API a task came through.
    "
    ALTER TABLE accounts ADD COLUMN callback_secret TEXT NOT NULL DEFAULT '';
    ALTER TABLE accounts ADD COLUMN pingback_urls TEXT NOT NULL DEFAULT '[]';  -- JSON array
    ALTER TABLE tasks ADD COLUMN protocol TEXT NOT NULL DEFAULT 'classic';
    UPDATE accounts SET callback_secret = 'whsec_' || lower(hex(randomblob(16)));
    ",
];

/// The schema version this build writes.
pub const VERSION: i64 = MIGRATIONS.len() as i64;

/// Applies the migrations the file lacks, in one immediate transaction (so a
/// second process opening at the same moment waits, then sees them done).
pub(crate) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), OpenError> {
    let sqlite = |source| OpenError::Sqlite { path: path.to_path_buf(), source };
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sqlite)?;
    let found: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(sqlite)?;
    if found > VERSION {
        return Err(OpenError::TooNew { path: path.to_path_buf(), found, known: VERSION });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(usize::try_from(found).unwrap_or(0)) {
        tx.execute_batch(sql).map_err(sqlite)?;
        tx.pragma_update(None, "user_version", i as i64 + 1).map_err(sqlite)?;
        tracing::info!(path = %path.display(), version = i + 1, "migrated schema");
    }
    tx.commit().map_err(sqlite)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file written by version 1 (before callbacks) opens with every
    /// account given its own signing secret and every task the classic protocol.
    #[test]
    fn version_1_files_migrate_to_the_current_schema() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("v1.sqlite3");
        let mut conn = Connection::open(&path).expect("open");
        conn.execute_batch(MIGRATIONS[0]).expect("v1 schema");
        conn.pragma_update(None, "user_version", 1).expect("version");
        conn.execute_batch(
            "INSERT INTO accounts (id, balance, created_ms) VALUES ('a', 5, 1), ('b', 7, 2);
             INSERT INTO tasks (id, account_id, method, params, state, attempts, price, created_ms, updated_ms)
             VALUES (9, 'a', 'image', '{\"kind\":\"image\"}', 0, 0, 1, 1, 1);",
        )
        .expect("v1 rows");
        migrate(&mut conn, &path).expect("migrate");
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).expect("version");
        assert_eq!(version, VERSION);
        let secrets: Vec<(String, String)> = conn
            .prepare("SELECT callback_secret, pingback_urls FROM accounts ORDER BY id")
            .expect("prepare")
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert_eq!(secrets.len(), 2);
        assert!(secrets.iter().all(|(s, urls)| s.starts_with("whsec_") && s.len() == 38 && urls == "[]"));
        assert_ne!(secrets[0].0, secrets[1].0, "each account gets its own secret");
        let protocol: String =
            conn.query_row("SELECT protocol FROM tasks WHERE id = 9", [], |r| r.get(0)).expect("task");
        assert_eq!(protocol, "classic");
        // Running the migration again changes nothing.
        migrate(&mut conn, &path).expect("idempotent");
    }
}
