//! [`AccountStore`] on the `accounts` and `holds` tables.
//!
//! A hold is one `UPDATE accounts … WHERE balance - held >= price AND
//! open_holds < max` plus the insert of the hold row, in one immediate
//! transaction, so no interleaving of processes or threads can overdraw an
//! account. Settle, release and refund flip the hold row's state with a
//! guard on its current state and adjust the account in the same
//! transaction: each happens at most once per task.

use async_trait::async_trait;
use captcha_core::domain::{Hold, HoldState};
use captcha_core::ports::{AccountStore, HoldOutcome, StoreResult};
use captcha_core::{Account, AccountId, TaskId};
use rusqlite::{params, OptionalExtension, Row, Transaction, TransactionBehavior};

use crate::{corrupt, to_i64, to_u64, EmbeddedStore};

const ACCOUNT_COLUMNS: &str = "id, balance, held, open_holds, created_ms, callback_secret, pingback_urls";
const HOLD_COLUMNS: &str = "task_id, account_id, amount, state, created_ms, closed_ms";

fn account_from_row(r: &Row<'_>) -> rusqlite::Result<Account> {
    Ok(Account {
        id: AccountId(r.get(0)?),
        balance_micros: to_u64(r.get(1)?),
        held_micros: to_u64(r.get(2)?),
        open_holds: u32::try_from(r.get::<_, i64>(3)?).unwrap_or(0),
        created_ms: to_u64(r.get(4)?),
        callback_secret: r.get(5)?,
        pingback_urls: serde_json::from_str(&r.get::<_, String>(6)?).map_err(|_| corrupt(6, "pingback_urls"))?,
    })
}

fn urls_json(urls: &[String]) -> String {
    serde_json::to_string(urls).unwrap_or_else(|_| "[]".to_string())
}

fn hold_from_row(r: &Row<'_>) -> rusqlite::Result<Hold> {
    Ok(Hold {
        task_id: to_u64(r.get(0)?),
        account: AccountId(r.get(1)?),
        amount_micros: to_u64(r.get(2)?),
        state: HoldState::from_i64(r.get(3)?).ok_or_else(|| corrupt(3, "hold state"))?,
        created_ms: to_u64(r.get(4)?),
        closed_ms: r.get::<_, Option<i64>>(5)?.map(to_u64),
    })
}

/// Moves a hold from `from` to `to`; returns its account and amount if it was in `from`.
fn flip_hold(
    tx: &Transaction<'_>,
    task: TaskId,
    from: HoldState,
    to: HoldState,
    now: u64,
) -> rusqlite::Result<Option<(String, i64)>> {
    tx.prepare_cached(
        "UPDATE holds SET state = ?3, closed_ms = ?4 WHERE task_id = ?1 AND state = ?2 RETURNING account_id, amount",
    )?
    .query_row(params![to_i64(task), from.as_i64(), to.as_i64(), to_i64(now)], |r| Ok((r.get(0)?, r.get(1)?)))
    .optional()
}

impl EmbeddedStore {
    /// Closes an open hold: `Settled` charges it, `Released` gives it back.
    async fn close_hold(&self, task: TaskId, now_ms: u64, to: HoldState) -> StoreResult<bool> {
        self.write("close_hold", move |c, _| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let Some((account, amount)) = flip_hold(&tx, task, HoldState::Held, to, now_ms)? else {
                return Ok(false);
            };
            let charge = if to == HoldState::Settled { amount } else { 0 };
            tx.prepare_cached(
                "UPDATE accounts SET balance = balance - ?2, held = held - ?3, open_holds = open_holds - 1
                 WHERE id = ?1",
            )?
            .execute(params![account, charge, amount])?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }
}

#[async_trait]
impl AccountStore for EmbeddedStore {
    async fn create(&self, account: &Account) -> StoreResult<bool> {
        let a = account.clone();
        self.write("create_account", move |c, _| {
            let n = c
                .prepare_cached(
                    "INSERT INTO accounts (id, balance, held, open_holds, created_ms, callback_secret, pingback_urls)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT(id) DO NOTHING",
                )?
                .execute(params![
                    a.id.as_str(),
                    to_i64(a.balance_micros),
                    to_i64(a.held_micros),
                    i64::from(a.open_holds),
                    to_i64(a.created_ms),
                    a.callback_secret,
                    urls_json(&a.pingback_urls),
                ])?;
            Ok(n == 1)
        })
        .await
    }

