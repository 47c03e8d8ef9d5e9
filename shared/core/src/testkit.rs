//! The shared GIVEN/WHEN/THEN suite every storage adapter must pass.
//!
//! An adapter crate enables the `testkit` feature (as a dev-dependency) and
//! writes, in a test module:
//! ```ignore
//! fn make(clock: Arc<ManualClock>) -> (Ports, Guard) { … }
//! captcha_core::port_suite!(make);
//! ```
//! which generates one `#[tokio::test]` per scenario below. The in-memory
//! adapter runs the same suite in this crate's own tests.

use std::any::Any;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::domain::{HoldState, Pool, Task, TaskParams, TaskState, Transition};
use crate::ports::{HoldOutcome, ManualClock, Ports, Queue, SolveError};
use crate::{
    Account, AccountId, Config, Core, ErrorCode, Finished, ImageOptions, ImageSolver, Method, Report, SubmitRequest,
    TaskId, TaskResult, TaskSpec,
};

/// Keeps an adapter's resources (e.g. a temp dir) alive for a test.
pub type Guard = Box<dyn Any + Send + Sync>;

/// Builds fresh, empty ports on the given clock.
pub type MakePorts = fn(Arc<ManualClock>) -> (Ports, Guard);

/// 2024-01-01T00:00:00Z: tests start at a realistic time.
pub const T0: u64 = 1_704_067_200_000;

/// Price of an image task in the suite.
pub const PRICE: u64 = 1_000;

/// A test world: a core over fresh ports and a manual clock.
pub struct World {
    pub core: Arc<Core>,
    pub ports: Ports,
    pub clock: Arc<ManualClock>,
    _guard: Guard,
}

impl World {
    pub fn new(make: MakePorts) -> World {
        World::with_config(make, |_| {})
    }

    pub fn with_config(make: MakePorts, tweak: impl FnOnce(&mut Config)) -> World {
        let clock = ManualClock::new(T0);
        let (ports, guard) = make(clock.clone());
        let mut config = Config::default();
        config.prices.insert(Method::Image, PRICE);
        tweak(&mut config);
        World { core: Arc::new(Core::new(config, ports.clone())), ports, clock, _guard: guard }
    }

    /// An account with `micros` on it; returns its plain key.
    pub async fn account(&self, micros: u64) -> String {
        self.core.admin().create(micros).await.expect("create account").key
    }

    pub async fn account_of(&self, key: &str) -> Account {
        self.core.admin().find_by_key(key).await.expect("store").expect("account exists")
    }

    pub async fn task(&self, id: TaskId) -> Task {
        self.ports.tasks.get(id).await.expect("store").expect("task exists")
    }

    pub fn advance(&self, d: Duration) {
        self.clock.advance(d);
    }

    pub async fn submit(&self, key: &str) -> Result<TaskId, ErrorCode> {
        use crate::CaptchaService;
        self.core.submit(image_request(key, png(500))).await
    }

    /// Routes and solves until both queues are empty.
    pub async fn drain(&self, solver: &dyn ImageSolver) {
        for _ in 0..100 {
            let routed = self.core.route_once().await.expect("route");
            let solved = self.core.solve_once(Pool::Ocr, solver, 16).await.expect("solve");
            if routed + solved == 0 {
                return;
            }
        }
        panic!("queues did not drain");
    }
}

/// A PNG-looking byte string of `len` bytes (header + padding).
pub fn png(len: usize) -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
    v.resize(len.max(8), 0);
    v
}

pub fn image_request(key: &str, image: Vec<u8>) -> SubmitRequest {
    SubmitRequest {
        key: key.to_string(),
        spec: TaskSpec::Image { image, options: ImageOptions::default() },
        pingback: None,
        protocol: crate::service::Protocol::Classic,
        soft_id: None,
        client_ip: None,
    }
}

fn answer(text: &'static str) -> impl ImageSolver {
    move |_: &[u8], _: &ImageOptions| Ok::<_, SolveError>(text.to_string())
}

fn failing() -> impl ImageSolver {
    |_: &[u8], _: &ImageOptions| Err::<String, _>(SolveError::Failed("no luck".into()))
}

