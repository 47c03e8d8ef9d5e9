//! [`TaskStore`] on the `tasks` and `images` tables.
//!
//! A task is one item keyed by `task_id` (decimal text). While it is
//! unfinished it carries `open_state` (= its state), which feeds the sparse
//! indexes `open_by_updated` (the sweeper's `stuck`) and `open_by_created`
//! (`overdue`); the transition into `solved`/`unsolvable` removes it and sets
//! the TTL `expires_at`. Images are split into parts of at most
//! [`IMAGE_PART_BYTES`] (an item holds 400 kB, an image up to 600 kB), written
//! in the same transaction as the task (a task without image, e.g. a token
//! task, has no parts) and deleted (best effort; their own
//! `expires_at` covers a failure) when the task finishes.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, DeleteRequest, KeysAndAttributes, Put, ReturnValue, TransactWriteItem,
    WriteRequest,
};
use aws_sdk_dynamodb::Client;
use captcha_core::domain::{Method, TaskParams, TaskState, Transition};
use captcha_core::ports::{StoreError, StoreResult, TaskStore};
use captcha_core::{AccountId, Protocol, Report, Task, TaskId};

use crate::item::{n, s, sdk_error, secs_ceil, Fields, Item};
use crate::{env_var, EnvError, Retention};

/// Largest image part stored in one `images` item.
pub const IMAGE_PART_BYTES: usize = 300 * 1024;
/// Image parts expire this long after the task was created even if the
/// delete at its end failed (no task stays unfinished for a day: the sweeper
/// gives up overdue ones after minutes).
const IMAGE_MAX_LIFE: Duration = Duration::from_secs(24 * 60 * 60);
/// Attempts at a transaction that DynamoDB cancelled for a conflicting one.
pub(crate) const TX_ATTEMPTS: u32 = 12;

/// The two tables' names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskTables {
    pub tasks: String,
    pub images: String,
}

impl TaskTables {
    /// `CAPTCHA_TASKS_TABLE`, `CAPTCHA_IMAGES_TABLE`.
    pub fn from_env() -> Result<TaskTables, EnvError> {
        Ok(TaskTables { tasks: env_var("CAPTCHA_TASKS_TABLE")?, images: env_var("CAPTCHA_IMAGES_TABLE")? })
    }
}

/// Task records and images on DynamoDB. Cheap to clone.
#[derive(Clone)]
pub struct DynamoTasks {
    client: Client,
    tables: std::sync::Arc<TaskTables>,
    retention: Retention,
}

fn state_from_str(v: &str) -> Option<TaskState> {
    TaskState::ALL.iter().copied().find(|s| s.as_str() == v)
}

fn report_str(r: Report) -> &'static str {
    match r {
        Report::Bad => "bad",
        Report::Good => "good",
    }
}

fn report_from_str(v: &str) -> Option<Report> {
    match v {
        "bad" => Some(Report::Bad),
        "good" => Some(Report::Good),
        _ => None,
    }
}

const OPEN_STATES: [TaskState; 3] = [TaskState::Queued, TaskState::Routed, TaskState::Solving];

pub(crate) fn task_key(id: TaskId) -> HashMap<String, AttributeValue> {
    HashMap::from([("task_id".to_string(), s(id.to_string()))])
}

fn part_key(id: TaskId, part: u32) -> HashMap<String, AttributeValue> {
    HashMap::from([("task_id".to_string(), s(id.to_string())), ("part".to_string(), n(part))])
}

