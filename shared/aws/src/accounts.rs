//! [`AccountStore`] on the `accounts` and `holds` tables.
//!
//! DynamoDB conditions cannot subtract, so an account item keeps
//! `available_micros` (= `balance_micros − held_micros`) beside the two, and
//! every write changes all three consistently in the same single-item update.
//! A hold is ONE `TransactWriteItems`: put the hold (`attribute_not_exists`)
//! and update the account with `available_micros >= :amount AND open_holds <
//! :max`; DynamoDB serialises transactions on an item, so no interleaving can
//! overdraw. Settle, release and refund are transactions conditional on the
//! hold's current state: each happens at most once per task.
//!
//! A hold carries `open` only while held (the sparse index `open_by_created`
//! for hold repair) and `expires_at` once closed.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;
use captcha_core::domain::{Hold, HoldState};
use captcha_core::ports::{AccountStore, HoldOutcome, StoreError, StoreResult};
use captcha_core::{Account, AccountId, TaskId};

use crate::item::{n, s, sdk_error, secs_ceil, Fields, Item};
use crate::tasks::{task_key, transact, TxOutcome};
use crate::{env_var, EnvError, Retention};

/// The two tables' names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountTables {
    pub accounts: String,
    pub holds: String,
}

impl AccountTables {
    /// `CAPTCHA_ACCOUNTS_TABLE`, `CAPTCHA_HOLDS_TABLE`.
    pub fn from_env() -> Result<AccountTables, EnvError> {
        Ok(AccountTables { accounts: env_var("CAPTCHA_ACCOUNTS_TABLE")?, holds: env_var("CAPTCHA_HOLDS_TABLE")? })
    }
}

/// Accounts and holds on DynamoDB. Cheap to clone.
#[derive(Clone)]
pub struct DynamoAccounts {
    client: Client,
    tables: std::sync::Arc<AccountTables>,
    retention: Retention,
}

const HELD: &str = "held";

fn hold_state_str(s: HoldState) -> &'static str {
    match s {
        HoldState::Held => HELD,
        HoldState::Settled => "settled",
        HoldState::Released => "released",
        HoldState::Refunded => "refunded",
    }
}

fn hold_state_from_str(v: &str) -> Option<HoldState> {
    [HoldState::Held, HoldState::Settled, HoldState::Released, HoldState::Refunded]
        .into_iter()
        .find(|s| hold_state_str(*s) == v)
}

fn account_key(id: &AccountId) -> HashMap<String, AttributeValue> {
    HashMap::from([("account_id".to_string(), s(id.as_str()))])
}

fn account_from_item(table: &str, item: &Item) -> StoreResult<Account> {
    let f = Fields::new(table, "account_id", item);
    Ok(Account {
        id: AccountId(f.s("account_id")?.to_string()),
        balance_micros: f.n("balance_micros")?,
        held_micros: f.n("held_micros")?,
        open_holds: f.u32("open_holds")?,
        created_ms: f.n("created_ms")?,
        // Required: an empty key would sign callbacks anyone can forge.
        callback_secret: f.s("callback_secret")?.to_string(),
        pingback_urls: f.str_list("pingback_urls")?,
    })
}

fn url_list(urls: &[String]) -> AttributeValue {
    AttributeValue::L(urls.iter().map(|u| s(u.as_str())).collect())
}

fn hold_from_item(table: &str, item: &Item) -> StoreResult<Hold> {
    let f = Fields::new(table, "task_id", item);
    let state = f.s("state")?;
    Ok(Hold {
        task_id: f.s("task_id")?.parse::<u64>().map_err(|_| f.corrupt("task_id", "is not a decimal id"))?,
        account: AccountId(f.s("account_id")?.to_string()),
        amount_micros: f.n("amount_micros")?,
        state: hold_state_from_str(state).ok_or_else(|| f.corrupt("state", &format!("{state:?} is unknown")))?,
        created_ms: f.n("created_ms")?,
        closed_ms: f.opt_n("closed_ms")?,
    })
}

fn is_condition_failure(code: Option<&str>) -> bool {
    code == Some("ConditionalCheckFailed")
}

fn update(
    table: &str,
    key: HashMap<String, AttributeValue>,
    expr: &str,
    cond: &str,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
) -> StoreResult<TransactWriteItem> {
    let u = Update::builder()
        .table_name(table)
        .set_key(Some(key))
        .update_expression(expr)
        .condition_expression(cond)
        .set_expression_attribute_names(if names.is_empty() { None } else { Some(names) })
        .set_expression_attribute_values(Some(values))
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
        .build()
        .map_err(|e| StoreError::backend("transaction update", e))?;
    Ok(TransactWriteItem::builder().update(u).build())
}