/// Generates one `#[tokio::test]` per scenario, run against `$make`.
/// Attributes after a `;` go on every test, e.g. for an adapter that needs a
/// service running: `port_suite!(make; #[ignore = "needs LocalStack"])`.
#[macro_export]
macro_rules! port_suite {
    ($make:path) => {
        $crate::port_suite!($make;);
    };
    ($make:path; $(#[$attr:meta])*) => {
        $crate::port_suite!(@tests $make; [$(#[$attr])*];
            submit_refuses_bad_input_with_the_right_code,
            submit_refuses_a_task_no_pool_can_take,
            submit_enforces_in_flight_cap_and_rate,
            happy_path_charges_the_price_once,
            failed_attempts_retry_then_unsolvable_releases_the_hold,
            permanent_failure_is_unsolvable_at_once,
            duplicate_delivery_solves_and_charges_once,
            finishing_a_claim_twice_charges_once,
            poll_hides_other_keys_tasks_and_expired_results,
            report_bad_refunds_once_within_the_window,
            report_rules_for_unsolved_late_and_duplicate,
            sweep_retries_tasks_stuck_in_solving,
            sweep_gives_up_overdue_tasks,
            sweep_turns_dead_letters_into_unsolvable,
            sweep_repairs_a_hold_left_open_by_a_crash,
            sweep_purges_after_retention_and_report_window,
            recover_interrupted_requeues_solving_tasks,
            event_driven_handlers_route_and_solve_single_messages,
            queue_visibility_timeout_and_receipts,
            queue_dead_letters_after_max_receives,
            money_ops_happen_at_most_once_per_task,
            task_writes_are_conditional,
            admin_creates_finds_tops_up_and_lists,
            no_overdraft_under_50_concurrent_submits,
            finished_tasks_with_a_pingback_queue_one_callback,
            registered_pingbacks_restrict_submits,
            token_tasks_need_a_browser_pool_and_carry_no_image,
            callback_secrets_are_per_account_and_rotate,
            router_sends_pow_widgets_native_first_then_to_the_browser,
        );
    };
    (@tests $make:path; $attrs:tt; $($name:ident),* $(,)?) => {
        $( $crate::port_suite!(@test $make; $attrs; $name); )*
    };
    (@test $make:path; [$($attr:tt)*]; $name:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        $($attr)*
        async fn $name() {
            $crate::testkit::$name($make).await;
        }
    };
}

// ------------------------------------------------------------------ submit

pub async fn submit_refuses_bad_input_with_the_right_code(make: MakePorts) {
    // GIVEN an account with money
    let w = World::new(make);
    let key = w.account(10 * PRICE).await;
    use crate::CaptchaService;
    let submit = |key: &str, image: Vec<u8>| w.core.submit(image_request(key, image));

    // WHEN the key is malformed THEN WrongUserKey
    assert_eq!(submit("short", png(500)).await, Err(ErrorCode::WrongUserKey));
    // WHEN the key is well formed but unknown THEN KeyDoesNotExist
    assert_eq!(submit(&"0".repeat(32), png(500)).await, Err(ErrorCode::KeyDoesNotExist));
    // WHEN the image is under 100 bytes THEN ZeroCaptchaFilesize
    assert_eq!(submit(&key, png(99)).await, Err(ErrorCode::ZeroCaptchaFilesize));
    // WHEN the image is over 600 kB THEN TooBigCaptchaFilesize
    assert_eq!(submit(&key, png(600 * 1024 + 1)).await, Err(ErrorCode::TooBigCaptchaFilesize));
    // WHEN the bytes are not PNG/JPEG/GIF THEN ImageTypeNotSupported
    assert_eq!(submit(&key, vec![b'B'; 500]).await, Err(ErrorCode::ImageTypeNotSupported));
    // AND none of that held any money
    let acc = w.account_of(&key).await;
    assert_eq!((acc.held_micros, acc.open_holds), (0, 0));

    // GIVEN an account without enough money WHEN it submits THEN ZeroBalance
    let poor = w.account(PRICE - 1).await;
    assert_eq!(submit(&poor, png(500)).await, Err(ErrorCode::ZeroBalance));
    // AND sizes at the limits are accepted, upper-case keys too
    assert!(submit(&key, png(100)).await.is_ok());
    assert!(submit(&key.to_ascii_uppercase(), png(600 * 1024)).await.is_ok());
}

pub async fn submit_refuses_a_task_no_pool_can_take(make: MakePorts) {
    // GIVEN a deployment with no OCR pool
    let w = World::with_config(make, |c| c.pools = BTreeSet::from([Pool::Browser]));
    let key = w.account(10 * PRICE).await;
    // WHEN an image task is submitted THEN TaskNotSupported, nothing queued or held
    assert_eq!(w.submit(&key).await, Err(ErrorCode::TaskNotSupported));
    assert_eq!(w.account_of(&key).await.held_micros, 0);
    assert_eq!(w.core.route_once().await.expect("route"), 0);
}

pub async fn submit_enforces_in_flight_cap_and_rate(make: MakePorts) {
    // GIVEN at most 2 unfinished tasks per key
    let w = World::with_config(make, |c| c.max_in_flight_per_key = 2);
    let key = w.account(10 * PRICE).await;
    assert!(w.submit(&key).await.is_ok());
    assert!(w.submit(&key).await.is_ok());
    // WHEN a third is submitted THEN NoSlotAvailable
    assert_eq!(w.submit(&key).await, Err(ErrorCode::NoSlotAvailable));
    // WHEN the two finish THEN a slot is free again
    w.drain(&answer("ok")).await;
    assert!(w.submit(&key).await.is_ok());

    // GIVEN 1 submit per second with a burst of 2
    let w = World::with_config(make, |c| {
        c.max_requests_per_sec = 1;
        c.request_burst = 2;
    });
    let key = w.account(10 * PRICE).await;
    assert!(w.submit(&key).await.is_ok());
    assert!(w.submit(&key).await.is_ok());
    // WHEN a third comes in the same instant THEN MaxUserTurn
    assert_eq!(w.submit(&key).await, Err(ErrorCode::MaxUserTurn));
    // WHEN a second passes THEN it is accepted
    w.advance(Duration::from_secs(1));
    assert!(w.submit(&key).await.is_ok());
}

// ------------------------------------------------------------------ solve

pub async fn happy_path_charges_the_price_once(make: MakePorts) {
    use crate::CaptchaService;
    // GIVEN an account with 5 tasks' worth
    let w = World::new(make);
    let key = w.account(5 * PRICE).await;
    // WHEN a task is submitted
    let id = w.submit(&key).await.expect("accepted");
    // THEN it is queued, its price held, and not ready
    assert!(id > 0 && id < 1 << 53);
    let t = w.task(id).await;
    assert_eq!((t.state, t.attempts, t.price_micros), (TaskState::Queued, 0, PRICE));
    assert_eq!(w.core.balance(&key).await, Ok(4 * PRICE));
    assert_eq!(w.core.result(&key, id).await, Ok(TaskResult::NotReady));

    // WHEN it is routed THEN it is on the OCR queue
    w.advance(Duration::from_millis(5));
    assert_eq!(w.core.route_once().await.expect("route"), 1);
    let t = w.task(id).await;
    assert_eq!(t.state, TaskState::Routed);
    assert_eq!(t.routed_ms, Some(T0 + 5));

    // WHEN it is solved
    w.advance(Duration::from_millis(5));
    assert_eq!(w.core.solve_once(Pool::Ocr, &answer("w7xk"), 8).await.expect("solve"), 1);
    // THEN the answer is readable with its price, stage times and attempt count
    match w.core.result(&key, id).await {
        Ok(TaskResult::Solved { method, answer, price_micros, created_ms, ended_ms, attempts }) => {
            assert_eq!(method, crate::Method::Image);
            assert_eq!(answer, "w7xk");
            assert_eq!((price_micros, created_ms, ended_ms, attempts), (PRICE, T0, T0 + 10, 1));
        }
        other => panic!("expected solved, got {other:?}"),
    }
    let t = w.task(id).await;
    assert_eq!(t.started_ms, Some(T0 + 10));
    // AND the price was charged exactly once, the image dropped, queues empty
    let acc = w.account_of(&key).await;
    assert_eq!((acc.balance_micros, acc.held_micros, acc.open_holds), (4 * PRICE, 0, 0));
    assert_eq!(w.ports.tasks.image(id).await.expect("store"), None);
    assert_eq!(w.core.route_once().await.expect("route"), 0);
    assert_eq!(w.core.solve_once(Pool::Ocr, &answer("x"), 8).await.expect("solve"), 0);
}

pub async fn failed_attempts_retry_then_unsolvable_releases_the_hold(make: MakePorts) {
    use crate::CaptchaService;
    // GIVEN a task and a solver that always fails
    let w = World::new(make);
    let key = w.account(PRICE).await;
    let id = w.submit(&key).await.expect("accepted");
    // WHEN it is routed and solved repeatedly
    w.drain(&failing()).await;
    // THEN it was tried max_attempts (3) times and is unsolvable
    let t = w.task(id).await;
    assert_eq!((t.state, t.attempts), (TaskState::Unsolvable, 3));
    assert_eq!(t.error.as_deref(), Some("no luck"));
    assert_eq!(w.core.result(&key, id).await, Ok(TaskResult::Unsolvable));
    // AND nothing was charged: the hold is released
    let acc = w.account_of(&key).await;
    assert_eq!((acc.balance_micros, acc.held_micros, acc.open_holds), (PRICE, 0, 0));
    let hold = w.ports.accounts.hold_of(id).await.expect("store").expect("hold");
    assert_eq!(hold.state, HoldState::Released);
}

pub async fn permanent_failure_is_unsolvable_at_once(make: MakePorts) {
    let w = World::new(make);
    let key = w.account(PRICE).await;
    let id = w.submit(&key).await.expect("accepted");
    // WHEN the solver says the image can never be solved
    let solver = |_: &[u8], _: &ImageOptions| Err::<String, _>(SolveError::Unsolvable("garbage".into()));
    w.drain(&solver).await;
    // THEN one attempt, unsolvable, released
    let t = w.task(id).await;
    assert_eq!((t.state, t.attempts), (TaskState::Unsolvable, 1));
    assert_eq!(w.account_of(&key).await.available_micros(), PRICE);
}

pub async fn duplicate_delivery_solves_and_charges_once(make: MakePorts) {
    // GIVEN a routed task whose pool message is delivered twice
    let w = World::new(make);
    let key = w.account(5 * PRICE).await;
    let id = w.submit(&key).await.expect("accepted");
    w.core.route_once().await.expect("route");
    w.ports.queue.send(Queue::pool(Pool::Ocr), &id.to_string()).await.expect("send");
    // WHEN the solver takes both
    let calls = AtomicUsize::new(0);
    let solver = |_: &[u8], _: &ImageOptions| {
        calls.fetch_add(1, Ordering::SeqCst);
        Ok::<_, SolveError>("abc".to_string())
    };
    let handled = w.core.solve_once(Pool::Ocr, &solver, 10).await.expect("solve");
    // THEN it is solved once and charged once, and the duplicate is gone
    assert_eq!(handled, 1);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(w.task(id).await.attempts, 1);
    let acc = w.account_of(&key).await;
    assert_eq!((acc.balance_micros, acc.held_micros), (4 * PRICE, 0));
    w.advance(Duration::from_secs(60));
    assert_eq!(w.core.solve_once(Pool::Ocr, &solver, 10).await.expect("solve"), 0);

    // GIVEN the intake message is delivered twice as well
    let id2 = w.submit(&key).await.expect("accepted");
    w.ports.queue.send(Queue::INTAKE, &id2.to_string()).await.expect("send");
    w.drain(&solver).await;
    // THEN the task is still solved and charged once
    assert_eq!(w.task(id2).await.state, TaskState::Solved);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(w.account_of(&key).await.balance_micros, 3 * PRICE);
}

pub async fn finishing_a_claim_twice_charges_once(make: MakePorts) {
    // GIVEN a claimed task
    let w = World::new(make);
    let key = w.account(5 * PRICE).await;
    let id = w.submit(&key).await.expect("accepted");
    w.core.route_once().await.expect("route");
    let mut claims = w.core.claim(Pool::Ocr, 4).await.expect("claim");
    assert_eq!(claims.len(), 1);
    let claim = claims.remove(0);
    assert_eq!((claim.task.id, claim.task.state, claim.task.attempts), (id, TaskState::Solving, 1));
    assert_eq!(claim.image, png(500));
    // WHEN its outcome is recorded twice (a retried worker)
    assert_eq!(w.core.finish(claim.clone(), Ok("one".into())).await.expect("finish"), Finished::Solved);
    assert_eq!(w.core.finish(claim.clone(), Ok("two".into())).await.expect("finish"), Finished::Superseded);
    assert_eq!(
        w.core.finish(claim, Err(SolveError::Failed("late".into()))).await.expect("finish"),
        Finished::Superseded
    );
    // THEN the first answer stands and the price was charged once
    assert_eq!(w.task(id).await.answer.as_deref(), Some("one"));
    assert_eq!(w.account_of(&key).await.balance_micros, 4 * PRICE);
}

// ------------------------------------------------------------------ poll and report

pub async fn poll_hides_other_keys_tasks_and_expired_results(make: MakePorts) {
    use crate::CaptchaService;
    let w = World::new(make);
    let alice = w.account(5 * PRICE).await;
    let bob = w.account(5 * PRICE).await;
    let id = w.submit(&alice).await.expect("accepted");
    // WHEN another key asks for it THEN WrongCaptchaId, before and after solving
    assert_eq!(w.core.result(&bob, id).await, Err(ErrorCode::WrongCaptchaId));
    w.drain(&answer("abc")).await;
    assert_eq!(w.core.result(&bob, id).await, Err(ErrorCode::WrongCaptchaId));
    assert_eq!(w.core.result(&alice, id + 1).await, Err(ErrorCode::WrongCaptchaId));
    assert_eq!(w.core.result("bad", id).await, Err(ErrorCode::WrongUserKey));
    // WHEN the retention (600 s) has not passed THEN the owner reads it
    w.advance(Duration::from_secs(600));
    assert!(matches!(w.core.result(&alice, id).await, Ok(TaskResult::Solved { .. })));
    // WHEN it has THEN WrongCaptchaId, even before the sweeper ran
    w.advance(Duration::from_secs(1));
    assert_eq!(w.core.result(&alice, id).await, Err(ErrorCode::WrongCaptchaId));
}

pub async fn report_bad_refunds_once_within_the_window(make: MakePorts) {
    use crate::CaptchaService;
    // GIVEN two solved tasks
    let w = World::new(make);
    let key = w.account(5 * PRICE).await;
    let a = w.submit(&key).await.expect("accepted");
    let b = w.submit(&key).await.expect("accepted");
    w.drain(&answer("abc")).await;
    assert_eq!(w.core.balance(&key).await, Ok(3 * PRICE));
    // WHEN a is reported bad within 15 minutes THEN it is refunded
    w.advance(Duration::from_secs(14 * 60));
    assert_eq!(w.core.report(&key, a, Report::Bad).await, Ok(()));
    assert_eq!(w.core.balance(&key).await, Ok(4 * PRICE));
    // WHEN it is reported again, bad or good THEN DuplicateReport and no second refund
    assert_eq!(w.core.report(&key, a, Report::Bad).await, Err(ErrorCode::DuplicateReport));
    assert_eq!(w.core.report(&key, a, Report::Good).await, Err(ErrorCode::DuplicateReport));
    assert_eq!(w.core.balance(&key).await, Ok(4 * PRICE));
    // WHEN b is reported good THEN recorded, no money moves; bad afterwards is a duplicate
    assert_eq!(w.core.report(&key, b, Report::Good).await, Ok(()));
    assert_eq!(w.core.report(&key, b, Report::Bad).await, Err(ErrorCode::DuplicateReport));
    assert_eq!(w.core.balance(&key).await, Ok(4 * PRICE));
    let hold = w.ports.accounts.hold_of(a).await.expect("store").expect("hold");
    assert_eq!(hold.state, HoldState::Refunded);
}

pub async fn report_rules_for_unsolved_late_and_duplicate(make: MakePorts) {
    use crate::CaptchaService;
    let w = World::new(make);
    let key = w.account(5 * PRICE).await;
    let other = w.account(5 * PRICE).await;
    // GIVEN an unsolved task WHEN reported THEN ReportNotRecorded
    let pending = w.submit(&key).await.expect("accepted");
    assert_eq!(w.core.report(&key, pending, Report::Bad).await, Err(ErrorCode::ReportNotRecorded));
    // GIVEN an unsolvable task WHEN reported THEN ReportNotRecorded
    w.drain(&failing()).await;
    assert_eq!(w.core.report(&key, pending, Report::Bad).await, Err(ErrorCode::ReportNotRecorded));
    // GIVEN a solved task WHEN another key reports it THEN WrongCaptchaId
    let id = w.submit(&key).await.expect("accepted");
    w.drain(&answer("abc")).await;
    assert_eq!(w.core.report(&other, id, Report::Bad).await, Err(ErrorCode::WrongCaptchaId));
    // WHEN the owner reports it after 15 minutes THEN ReportNotRecorded, no refund
    w.advance(Duration::from_secs(15 * 60 + 1));
    assert_eq!(w.core.report(&key, id, Report::Bad).await, Err(ErrorCode::ReportNotRecorded));
    assert_eq!(w.account_of(&key).await.balance_micros, 4 * PRICE);
}

// ------------------------------------------------------------------ sweep

pub async fn sweep_retries_tasks_stuck_in_solving(make: MakePorts) {
    // GIVEN a task claimed by a worker that then died
    let w = World::new(make);
    let key = w.account(5 * PRICE).await;
    let id = w.submit(&key).await.expect("accepted");
    w.core.route_once().await.expect("route");
    let lost = w.core.claim(Pool::Ocr, 1).await.expect("claim");
    assert_eq!(lost.len(), 1);
    // WHEN less than solve_timeout passed THEN the sweeper leaves it alone
    w.advance(Duration::from_secs(29));
    assert_eq!(w.core.sweep_once().await.expect("sweep").retried, 0);
    // WHEN more passed THEN it is retried
    w.advance(Duration::from_secs(2));
    assert_eq!(w.core.sweep_once().await.expect("sweep").retried, 1);
    assert_eq!(w.task(id).await.state, TaskState::Queued);
    // AND the old message coming back is harmless; the retry solves it once
    w.advance(Duration::from_secs(31));
    w.drain(&answer("abc")).await;
    let t = w.task(id).await;
    assert_eq!((t.state, t.attempts), (TaskState::Solved, 2));
    assert_eq!(w.account_of(&key).await.balance_micros, 4 * PRICE);
    // AND the dead worker's late answer changes nothing
    let late = lost.into_iter().next().expect("claim");
    assert_eq!(w.core.finish(late, Ok("late".into())).await.expect("finish"), Finished::Superseded);
    assert_eq!(w.account_of(&key).await.balance_micros, 4 * PRICE);
}

pub async fn sweep_gives_up_overdue_tasks(make: MakePorts) {
    // GIVEN a task nobody routes
    let w = World::new(make);
    let key = w.account(PRICE).await;
    let id = w.submit(&key).await.expect("accepted");
    // WHEN the task deadline (180 s) passes and the sweeper runs
    w.advance(Duration::from_secs(181));
    let report = w.core.sweep_once().await.expect("sweep");
    // THEN it is unsolvable and its hold released
    assert_eq!(report.gave_up, 1);
    assert_eq!(w.task(id).await.state, TaskState::Unsolvable);
    assert_eq!(w.account_of(&key).await.available_micros(), PRICE);
    // AND its intake message, when routed, is dropped
    w.drain(&answer("x")).await;
    assert_eq!(w.task(id).await.state, TaskState::Unsolvable);
}

pub async fn sweep_turns_dead_letters_into_unsolvable(make: MakePorts) {
    // GIVEN a routed task whose pool message is received but never deleted 5 times
    let w = World::new(make);
    let key = w.account(PRICE).await;
    let id = w.submit(&key).await.expect("accepted");
    w.core.route_once().await.expect("route");
    let ocr = Queue::pool(Pool::Ocr);
    for _ in 0..5 {
        assert_eq!(w.ports.queue.receive(ocr, 10, Duration::from_secs(1)).await.expect("receive").len(), 1);
        w.advance(Duration::from_secs(2));
    }
    // WHEN it is received once more THEN it has moved to the dead-letter queue
    assert!(w.ports.queue.receive(ocr, 10, Duration::from_secs(1)).await.expect("receive").is_empty());
    // WHEN the sweeper runs THEN the task is unsolvable and released
    let report = w.core.sweep_once().await.expect("sweep");
    assert_eq!((report.dead_letters, report.gave_up), (1, 1));
    assert_eq!(w.task(id).await.state, TaskState::Unsolvable);
    assert_eq!(w.account_of(&key).await.available_micros(), PRICE);
    assert_eq!(w.core.sweep_once().await.expect("sweep").dead_letters, 0);
}

pub async fn sweep_repairs_a_hold_left_open_by_a_crash(make: MakePorts) {
    // GIVEN a task marked solved by a process that died before charging
    let w = World::new(make);
    let key = w.account(5 * PRICE).await;
    let id = w.submit(&key).await.expect("accepted");
    let t = w.task(id).await;
    for (to, attempts) in [(TaskState::Routed, 0), (TaskState::Solving, 1), (TaskState::Solved, 1)] {
        let cur = w.task(id).await;
        let tr = Transition::of(&cur, to, T0).attempts(attempts).answer("x".into());
        assert!(w.ports.tasks.transition(t.id, &tr).await.expect("store"));
    }
    // AND one marked unsolvable the same way
    let id2 = w.submit(&key).await.expect("accepted");
    let cur = w.task(id2).await;
    assert!(w.ports.tasks.transition(id2, &Transition::of(&cur, TaskState::Unsolvable, T0)).await.expect("store"));
    assert_eq!(w.account_of(&key).await.held_micros, 2 * PRICE);
    // WHEN hold_repair_after passes and the sweeper runs
    w.advance(Duration::from_secs(301));
    let report = w.core.sweep_once().await.expect("sweep");
    // THEN the solved one is charged and the unsolvable one released
    assert_eq!(report.holds_repaired, 2);
    let acc = w.account_of(&key).await;
    assert_eq!((acc.balance_micros, acc.held_micros, acc.open_holds), (4 * PRICE, 0, 0));
}

pub async fn sweep_purges_after_retention_and_report_window(make: MakePorts) {
    let w = World::new(make);
    let key = w.account(5 * PRICE).await;
    let id = w.submit(&key).await.expect("accepted");
    w.drain(&answer("abc")).await;
    // WHEN retention passed but the report window did not THEN the record stays
    w.advance(Duration::from_secs(700));
    assert_eq!(w.core.sweep_once().await.expect("sweep").purged, 0);
    assert!(w.ports.tasks.get(id).await.expect("store").is_some());
    // WHEN both passed THEN it is deleted
    w.advance(Duration::from_secs(201));
    assert_eq!(w.core.sweep_once().await.expect("sweep").purged, 1);
    assert!(w.ports.tasks.get(id).await.expect("store").is_none());
    // AND its closed hold goes later, with the money unchanged
    w.advance(Duration::from_secs(3600));
    w.core.sweep_once().await.expect("sweep");
    assert!(w.ports.accounts.hold_of(id).await.expect("store").is_none());
    assert_eq!(w.account_of(&key).await.balance_micros, 4 * PRICE);
}

pub async fn recover_interrupted_requeues_solving_tasks(make: MakePorts) {
    // GIVEN two tasks in `solving` when the process died
    let w = World::new(make);
    let key = w.account(5 * PRICE).await;
    let a = w.submit(&key).await.expect("accepted");
    let b = w.submit(&key).await.expect("accepted");
    w.core.route_once().await.expect("route");
    assert_eq!(w.core.claim(Pool::Ocr, 10).await.expect("claim").len(), 2);
    // WHEN the next process starts and recovers
    assert_eq!(w.core.recover_interrupted().await.expect("recover"), 2);
    // THEN both are queued again and solve at once, charged once each
    assert_eq!(w.task(a).await.state, TaskState::Queued);
    w.drain(&answer("abc")).await;
    for id in [a, b] {
        let t = w.task(id).await;
        assert_eq!((t.state, t.attempts), (TaskState::Solved, 2));
    }
    assert_eq!(w.account_of(&key).await.balance_micros, 3 * PRICE);
}

pub async fn event_driven_handlers_route_and_solve_single_messages(make: MakePorts) {
    // GIVEN a submitted task, handled the way a Lambda with an SQS event source would
    let w = World::new(make);
    let key = w.account(5 * PRICE).await;
    let id = w.submit(&key).await.expect("accepted");
    let body = id.to_string();
    // WHEN its intake message is routed (twice: at-least-once delivery)
    w.core.route_message(&body).await.expect("route");
    w.core.route_message(&body).await.expect("route again");
    assert_eq!(w.task(id).await.state, TaskState::Routed);
    // THEN its pool message is claimable once
    let claim = w.core.claim_message(Pool::Ocr, &body).await.expect("claim").expect("claimed");
    assert!(w.core.claim_message(Pool::Ocr, &body).await.expect("claim").is_none());
    assert!(w.core.claim_message(Pool::Ocr, "not-an-id").await.expect("claim").is_none());
    // AND finishing it solves and charges once, touching no queue
    assert_eq!(w.core.finish(claim, Ok("xyz".into())).await.expect("finish"), Finished::Solved);
    assert_eq!(w.task(id).await.answer.as_deref(), Some("xyz"));
    assert_eq!(w.account_of(&key).await.balance_micros, 4 * PRICE);
}

// ------------------------------------------------------------------ ports

pub async fn queue_visibility_timeout_and_receipts(make: MakePorts) {
    let w = World::new(make);
    let q = w.ports.queue.clone();
    let intake = Queue::INTAKE;
    q.send_batch(intake, &["1".to_string(), "2".to_string()]).await.expect("send");
    // WHEN received THEN both come, in order, with receive count 1
    let got = q.receive(intake, 10, Duration::from_secs(10)).await.expect("receive");
    assert_eq!(got.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(), ["1", "2"]);
    assert!(got.iter().all(|m| m.receive_count == 1));
    // AND they are invisible until the timeout
    assert!(q.receive(intake, 10, Duration::from_secs(10)).await.expect("receive").is_empty());
    // WHEN "1" is deleted and the timeout passes THEN only "2" comes back, counted twice
    q.delete(intake, &got[0].receipt).await.expect("delete");
    w.advance(Duration::from_secs(10));
    let again = q.receive(intake, 10, Duration::from_secs(10)).await.expect("receive");
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].body.as_str(), again[0].receive_count), ("2", 2));
    // WHEN the stale receipt of the first delivery is used THEN nothing happens
    q.delete(intake, &got[1].receipt).await.expect("stale delete is fine");
    // WHEN its visibility is reset to 0 THEN it is visible at once
    q.change_visibility(intake, &again[0].receipt, Duration::ZERO).await.expect("visibility");
    let third = q.receive(intake, 10, Duration::from_secs(10)).await.expect("receive");
    assert_eq!(third.len(), 1);
    q.delete_batch(intake, &[third[0].receipt.clone()]).await.expect("delete");
    w.advance(Duration::from_secs(60));
    assert!(q.receive(intake, 10, Duration::from_secs(10)).await.expect("receive").is_empty());
    // AND queues are separate
    q.send(Queue::pool(Pool::Ocr), "9").await.expect("send");
    assert!(q.receive(intake, 10, Duration::from_secs(1)).await.expect("receive").is_empty());
    assert_eq!(q.receive(Queue::pool(Pool::Ocr), 1, Duration::from_secs(1)).await.expect("receive").len(), 1);
}

