//! What only the SQLite adapter must show: the file survives a reopen and a
//! `kill -9`, several connections (threads, a second "process") never
//! overdraw an account, and the schema is created once.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use captcha_core::ports::{Clock, ManualClock, Queue, SolveError, SystemClock};
use captcha_core::testkit::{image_request, png, PRICE, T0};
use captcha_core::{CaptchaService, Config, Core, ErrorCode, ImageOptions, Method, Pool, TaskResult, TaskState};
use captcha_embedded::DB_FILE;
use common::{open, ports, TempDir};

fn config() -> Config {
    let mut c = Config::default();
    c.prices.insert(Method::Image, PRICE);
    c
}

fn solver(_: &[u8], _: &ImageOptions) -> Result<String, SolveError> {
    Ok("abc".to_string())
}

async fn drain(core: &Core) {
    for _ in 0..1000 {
        let n = core.route_once().await.expect("route") + core.solve_once(Pool::Ocr, &solver, 32).await.expect("solve");
        if n == 0 {
            return;
        }
    }
    panic!("queues did not drain");
}

#[tokio::test]
async fn reopen_after_drop_keeps_accounts_tasks_holds_and_messages() {
    // GIVEN a store with an account, a solved task and a queued one
    let dir = TempDir::new();
    let clock = ManualClock::new(T0);
    let (key, solved, queued) = {
        let core = Core::new(config(), ports(open(dir.path(), clock.clone()), clock.clone()));
        let key = core.admin().create(10 * PRICE).await.expect("create").key;
        let solved = core.submit(image_request(&key, png(300))).await.expect("accepted");
        drain(&core).await;
        let queued = core.submit(image_request(&key, png(300))).await.expect("accepted");
        (key, solved, queued)
    };
    assert!(dir.path().join(DB_FILE).exists());

    // WHEN the store is dropped and opened again
    let core = Core::new(config(), ports(open(dir.path(), clock.clone()), clock.clone()));
    // THEN everything is there: the answer, the balance with its hold, the queued message
    assert!(matches!(core.result(&key, solved).await, Ok(TaskResult::Solved { ref answer, .. }) if answer == "abc"));
    assert_eq!(core.result(&key, queued).await, Ok(TaskResult::NotReady));
    let acc = core.admin().find_by_key(&key).await.expect("find").expect("account");
    assert_eq!((acc.balance_micros, acc.held_micros, acc.open_holds), (9 * PRICE, PRICE, 1));
    drain(&core).await;
    assert!(matches!(core.result(&key, queued).await, Ok(TaskResult::Solved { .. })));
    assert_eq!(core.balance(&key).await, Ok(8 * PRICE));
}

#[test]
fn concurrent_submits_from_threads_and_a_second_connection_never_overdraw() {
    // GIVEN one account with money for exactly 100 tasks, and two stores on
    // the same file (as the server and the CLI would have)
    let dir = TempDir::new();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut cfg = config();
    cfg.max_requests_per_sec = 0;
    let a = Arc::new(Core::new(cfg.clone(), ports(open(dir.path(), clock.clone()), clock.clone())));
    let b = Arc::new(Core::new(cfg, ports(open(dir.path(), clock.clone()), clock.clone())));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let key = rt.block_on(a.admin().create(100 * PRICE)).expect("create").key;

    // WHEN 8 threads submit 40 tasks each, alternating between the stores
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let core = if i % 2 == 0 { a.clone() } else { b.clone() };
            let key = key.clone();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                rt.block_on(async {
                    let mut ok = 0;
                    for _ in 0..40 {
                        match core.submit(image_request(&key, png(400))).await {
                            Ok(_) => ok += 1,
                            Err(code) => assert_eq!(code, ErrorCode::ZeroBalance),
                        }
                    }
                    ok
                })
            })
        })
        .collect();
    let accepted: usize = threads.into_iter().map(|t| t.join().expect("thread")).sum();

    // THEN exactly 100 were accepted and held, and after solving the balance is exactly 0
    assert_eq!(accepted, 100);
    rt.block_on(async {
        let acc = b.admin().find_by_key(&key).await.expect("find").expect("account");
        assert_eq!((acc.balance_micros, acc.held_micros, acc.open_holds), (100 * PRICE, 100 * PRICE, 100));
        drain(&a).await;
        let acc = b.admin().find_by_key(&key).await.expect("find").expect("account");
        assert_eq!((acc.balance_micros, acc.held_micros, acc.open_holds), (0, 0, 0));
        // AND a top-up through the second store is seen by the first at once
        b.admin().top_up(&key, 5 * PRICE).await.expect("top up");
        assert_eq!(a.balance(&key).await, Ok(5 * PRICE));
    });
}