/// Decodes a `tasks` item.
fn task_from_item(table: &str, item: &Item) -> StoreResult<Task> {
    let f = Fields::new(table, "task_id", item);
    let id = f.s("task_id")?.parse::<u64>().map_err(|_| f.corrupt("task_id", "is not a decimal id"))?;
    let method = f.s("method")?;
    let params = f.s("params")?;
    let state = f.s("state")?;
    let report = match f.opt_s("report")? {
        None => None,
        Some(r) => Some(report_from_str(&r).ok_or_else(|| f.corrupt("report", &format!("{r:?} is unknown")))?),
    };
    Ok(Task {
        id,
        account: AccountId(f.s("account_id")?.to_string()),
        method: method.parse::<Method>().map_err(|_| f.corrupt("method", &format!("{method:?} is unknown")))?,
        params: TaskParams::from_json(params).map_err(|e| f.corrupt("params", &format!("does not decode: {e}")))?,
        state: state_from_str(state).ok_or_else(|| f.corrupt("state", &format!("{state:?} is unknown")))?,
        attempts: f.u32("attempts")?,
        price_micros: f.n("price_micros")?,
        created_ms: f.n("created_ms")?,
        routed_ms: f.opt_n("routed_ms")?,
        started_ms: f.opt_n("started_ms")?,
        ended_ms: f.opt_n("ended_ms")?,
        updated_ms: f.n("updated_ms")?,
        answer: f.opt_s("answer")?,
        error: f.opt_s("error")?,
        report,
        reported_ms: f.opt_n("reported_ms")?,
        pingback: f.opt_s("pingback")?,
        soft_id: f.opt_s("soft_id")?,
        protocol: match f.opt_s("protocol")? {
            // Written before tasks had a protocol: the classic API was the only one.
            None => Protocol::Classic,
            Some(p) => Protocol::parse(&p).ok_or_else(|| f.corrupt("protocol", &format!("{p:?} is unknown")))?,
        },
    })
}

/// Reasons DynamoDB gave for cancelling a transaction, one per item
/// (`None` = that item's condition held).
pub(crate) enum TxOutcome {
    Done,
    Cancelled(Vec<CancellationReason>),
}

/// Runs a transaction, retrying the cancellations caused by a concurrent
/// transaction on the same items (`TransactionConflict`) with a jittered
/// backoff. A cancellation by a failed condition is returned, not retried.
pub(crate) async fn transact(
    client: &Client,
    what: &'static str,
    items: Vec<TransactWriteItem>,
) -> StoreResult<TxOutcome> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let res = client.transact_write_items().set_transact_items(Some(items.clone())).send().await;
        let err = match res {
            Ok(_) => return Ok(TxOutcome::Done),
            Err(e) => e,
        };
        let conflict = match err.as_service_error() {
            Some(TransactWriteItemsError::TransactionCanceledException(c)) => {
                let reasons = c.cancellation_reasons();
                let conflict = reasons.iter().any(|r| r.code() == Some("TransactionConflict"));
                let failed_condition = reasons.iter().any(|r| r.code() == Some("ConditionalCheckFailed"));
                if failed_condition {
                    return Ok(TxOutcome::Cancelled(reasons.to_vec()));
                }
                conflict
            }
            Some(TransactWriteItemsError::TransactionInProgressException(_)) => true,
            _ => err.code() == Some("TransactionConflict"),
        };
        if !conflict {
            return Err(sdk_error(what, err));
        }
        if attempt >= TX_ATTEMPTS {
            return Err(StoreError::Unavailable(format!(
                "{what}: still conflicting with other transactions after {attempt} attempts"
            )));
        }
        jitter_sleep(attempt).await;
    }
}