pub async fn queue_dead_letters_after_max_receives(make: MakePorts) {
    let w = World::new(make);
    let q = w.ports.queue.clone();
    let ocr = Queue::pool(Pool::Ocr);
    q.send(ocr, "7").await.expect("send");
    // GIVEN a message received 5 times (the default maximum) without delete
    for n in 1..=5 {
        let got = q.receive(ocr, 1, Duration::from_secs(1)).await.expect("receive");
        assert_eq!(got[0].receive_count, n);
        w.advance(Duration::from_secs(1));
    }
    // WHEN received again THEN it is in the dead-letter queue instead
    assert!(q.receive(ocr, 1, Duration::from_secs(1)).await.expect("receive").is_empty());
    let dead = q.receive(ocr.dead(), 10, Duration::from_secs(1)).await.expect("receive");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body, "7");
}

pub async fn money_ops_happen_at_most_once_per_task(make: MakePorts) {
    let w = World::new(make);
    let key = w.account(3 * PRICE).await;
    let acc = w.account_of(&key).await.id;
    let a = &w.ports.accounts;
    // GIVEN a hold
    assert_eq!(a.hold(&acc, 1, PRICE, 10, T0).await.expect("hold"), HoldOutcome::Held);
    // WHEN the same task is held again THEN DuplicateTask
    assert_eq!(a.hold(&acc, 1, PRICE, 10, T0).await.expect("hold"), HoldOutcome::DuplicateTask);
    // WHEN settled twice THEN charged once; release and refund-before-settle do nothing
    assert!(a.settle(1, T0).await.expect("settle"));
    assert!(!a.settle(1, T0).await.expect("settle"));
    assert!(!a.release(1, T0).await.expect("release"));
    let acc_now = a.get(&acc).await.expect("get").expect("account");
    assert_eq!((acc_now.balance_micros, acc_now.held_micros), (2 * PRICE, 0));
    // WHEN refunded twice THEN refunded once
    assert!(a.refund(1, T0).await.expect("refund"));
    assert!(!a.refund(1, T0).await.expect("refund"));
    assert_eq!(a.get(&acc).await.expect("get").expect("account").balance_micros, 3 * PRICE);
    // GIVEN a second hold WHEN released twice THEN once; it can't be settled or refunded
    assert_eq!(a.hold(&acc, 2, PRICE, 10, T0).await.expect("hold"), HoldOutcome::Held);
    assert!(!a.refund(2, T0).await.expect("refund"));
    assert!(a.release(2, T0).await.expect("release"));
    assert!(!a.release(2, T0).await.expect("release"));
    assert!(!a.settle(2, T0).await.expect("settle"));
    // WHEN holds exceed the available balance or the open cap THEN refused
    assert_eq!(a.hold(&acc, 3, 3 * PRICE, 10, T0).await.expect("hold"), HoldOutcome::Held);
    assert_eq!(a.hold(&acc, 4, 1, 10, T0).await.expect("hold"), HoldOutcome::InsufficientFunds);
    assert!(a.release(3, T0).await.expect("release"));
    assert_eq!(a.hold(&acc, 5, 1, 0, T0).await.expect("hold"), HoldOutcome::TooManyOpen);
    let nobody = AccountId("f".repeat(64));
    assert_eq!(a.hold(&nobody, 6, 1, 10, T0).await.expect("hold"), HoldOutcome::NoAccount);
    // AND unknown tasks are no-ops
    assert!(!a.settle(999, T0).await.expect("settle"));
    let acc_now = a.get(&acc).await.expect("get").expect("account");
    assert_eq!((acc_now.balance_micros, acc_now.held_micros, acc_now.open_holds), (3 * PRICE, 0, 0));
}