impl DynamoAccounts {
    pub fn new(client: Client, tables: AccountTables, retention: Retention) -> DynamoAccounts {
        DynamoAccounts { client, tables: std::sync::Arc::new(tables), retention }
    }

    /// Client from the standard SDK configuration, names and retention from the environment.
    pub async fn from_env() -> Result<DynamoAccounts, EnvError> {
        let sdk = crate::sdk_config().await;
        Ok(DynamoAccounts::new(Client::new(&sdk), AccountTables::from_env()?, Retention::from_env()?))
    }

    pub fn tables(&self) -> &AccountTables {
        &self.tables
    }

    fn hold_expires_at(&self, closed_ms: u64) -> u64 {
        secs_ceil(closed_ms.saturating_add(u64::try_from(self.retention.holds.as_millis()).unwrap_or(u64::MAX)))
    }

    /// Moves a hold `from → to` and applies `account_expr` (with `:a` = the
    /// amount) to its account, in one transaction. `Ok(false)` if the hold is
    /// not in `from`.
    async fn flip(
        &self,
        task: TaskId,
        from: HoldState,
        to: HoldState,
        now_ms: u64,
        account_expr: &str,
    ) -> StoreResult<bool> {
        let Some(hold) = self.hold_of(task).await? else { return Ok(false) };
        if hold.state != from {
            return Ok(false);
        }
        let hold_update = update(
            &self.tables.holds,
            task_key(task),
            "SET #st = :to, closed_ms = :now, expires_at = :exp REMOVE #open",
            "#st = :from AND amount_micros = :a",
            HashMap::from([("#st".into(), "state".into()), ("#open".into(), "open".into())]),
            HashMap::from([
                (":to".into(), s(hold_state_str(to))),
                (":from".into(), s(hold_state_str(from))),
                (":now".into(), n(now_ms)),
                (":exp".into(), n(self.hold_expires_at(now_ms))),
                (":a".into(), n(hold.amount_micros)),
            ]),
        )?;
        let account_update = update(
            &self.tables.accounts,
            account_key(&hold.account),
            account_expr,
            "attribute_exists(account_id)",
            HashMap::new(),
            [(":a", n(hold.amount_micros)), (":one", n(1u64))]
                .into_iter()
                .filter(|(k, _)| account_expr.contains(k))
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        )?;
        match transact(&self.client, "holds flip", vec![hold_update, account_update]).await? {
            TxOutcome::Done => Ok(true),
            TxOutcome::Cancelled(reasons) => {
                if reasons.get(1).is_some_and(|r| is_condition_failure(r.code())) {
                    return Err(StoreError::Corrupt(format!(
                        "{} item task_id={task}: its account {} does not exist",
                        self.tables.holds, hold.account
                    )));
                }
                // The hold left `from` meanwhile: someone else did it.
                Ok(false)
            }
        }
    }

    /// Sets one attribute of an existing account; `Ok(false)` if there is none.
    async fn set_attribute(&self, id: &AccountId, attr: &str, value: AttributeValue) -> StoreResult<bool> {
        let res = self
            .client
            .update_item()
            .table_name(&self.tables.accounts)
            .set_key(Some(account_key(id)))
            .update_expression("SET #attr = :v")
            .condition_expression("attribute_exists(account_id)")
            .expression_attribute_names("#attr", attr)
            .expression_attribute_values(":v", value)
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(false),
            Err(e) => Err(sdk_error("accounts update_item", e)),
        }
    }

    /// Why a hold's account update failed its condition.
    async fn refusal(
        &self,
        id: &AccountId,
        old: Option<&Item>,
        amount: u64,
        max_open: u32,
    ) -> StoreResult<Option<HoldOutcome>> {
        let account = match old {
            Some(item) => Some(account_from_item(&self.tables.accounts, item)?),
            None => AccountStore::get(self, id).await?,
        };
        Ok(match account {
            None => Some(HoldOutcome::NoAccount),
            Some(a) if a.open_holds >= max_open => Some(HoldOutcome::TooManyOpen),
            Some(a) if a.available_micros() < amount => Some(HoldOutcome::InsufficientFunds),
            // It would pass now (a hold closed meanwhile): try again.
            Some(_) => None,
        })
    }
}

