//! What DynamoDB Local never does but DynamoDB does: cancel a transaction
//! because another one touched the same item (`TransactionConflict`). A fake
//! DynamoDB endpoint on 127.0.0.1 answers with scripted responses, so the
//! adapter's retry and its reading of cancellation reasons are checked without
//! any service running.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use captcha_aws::{AccountTables, DynamoAccounts, Retention};
use captcha_core::ports::{AccountStore, HoldOutcome, StoreError};
use captcha_core::AccountId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn cancelled(codes: &[&str]) -> (u16, String) {
    let reasons: Vec<String> = codes.iter().map(|c| format!(r#"{{"Code":"{c}"}}"#)).collect();
    (
        400,
        format!(
            r#"{{"__type":"com.amazonaws.dynamodb.v20120810#TransactionCanceledException","Message":"Transaction cancelled","CancellationReasons":[{}]}}"#,
            reasons.join(",")
        ),
    )
}

fn ok() -> (u16, String) {
    (200, "{}".to_string())
}

/// Serves `script` in order (then repeats the last one); counts requests.
async fn fake_dynamodb(script: Vec<(u16, String)>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let script = Arc::new(script);
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            let (seen, script) = (seen.clone(), script.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    // One request: headers, then Content-Length bytes of body.
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        let mut chunk = [0u8; 4096];
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    while buf.len() < head_end + len {
                        let mut chunk = [0u8; 4096];
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buf.drain(..head_end + len);
                    let i = seen.fetch_add(1, Ordering::SeqCst);
                    let (status, body) = &script[i.min(script.len() - 1)];
                    let reason = if *status == 200 { "OK" } else { "Bad Request" };
                    let resp = format!(
                        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/x-amz-json-1.0\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if sock.write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, count)
}

fn accounts(url: &str) -> DynamoAccounts {
    let conf = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .endpoint_url(url)
        .build();
    DynamoAccounts::new(
        aws_sdk_dynamodb::Client::from_conf(conf),
        AccountTables { accounts: "accounts".into(), holds: "holds".into() },
        Retention::default(),
    )
}

#[tokio::test]
async fn a_hold_cancelled_by_conflicting_transactions_is_retried() {
    // GIVEN DynamoDB cancels the hold twice for a conflict, then accepts it
    let (url, count) = fake_dynamodb(vec![
        cancelled(&["None", "TransactionConflict"]),
        cancelled(&["TransactionConflict", "None"]),
        ok(),
    ])
    .await;
    let a = accounts(&url);
    // THEN the hold is taken on the third attempt
    let got = a.hold(&AccountId("a".into()), 7, 1_000, 10, 0).await.expect("hold");
    assert_eq!(got, HoldOutcome::Held);
    assert_eq!(count.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_failed_hold_condition_is_an_answer_not_a_retry() {
    // GIVEN the hold item's condition fails (the task already has a hold)
    let (url, count) = fake_dynamodb(vec![cancelled(&["ConditionalCheckFailed", "None"])]).await;
    // THEN DuplicateTask after one request
    let got = accounts(&url).hold(&AccountId("a".into()), 7, 1_000, 10, 0).await.expect("hold");
    assert_eq!(got, HoldOutcome::DuplicateTask);
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn endless_conflicts_end_in_unavailable() {
    // GIVEN every attempt conflicts THEN the hold gives up with a retryable error
    let (url, count) = fake_dynamodb(vec![cancelled(&["TransactionConflict", "TransactionConflict"])]).await;
    let got = accounts(&url).hold(&AccountId("a".into()), 7, 1_000, 10, 0).await;
    assert!(matches!(got, Err(StoreError::Unavailable(_))), "{got:?}");
    assert_eq!(count.load(Ordering::SeqCst), 12);
}