pub async fn task_writes_are_conditional(make: MakePorts) {
    let w = World::new(make);
    let key = w.account(PRICE).await;
    let id = w.submit(&key).await.expect("accepted");
    let t = w.task(id).await;
    assert_eq!(t.params, TaskParams::Image(ImageOptions::default()));
    // WHEN a task with the same id is put THEN refused
    assert!(!w.ports.tasks.put_new(&t, b"other").await.expect("put"));
    // WHEN a transition expects the wrong state or attempt THEN nothing changes
    let mut wrong = Transition::of(&t, TaskState::Solving, T0 + 1);
    wrong.from = TaskState::Routed;
    assert!(!w.ports.tasks.transition(id, &wrong).await.expect("transition"));
    let mut wrong = Transition::of(&t, TaskState::Routed, T0 + 1);
    wrong.from_attempts = 7;
    assert!(!w.ports.tasks.transition(id, &wrong).await.expect("transition"));
    assert!(!w.ports.tasks.transition(id + 1, &Transition::of(&t, TaskState::Routed, T0)).await.expect("t"));
    assert_eq!(w.task(id).await, t);
    // WHEN two reports race THEN one wins
    assert!(w.ports.tasks.set_report(id, Report::Good, T0).await.expect("report"));
    assert!(!w.ports.tasks.set_report(id, Report::Bad, T0).await.expect("report"));
    assert_eq!(w.task(id).await.report, Some(Report::Good));
}