/// Sleeps a random time below `5 ms × 2^attempt` (capped at 640 ms).
pub(crate) async fn jitter_sleep(attempt: u32) {
    let cap = 5u64 << attempt.min(7);
    // Any cheap randomness does: spread the retries of racing writers.
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let ms = u64::from(nanos) % cap.max(1) + 1;
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

impl DynamoTasks {
    pub fn new(client: Client, tables: TaskTables, retention: Retention) -> DynamoTasks {
        DynamoTasks { client, tables: std::sync::Arc::new(tables), retention }
    }

    /// Client from the standard SDK configuration, names and retention from the environment.
    pub async fn from_env() -> Result<DynamoTasks, EnvError> {
        let sdk = crate::sdk_config().await;
        Ok(DynamoTasks::new(Client::new(&sdk), TaskTables::from_env()?, Retention::from_env()?))
    }

    pub fn tables(&self) -> &TaskTables {
        &self.tables
    }

    /// `expires_at` of a task that ended at `ended_ms`: readable for the
    /// retention after its end and reportable for the window after its
    /// creation (which is before its end).
    fn expires_at(&self, ended_ms: u64) -> u64 {
        let keep = self.retention.results.max(self.retention.report_window);
        secs_ceil(ended_ms.saturating_add(u64::try_from(keep.as_millis()).unwrap_or(u64::MAX)))
    }

    fn task_item(&self, t: &Task, parts: u32) -> Item {
        let mut item = task_key(t.id);
        let mut put = |k: &str, v: AttributeValue| {
            item.insert(k.to_string(), v);
        };
        put("account_id", s(t.account.as_str()));
        put("method", s(t.method.as_str()));
        put("params", s(t.params.to_json()));
        put("protocol", s(t.protocol.as_str()));
        put("state", s(t.state.as_str()));
        put("attempts", n(t.attempts));
        put("price_micros", n(t.price_micros));
        put("created_ms", n(t.created_ms));
        put("updated_ms", n(t.updated_ms));
        put("image_parts", n(parts));
        for (k, v) in [("routed_ms", t.routed_ms), ("started_ms", t.started_ms), ("ended_ms", t.ended_ms)] {
            if let Some(v) = v {
                put(k, n(v));
            }
        }
        if let Some(v) = t.reported_ms {
            put("reported_ms", n(v));
        }
        for (k, v) in [("answer", &t.answer), ("error", &t.error), ("pingback", &t.pingback), ("soft_id", &t.soft_id)] {
            if let Some(v) = v {
                put(k, s(v.as_str()));
            }
        }
        if let Some(r) = t.report {
            put("report", s(report_str(r)));
        }
        if t.state.is_terminal() {
            put("expires_at", n(self.expires_at(t.ended_ms.unwrap_or(t.updated_ms))));
        } else {
            put("open_state", s(t.state.as_str()));
        }
        item
    }

    /// Deletes a task's image parts; failures are logged (TTL removes the rest).
    async fn drop_image(&self, id: TaskId, parts: Option<u32>) {
        if let Err(e) = self.try_drop_image(id, parts).await {
            tracing::warn!(task = id, error = %e, "image parts not deleted; their TTL will remove them");
        }
    }

    async fn try_drop_image(&self, id: TaskId, parts: Option<u32>) -> StoreResult<()> {
        let keys: Vec<HashMap<String, AttributeValue>> = match parts {
            Some(p) => (0..p).map(|i| part_key(id, i)).collect(),
            None => self.image_parts(id, true).await?.into_iter().map(|(p, _)| part_key(id, p)).collect(),
        };
        for chunk in keys.chunks(25) {
            let mut requests: Vec<WriteRequest> = chunk
                .iter()
                .map(|k| {
                    DeleteRequest::builder()
                        .set_key(Some(k.clone()))
                        .build()
                        .map(|d| WriteRequest::builder().delete_request(d).build())
                        .map_err(|e| StoreError::backend("images delete request", e))
                })
                .collect::<Result<_, _>>()?;
            for attempt in 1..=5u32 {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(self.tables.images.clone(), requests)
                    .send()
                    .await
                    .map_err(|e| sdk_error("images batch_write_item", e))?;
                requests =
                    out.unprocessed_items().and_then(|m| m.get(&self.tables.images)).cloned().unwrap_or_default();
                if requests.is_empty() {
                    break;
                }
                jitter_sleep(attempt).await;
            }
        }
        Ok(())
    }

    /// The parts of an image, in order (`keys_only`: without their bytes).
    async fn image_parts(&self, id: TaskId, keys_only: bool) -> StoreResult<Vec<(u32, Vec<u8>)>> {
        let mut out = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let mut q = self
                .client
                .query()
                .table_name(&self.tables.images)
                .key_condition_expression("task_id = :id")
                .expression_attribute_values(":id", s(id.to_string()))
                .consistent_read(true)
                .set_exclusive_start_key(start.take());
            if keys_only {
                q = q.projection_expression("task_id, part");
            }
            let page = q.send().await.map_err(|e| sdk_error("images query", e))?;
            for item in page.items() {
                let f = Fields::new(&self.tables.images, "task_id", item);
                let part = f.u32("part")?;
                let bytes = if keys_only { Vec::new() } else { f.b("data")?.to_vec() };
                out.push((part, bytes));
            }
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        out.sort_by_key(|(p, _)| *p);
        Ok(out)
    }

    /// Queries one sparse index for open tasks, `range_attr < before`, up to `limit` items.
    async fn query_open(
        &self,
        index: &str,
        state: TaskState,
        range_attr: &str,
        before: u64,
        limit: usize,
    ) -> StoreResult<Vec<Item>> {
        let mut out = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        while out.len() < limit {
            let page = self
                .client
                .query()
                .table_name(&self.tables.tasks)
                .index_name(index)
                .key_condition_expression(format!("open_state = :s AND {range_attr} < :b"))
                .expression_attribute_values(":s", s(state.as_str()))
                .expression_attribute_values(":b", n(before))
                .limit(i32::try_from(limit - out.len()).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error("tasks query", e))?;
            out.extend(page.items().iter().cloned());
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        out.truncate(limit);
        Ok(out)
    }

    /// Reads many tasks by id (strongly consistent), in no particular order.
    async fn get_many(&self, ids: &[TaskId]) -> StoreResult<Vec<Task>> {
        let mut out = Vec::new();
        for chunk in ids.chunks(100) {
            let mut keys: Vec<HashMap<String, AttributeValue>> = chunk.iter().map(|id| task_key(*id)).collect();
            for attempt in 1..=8u32 {
                let ka = KeysAndAttributes::builder()
                    .set_keys(Some(keys))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| StoreError::backend("tasks batch_get keys", e))?;
                let resp = self
                    .client
                    .batch_get_item()
                    .request_items(self.tables.tasks.clone(), ka)
                    .send()
                    .await
                    .map_err(|e| sdk_error("tasks batch_get_item", e))?;
                if let Some(items) = resp.responses().and_then(|r| r.get(&self.tables.tasks)) {
                    for item in items {
                        out.push(task_from_item(&self.tables.tasks, item)?);
                    }
                }
                keys = resp
                    .unprocessed_keys()
                    .and_then(|u| u.get(&self.tables.tasks))
                    .map(|k| k.keys().to_vec())
                    .unwrap_or_default();
                if keys.is_empty() {
                    break;
                }
                if attempt == 8 {
                    return Err(StoreError::Unavailable(format!(
                        "tasks batch_get_item: {} keys still unprocessed",
                        keys.len()
                    )));
                }
                jitter_sleep(attempt).await;
            }
        }
        Ok(out)
    }
}

fn task_id_of(table: &str, item: &Item) -> StoreResult<TaskId> {
    let f = Fields::new(table, "task_id", item);
    f.s("task_id")?.parse::<u64>().map_err(|_| f.corrupt("task_id", "is not a decimal id"))
}

#[async_trait]
impl TaskStore for DynamoTasks {
    async fn put_new(&self, task: &Task, image: &[u8]) -> StoreResult<bool> {
        // Token tasks have no image: no parts at all.
        let chunks: Vec<&[u8]> = image.chunks(IMAGE_PART_BYTES).collect();
        let parts = u32::try_from(chunks.len()).unwrap_or(u32::MAX);
        let image_expires =
            secs_ceil(task.created_ms.saturating_add(u64::try_from(IMAGE_MAX_LIFE.as_millis()).unwrap_or(0)));
        let put = |table: &str, item: Item, cond: Option<&str>| -> StoreResult<TransactWriteItem> {
            let put = Put::builder()
                .table_name(table)
                .set_item(Some(item))
                .set_condition_expression(cond.map(str::to_string))
                .build()
                .map_err(|e| StoreError::backend("put_new put", e))?;
            Ok(TransactWriteItem::builder().put(put).build())
        };
        let mut items =
            vec![put(&self.tables.tasks, self.task_item(task, parts), Some("attribute_not_exists(task_id)"))?];
        for (i, bytes) in chunks.iter().enumerate() {
            let mut item = part_key(task.id, u32::try_from(i).unwrap_or(u32::MAX));
            item.insert("data".into(), AttributeValue::B(Blob::new(bytes.to_vec())));
            item.insert("expires_at".into(), n(image_expires));
            items.push(put(&self.tables.images, item, None)?);
        }
        match transact(&self.client, "tasks put_new", items).await? {
            TxOutcome::Done => Ok(true),
            // Only the task's put has a condition: the id is taken.
            TxOutcome::Cancelled(_) => Ok(false),
        }
    }

    async fn get(&self, id: TaskId) -> StoreResult<Option<Task>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.tasks)
            .set_key(Some(task_key(id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("tasks get_item", e))?;
        out.item().map(|item| task_from_item(&self.tables.tasks, item)).transpose()
    }

    async fn image(&self, id: TaskId) -> StoreResult<Option<Vec<u8>>> {
        let parts = self.image_parts(id, false).await?;
        if parts.is_empty() {
            return Ok(None);
        }
        let mut image = Vec::with_capacity(parts.iter().map(|(_, b)| b.len()).sum());
        for (i, (part, bytes)) in parts.into_iter().enumerate() {
            if usize::try_from(part).ok() != Some(i) {
                return Err(StoreError::Corrupt(format!(
                    "{} item task_id={id}: part {i} is missing",
                    self.tables.images
                )));
            }
            image.extend_from_slice(&bytes);
        }
        Ok(Some(image))
    }

    async fn transition(&self, id: TaskId, t: &Transition) -> StoreResult<bool> {
        let mut set = vec!["#st = :to", "attempts = :attempts", "updated_ms = :at"];
        let mut values = HashMap::from([
            (":to".to_string(), s(t.to.as_str())),
            (":attempts".to_string(), n(t.attempts)),
            (":at".to_string(), n(t.at_ms)),
            (":from".to_string(), s(t.from.as_str())),
            (":from_attempts".to_string(), n(t.from_attempts)),
        ]);
        let mut names = HashMap::from([("#st".to_string(), "state".to_string())]);
        match t.to {
            TaskState::Routed => set.push("routed_ms = :at"),
            TaskState::Solving => set.push("started_ms = :at"),
            TaskState::Solved | TaskState::Unsolvable => set.push("ended_ms = :at"),
            TaskState::Queued => {}
        }
        if let Some(a) = &t.answer {
            set.push("answer = :answer");
            values.insert(":answer".into(), s(a.as_str()));
        }
        if let Some(e) = &t.error {
            set.push("#err = :error");
            names.insert("#err".into(), "error".into());
            values.insert(":error".into(), s(e.as_str()));
        }
        let terminal = t.to.is_terminal();
        let remove = if terminal {
            set.push("expires_at = :exp");
            values.insert(":exp".into(), n(self.expires_at(t.at_ms)));
            " REMOVE open_state"
        } else {
            set.push("open_state = :to");
            ""
        };
        let res = self
            .client
            .update_item()
            .table_name(&self.tables.tasks)
            .set_key(Some(task_key(id)))
            .update_expression(format!("SET {}{remove}", set.join(", ")))
            .condition_expression("#st = :from AND attempts = :from_attempts")
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .return_values(if terminal { ReturnValue::AllNew } else { ReturnValue::None })
            .send()
            .await;
        let out = match res {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => {
                return Ok(false)
            }
            Err(e) => return Err(sdk_error("tasks transition", e)),
        };
        if terminal {
            let parts = match out.attributes() {
                Some(a) => Fields::new(&self.tables.tasks, "task_id", a).opt_n("image_parts").ok().flatten(),
                None => None,
            };
            self.drop_image(id, parts.map(|p| u32::try_from(p).unwrap_or(u32::MAX))).await;
        }
        Ok(true)
    }

    async fn set_report(&self, id: TaskId, report: Report, at_ms: u64) -> StoreResult<bool> {
        let res = self
            .client
            .update_item()
            .table_name(&self.tables.tasks)
            .set_key(Some(task_key(id)))
            .update_expression("SET #rep = :r, reported_ms = :at")
            .condition_expression("attribute_exists(task_id) AND attribute_not_exists(#rep)")
            .expression_attribute_names("#rep", "report")
            .expression_attribute_values(":r", s(report_str(report)))
            .expression_attribute_values(":at", n(at_ms))
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(false),
            Err(e) => Err(sdk_error("tasks set_report", e)),
        }
    }

    async fn stuck(&self, state: TaskState, updated_before_ms: u64, limit: usize) -> StoreResult<Vec<Task>> {
        if state.is_terminal() || limit == 0 {
            return Ok(Vec::new());
        }
        // The index projects every attribute; it may lag a write (eventually
        // consistent), which the callers' conditional transitions tolerate.
        let items = self.query_open("open_by_updated", state, "updated_ms", updated_before_ms, limit).await?;
        items.iter().map(|i| task_from_item(&self.tables.tasks, i)).collect()
    }

    async fn overdue(&self, created_before_ms: u64, limit: usize) -> StoreResult<Vec<Task>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut keys: Vec<(u64, TaskId)> = Vec::new();
        for state in OPEN_STATES {
            for item in self.query_open("open_by_created", state, "created_ms", created_before_ms, limit).await? {
                let f = Fields::new(&self.tables.tasks, "task_id", &item);
                keys.push((f.n("created_ms")?, task_id_of(&self.tables.tasks, &item)?));
            }
        }
        keys.sort_unstable();
        keys.dedup_by_key(|k| k.1);
        keys.truncate(limit);
        let ids: Vec<TaskId> = keys.iter().map(|k| k.1).collect();
        // The index holds keys only; read the records themselves, strongly
        // consistent, and drop any that finished meanwhile.
        let mut tasks: Vec<Task> = self.get_many(&ids).await?.into_iter().filter(|t| !t.state.is_terminal()).collect();
        tasks.sort_by_key(|t| (t.created_ms, t.id));
        Ok(tasks)
    }

    async fn purge(&self, ended_before_ms: u64, created_before_ms: u64, limit: usize) -> StoreResult<usize> {
        // Finished tasks are in no index (their TTL removes them without any
        // call); the sweeper's purge scans. Cost grows with the table, which
        // the TTL keeps small.
        let mut found: Vec<(TaskId, Option<u64>)> = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        while found.len() < limit {
            let page = self
                .client
                .scan()
                .table_name(&self.tables.tasks)
                .filter_expression("attribute_not_exists(open_state) AND ended_ms < :e AND created_ms < :c")
                .projection_expression("task_id, image_parts")
                .expression_attribute_values(":e", n(ended_before_ms))
                .expression_attribute_values(":c", n(created_before_ms))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error("tasks scan", e))?;
            for item in page.items() {
                let f = Fields::new(&self.tables.tasks, "task_id", item);
                found.push((task_id_of(&self.tables.tasks, item)?, f.opt_n("image_parts")?));
            }
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        found.truncate(limit);
        let mut purged = 0;
        for (id, parts) in found {
            let res = self
                .client
                .delete_item()
                .table_name(&self.tables.tasks)
                .set_key(Some(task_key(id)))
                .condition_expression("attribute_not_exists(open_state) AND ended_ms < :e AND created_ms < :c")
                .expression_attribute_values(":e", n(ended_before_ms))
                .expression_attribute_values(":c", n(created_before_ms))
                .send()
                .await;
            match res {
                Ok(_) => purged += 1,
                Err(e) if e.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => continue,
                Err(e) => return Err(sdk_error("tasks delete_item", e)),
            }
            self.drop_image(id, parts.map(|p| u32::try_from(p).unwrap_or(u32::MAX))).await;
        }
        Ok(purged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_task_items_are_corrupt() {
        let mut item = task_key(5);
        item.insert("account_id".into(), s("a"));
        item.insert("method".into(), s("nope"));
        item.insert("state".into(), s("queued"));
        item.insert("params".into(), s(TaskParams::Image(Default::default()).to_json()));
        assert!(matches!(task_from_item("tasks", &item), Err(StoreError::Corrupt(m)) if m.contains("method")));
        item.insert("method".into(), s("image"));
        item.insert("params".into(), s("{"));
        assert!(matches!(task_from_item("tasks", &item), Err(StoreError::Corrupt(m)) if m.contains("params")));
    }
}
