//! The per-record handlers over the in-memory adapters (no AWS): what each
//! function does with good, duplicated, failing and poison records.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use captcha_callbacks::{Deliverer, PingbackConfig};
use captcha_core::ports::memory::MemoryStore;
use captcha_core::ports::{ManualClock, Ports, Queue};
use captcha_core::testkit::{image_request, png, World, T0};
use captcha_core::{
    CaptchaService, Finished, ImageOptions, Method, Pool, Protocol, SolveError, SubmitRequest, TaskResult, TaskSpec,
    TaskState, TokenOptions, TokenSolver,
};
use captcha_lambda::handlers::{self, BrowserQueueSolver};
use captcha_lambda::{handle_batch, Settings, Verdict};
use captcha_netguard::NetPolicy;

fn make(clock: Arc<ManualClock>) -> (Ports, captcha_core::testkit::Guard) {
    let store = Arc::new(MemoryStore::new(clock.clone()));
    (Ports::from_store(store, clock), Box::new(()))
}

/// A world configured like a Lambda deployment (pools ocr + browser).
fn world() -> World {
    let settings = Settings::from_lookup(|_| None).expect("defaults");
    World::with_config(make, |c| {
        *c = settings.core.clone();
        c.prices.insert(Method::Image, captcha_core::testkit::PRICE);
    })
}

fn record(id: &str, body: &str, receipt: &str, receive_count: u32) -> SqsMessage {
    let mut m = SqsMessage::default();
    m.message_id = Some(id.to_string());
    m.body = Some(body.to_string());
    m.receipt_handle = Some(receipt.to_string());
    m.attributes.insert("ApproximateReceiveCount".into(), receive_count.to_string());
    m
}

/// Takes one message off a memory queue as an SQS record (its real receipt).
async fn take(w: &World, q: Queue) -> SqsMessage {
    let mut msgs = w.ports.queue.receive(q, 1, Duration::from_secs(30)).await.expect("receive");
    let m = msgs.pop().unwrap_or_else(|| panic!("a message on {q}"));
    record("m", &m.body, &m.receipt.0, m.receive_count)
}

/// The next intake record routed by captcha-route, then the ocr record it produced.
async fn routed_ocr_record(w: &World) -> SqsMessage {
    let intake = take(w, Queue::INTAKE).await;
    assert_eq!(handlers::route(&w.core, &intake).await, Verdict::Ack);
    take(w, Queue::pool(Pool::Ocr)).await
}

fn reads(text: &'static str) -> Arc<dyn captcha_core::ImageSolver> {
    Arc::new(move |_: &[u8], _: &ImageOptions| Ok::<_, SolveError>(text.to_string()))
}