pub async fn admin_creates_finds_tops_up_and_lists(make: MakePorts) {
    let w = World::new(make);
    let admin = w.core.admin();
    // WHEN an account is created THEN its key is 32 hex and only its hash is the id
    let created = admin.create(0).await.expect("create");
    assert_eq!(created.key.len(), 32);
    assert_ne!(created.account.id.as_str(), created.key);
    assert_eq!(admin.find_by_key(&created.key).await.expect("find"), Some(created.account.clone()));
    // WHEN topped up by id prefix, by key THEN the balance grows
    let prefix = created.account.id.short().to_string();
    assert_eq!(admin.top_up(&prefix, 2_500_000).await.expect("top up").balance_micros, 2_500_000);
    assert_eq!(admin.top_up(&created.key, 500_000).await.expect("top up").balance_micros, 3_000_000);
    assert!(admin.top_up("zz", 1).await.is_err());
    assert!(admin.top_up(&"0".repeat(12), 1).await.is_err());
    // WHEN listed THEN both accounts show, oldest first
    w.advance(Duration::from_millis(1));
    let second = admin.create(7).await.expect("create");
    let list = admin.list().await.expect("list");
    assert_eq!(list.iter().map(|a| a.id.clone()).collect::<Vec<_>>(), [created.account.id, second.account.id]);
}

