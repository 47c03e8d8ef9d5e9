//! [`TaskStore`] on the `tasks` and `task_images` tables. Every write is one
//! statement (or one transaction) guarded by the expected state and attempt.

use async_trait::async_trait;
use captcha_core::domain::{Method, TaskParams, TaskState, Transition};
use captcha_core::ports::{StoreResult, TaskStore};
use captcha_core::{AccountId, Protocol, Report, Task, TaskId};
use rusqlite::{params, OptionalExtension, Row, TransactionBehavior};

use crate::{corrupt, to_i64, to_u64, EmbeddedStore};

const COLUMNS: &str = "id, account_id, method, params, state, attempts, price, created_ms, routed_ms, started_ms, \
                       ended_ms, updated_ms, answer, error, report, reported_ms, pingback, soft_id, protocol";

fn report_to_i64(r: Report) -> i64 {
    match r {
        Report::Bad => 0,
        Report::Good => 1,
    }
}

fn report_from_i64(n: i64) -> Option<Report> {
    match n {
        0 => Some(Report::Bad),
        1 => Some(Report::Good),
        _ => None,
    }
}

fn opt_u64(v: Option<i64>) -> Option<u64> {
    v.map(to_u64)
}

fn task_from_row(r: &Row<'_>) -> rusqlite::Result<Task> {
    let method: String = r.get(2)?;
    let params: String = r.get(3)?;
    let state: i64 = r.get(4)?;
    let report: Option<i64> = r.get(14)?;
    Ok(Task {
        id: to_u64(r.get(0)?),
        account: AccountId(r.get(1)?),
        method: method.parse::<Method>().map_err(|_| corrupt(2, "method"))?,
        params: TaskParams::from_json(&params).map_err(|_| corrupt(3, "params"))?,
        state: TaskState::from_i64(state).ok_or_else(|| corrupt(4, "task state"))?,
        attempts: u32::try_from(r.get::<_, i64>(5)?).unwrap_or(0),
        price_micros: to_u64(r.get(6)?),
        created_ms: to_u64(r.get(7)?),
        routed_ms: opt_u64(r.get(8)?),
        started_ms: opt_u64(r.get(9)?),
        ended_ms: opt_u64(r.get(10)?),
        updated_ms: to_u64(r.get(11)?),
        answer: r.get(12)?,
        error: r.get(13)?,
        report: match report {
            Some(n) => Some(report_from_i64(n).ok_or_else(|| corrupt(14, "report"))?),
            None => None,
        },
        reported_ms: opt_u64(r.get(15)?),
        pingback: r.get(16)?,
        soft_id: r.get(17)?,
        protocol: Protocol::parse(&r.get::<_, String>(18)?).ok_or_else(|| corrupt(18, "protocol"))?,
    })
}

#[async_trait]
impl TaskStore for EmbeddedStore {
    async fn put_new(&self, task: &Task, image: &[u8]) -> StoreResult<bool> {
        let t = task.clone();
        let image = image.to_vec();
        self.write("put_new", move |c, _| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let inserted = tx
                .prepare_cached(
                    "INSERT INTO tasks (id, account_id, method, params, state, attempts, price, created_ms,
                        routed_ms, started_ms, ended_ms, updated_ms, answer, error, report, reported_ms,
                        pingback, soft_id, protocol)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)
                     ON CONFLICT(id) DO NOTHING",
                )?
                .execute(params![
                    to_i64(t.id),
                    t.account.as_str(),
                    t.method.as_str(),
                    t.params.to_json(),
                    t.state.as_i64(),
                    i64::from(t.attempts),
                    to_i64(t.price_micros),
                    to_i64(t.created_ms),
                    t.routed_ms.map(to_i64),
                    t.started_ms.map(to_i64),
                    t.ended_ms.map(to_i64),
                    to_i64(t.updated_ms),
                    t.answer,
                    t.error,
                    t.report.map(report_to_i64),
                    t.reported_ms.map(to_i64),
                    t.pingback,
                    t.soft_id,
                    t.protocol.as_str(),
                ])?;
            if inserted == 0 {
                return Ok(false);
            }
            if !image.is_empty() {
                tx.prepare_cached("INSERT OR REPLACE INTO task_images (task_id, image) VALUES (?1, ?2)")?
                    .execute(params![to_i64(t.id), image])?;
            }
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    async fn get(&self, id: TaskId) -> StoreResult<Option<Task>> {
        self.read("get_task", move |c| {
            c.prepare_cached(&format!("SELECT {COLUMNS} FROM tasks WHERE id = ?1"))?
                .query_row([to_i64(id)], task_from_row)
                .optional()
        })
        .await
    }

