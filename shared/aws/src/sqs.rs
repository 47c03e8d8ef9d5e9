//! [`TaskQueue`] on SQS standard queues.
//!
//! Each core [`Queue`] maps to one queue URL. Receives never wait
//! (`WaitTimeSeconds=0`) and take at most ten messages per call, so a receive
//! of `max` loops until it has `max` or a call comes back short. The receive
//! count is SQS's `ApproximateReceiveCount`; moving a message received too
//! often to the dead-letter queue is the queue's redrive policy
//! (`maxReceiveCount` in the template), not code here.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::error::ProvideErrorMetadata;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName, SendMessageBatchRequestEntry};
use aws_sdk_sqs::Client;
use captcha_core::domain::Pool;
use captcha_core::ports::{Message, Queue, QueueKind, Receipt, StoreError, StoreResult, TaskQueue};

use crate::item::sdk_error;
use crate::{env_opt, EnvError};

/// SQS takes at most ten entries per batch call and per receive.
const SQS_BATCH: usize = 10;
/// The longest visibility timeout SQS accepts (12 hours).
const MAX_VISIBILITY_SECS: u64 = 12 * 60 * 60;
/// Retries of the entries of a batch that failed for a reason not their own.
const BATCH_RETRIES: u32 = 3;

/// Which URL each queue has.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueUrls(BTreeMap<Queue, String>);

impl QueueUrls {
    pub fn new() -> QueueUrls {
        QueueUrls::default()
    }

    pub fn with(mut self, queue: Queue, url: impl Into<String>) -> QueueUrls {
        self.0.insert(queue, url.into());
        self
    }

    pub fn insert(&mut self, queue: Queue, url: impl Into<String>) {
        self.0.insert(queue, url.into());
    }

    pub fn get(&self, queue: Queue) -> Option<&str> {
        self.0.get(&queue).map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = (Queue, &str)> {
        self.0.iter().map(|(q, u)| (*q, u.as_str()))
    }

    /// The queues a deployment may have: intake, one per pool, callback.
    pub fn known_queues() -> Vec<Queue> {
        let mut out = vec![Queue::INTAKE];
        out.extend(Pool::ALL.iter().map(|p| Queue::pool(*p)));
        out.push(Queue::CALLBACK);
        out
    }

    /// `CAPTCHA_<NAME>_QUEUE_URL` for every known queue and
    /// `CAPTCHA_<NAME>_DLQ_URL` for its dead-letter queue (default: the queue
    /// URL + `-dlq`, the template's naming; the functions' environment only
    /// carries the queue URLs). Intake and callback are required; a pool
    /// without a URL is not deployed (using its queue is an error, and the
    /// core's `Config::pools` should not list it).
    pub fn from_env() -> Result<QueueUrls, EnvError> {
        QueueUrls::from_lookup(env_opt)
    }

    /// [`QueueUrls::from_env`] over any variable lookup.
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<QueueUrls, EnvError> {
        let mut urls = QueueUrls::new();
        for q in QueueUrls::known_queues() {
            let name = q.name().to_ascii_uppercase();
            let queue_var = format!("CAPTCHA_{name}_QUEUE_URL");
            let url = match var(&queue_var) {
                Some(url) => url,
                None if matches!(q.kind, QueueKind::Pool(_)) => continue,
                None => return Err(EnvError::Missing(queue_var)),
            };
            let dlq = var(&format!("CAPTCHA_{name}_DLQ_URL")).unwrap_or_else(|| format!("{url}-dlq"));
            urls.insert(q, url);
            urls.insert(q.dead(), dlq);
        }
        Ok(urls)
    }
}

/// A queue the adapter has no URL for (a deployment without that queue).
#[derive(Debug, thiserror::Error)]
#[error("no URL configured for queue {0}")]
pub struct NoQueueUrl(pub Queue);

/// Some entries of a batch call failed.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {failed} of {total} entries failed, first: {code}: {message}")]
pub struct BatchFailed {
    pub what: &'static str,
    pub failed: usize,
    pub total: usize,
    pub code: String,
    pub message: String,
}

/// The queues on SQS. Cheap to clone (one client, shared URL map).
#[derive(Clone)]
pub struct SqsQueue {
    client: Client,
    urls: Arc<QueueUrls>,
}

impl SqsQueue {
    pub fn new(client: Client, urls: QueueUrls) -> SqsQueue {
        SqsQueue { client, urls: Arc::new(urls) }
    }

    /// Client from the standard SDK configuration, URLs from the environment.
    pub async fn from_env() -> Result<SqsQueue, EnvError> {
        let sdk = crate::sdk_config().await;
        Ok(SqsQueue::new(Client::new(&sdk), QueueUrls::from_env()?))
    }