pub async fn no_overdraft_under_50_concurrent_submits(make: MakePorts) {
    // GIVEN a balance for exactly 10 tasks
    let w = World::new(make);
    let key = w.account(10 * PRICE).await;
    // WHEN 50 submits race
    let mut handles = Vec::new();
    for _ in 0..50 {
        let core = w.core.clone();
        let key = key.clone();
        handles.push(tokio::spawn(async move {
            use crate::CaptchaService;
            core.submit(image_request(&key, png(500))).await
        }));
    }
    let mut accepted = 0;
    for h in handles {
        match h.await.expect("join") {
            Ok(_) => accepted += 1,
            Err(code) => assert_eq!(code, ErrorCode::ZeroBalance),
        }
    }
    // THEN exactly 10 are accepted and exactly the balance is held
    assert_eq!(accepted, 10);
    let acc = w.account_of(&key).await;
    assert_eq!((acc.balance_micros, acc.held_micros, acc.open_holds), (10 * PRICE, 10 * PRICE, 10));
    // WHEN all are solved THEN the balance is exactly 0, nothing held
    w.drain(&answer("abc")).await;
    let acc = w.account_of(&key).await;
    assert_eq!((acc.balance_micros, acc.held_micros, acc.open_holds), (0, 0, 0));
}

// ------------------------------------------------------------------ callbacks, tokens

fn with_pingback(mut req: SubmitRequest, url: &str) -> SubmitRequest {
    req.pingback = Some(url.to_string());
    req
}