    async fn image(&self, id: TaskId) -> StoreResult<Option<Vec<u8>>> {
        self.read("get_image", move |c| {
            c.prepare_cached("SELECT image FROM task_images WHERE task_id = ?1")?
                .query_row([to_i64(id)], |r| r.get(0))
                .optional()
        })
        .await
    }

    async fn transition(&self, id: TaskId, t: &Transition) -> StoreResult<bool> {
        let t = t.clone();
        self.write("transition", move |c, _| {
            // The stage entered gets its timestamp.
            let stamp = match t.to {
                TaskState::Routed => ", routed_ms = ?4",
                TaskState::Solving => ", started_ms = ?4",
                TaskState::Solved | TaskState::Unsolvable => ", ended_ms = ?4",
                TaskState::Queued => "",
            };
            let sql = format!(
                "UPDATE tasks SET state = ?2, attempts = ?3, updated_ms = ?4{stamp},
                    answer = COALESCE(?5, answer), error = COALESCE(?6, error)
                 WHERE id = ?1 AND state = ?7 AND attempts = ?8"
            );
            let args = params![
                to_i64(id),
                t.to.as_i64(),
                i64::from(t.attempts),
                to_i64(t.at_ms),
                t.answer,
                t.error,
                t.from.as_i64(),
                i64::from(t.from_attempts),
            ];
            if !t.to.is_terminal() {
                return Ok(c.prepare_cached(&sql)?.execute(args)? == 1);
            }
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let changed = tx.prepare_cached(&sql)?.execute(args)? == 1;
            if changed {
                tx.prepare_cached("DELETE FROM task_images WHERE task_id = ?1")?.execute([to_i64(id)])?;
            }
            tx.commit()?;
            Ok(changed)
        })
        .await
    }

    async fn set_report(&self, id: TaskId, report: Report, at_ms: u64) -> StoreResult<bool> {
        self.write("set_report", move |c, _| {
            let n = c
                .prepare_cached("UPDATE tasks SET report = ?2, reported_ms = ?3 WHERE id = ?1 AND report IS NULL")?
                .execute(params![to_i64(id), report_to_i64(report), to_i64(at_ms)])?;
            Ok(n == 1)
        })
        .await
    }

    async fn stuck(&self, state: TaskState, updated_before_ms: u64, limit: usize) -> StoreResult<Vec<Task>> {
        self.read("stuck", move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM tasks WHERE state = ?1 AND updated_ms < ?2 ORDER BY updated_ms LIMIT ?3"
            ))?;
            let rows = stmt
                .query_map(params![state.as_i64(), to_i64(updated_before_ms), to_i64(limit as u64)], task_from_row)?;
            rows.collect()
        })
        .await
    }

    async fn overdue(&self, created_before_ms: u64, limit: usize) -> StoreResult<Vec<Task>> {
        self.read("overdue", move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM tasks WHERE state IN (?1, ?2, ?3) AND created_ms < ?4 LIMIT ?5"
            ))?;
            let rows = stmt.query_map(
                params![
                    TaskState::Queued.as_i64(),
                    TaskState::Routed.as_i64(),
                    TaskState::Solving.as_i64(),
                    to_i64(created_before_ms),
                    to_i64(limit as u64)
                ],
                task_from_row,
            )?;
            rows.collect()
        })
        .await
    }

    async fn purge(&self, ended_before_ms: u64, created_before_ms: u64, limit: usize) -> StoreResult<usize> {
        self.write("purge", move |c, _| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            // Images of finished tasks were dropped at their last transition;
            // delete any left over by an older build all the same.
            let ids: Vec<i64> = tx
                .prepare_cached(
                    "SELECT id FROM tasks WHERE state IN (?1, ?2) AND created_ms < ?3 AND ended_ms < ?4 LIMIT ?5",
                )?
                .query_map(
                    params![
                        TaskState::Solved.as_i64(),
                        TaskState::Unsolvable.as_i64(),
                        to_i64(created_before_ms),
                        to_i64(ended_before_ms),
                        to_i64(limit as u64)
                    ],
                    |r| r.get(0),
                )?
                .collect::<Result<_, _>>()?;
            {
                let mut del_task = tx.prepare_cached("DELETE FROM tasks WHERE id = ?1")?;
                let mut del_image = tx.prepare_cached("DELETE FROM task_images WHERE task_id = ?1")?;
                for id in &ids {
                    del_task.execute([id])?;
                    del_image.execute([id])?;
                }
            }
            tx.commit()?;
            Ok(ids.len())
        })
        .await
    }
}
