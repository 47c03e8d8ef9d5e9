//! SQS event sources with partial batch responses: every record of a batch is
//! handled on its own and only the records that should come back are listed in
//! `batchItemFailures` (the mappings set `ReportBatchItemFailures`). A record
//! that fails, or whose handler panics, never fails the other records nor the
//! invocation.

use std::future::Future;
use std::panic::AssertUnwindSafe;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use captcha_core::ports::{Message, Receipt};
use futures_util::{FutureExt, StreamExt};

/// What to do with one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Handled (or not worth handling: a poison record): the event source deletes it.
    Ack,
    /// Leave it on the queue: it comes back after its visibility timeout, and
    /// goes to the dead-letter queue after the redrive policy's receive count.
    Retry(String),
}

impl<E: std::fmt::Display> From<Result<(), E>> for Verdict {
    fn from(r: Result<(), E>) -> Verdict {
        match r {
            Ok(()) => Verdict::Ack,
            Err(e) => Verdict::Retry(e.to_string()),
        }
    }
}

/// The record's `ApproximateReceiveCount` (1 if missing or malformed).
pub fn receive_count(record: &SqsMessage) -> u32 {
    record.attributes.get("ApproximateReceiveCount").and_then(|v| v.parse().ok()).unwrap_or(1).max(1)
}

/// The record as the core's queue [`Message`] (the receipt is the SQS receipt handle).
pub fn message_of(record: &SqsMessage) -> Message {
    Message {
        body: record.body.clone().unwrap_or_default(),
        receipt: Receipt(record.receipt_handle.clone().unwrap_or_default()),
        receive_count: receive_count(record),
    }
}

/// Runs `handler` on every record, at most `concurrency` at once, and
/// reports the records to retry.
pub async fn handle_batch<F, Fut>(event: SqsEvent, concurrency: usize, handler: F) -> SqsBatchResponse
where
    F: Fn(SqsMessage) -> Fut,
    Fut: Future<Output = Verdict>,
{
    let handler = &handler;
    let verdicts = futures_util::stream::iter(event.records.into_iter().map(|record| async move {
        let id = record.message_id.clone();
        let verdict = match AssertUnwindSafe(handler(record)).catch_unwind().await {
            Ok(v) => v,
            Err(_) => Verdict::Retry("handler panicked".into()),
        };
        (id, verdict)
    }))
    .buffer_unordered(concurrency.max(1))
    .collect::<Vec<_>>()
    .await;

    let mut response = SqsBatchResponse::default();
    for (id, verdict) in verdicts {
        if let Verdict::Retry(why) = verdict {
            match id {
                Some(id) => {
                    tracing::warn!(message_id = %id, why, "record left for redelivery");
                    let mut failure = BatchItemFailure::default();
                    failure.item_identifier = id;
                    response.batch_item_failures.push(failure);
                }
                // Cannot be named, so cannot be retried alone; never seen from SQS.
                None => tracing::error!(why, "record without a message id failed; acknowledged"),
            }
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(bodies: &[&str]) -> SqsEvent {
        let mut e = SqsEvent::default();
        for (i, b) in bodies.iter().enumerate() {
            let mut m = SqsMessage::default();
            m.message_id = Some(format!("m{i}"));
            m.body = Some(b.to_string());
            e.records.push(m);
        }
        e
    }

    #[tokio::test]
    async fn reports_only_the_records_to_retry() {
        let r = handle_batch(event(&["ok", "retry", "panic", "ok"]), 2, |m| async move {
            match m.body.as_deref() {
                Some("retry") => Verdict::Retry("no".into()),
                Some("panic") => panic!("boom"),
                _ => Verdict::Ack,
            }
        })
        .await;
        let mut ids: Vec<_> = r.batch_item_failures.iter().map(|f| f.item_identifier.clone()).collect();
        ids.sort();
        assert_eq!(ids, ["m1", "m2"]);
        let json = serde_json::to_value(&r).unwrap();
        assert!(json["batchItemFailures"].is_array(), "{json}");
    }

    #[test]
    fn receive_count_defaults_to_one() {
        let mut m = SqsMessage::default();
        assert_eq!(receive_count(&m), 1);
        m.attributes.insert("ApproximateReceiveCount".into(), "4".into());
        assert_eq!(receive_count(&m), 4);
        m.attributes.insert("ApproximateReceiveCount".into(), "x".into());
        assert_eq!(receive_count(&m), 1);
    }
}