    pub fn urls(&self) -> &QueueUrls {
        &self.urls
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    fn url(&self, queue: Queue) -> StoreResult<&str> {
        self.urls.get(queue).ok_or_else(|| StoreError::backend("sqs", NoQueueUrl(queue)))
    }

    /// Messages waiting (visible or in flight) in a queue, for diagnostics.
    pub async fn depth(&self, queue: Queue) -> StoreResult<u64> {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(self.url(queue)?)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .map_err(|e| sdk_error("sqs get_queue_attributes", e))?;
        let attrs = out.attributes();
        let get = |a: A| -> StoreResult<u64> {
            match attrs.and_then(|m| m.get(&a)) {
                None => Ok(0),
                Some(v) => v.parse().map_err(|_| StoreError::Corrupt(format!("queue {queue}: attribute {a:?}={v:?}"))),
            }
        };
        Ok(get(A::ApproximateNumberOfMessages)? + get(A::ApproximateNumberOfMessagesNotVisible)?)
    }
}

/// A visibility timeout in SQS's whole seconds (rounded up, at most 12 h).
fn visibility_secs(d: Duration) -> i32 {
    let mut secs = d.as_secs();
    if d.subsec_nanos() > 0 {
        secs += 1;
    }
    i32::try_from(secs.min(MAX_VISIBILITY_SECS)).unwrap_or(i32::MAX)
}

/// Error codes SQS gives for a receipt of a message that is gone or was
/// received again: not an error for the port.
fn is_stale_receipt(code: Option<&str>) -> bool {
    matches!(
        code,
        Some(
            "ReceiptHandleIsInvalid"
                | "AWS.SimpleQueueService.ReceiptHandleIsInvalid"
                | "InvalidParameterValue"
                | "MessageNotInflight"
                | "AWS.SimpleQueueService.MessageNotInflight"
        )
    )
}

async fn backoff(attempt: u32) {
    tokio::time::sleep(Duration::from_millis(20u64 << attempt.min(6))).await;
}

#[async_trait]
impl TaskQueue for SqsQueue {
    async fn send(&self, queue: Queue, body: &str) -> StoreResult<()> {
        self.client
            .send_message()
            .queue_url(self.url(queue)?)
            .message_body(body)
            .send()
            .await
            .map_err(|e| sdk_error("sqs send_message", e))?;
        Ok(())
    }

    async fn send_batch(&self, queue: Queue, bodies: &[String]) -> StoreResult<()> {
        let url = self.url(queue)?;
        for chunk in bodies.chunks(SQS_BATCH) {
            // Entry ids are the index within the chunk; only failed ones are resent.
            let mut pending: Vec<usize> = (0..chunk.len()).collect();
            for attempt in 0..=BATCH_RETRIES {
                let mut req = self.client.send_message_batch().queue_url(url);
                for i in &pending {
                    let entry = SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(&chunk[*i])
                        .build()
                        .map_err(|e| StoreError::backend("sqs send_message_batch entry", e))?;
                    req = req.entries(entry);
                }
                let out = req.send().await.map_err(|e| sdk_error("sqs send_message_batch", e))?;
                let failed = out.failed();
                if failed.is_empty() {
                    pending.clear();
                    break;
                }
                let first = &failed[0];
                let err = BatchFailed {
                    what: "sqs send_message_batch",
                    failed: failed.len(),
                    total: pending.len(),
                    code: first.code().to_string(),
                    message: first.message().unwrap_or_default().to_string(),
                };
                // A sender fault (e.g. a body too large) will fail again.
                if failed.iter().any(|f| f.sender_fault()) || attempt == BATCH_RETRIES {
                    return Err(StoreError::backend("sqs send_message_batch", err));
                }
                tracing::warn!(queue = %queue, error = %err, "resending failed batch entries");
                pending = failed.iter().filter_map(|f| f.id().parse().ok()).collect();
                backoff(attempt).await;
            }
        }
        Ok(())
    }

    async fn receive(&self, queue: Queue, max: usize, visibility: Duration) -> StoreResult<Vec<Message>> {
        let url = self.url(queue)?;
        let mut out = Vec::new();
        while out.len() < max {
            let want = (max - out.len()).min(SQS_BATCH);
            let resp = self
                .client
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(i32::try_from(want).unwrap_or(10))
                .visibility_timeout(visibility_secs(visibility))
                .wait_time_seconds(0)
                .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
                .send()
                .await
                .map_err(|e| sdk_error("sqs receive_message", e))?;
            let msgs = resp.messages();
            let got = msgs.len();
            for m in msgs {
                let id = m.message_id().unwrap_or("?");
                let receipt = m
                    .receipt_handle()
                    .ok_or_else(|| StoreError::Corrupt(format!("queue {queue}: message {id} has no receipt handle")))?;
                let count = m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .ok_or_else(|| StoreError::Corrupt(format!("queue {queue}: message {id} has no receive count")))?;
                let receive_count = count.parse::<u32>().map_err(|_| {
                    StoreError::Corrupt(format!("queue {queue}: message {id} has receive count {count:?}"))
                })?;
                out.push(Message {
                    body: m.body().unwrap_or_default().to_string(),
                    receipt: Receipt(receipt.to_string()),
                    receive_count,
                });
            }
            if got < want {
                break;
            }
        }
        Ok(out)
    }

