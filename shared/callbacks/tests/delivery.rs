//! The pingback stage against a real HTTP receiver on 127.0.0.1: retries with
//! back-off, signatures, both body shapes, the address policy, dead letters.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use captcha_callbacks::{verify, Deliverer, PingbackConfig, Round, VerifyError, SIGNATURE_HEADER};
use captcha_core::ports::memory::MemoryStore;
use captcha_core::ports::{ManualClock, Ports, Queue, SolveError};
use captcha_core::testkit::{image_request, png, T0};
use captcha_core::{CaptchaService, Config, Core, ImageOptions, Method, Pool, Protocol, TaskResult};
use captcha_netguard::NetPolicy;

#[derive(Debug, Clone)]
struct Seen {
    query: Option<String>,
    headers: HeaderMap,
    body: String,
}

#[derive(Default)]
struct Receiver {
    /// Answer 500 to this many requests first.
    fail_first: usize,
    seen: Mutex<Vec<Seen>>,
}

async fn receive(
    State(r): State<Arc<Receiver>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: String,
) -> StatusCode {
    let mut seen = r.seen.lock().expect("lock");
    seen.push(Seen { query, headers, body });
    if seen.len() <= r.fail_first {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    }
}

async fn receiver(fail_first: usize) -> (String, Arc<Receiver>) {
    let r = Arc::new(Receiver { fail_first, ..Default::default() });
    let app = Router::new().route("/cb", post(receive)).with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/cb"), r)
}

struct World {
    core: Arc<Core>,
    clock: Arc<ManualClock>,
    deliverer: Arc<Deliverer>,
}

fn world(policy: NetPolicy) -> World {
    let clock = ManualClock::new(T0);
    let store = Arc::new(MemoryStore::new(clock.clone()));
    let config = Config { max_attempts: 1, ..Config::default() };
    let core = Arc::new(Core::new(config, Ports::from_store(store, clock.clone())));
    let cfg = PingbackConfig { policy, ..Default::default() };
    let deliverer = Arc::new(Deliverer::new(core.clone(), cfg).expect("client"));
    World { core, clock, deliverer }
}

fn loopback() -> NetPolicy {
    NetPolicy::parse_list("127.0.0.0/8").expect("policy")
}

impl World {
    async fn solved_task(&self, key: &str, url: &str, protocol: Protocol, answer: Result<&str, ()>) -> u64 {
        let mut req = image_request(key, png(500));
        req.pingback = Some(url.to_string());
        req.protocol = protocol;
        let id = self.core.submit(req).await.expect("submit");
        self.core.route_once().await.expect("route");
        let solver = move |_: &[u8], _: &ImageOptions| match answer {
            Ok(a) => Ok(a.to_string()),
            Err(()) => Err(SolveError::Failed("no".into())),
        };
        assert_eq!(self.core.solve_once(Pool::Ocr, &solver, 4).await.expect("solve"), 1);
        id
    }

    async fn round(&self) -> Round {
        self.deliverer.deliver_once().await.expect("deliver")
    }
}

#[tokio::test]
async fn a_receiver_that_fails_twice_gets_the_third_attempt_signed() {
    let w = world(loopback());
    let (url, rx) = receiver(2).await;
    let created = w.core.admin().create(1_000_000).await.expect("account");
    let id = w.solved_task(&created.key, &url, Protocol::Classic, Ok("w7xk")).await;

    // Attempt 1 fails: hidden for 3 s, not retried before.
    assert_eq!(w.round().await, Round { retrying: 1, ..Default::default() });
    w.clock.advance(Duration::from_millis(2_900));
    assert_eq!(w.round().await.handled(), 0, "back-off not over yet");
    w.clock.advance(Duration::from_millis(200));
    // Attempt 2 fails: hidden for 6 s.
    assert_eq!(w.round().await, Round { retrying: 1, ..Default::default() });
    w.clock.advance(Duration::from_secs(6));
    // Attempt 3 succeeds and the message is gone.
    assert_eq!(w.round().await, Round { delivered: 1, ..Default::default() });
    w.clock.advance(Duration::from_secs(60));
    assert_eq!(w.round().await.handled(), 0);

    let seen = rx.seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 3);
    let last = &seen[2];
    let expected = format!("id={id}&code=w7xk");
    assert_eq!(last.body, expected);
    assert_eq!(last.query.as_deref(), Some(expected.as_str()), "id and code in the query too");
    assert_eq!(last.headers["content-type"], "application/x-www-form-urlencoded");
    let sig = last.headers[SIGNATURE_HEADER].to_str().expect("ascii");
    let secret = &created.account.callback_secret;
    let now_s = T0 / 1000 + 10;
    let five_min = Duration::from_secs(300);
    assert_eq!(verify(secret, sig, last.body.as_bytes(), now_s, five_min), Ok(()));
    // Tampered, replayed late, or checked with another account's secret: refused.
    assert_eq!(verify(secret, sig, b"id=1&code=evil", now_s, five_min), Err(VerifyError::Mismatch));
    assert_eq!(verify(secret, sig, last.body.as_bytes(), now_s + 600, five_min), Err(VerifyError::Stale));
    assert_eq!(verify("whsec_0000", sig, last.body.as_bytes(), now_s, five_min), Err(VerifyError::Mismatch));
}