#[async_trait]
impl AccountStore for DynamoAccounts {
    async fn create(&self, account: &Account) -> StoreResult<bool> {
        let a = account;
        let mut item = account_key(&a.id);
        item.insert("balance_micros".into(), n(a.balance_micros));
        item.insert("held_micros".into(), n(a.held_micros));
        item.insert("available_micros".into(), n(a.available_micros()));
        item.insert("open_holds".into(), n(a.open_holds));
        item.insert("created_ms".into(), n(a.created_ms));
        item.insert("callback_secret".into(), s(a.callback_secret.as_str()));
        item.insert("pingback_urls".into(), url_list(&a.pingback_urls));
        let res = self
            .client
            .put_item()
            .table_name(&self.tables.accounts)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(account_id)")
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(false),
            Err(e) => Err(sdk_error("accounts put_item", e)),
        }
    }

    async fn get(&self, id: &AccountId) -> StoreResult<Option<Account>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.accounts)
            .set_key(Some(account_key(id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("accounts get_item", e))?;
        out.item().map(|i| account_from_item(&self.tables.accounts, i)).transpose()
    }

    async fn list(&self) -> StoreResult<Vec<Account>> {
        let mut out = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.tables.accounts)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error("accounts scan", e))?;
            for item in page.items() {
                out.push(account_from_item(&self.tables.accounts, item)?);
            }
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        out.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
        Ok(out)
    }

    async fn top_up(&self, id: &AccountId, amount_micros: u64) -> StoreResult<Option<Account>> {
        let res = self
            .client
            .update_item()
            .table_name(&self.tables.accounts)
            .set_key(Some(account_key(id)))
            .update_expression("ADD balance_micros :a, available_micros :a")
            .condition_expression("attribute_exists(account_id)")
            .expression_attribute_values(":a", n(amount_micros))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .await;
        match res {
            Ok(out) => out.attributes().map(|i| account_from_item(&self.tables.accounts, i)).transpose(),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(None),
            Err(e) => Err(sdk_error("accounts top_up", e)),
        }
    }

    async fn hold(
        &self,
        id: &AccountId,
        task: TaskId,
        amount_micros: u64,
        max_open: u32,
        now_ms: u64,
    ) -> StoreResult<HoldOutcome> {
        let mut hold = task_key(task);
        hold.insert("account_id".into(), s(id.as_str()));
        hold.insert("amount_micros".into(), n(amount_micros));
        hold.insert("state".into(), s(HELD));
        hold.insert("open".into(), s(HELD));
        hold.insert("created_ms".into(), n(now_ms));
        let put = Put::builder()
            .table_name(&self.tables.holds)
            .set_item(Some(hold))
            .condition_expression("attribute_not_exists(task_id)")
            .build()
            .map_err(|e| StoreError::backend("hold put", e))?;
        let put = TransactWriteItem::builder().put(put).build();
        let charge = update(
            &self.tables.accounts,
            account_key(id),
            "SET held_micros = held_micros + :a, available_micros = available_micros - :a, \
             open_holds = open_holds + :one",
            "attribute_exists(account_id) AND available_micros >= :a AND open_holds < :max",
            HashMap::new(),
            HashMap::from([(":a".into(), n(amount_micros)), (":one".into(), n(1u64)), (":max".into(), n(max_open))]),
        )?;
        for _ in 0..5 {
            let reasons = match transact(&self.client, "hold", vec![put.clone(), charge.clone()]).await? {
                TxOutcome::Done => return Ok(HoldOutcome::Held),
                TxOutcome::Cancelled(r) => r,
            };
            // The account's refusal first (as the SQLite adapter answers).
            if let Some(r) = reasons.get(1).filter(|r| is_condition_failure(r.code())) {
                if let Some(outcome) = self.refusal(id, r.item(), amount_micros, max_open).await? {
                    return Ok(outcome);
                }
                continue;
            }
            if reasons.first().is_some_and(|r| is_condition_failure(r.code())) {
                return Ok(HoldOutcome::DuplicateTask);
            }
            return Err(StoreError::Unavailable(format!("hold for task {task}: transaction cancelled: {reasons:?}")));
        }
        Ok(HoldOutcome::InsufficientFunds)
    }

    async fn settle(&self, task: TaskId, now_ms: u64) -> StoreResult<bool> {
        self.flip(
            task,
            HoldState::Held,
            HoldState::Settled,
            now_ms,
            "SET balance_micros = balance_micros - :a, held_micros = held_micros - :a, open_holds = open_holds - :one",
        )
        .await
    }

    async fn release(&self, task: TaskId, now_ms: u64) -> StoreResult<bool> {
        self.flip(
            task,
            HoldState::Held,
            HoldState::Released,
            now_ms,
            "SET held_micros = held_micros - :a, available_micros = available_micros + :a, \
             open_holds = open_holds - :one",
        )
        .await
    }

    async fn refund(&self, task: TaskId, now_ms: u64) -> StoreResult<bool> {
        self.flip(
            task,
            HoldState::Settled,
            HoldState::Refunded,
            now_ms,
            "SET balance_micros = balance_micros + :a, available_micros = available_micros + :a",
        )
        .await
    }

    async fn hold_of(&self, task: TaskId) -> StoreResult<Option<Hold>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.holds)
            .set_key(Some(task_key(task)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("holds get_item", e))?;
        out.item().map(|i| hold_from_item(&self.tables.holds, i)).transpose()
    }

    async fn open_holds(&self, created_before_ms: u64, limit: usize) -> StoreResult<Vec<Hold>> {
        let mut out = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        while out.len() < limit {
            let page = self
                .client
                .query()
                .table_name(&self.tables.holds)
                .index_name("open_by_created")
                .key_condition_expression("#open = :held AND created_ms < :b")
                .expression_attribute_names("#open", "open")
                .expression_attribute_values(":held", s(HELD))
                .expression_attribute_values(":b", n(created_before_ms))
                .limit(i32::try_from(limit - out.len()).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error("holds query", e))?;
            for item in page.items() {
                let hold = hold_from_item(&self.tables.holds, item)?;
                // The index may lag a close by a moment.
                if hold.state == HoldState::Held {
                    out.push(hold);
                }
            }
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        out.truncate(limit);
        Ok(out)
    }

    async fn purge_holds(&self, closed_before_ms: u64, limit: usize) -> StoreResult<usize> {
        // Closed holds are in no index (TTL removes them without any call): scan.
        let mut found: Vec<TaskId> = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        while found.len() < limit {
            let page = self
                .client
                .scan()
                .table_name(&self.tables.holds)
                .filter_expression("attribute_exists(closed_ms) AND closed_ms < :c")
                .projection_expression("task_id")
                .expression_attribute_values(":c", n(closed_before_ms))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error("holds scan", e))?;
            for item in page.items() {
                let f = Fields::new(&self.tables.holds, "task_id", item);
                found.push(f.s("task_id")?.parse::<u64>().map_err(|_| f.corrupt("task_id", "is not a decimal id"))?);
            }
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        found.truncate(limit);
        let mut purged = 0;
        for task in found {
            let res = self
                .client
                .delete_item()
                .table_name(&self.tables.holds)
                .set_key(Some(task_key(task)))
                .condition_expression("attribute_exists(closed_ms) AND closed_ms < :c AND #st <> :held")
                .expression_attribute_names("#st", "state")
                .expression_attribute_values(":c", n(closed_before_ms))
                .expression_attribute_values(":held", s(HELD))
                .send()
                .await;
            match res {
                Ok(_) => purged += 1,
                Err(e) if e.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => {}
                Err(e) => return Err(sdk_error("holds delete_item", e)),
            }
        }
        Ok(purged)
    }

    async fn set_callback_secret(&self, id: &AccountId, secret: &str) -> StoreResult<bool> {
        self.set_attribute(id, "callback_secret", s(secret)).await
    }

    async fn set_pingback_urls(&self, id: &AccountId, urls: &[String]) -> StoreResult<bool> {
        self.set_attribute(id, "pingback_urls", url_list(urls)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hold_states_round_trip_and_bad_items_are_corrupt() {
        for st in [HoldState::Held, HoldState::Settled, HoldState::Released, HoldState::Refunded] {
            assert_eq!(hold_state_from_str(hold_state_str(st)), Some(st));
        }
        let mut item = task_key(3);
        item.insert("account_id".into(), s("a"));
        item.insert("amount_micros".into(), n(5u64));
        item.insert("state".into(), s("lost"));
        item.insert("created_ms".into(), n(1u64));
        assert!(matches!(hold_from_item("holds", &item), Err(StoreError::Corrupt(m)) if m.contains("state")));
        let acc: Item = HashMap::from([("account_id".to_string(), s("a"))]);
        assert!(matches!(account_from_item("accounts", &acc), Err(StoreError::Corrupt(_))));
    }
}