#[tokio::test]
async fn opening_twice_and_reopening_does_not_redo_the_schema() {
    let dir = TempDir::new();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let first = open(dir.path(), clock.clone());
    let second = open(dir.path(), clock.clone());
    drop(first);
    let third = open(dir.path(), clock);
    assert_eq!(second.path(), third.path());
    assert!(third.queue_depths().await.expect("depths").is_empty());
}

#[tokio::test]
async fn make_all_visible_returns_in_flight_messages_at_once() {
    let dir = TempDir::new();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), clock.clone());
    use captcha_core::ports::TaskQueue;
    store.send(Queue::INTAKE, "1").await.expect("send");
    assert_eq!(store.receive(Queue::INTAKE, 5, Duration::from_secs(30)).await.expect("receive").len(), 1);
    assert!(store.receive(Queue::INTAKE, 5, Duration::from_secs(30)).await.expect("receive").is_empty());
    assert_eq!(store.make_all_visible().await.expect("reset"), 1);
    let again = store.receive(Queue::INTAKE, 5, Duration::from_secs(30)).await.expect("receive");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].receive_count, 2);
    assert_eq!(store.queue_depths().await.expect("depths"), vec![(Queue::INTAKE, 1)]);
}

// ------------------------------------------------------------------ kill -9

const CHILD_ENV: &str = "CAPTCHA_EMBEDDED_KILL_CHILD";
const CHILD_TASKS: usize = 30;

/// Not a test of its own: the body of the child process `accepted_tasks_survive_kill_9`
/// starts. Without the environment variable it does nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_child_entry() {
    let Ok(spec) = std::env::var(CHILD_ENV) else { return };
    let (dir, key) = spec.split_once('|').expect("dir|key");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let core = Core::new(config(), ports(open(std::path::Path::new(dir), clock.clone()), clock));
    let mut ids = Vec::new();
    for _ in 0..CHILD_TASKS {
        ids.push(core.submit(image_request(key, png(400))).await.expect("accepted"));
    }
    // Leave tasks in every stage: some routed, some claimed (solving), some solved.
    core.route_once().await.expect("route");
    core.solve_once(Pool::Ocr, &solver, 5).await.expect("solve");
    let claimed = core.claim(Pool::Ocr, 10).await.expect("claim");
    println!("READY {}", ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(","));
    println!("CLAIMED {}", claimed.len());
    std::thread::sleep(Duration::from_secs(120));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_tasks_survive_kill_9_and_finish_after_restart() {
    // GIVEN a server process that accepted 30 tasks and is mid-way through them
    let dir = TempDir::new();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let key = {
        let store = open(dir.path(), clock.clone());
        let core = Core::new(config(), ports(store, clock.clone()));
        core.admin().create(100 * PRICE).await.expect("create").key
    };
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args(["kill_child_entry", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, format!("{}|{}", dir.path().display(), key))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut ids: Vec<u64> = Vec::new();
    let mut claimed = 0;
    while let Some(Ok(line)) = lines.next() {
        // libtest may print "test kill_child_entry ... " on the same line.
        if let Some(rest) = line.split_once("READY ").map(|(_, r)| r) {
            ids = rest.split(',').map(|s| s.parse().expect("id")).collect();
        }
        if let Some(rest) = line.split_once("CLAIMED ").map(|(_, r)| r) {
            claimed = rest.trim().parse().expect("count");
            break;
        }
        assert!(Instant::now() < deadline, "child never became ready");
    }
    assert_eq!(ids.len(), CHILD_TASKS);
    assert!(claimed > 0, "the child should have tasks in `solving`");

    // WHEN it is killed with SIGKILL
    child.kill().expect("kill -9");
    child.wait().expect("reap");

    // THEN a new process finds every task, recovers the interrupted ones, and
    // finishes all of them, charging each exactly once
    let store = open(dir.path(), clock.clone());
    let core = Core::new(config(), ports(store.clone(), clock));
    let before: Vec<TaskState> = {
        let mut v = Vec::new();
        for id in &ids {
            v.push(core.ports().tasks.get(*id).await.expect("get").expect("task survived").state);
        }
        v
    };
    assert_eq!(before.iter().filter(|s| **s == TaskState::Solving).count(), claimed);
    assert_eq!(core.recover_interrupted().await.expect("recover"), claimed);
    store.make_all_visible().await.expect("reset visibility");
    drain(&core).await;
    for id in &ids {
        assert!(matches!(core.result(&key, *id).await, Ok(TaskResult::Solved { .. })), "task {id} not solved");
    }
    let acc = core.admin().find_by_key(&key).await.expect("find").expect("account");
    assert_eq!((acc.balance_micros, acc.held_micros, acc.open_holds), ((100 - CHILD_TASKS as u64) * PRICE, 0, 0));
}