    async fn delete(&self, queue: Queue, receipt: &Receipt) -> StoreResult<()> {
        let res = self.client.delete_message().queue_url(self.url(queue)?).receipt_handle(&receipt.0).send().await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if is_stale_receipt(e.code()) => Ok(()),
            Err(e) => Err(sdk_error("sqs delete_message", e)),
        }
    }

    async fn delete_batch(&self, queue: Queue, receipts: &[Receipt]) -> StoreResult<()> {
        let url = self.url(queue)?;
        for chunk in receipts.chunks(SQS_BATCH) {
            let mut pending: Vec<usize> = (0..chunk.len()).collect();
            for attempt in 0..=BATCH_RETRIES {
                let mut req = self.client.delete_message_batch().queue_url(url);
                for i in &pending {
                    let entry = DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(&chunk[*i].0)
                        .build()
                        .map_err(|e| StoreError::backend("sqs delete_message_batch entry", e))?;
                    req = req.entries(entry);
                }
                let out = req.send().await.map_err(|e| sdk_error("sqs delete_message_batch", e))?;
                let failed: Vec<_> = out.failed().iter().filter(|f| !is_stale_receipt(Some(f.code()))).collect();
                if failed.is_empty() {
                    break;
                }
                let err = BatchFailed {
                    what: "sqs delete_message_batch",
                    failed: failed.len(),
                    total: pending.len(),
                    code: failed[0].code().to_string(),
                    message: failed[0].message().unwrap_or_default().to_string(),
                };
                if failed.iter().any(|f| f.sender_fault()) || attempt == BATCH_RETRIES {
                    return Err(StoreError::backend("sqs delete_message_batch", err));
                }
                pending = failed.iter().filter_map(|f| f.id().parse().ok()).collect();
                backoff(attempt).await;
            }
        }
        Ok(())
    }

    async fn change_visibility(&self, queue: Queue, receipt: &Receipt, visibility: Duration) -> StoreResult<()> {
        let res = self
            .client
            .change_message_visibility()
            .queue_url(self.url(queue)?)
            .receipt_handle(&receipt.0)
            .visibility_timeout(visibility_secs(visibility))
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if is_stale_receipt(e.code()) => Ok(()),
            Err(e) => Err(sdk_error("sqs change_message_visibility", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visibility_rounds_up_to_whole_seconds_and_caps_at_12h() {
        assert_eq!(visibility_secs(Duration::ZERO), 0);
        assert_eq!(visibility_secs(Duration::from_millis(1)), 1);
        assert_eq!(visibility_secs(Duration::from_secs(30)), 30);
        assert_eq!(visibility_secs(Duration::from_secs(100_000)), 43_200);
    }

    #[test]
    fn dlq_urls_default_to_the_template_naming() {
        let vars = std::collections::HashMap::from([
            ("CAPTCHA_INTAKE_QUEUE_URL", "http://q/captcha-intake"),
            ("CAPTCHA_OCR_QUEUE_URL", "http://q/captcha-ocr"),
            ("CAPTCHA_BROWSER_QUEUE_URL", "http://q/captcha-browser"),
            ("CAPTCHA_CALLBACK_QUEUE_URL", "http://q/captcha-callback"),
            ("CAPTCHA_OCR_DLQ_URL", "http://q/elsewhere"),
        ]);
        let urls = QueueUrls::from_lookup(|k| vars.get(k).map(|v| v.to_string())).expect("urls");
        assert_eq!(urls.get(Queue::INTAKE), Some("http://q/captcha-intake"));
        assert_eq!(urls.get(Queue::INTAKE.dead()), Some("http://q/captcha-intake-dlq"));
        assert_eq!(urls.get(Queue::CALLBACK.dead()), Some("http://q/captcha-callback-dlq"));
        assert_eq!(urls.get(Queue::pool(Pool::Ocr).dead()), Some("http://q/elsewhere"));
        // A pool without a URL (native here) is not deployed.
        assert_eq!(urls.get(Queue::pool(Pool::Native)), None);
        assert_eq!(urls.iter().count(), 8);
        assert!(QueueUrls::from_lookup(|k| (k != "CAPTCHA_OCR_QUEUE_URL")
            .then(|| vars.get(k).map(|v| v.to_string()))
            .flatten())
        .is_ok());
        // A missing queue URL is an error naming the variable.
        let err = QueueUrls::from_lookup(|k| {
            (k != "CAPTCHA_CALLBACK_QUEUE_URL").then(|| vars.get(k).map(|v| v.to_string())).flatten()
        });
        assert_eq!(err, Err(EnvError::Missing("CAPTCHA_CALLBACK_QUEUE_URL".into())));
    }
}