pub async fn finished_tasks_with_a_pingback_queue_one_callback(make: MakePorts) {
    use crate::CaptchaService;
    // GIVEN three tasks: one with a pingback solved, one with a pingback failing, one without
    let w = World::with_config(make, |c| c.max_attempts = 1);
    let key = w.account(10 * PRICE).await;
    let ok = w.core.submit(with_pingback(image_request(&key, png(500)), "https://example.com/cb")).await.expect("ok");
    w.core.route_once().await.expect("route");
    w.core.solve_once(Pool::Ocr, &answer("abc"), 8).await.expect("solve");
    let bad = w.core.submit(with_pingback(image_request(&key, png(500)), "https://example.com/cb")).await.expect("ok");
    w.core.route_once().await.expect("route");
    w.core.solve_once(Pool::Ocr, &failing(), 8).await.expect("solve");
    let _plain = w.submit(&key).await.expect("ok");
    w.drain(&answer("xyz")).await;
    // THEN the callback queue holds exactly the two with a pingback, each once
    let msgs = w.ports.queue.receive(Queue::CALLBACK, 10, Duration::from_secs(30)).await.expect("receive");
    let ids: BTreeSet<String> = msgs.iter().map(|m| m.body.clone()).collect();
    assert_eq!(ids, BTreeSet::from([ok.to_string(), bad.to_string()]));
    // AND the pingback stage can load each with its account's secret
    let (task, account) = w.core.callback_of(&ok.to_string()).await.expect("store").expect("callback");
    assert_eq!(task.state, TaskState::Solved);
    assert!(account.callback_secret.starts_with("whsec_"));
    assert!(matches!(w.core.result_of(&task), TaskResult::Solved { ref answer, .. } if answer == "abc"));
    let (task, _) = w.core.callback_of(&bad.to_string()).await.expect("store").expect("callback");
    assert_eq!(w.core.result_of(&task), TaskResult::Unsolvable);
    // AND a message naming no task (or garbage) loads nothing
    assert!(w.core.callback_of("12345").await.expect("store").is_none());
    assert!(w.core.callback_of("garbage").await.expect("store").is_none());
}

pub async fn registered_pingbacks_restrict_submits(make: MakePorts) {
    use crate::{CaptchaService, PingbackOp};
    // GIVEN an account with no registered pingbacks: any pingback is accepted
    let w = World::new(make);
    let key = w.account(10 * PRICE).await;
    w.core.submit(with_pingback(image_request(&key, png(500)), "https://a.example/cb")).await.expect("any url");
    // WHEN it registers one (twice: no duplicate) and lists
    let a = "https://b.example/cb".to_string();
    assert_eq!(w.core.pingbacks(&key, PingbackOp::Add(a.clone())).await, Ok(vec![a.clone()]));
    assert_eq!(w.core.pingbacks(&key, PingbackOp::Add(a.clone())).await, Ok(vec![a.clone()]));
    assert_eq!(w.core.pingbacks(&key, PingbackOp::List).await, Ok(vec![a.clone()]));
    // THEN only registered URLs are accepted, others refused with IpAddres
    assert_eq!(
        w.core.submit(with_pingback(image_request(&key, png(500)), "https://a.example/cb")).await,
        Err(ErrorCode::IpAddres)
    );
    w.core.submit(with_pingback(image_request(&key, png(500)), &a)).await.expect("registered url");
    // AND tasks without a pingback are unaffected
    w.submit(&key).await.expect("no pingback");
    // WHEN all are removed THEN any pingback is accepted again
    w.core.pingbacks(&key, PingbackOp::Add("https://c.example/".into())).await.expect("add");
    assert_eq!(w.core.pingbacks(&key, PingbackOp::Remove(a.clone())).await, Ok(vec!["https://c.example/".to_string()]));
    assert_eq!(w.core.pingbacks(&key, PingbackOp::RemoveAll).await, Ok(vec![]));
    w.core.submit(with_pingback(image_request(&key, png(500)), "https://a.example/cb")).await.expect("any url");
    // AND an unknown key is refused
    assert_eq!(w.core.pingbacks(&"0".repeat(32), PingbackOp::List).await, Err(ErrorCode::KeyDoesNotExist));
}

fn token_request(key: &str, method: Method, page_url: &str, site_key: Option<&str>) -> SubmitRequest {
    SubmitRequest {
        key: key.to_string(),
        spec: TaskSpec::Token {
            method,
            options: crate::TokenOptions {
                page_url: page_url.to_string(),
                site_key: site_key.map(str::to_string),
                ..Default::default()
            },
        },
        pingback: None,
        protocol: crate::service::Protocol::Json,
        soft_id: None,
        client_ip: None,
    }
}

pub async fn token_tasks_need_a_browser_pool_and_carry_no_image(make: MakePorts) {
    use crate::CaptchaService;
    // GIVEN a deployment without a browser pool THEN token tasks are not supported
    let w = World::new(make);
    let key = w.account(10 * PRICE).await;
    let req = token_request(&key, Method::Cap, "https://example.com/", None);
    assert_eq!(w.core.submit(req).await, Err(ErrorCode::TaskNotSupported));

    // GIVEN one with a browser pool
    let w = World::with_config(make, |c| {
        c.pools.insert(Pool::Browser);
        for m in Method::ALL {
            c.prices.insert(*m, PRICE);
        }
    });
    let key = w.account(10 * PRICE).await;
    // WHEN the page URL is missing or not http(s) THEN PageUrl; a missing site key THEN GoogleKey
    for bad in ["", "ftp://example.com/", "javascript:alert(1)"] {
        let r = w.core.submit(token_request(&key, Method::Cap, bad, None)).await;
        assert_eq!(r, Err(ErrorCode::PageUrl), "{bad:?}");
    }
    let r = w.core.submit(token_request(&key, Method::Turnstile, "https://example.com/", None)).await;
    assert_eq!(r, Err(ErrorCode::GoogleKey));
    let mut native = token_request(&key, Method::Turnstile, "https://example.com/", Some("0x4AAA"));
    if let TaskSpec::Token { options, .. } = &mut native.spec {
        options.engine = Some(crate::Engine::Native);
    }
    assert_eq!(w.core.submit(native).await, Err(ErrorCode::BadParameters), "no native engine for Turnstile");
    // WHEN a valid Turnstile task is submitted THEN it is routed to the browser pool and claimed without an image
    let id = w
        .core
        .submit(token_request(&key, Method::Turnstile, "https://example.com/", Some("0x4AAA")))
        .await
        .expect("accepted");
    w.core.route_once().await.expect("route");
    let claims = w.core.claim(Pool::Browser, 4).await.expect("claim");
    assert_eq!(claims.len(), 1);
    assert_eq!(claims[0].task.id, id);
    assert!(claims[0].image.is_empty());
    let opts = claims[0].task.params.token_options().expect("token params").clone();
    assert_eq!(opts.site_key.as_deref(), Some("0x4AAA"));
    assert_eq!(claims[0].task.protocol, crate::service::Protocol::Json);
    // AND its token answer is stored and charged like any other
    let claim = claims.into_iter().next().expect("claim");
    assert_eq!(w.core.finish(claim, Ok("tok-123".into())).await.expect("finish"), Finished::Solved);
    match w.core.result(&key, id).await {
        Ok(TaskResult::Solved { method, answer, .. }) => {
            assert_eq!((method, answer.as_str()), (Method::Turnstile, "tok-123"))
        }
        other => panic!("expected solved, got {other:?}"),
    }
    assert_eq!(w.account_of(&key).await.balance_micros, 9 * PRICE);
}