    async fn get(&self, id: &AccountId) -> StoreResult<Option<Account>> {
        let id = id.clone();
        self.read("get_account", move |c| {
            c.prepare_cached(&format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ?1"))?
                .query_row([id.as_str()], account_from_row)
                .optional()
        })
        .await
    }

    async fn list(&self) -> StoreResult<Vec<Account>> {
        self.read("list_accounts", |c| {
            let mut stmt =
                c.prepare_cached(&format!("SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY created_ms, id"))?;
            let rows = stmt.query_map([], account_from_row)?;
            rows.collect()
        })
        .await
    }

    async fn top_up(&self, id: &AccountId, amount_micros: u64) -> StoreResult<Option<Account>> {
        let id = id.clone();
        self.write("top_up", move |c, _| {
            c.prepare_cached(&format!(
                "UPDATE accounts SET balance = balance + ?2 WHERE id = ?1 RETURNING {ACCOUNT_COLUMNS}"
            ))?
            .query_row(params![id.as_str(), to_i64(amount_micros)], account_from_row)
            .optional()
        })
        .await
    }

    async fn hold(
        &self,
        id: &AccountId,
        task: TaskId,
        amount_micros: u64,
        max_open: u32,
        now_ms: u64,
    ) -> StoreResult<HoldOutcome> {
        let id = id.clone();
        self.write("hold", move |c, _| {
            let amount = to_i64(amount_micros);
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let held = tx
                .prepare_cached(
                    "UPDATE accounts SET held = held + ?2, open_holds = open_holds + 1
                     WHERE id = ?1 AND balance - held >= ?2 AND open_holds < ?3",
                )?
                .execute(params![id.as_str(), amount, i64::from(max_open)])?;
            if held == 0 {
                // Nothing changed; find out why (same transaction, same snapshot).
                let row: Option<(i64, i64, i64)> = tx
                    .prepare_cached("SELECT balance, held, open_holds FROM accounts WHERE id = ?1")?
                    .query_row([id.as_str()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .optional()?;
                return Ok(match row {
                    None => HoldOutcome::NoAccount,
                    Some((_, _, open)) if open >= i64::from(max_open) => HoldOutcome::TooManyOpen,
                    Some(_) => HoldOutcome::InsufficientFunds,
                });
            }
            let inserted = tx
                .prepare_cached(
                    "INSERT INTO holds (task_id, account_id, amount, state, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT(task_id) DO NOTHING",
                )?
                .execute(params![to_i64(task), id.as_str(), amount, HoldState::Held.as_i64(), to_i64(now_ms)])?;
            if inserted == 0 {
                // Dropping the transaction rolls the account update back.
                return Ok(HoldOutcome::DuplicateTask);
            }
            tx.commit()?;
            Ok(HoldOutcome::Held)
        })
        .await
    }

    async fn settle(&self, task: TaskId, now_ms: u64) -> StoreResult<bool> {
        self.close_hold(task, now_ms, HoldState::Settled).await
    }

    async fn release(&self, task: TaskId, now_ms: u64) -> StoreResult<bool> {
        self.close_hold(task, now_ms, HoldState::Released).await
    }

    async fn refund(&self, task: TaskId, now_ms: u64) -> StoreResult<bool> {
        self.write("refund", move |c, _| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let Some((account, amount)) = flip_hold(&tx, task, HoldState::Settled, HoldState::Refunded, now_ms)? else {
                return Ok(false);
            };
            tx.prepare_cached("UPDATE accounts SET balance = balance + ?2 WHERE id = ?1")?
                .execute(params![account, amount])?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    async fn hold_of(&self, task: TaskId) -> StoreResult<Option<Hold>> {
        self.read("hold_of", move |c| {
            c.prepare_cached(&format!("SELECT {HOLD_COLUMNS} FROM holds WHERE task_id = ?1"))?
                .query_row([to_i64(task)], hold_from_row)
                .optional()
        })
        .await
    }

    async fn open_holds(&self, created_before_ms: u64, limit: usize) -> StoreResult<Vec<Hold>> {
        self.read("open_holds", move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {HOLD_COLUMNS} FROM holds WHERE state = ?1 AND created_ms < ?2 ORDER BY created_ms LIMIT ?3"
            ))?;
            let rows = stmt.query_map(
                params![HoldState::Held.as_i64(), to_i64(created_before_ms), to_i64(limit as u64)],
                hold_from_row,
            )?;
            rows.collect()
        })
        .await
    }

    async fn purge_holds(&self, closed_before_ms: u64, limit: usize) -> StoreResult<usize> {
        self.write("purge_holds", move |c, _| {
            c.prepare_cached(
                "DELETE FROM holds WHERE task_id IN
                   (SELECT task_id FROM holds WHERE closed_ms IS NOT NULL AND closed_ms < ?1 LIMIT ?2)",
            )?
            .execute(params![to_i64(closed_before_ms), to_i64(limit as u64)])
        })
        .await
    }

    async fn set_callback_secret(&self, id: &AccountId, secret: &str) -> StoreResult<bool> {
        let (id, secret) = (id.as_str().to_string(), secret.to_string());
        self.write("set_callback_secret", move |c, _| {
            Ok(c.prepare_cached("UPDATE accounts SET callback_secret = ?2 WHERE id = ?1")?
                .execute(params![id, secret])?
                == 1)
        })
        .await
    }

    async fn set_pingback_urls(&self, id: &AccountId, urls: &[String]) -> StoreResult<bool> {
        let (id, urls) = (id.as_str().to_string(), urls_json(urls));
        self.write("set_pingback_urls", move |c, _| {
            Ok(c.prepare_cached("UPDATE accounts SET pingback_urls = ?2 WHERE id = ?1")?.execute(params![id, urls])?
                == 1)
        })
        .await
    }
}