#[tokio::test]
async fn route_then_solve_charges_once_even_when_the_message_is_duplicated() {
    let w = world();
    let key = w.account(10_000).await;
    let id = w.submit(&key).await.expect("accepted");
    let ocr = routed_ocr_record(&w).await;
    assert_eq!(w.task(id).await.state, TaskState::Routed);
    // The same record delivered twice (at-least-once), even concurrently.
    let (a, b) = tokio::join!(
        handlers::solve_image_outcome(&w.core, reads("42"), &ocr),
        handlers::solve_image_outcome(&w.core, reads("42"), &ocr),
    );
    let outcomes = [a.expect("store"), b.expect("store")];
    assert_eq!(outcomes.iter().filter(|o| **o == Some(Finished::Solved)).count(), 1, "{outcomes:?}");
    assert_eq!(handlers::solve_image(&w.core, reads("42"), &ocr).await, Verdict::Ack);
    let acct = w.account_of(&key).await;
    assert_eq!(acct.balance_micros, 10_000 - captcha_core::testkit::PRICE);
    assert_eq!(acct.held_micros, 0);
    match w.core.poll(&key, id).await.expect("poll") {
        TaskResult::Solved { answer, .. } => assert_eq!(answer, "42"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn poison_records_are_acknowledged_not_crashed_on() {
    let w = world();
    let deliverer = Deliverer::new(w.core.clone(), PingbackConfig::default()).expect("client");
    let solver = BrowserQueueSolver { native: None, browser: None };
    for body in ["", "not a task", "12345678", "-1", "\u{0}💥", &"9".repeat(400)] {
        let r = record("p", body, "r", 1);
        assert_eq!(handlers::route(&w.core, &r).await, Verdict::Ack, "{body:?}");
        assert_eq!(handlers::solve_image(&w.core, reads("x"), &r).await, Verdict::Ack, "{body:?}");
        assert_eq!(handlers::solve_token(&w.core, &solver, &r).await, Verdict::Ack, "{body:?}");
        assert_eq!(handlers::pingback(&deliverer, &r).await, Verdict::Ack, "{body:?}");
    }
    // A record with no body at all.
    let mut r = SqsMessage::default();
    r.message_id = Some("x".into());
    assert_eq!(handlers::route(&w.core, &r).await, Verdict::Ack);
}

#[tokio::test]
async fn an_unreadable_image_is_unsolvable_at_once_and_releases_the_hold() {
    let w = world();
    let key = w.account(10_000).await;
    let id = w.submit(&key).await.expect("accepted");
    handlers::route(&w.core, &take(&w, Queue::INTAKE).await).await;
    let ocr = take(&w, Queue::pool(Pool::Ocr)).await;
    let unreadable: Arc<dyn captcha_core::ImageSolver> =
        Arc::new(|_: &[u8], _: &ImageOptions| Err::<String, _>(SolveError::Unsolvable("does not decode".into())));
    let out = handlers::solve_image_outcome(&w.core, unreadable, &ocr).await.expect("store");
    assert_eq!(out, Some(Finished::Unsolvable));
    assert_eq!(w.core.poll(&key, id).await.expect("poll"), TaskResult::Unsolvable);
    let acct = w.account_of(&key).await;
    assert_eq!((acct.balance_micros, acct.held_micros), (10_000, 0));
}

#[tokio::test]
async fn a_panicking_solver_is_a_failed_attempt_retried_via_intake() {
    let w = world();
    let key = w.account(10_000).await;
    let id = w.submit(&key).await.expect("accepted");
    handlers::route(&w.core, &take(&w, Queue::INTAKE).await).await;
    let ocr = take(&w, Queue::pool(Pool::Ocr)).await;
    let panics: Arc<dyn captcha_core::ImageSolver> =
        Arc::new(|_: &[u8], _: &ImageOptions| -> Result<String, SolveError> { panic!("model bug") });
    let out = handlers::solve_image_outcome(&w.core, panics, &ocr).await.expect("store");
    assert_eq!(out, Some(Finished::Retrying));
    assert_eq!(w.task(id).await.state, TaskState::Queued);
}

struct Fixed(Result<String, SolveError>);

#[async_trait]
impl TokenSolver for Fixed {
    async fn solve(&self, _: Method, _: &TokenOptions) -> Result<String, SolveError> {
        self.0.clone()
    }
}

async fn token_task(w: &World, key: &str, method: Method) -> captcha_core::TaskId {
    let spec = TaskSpec::Token {
        method,
        options: TokenOptions {
            page_url: "https://example.com/".into(),
            site_key: Some("k".into()),
            ..Default::default()
        },
    };
    let req = SubmitRequest {
        key: key.into(),
        spec,
        pingback: None,
        protocol: Protocol::Classic,
        soft_id: None,
        client_ip: None,
    };
    w.core.submit(req).await.expect("accepted")
}

#[tokio::test]
async fn browser_queue_runs_native_first_and_without_a_browser_gives_up_at_once() {
    let w = world();
    let key = w.account(1_000_000).await;
    let altcha = token_task(&w, &key, Method::Altcha).await;
    let turnstile = token_task(&w, &key, Method::Turnstile).await;
    let cap = token_task(&w, &key, Method::Cap).await;
    for _ in 0..3 {
        handlers::route(&w.core, &take(&w, Queue::INTAKE).await).await;
    }
    let solver = BrowserQueueSolver { native: Some(Arc::new(Fixed(Ok("pow-token".into())))), browser: None };
    for _ in 0..3 {
        assert_eq!(
            handlers::solve_token(&w.core, &solver, &take(&w, Queue::pool(Pool::Browser)).await).await,
            Verdict::Ack
        );
    }
    assert_eq!(w.task(altcha).await.answer.as_deref(), Some("pow-token"));
    assert_eq!(w.task(cap).await.state, TaskState::Solved);
    assert_eq!(w.task(turnstile).await.state, TaskState::Unsolvable);

    // Native finds the page needs scripts run: no browser deployed → unsolvable, not retried.
    let needs =
        BrowserQueueSolver { native: Some(Arc::new(Fixed(Err(SolveError::NeedsBrowser("js".into()))))), browser: None };
    let id = token_task(&w, &key, Method::Altcha).await;
    handlers::route(&w.core, &take(&w, Queue::INTAKE).await).await;
    let out = handlers::solve_token_outcome(&w.core, &needs, &take(&w, Queue::pool(Pool::Browser)).await).await;
    assert_eq!(out.expect("store"), Some(Finished::Unsolvable));
    assert_eq!(w.task(id).await.attempts, 1);
    let acct = w.account_of(&key).await;
    assert_eq!(acct.held_micros, 0);
}

#[tokio::test]
async fn a_failing_callback_backs_off_then_goes_to_the_dlq() {
    let w = world();
    let key = w.account(10_000).await;
    // A closed port on loopback: every attempt fails fast.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://127.0.0.1:{}/cb", closed.local_addr().expect("addr").port());
    drop(closed);
    let mut req = image_request(&key, png(500));
    req.pingback = Some(url);
    let id = w.core.submit(req).await.expect("accepted");
    handlers::route(&w.core, &take(&w, Queue::INTAKE).await).await;
    handlers::solve_image(&w.core, reads("42"), &take(&w, Queue::pool(Pool::Ocr)).await).await;

    let cfg = PingbackConfig {
        policy: NetPolicy::parse_list("127.0.0.0/8").expect("cidr"),
        timeout: Duration::from_millis(500),
        ..Default::default()
    };
    let deliverer = Deliverer::new(w.core.clone(), cfg).expect("client");
    let cb = take(&w, Queue::CALLBACK).await;
    assert_eq!(cb.body.as_deref(), Some(id.to_string().as_str()));
    assert!(matches!(handlers::pingback(&deliverer, &cb).await, Verdict::Retry(_)));
    // Hidden for the back-off: not visible right away.
    assert!(w.ports.queue.receive(Queue::CALLBACK, 1, Duration::from_secs(1)).await.expect("rx").is_empty());

    // The last attempt: dead-lettered and acknowledged.
    w.advance(Duration::from_secs(60));
    let mut last = take(&w, Queue::CALLBACK).await;
    last.attributes.insert("ApproximateReceiveCount".into(), "5".into());
    assert_eq!(handlers::pingback(&deliverer, &last).await, Verdict::Ack);
    let dead = w.ports.queue.receive(Queue::CALLBACK.dead(), 10, Duration::from_secs(1)).await.expect("rx");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body, id.to_string());
}

#[tokio::test]
async fn a_batch_acknowledges_poison_and_good_records_alike() {
    let w = world();
    let key = w.account(10_000).await;
    let id = w.submit(&key).await.expect("accepted");
    let mut good = take(&w, Queue::INTAKE).await;
    good.message_id = Some("b".into());
    let mut event = SqsEvent::default();
    event.records = vec![record("a", "garbage", "r1", 1), good];
    let core = w.core.clone();
    let resp = handle_batch(event, 4, |r| {
        let core = core.clone();
        async move { handlers::route(&core, &r).await }
    })
    .await;
    assert!(resp.batch_item_failures.is_empty());
    assert_eq!(w.task(id).await.state, TaskState::Routed);
    let _ = T0;
}

/// A task table that is down: every call fails as a backend outage would.
struct DownTasks;

fn down<T>() -> captcha_core::ports::StoreResult<T> {
    Err(captcha_core::StoreError::Unavailable("tasks table unreachable".into()))
}

#[async_trait]
impl captcha_core::ports::TaskStore for DownTasks {
    async fn put_new(&self, _: &captcha_core::Task, _: &[u8]) -> captcha_core::ports::StoreResult<bool> {
        down()
    }
    async fn get(&self, _: captcha_core::TaskId) -> captcha_core::ports::StoreResult<Option<captcha_core::Task>> {
        down()
    }
    async fn image(&self, _: captcha_core::TaskId) -> captcha_core::ports::StoreResult<Option<Vec<u8>>> {
        down()
    }
    async fn transition(
        &self,
        _: captcha_core::TaskId,
        _: &captcha_core::Transition,
    ) -> captcha_core::ports::StoreResult<bool> {
        down()
    }
    async fn set_report(
        &self,
        _: captcha_core::TaskId,
        _: captcha_core::Report,
        _: u64,
    ) -> captcha_core::ports::StoreResult<bool> {
        down()
    }
    async fn stuck(&self, _: TaskState, _: u64, _: usize) -> captcha_core::ports::StoreResult<Vec<captcha_core::Task>> {
        down()
    }
    async fn overdue(&self, _: u64, _: usize) -> captcha_core::ports::StoreResult<Vec<captcha_core::Task>> {
        down()
    }
    async fn purge(&self, _: u64, _: u64, _: usize) -> captcha_core::ports::StoreResult<usize> {
        down()
    }
}

#[tokio::test]
async fn storage_outages_fail_only_their_records_for_redelivery() {
    let clock = ManualClock::new(T0);
    let store = Arc::new(MemoryStore::new(clock.clone()));
    let ports = Ports { queue: store.clone(), tasks: Arc::new(DownTasks), accounts: store, clock };
    let settings = Settings::from_lookup(|_| None).expect("defaults");
    let core = Arc::new(captcha_core::Core::new(settings.core, ports));
    let deliverer = Deliverer::new(core.clone(), PingbackConfig::default()).expect("client");
    let solver = BrowserQueueSolver { native: None, browser: None };
    let r = record("x", "123456", "r", 1);
    assert!(matches!(handlers::route(&core, &r).await, Verdict::Retry(_)));
    assert!(matches!(handlers::solve_image(&core, reads("x"), &r).await, Verdict::Retry(_)));
    assert!(matches!(handlers::solve_token(&core, &solver, &r).await, Verdict::Retry(_)));
    assert!(matches!(handlers::pingback(&deliverer, &r).await, Verdict::Retry(_)));

    // In a batch: the poison record is acknowledged, the one that hit the outage comes back.
    let mut event = SqsEvent::default();
    event.records = vec![record("poison", "garbage", "r1", 1), record("real", "123456", "r2", 1)];
    let resp = handle_batch(event, 2, |r| {
        let core = core.clone();
        async move { handlers::route(&core, &r).await }
    })
    .await;
    let ids: Vec<_> = resp.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
    assert_eq!(ids, ["real"]);
}

#[tokio::test]
async fn the_sweep_retries_a_task_whose_solver_died_after_claiming_it() {
    // GIVEN an ocr record claimed by a solve function that then died
    let w = world();
    let key = w.account(10_000).await;
    let id = w.submit(&key).await.expect("accepted");
    let ocr = routed_ocr_record(&w).await;
    let claimed = w.core.claim_message(Pool::Ocr, ocr.body.as_deref().unwrap_or("")).await.expect("claim");
    assert!(claimed.is_some());
    // WHEN its message comes back THEN it finds the task claimed and is dropped
    assert_eq!(handlers::solve_image(&w.core, reads("42"), &ocr).await, Verdict::Ack);
    assert_eq!(w.task(id).await.state, TaskState::Solving);
    // AND a sweep within the solve timeout (beyond solve-browser's 180 s) leaves it alone
    w.advance(Duration::from_secs(200));
    assert_eq!(handlers::sweep(&w.core, 5).await.expect("sweep").retried, 0);
    // WHEN the timeout passes THEN the sweep retries it, and the retry solves and charges it once
    w.advance(Duration::from_secs(60));
    let report = handlers::sweep(&w.core, 5).await.expect("sweep");
    assert_eq!(report.retried, 1, "{report:?}");
    let ocr = routed_ocr_record(&w).await;
    assert_eq!(handlers::solve_image(&w.core, reads("42"), &ocr).await, Verdict::Ack);
    let t = w.task(id).await;
    assert_eq!((t.state, t.attempts), (TaskState::Solved, 2));
    let acct = w.account_of(&key).await;
    assert_eq!((acct.balance_micros, acct.held_micros), (10_000 - captcha_core::testkit::PRICE, 0));
}

#[tokio::test]
async fn the_sweep_turns_a_dead_lettered_task_unsolvable_and_releases_its_hold() {
    // GIVEN a routed task whose ocr message the queue's redrive moved to the DLQ
    let w = world();
    let key = w.account(10_000).await;
    let id = w.submit(&key).await.expect("accepted");
    let ocr = routed_ocr_record(&w).await;
    w.ports.queue.send(Queue::pool(Pool::Ocr).dead(), ocr.body.as_deref().unwrap_or("")).await.expect("send");
    // WHEN the sweep runs (the deployment has no native queue: only ocr and browser DLQs are read)
    let report = handlers::sweep(&w.core, 5).await.expect("sweep");
    // THEN the task is unsolvable, nothing charged
    assert_eq!((report.dead_letters, report.gave_up), (1, 1), "{report:?}");
    assert_eq!(w.task(id).await.state, TaskState::Unsolvable);
    let acct = w.account_of(&key).await;
    assert_eq!((acct.balance_micros, acct.held_micros), (10_000, 0));
}

#[tokio::test]
async fn with_a_browser_the_queue_falls_back_to_it_unless_native_is_forced() {
    let solver = BrowserQueueSolver {
        native: Some(Arc::new(Fixed(Err(SolveError::NeedsBrowser("script-only config".into()))))),
        browser: Some(Arc::new(Fixed(Ok("browser-token".into())))),
    };
    let opts = |engine| TokenOptions { page_url: "https://example.com/".into(), engine, ..Default::default() };
    // Native cannot read the page: the browser answers.
    assert_eq!(solver.solve(Method::Cap, &opts(None)).await, Ok("browser-token".into()));
    // engine=native: no fallback; the core gives the task up (core testkit).
    let forced = solver.solve(Method::Cap, &opts(Some(captcha_core::Engine::Native))).await;
    assert!(matches!(forced, Err(SolveError::NeedsBrowser(_))), "{forced:?}");
    // engine=browser skips the native solver even when it could answer.
    let both = BrowserQueueSolver {
        native: Some(Arc::new(Fixed(Ok("pow-token".into())))),
        browser: Some(Arc::new(Fixed(Ok("browser-token".into())))),
    };
    assert_eq!(
        both.solve(Method::Altcha, &opts(Some(captcha_core::Engine::Browser))).await,
        Ok("browser-token".into())
    );
    assert_eq!(both.solve(Method::Altcha, &opts(None)).await, Ok("pow-token".into()));
    // Widgets without a native solver go straight to the browser.
    assert_eq!(both.solve(Method::Turnstile, &opts(None)).await, Ok("browser-token".into()));
}