pub async fn callback_secrets_are_per_account_and_rotate(make: MakePorts) {
    // GIVEN two accounts THEN each has its own secret
    let w = World::new(make);
    let a = w.core.admin().create(0).await.expect("create");
    let b = w.core.admin().create(0).await.expect("create");
    assert_ne!(a.account.callback_secret, b.account.callback_secret);
    assert_eq!(w.account_of(&a.key).await.callback_secret, a.account.callback_secret);
    // WHEN a's secret is rotated THEN the store has the new one and b is unchanged
    let rotated = w.core.admin().rotate_secret(&a.key).await.expect("rotate");
    assert_ne!(rotated.callback_secret, a.account.callback_secret);
    assert_eq!(w.account_of(&a.key).await.callback_secret, rotated.callback_secret);
    assert_eq!(w.account_of(&b.key).await.callback_secret, b.account.callback_secret);
}

/// A token solver that answers from a script: `Ok(token)` or an error per call.
struct Scripted(parking_lot::Mutex<Vec<Result<String, SolveError>>>, parking_lot::Mutex<Vec<Method>>);

#[async_trait::async_trait]
impl crate::TokenSolver for Scripted {
    async fn solve(&self, method: Method, _o: &crate::TokenOptions) -> Result<String, SolveError> {
        self.1.lock().push(method);
        let mut script = self.0.lock();
        if script.is_empty() {
            Err(SolveError::Failed("script exhausted".into()))
        } else {
            script.remove(0)
        }
    }
}

fn scripted(steps: Vec<Result<String, SolveError>>) -> Scripted {
    Scripted(parking_lot::Mutex::new(steps), parking_lot::Mutex::new(Vec::new()))
}

pub async fn router_sends_pow_widgets_native_first_then_to_the_browser(make: MakePorts) {
    use crate::{CaptchaService, Engine};
    let all_pools = |c: &mut Config| {
        c.pools.extend([Pool::Browser, Pool::Native]);
        for m in Method::ALL {
            c.prices.insert(*m, PRICE);
        }
    };
    // GIVEN both token pools
    let w = World::with_config(make, all_pools);
    let key = w.account(10 * PRICE).await;
    let cap = |engine| {
        let mut r = token_request(&key, Method::Cap, "https://example.com/", None);
        if let TaskSpec::Token { options, .. } = &mut r.spec {
            options.engine = engine;
        }
        r
    };
    // WHEN a Cap task with no engine is routed THEN it goes to the native pool
    let id = w.core.submit(cap(None)).await.expect("accepted");
    w.core.route_once().await.expect("route");
    assert!(w.core.claim(Pool::Browser, 4).await.expect("claim").is_empty());
    // AND when the native solver finds the page needs a browser THEN the retry goes to the browser pool
    let native = scripted(vec![Err(SolveError::NeedsBrowser("script-only widget".into()))]);
    assert_eq!(w.core.solve_tokens_once(Pool::Native, &native, 4).await.expect("solve"), 1);
    assert!(w.task(id).await.needs_browser());
    w.core.route_once().await.expect("route");
    let browser = scripted(vec![Ok("cap-token".into())]);
    assert_eq!(w.core.solve_tokens_once(Pool::Native, &native, 4).await.expect("solve"), 0);
    assert_eq!(w.core.solve_tokens_once(Pool::Browser, &browser, 4).await.expect("solve"), 1);
    assert!(
        matches!(w.core.result(&key, id).await, Ok(TaskResult::Solved { ref answer, attempts: 2, .. }) if answer == "cap-token")
    );

    // WHEN the client forces the browser THEN the native pool never sees it
    let id = w.core.submit(cap(Some(Engine::Browser))).await.expect("accepted");
    w.core.route_once().await.expect("route");
    assert!(w.core.claim(Pool::Native, 4).await.expect("claim").is_empty());
    let browser = scripted(vec![Ok("t2".into())]);
    assert_eq!(w.core.solve_tokens_once(Pool::Browser, &browser, 4).await.expect("solve"), 1);
    assert!(matches!(w.core.result(&key, id).await, Ok(TaskResult::Solved { .. })));

    // WHEN the client forces native and the page needs a browser THEN it is unsolvable at once, not charged
    let before = w.account_of(&key).await.balance_micros;
    let id = w.core.submit(cap(Some(Engine::Native))).await.expect("accepted");
    w.core.route_once().await.expect("route");
    let native = scripted(vec![Err(SolveError::NeedsBrowser("x".into()))]);
    w.core.solve_tokens_once(Pool::Native, &native, 4).await.expect("solve");
    assert_eq!(w.core.result(&key, id).await, Ok(TaskResult::Unsolvable));
    assert_eq!(w.account_of(&key).await.balance_micros, before);

    // GIVEN only the native pool THEN a forced browser is not supported, and a page that needs one is unsolvable
    let w = World::with_config(make, |c| {
        all_pools(c);
        c.pools.remove(&Pool::Browser);
    });
    let key = w.account(10 * PRICE).await;
    let mut forced = token_request(&key, Method::Altcha, "https://example.com/", None);
    if let TaskSpec::Token { options, .. } = &mut forced.spec {
        options.engine = Some(Engine::Browser);
    }
    assert_eq!(w.core.submit(forced).await, Err(ErrorCode::TaskNotSupported));
    assert_eq!(
        w.core.submit(token_request(&key, Method::Turnstile, "https://example.com/", Some("k"))).await,
        Err(ErrorCode::TaskNotSupported),
        "Turnstile needs the browser pool"
    );
    let id = w.core.submit(token_request(&key, Method::Altcha, "https://example.com/", None)).await.expect("ok");
    w.core.route_once().await.expect("route");
    let native = scripted(vec![Err(SolveError::NeedsBrowser("x".into()))]);
    w.core.solve_tokens_once(Pool::Native, &native, 4).await.expect("solve");
    assert_eq!(w.core.result(&key, id).await, Ok(TaskResult::Unsolvable));
}

#[cfg(test)]
mod memory {
    use super::*;
    use crate::ports::memory::MemoryStore;

    fn make(clock: Arc<ManualClock>) -> (Ports, Guard) {
        let store = Arc::new(MemoryStore::new(clock.clone()));
        (Ports::from_store(store, clock), Box::new(()))
    }

    crate::port_suite!(make);
}