#[tokio::test]
async fn json_tasks_get_the_get_task_result_body_and_unsolvable_classic_ones_the_error() {
    let w = world(loopback());
    let (url, rx) = receiver(0).await;
    let key = w.core.admin().create(1_000_000).await.expect("account").key;
    let json_id = w.solved_task(&key, &url, Protocol::Json, Ok("abc")).await;
    let bad_id = w.solved_task(&key, &url, Protocol::Classic, Err(())).await;
    assert_eq!(w.round().await, Round { delivered: 2, ..Default::default() });

    let seen = rx.seen.lock().expect("lock").clone();
    let json = seen.iter().find(|s| s.headers["content-type"] == "application/json").expect("json callback");
    let v: serde_json::Value = serde_json::from_str(&json.body).expect("json body");
    assert_eq!(v["status"], "ready");
    assert_eq!(v["solution"]["text"], "abc");
    assert_eq!(json.headers["x-captcha-task-id"], json_id.to_string());
    let form = seen.iter().find(|s| s.headers["content-type"] != "application/json").expect("form callback");
    assert_eq!(form.body, format!("id={bad_id}&code=ERROR_CAPTCHA_UNSOLVABLE"));
}

#[tokio::test]
async fn refused_addresses_are_never_contacted_and_end_in_the_dead_letter_queue() {
    // The strict (production) policy: loopback is refused.
    let w = world(NetPolicy::strict());
    let (url, rx) = receiver(0).await;
    let key = w.core.admin().create(1_000_000).await.expect("account").key;
    let id = w.solved_task(&key, &url, Protocol::Classic, Ok("abc")).await;
    let mut rounds = Vec::new();
    for _ in 0..5 {
        rounds.push(w.round().await);
        w.clock.advance(Duration::from_secs(31));
    }
    assert_eq!(rounds.iter().map(|r| r.retrying).sum::<usize>(), 4);
    assert_eq!(rounds.last().map(|r| r.dead_lettered), Some(1));
    assert!(rx.seen.lock().expect("lock").is_empty(), "nothing was sent to a refused address");
    // The message is in the callback DLQ, and the result is untouched for pollers.
    let queue = w.core.ports().queue.clone();
    let dead = queue.receive(Queue::CALLBACK.dead(), 10, Duration::from_secs(30)).await.expect("dlq");
    assert_eq!(dead.iter().map(|m| m.body.clone()).collect::<Vec<_>>(), vec![id.to_string()]);
    match w.core.result(&key, id).await {
        Ok(TaskResult::Solved { method, answer, .. }) => assert_eq!((method, answer.as_str()), (Method::Image, "abc")),
        other => panic!("expected the result to stay readable, got {other:?}"),
    }
    // The sweeper leaves callback dead letters alone.
    w.core.sweep_once().await.expect("sweep");
    assert!(matches!(w.core.result(&key, id).await, Ok(TaskResult::Solved { .. })));
}

#[tokio::test]
async fn a_receiver_that_never_answers_times_out_per_attempt() {
    // Accepts the connection but never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    let w = world(loopback());
    let key = w.core.admin().create(1_000_000).await.expect("account").key;
    w.solved_task(&key, &format!("http://{addr}/cb"), Protocol::Classic, Ok("abc")).await;
    let started = std::time::Instant::now();
    assert_eq!(w.round().await, Round { retrying: 1, ..Default::default() });
    // Bounded by the 2 s timeout (not a timing assertion on speed: only that it does end).
    assert!(started.elapsed() < Duration::from_secs(10));
}
