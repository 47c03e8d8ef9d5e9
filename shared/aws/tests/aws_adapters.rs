//! Adapter-specific checks beyond the shared suite, on LocalStack: images in
//! parts, corrupt items, hold races at the port, and `from_env` against the
//! deployed stack itself. Run with `tests/aws.sh`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use captcha_aws::{AwsStores, IMAGE_PART_BYTES};
use captcha_core::domain::{Method, Pool, TaskParams, TaskState, Transition};
use captcha_core::ports::{AccountStore, HoldOutcome, Queue, StoreError, TaskQueue, TaskStore};
use captcha_core::{Account, AccountId, ImageOptions, Protocol, Task};
use rand::RngCore;

use common::fresh;

const T0: u64 = 1_704_067_200_000;

fn task(id: u64) -> Task {
    Task {
        id,
        account: AccountId("a".repeat(64)),
        method: Method::Image,
        params: TaskParams::Image(ImageOptions::default()),
        state: TaskState::Queued,
        attempts: 0,
        price_micros: 1_000,
        created_ms: T0,
        routed_ms: None,
        started_ms: None,
        ended_ms: None,
        updated_ms: T0,
        answer: None,
        error: None,
        report: None,
        reported_ms: None,
        pingback: Some("https://example.invalid/cb".into()),
        soft_id: Some("42".into()),
        protocol: Protocol::Json,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs LocalStack: run tests/aws.sh"]
async fn large_images_round_trip_in_parts_and_go_with_the_task() {
    let f = fresh().await;
    let _guard = f.cleanup();
    let store = f.tasks();
    // GIVEN an image larger than two parts
    let mut image = vec![0u8; 2 * IMAGE_PART_BYTES + 1234];
    rand::thread_rng().fill_bytes(&mut image);
    let t = task(77);
    assert!(store.put_new(&t, &image).await.expect("put"));
    // THEN it reads back whole, and the record round-trips exactly
    assert_eq!(store.image(77).await.expect("image"), Some(image.clone()));
    assert_eq!(store.get(77).await.expect("get"), Some(t.clone()));
    let parts = aws_sdk_dynamodb::Client::new(&f.sdk)
        .query()
        .table_name(&f.tasks.images)
        .key_condition_expression("task_id = :id")
        .expression_attribute_values(":id", AttributeValue::S("77".into()))
        .send()
        .await
        .expect("query");
    assert_eq!(parts.count(), 3);
    // WHEN the task finishes THEN its parts are gone and the record has a TTL and no open_state
    assert!(store.transition(77, &Transition::of(&t, TaskState::Unsolvable, T0 + 5)).await.expect("t"));
    assert_eq!(store.image(77).await.expect("image"), None);
    let item = aws_sdk_dynamodb::Client::new(&f.sdk)
        .get_item()
        .table_name(&f.tasks.tasks)
        .key("task_id", AttributeValue::S("77".into()))
        .send()
        .await
        .expect("get");
    let item = item.item().expect("item");
    assert!(!item.contains_key("open_state"));
    let want = (T0 + 5 + 900_000).div_ceil(1000).to_string();
    assert_eq!(item.get("expires_at"), Some(&AttributeValue::N(want)));
    // AND a task without image (a token task) has no parts
    assert!(store.put_new(&task(78), b"").await.expect("put"));
    assert_eq!(store.image(78).await.expect("image"), None);
    assert_eq!(store.get(78).await.expect("get").map(|t| t.protocol), Some(Protocol::Json));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs LocalStack: run tests/aws.sh"]
async fn malformed_items_are_corrupt_errors() {
    let f = fresh().await;
    let _guard = f.cleanup();
    let ddb = aws_sdk_dynamodb::Client::new(&f.sdk);
    ddb.put_item()
        .table_name(&f.tasks.tasks)
        .item("task_id", AttributeValue::S("5".into()))
        .item("state", AttributeValue::S("exploded".into()))
        .send()
        .await
        .expect("put");
    ddb.put_item()
        .table_name(&f.accounts.accounts)
        .item("account_id", AttributeValue::S("b".into()))
        .item("balance_micros", AttributeValue::S("lots".into()))
        .send()
        .await
        .expect("put");
    assert!(matches!(f.tasks().get(5).await, Err(StoreError::Corrupt(_))));
    assert!(matches!(f.accounts().get(&AccountId("b".into())).await, Err(StoreError::Corrupt(_))));
    assert!(matches!(f.accounts().list().await, Err(StoreError::Corrupt(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs LocalStack: run tests/aws.sh"]
async fn fifty_racing_holds_on_ten_prices_hold_exactly_ten() {
    let f = fresh().await;
    let _guard = f.cleanup();
    let accounts = Arc::new(f.accounts());
    let id = AccountId("c".repeat(64));
    let acc = Account {
        id: id.clone(),
        balance_micros: 10_000,
        held_micros: 0,
        open_holds: 0,
        created_ms: T0,
        callback_secret: "whsec_test".into(),
        pingback_urls: vec!["https://example.invalid/a".into(), "https://example.invalid/b".into()],
    };
    assert!(accounts.create(&acc).await.expect("create"));
    assert_eq!(accounts.get(&id).await.expect("get"), Some(acc.clone()));
    let mut handles = Vec::new();
    for task in 1..=50u64 {
        let accounts = accounts.clone();
        let id = id.clone();
        handles.push(tokio::spawn(async move { accounts.hold(&id, task, 1_000, 1_000, T0).await }));
    }
    let mut held = 0;
    for h in handles {
        match h.await.expect("join").expect("hold") {
            HoldOutcome::Held => held += 1,
            HoldOutcome::InsufficientFunds => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(held, 10);
    let a = accounts.get(&id).await.expect("get").expect("account");
    assert_eq!((a.balance_micros, a.held_micros, a.open_holds, a.available_micros()), (10_000, 10_000, 10, 0));
    // AND racing settles of one hold charge once
    let mut handles = Vec::new();
    let open = accounts.open_holds(T0 + 1, 100).await.expect("open holds");
    assert_eq!(open.len(), 10);
    let first = open[0].task_id;
    for _ in 0..10 {
        let accounts = accounts.clone();
        handles.push(tokio::spawn(async move { accounts.settle(first, T0).await }));
    }
    let mut settled = 0;
    for h in handles {
        if h.await.expect("join").expect("settle") {
            settled += 1;
        }
    }
    assert_eq!(settled, 1);
    let a = accounts.get(&id).await.expect("get").expect("account");
    assert_eq!((a.balance_micros, a.held_micros, a.open_holds), (9_000, 9_000, 9));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs LocalStack: run tests/aws.sh"]
async fn from_env_uses_the_deployed_stack_and_its_redrive_policy() {
    // GIVEN the adapters built from the environment tests/aws.sh exported
    let stores = AwsStores::from_env().await.expect("from_env");
    let q = &stores.queue;
    let ocr = Queue::pool(Pool::Ocr);
    // (drain whatever an earlier run left)
    for queue in [ocr, ocr.dead()] {
        loop {
            let got = q.receive(queue, 10, Duration::from_secs(30)).await.expect("receive");
            if got.is_empty() {
                break;
            }
            let receipts: Vec<_> = got.into_iter().map(|m| m.receipt).collect();
            q.delete_batch(queue, &receipts).await.expect("delete");
        }
    }
    // WHEN 25 messages are sent as a batch THEN all 25 are received (in calls of ≤ 10)
    let bodies: Vec<String> = (0..25).map(|i| format!("m{i}")).collect();
    q.send_batch(ocr, &bodies).await.expect("send batch");
    let got = q.receive(ocr, 25, Duration::from_secs(30)).await.expect("receive");
    let mut seen: Vec<String> = got.iter().map(|m| m.body.clone()).collect();
    seen.sort();
    let mut want = bodies.clone();
    want.sort();
    assert_eq!(seen, want);
    let receipts: Vec<_> = got.iter().map(|m| m.receipt.clone()).collect();
    q.delete_batch(ocr, &receipts).await.expect("delete batch");
    q.delete_batch(ocr, &receipts).await.expect("deleting twice is fine");
    q.change_visibility(ocr, &receipts[0], Duration::ZERO).await.expect("stale visibility change is fine");
    // WHEN a message is received maxReceiveCount (5) times without delete
    q.send(ocr, "poison").await.expect("send");
    for n in 1..=5 {
        let got = q.receive(ocr, 1, Duration::ZERO).await.expect("receive");
        assert_eq!(got.len(), 1, "receive {n}");
        assert_eq!(got[0].receive_count, n);
    }
    // THEN SQS's redrive moves it to the DLQ, whose URL came from the environment
    assert!(q.receive(ocr, 1, Duration::ZERO).await.expect("receive").is_empty());
    let dead = q.receive(ocr.dead(), 10, Duration::from_secs(30)).await.expect("receive dlq");
    assert_eq!(dead.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(), ["poison"]);
    q.delete(ocr.dead(), &dead[0].receipt).await.expect("delete");
    // AND the table adapters answer on the deployed tables
    assert_eq!(stores.tasks.get(1).await.expect("get"), None);
    assert_eq!(stores.accounts.get(&AccountId("d".repeat(64))).await.expect("get"), None);
}
