//! Crash test: hundreds of tasks, `kill -9` mid-way, restart. Every accepted
//! id reaches a final state and the balance equals the start minus the
//! prices of the solved tasks — nothing lost, nothing charged twice.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use tokio::sync::Mutex;

const PRICE_MICROS: u64 = 1_000; // 0.001, the default price of an image task
const START: &str = "100";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_mid_way_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = create_account(dir.path(), START);
    let images = Arc::new(samples("captcha-default", 20));
    let mut server = Server::start(dir.path(), &["--ocr-workers", "1"]);
    let http = client();

    // 8 submitters; the server is killed once 150 tasks were accepted.
    let accepted = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut submitters = Vec::new();
    for s in 0..8 {
        let (http, base, key, images, accepted) =
            (http.clone(), server.base.clone(), key.clone(), images.clone(), accepted.clone());
        submitters.push(tokio::spawn(async move {
            for i in 0..60 {
                let (img, _) = &images[(s * 60 + i) % images.len()];
                match submit(&http, &base, &key, img, &[]).await {
                    Ok(text) => {
                        let id = text.strip_prefix("OK|").unwrap_or_else(|| panic!("refused: {text}"));
                        accepted.lock().await.push(id.to_string());
                    }
                    // The server is gone. This submit's outcome is unknown: the
                    // server may have accepted it before dying.
                    Err(_) => return 1u64,
                }
            }
            0
        }));
    }
    loop {
        if accepted.lock().await.len() >= 150 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    server.kill9();
    let mut unknown = 0;
    for s in submitters {
        unknown += s.await.expect("submitter");
    }
    let accepted = accepted.lock().await.clone();
    assert!(accepted.len() >= 150, "{} accepted", accepted.len());

    let server = Server::start(dir.path(), &["--hold-repair-secs", "2"]);
    let mut solved = 0u64;
    for id in &accepted {
        let text = wait_final(&http, &server.base, &key, id, Duration::from_secs(120)).await;
        if text.starts_with("OK|") {
            solved += 1;
        } else {
            assert_eq!(text, "ERROR_CAPTCHA_UNSOLVABLE", "task {id}");
        }
    }
    // Submits cut off by the kill may have been accepted without the client
    // hearing of it: wait until no task of the account is unfinished.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while open_tasks(dir.path()) != 0 {
        assert!(std::time::Instant::now() < deadline, "tasks still unfinished after restart");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = balance(&http, &server.base, &key).await;
    let charged = 100_000_000 - captcha_core::parse_money(&got).expect("a balance");
    assert_eq!(charged % PRICE_MICROS, 0, "charged {charged}: not a whole number of tasks");
    let charged_tasks = charged / PRICE_MICROS;
    assert!(
        charged_tasks >= solved && charged_tasks <= solved + unknown,
        "charged {charged_tasks} tasks; {solved} solved of {} acknowledged, {unknown} submits cut off",
        accepted.len()
    );
}

/// Unfinished tasks (open holds) of the only account, from `account list`.
fn open_tasks(dir: &std::path::Path) -> u64 {
    let out = std::process::Command::new(BIN)
        .args(["account", "list", "--data-dir"])
        .arg(dir)
        .output()
        .expect("account list");
    let text = String::from_utf8_lossy(&out.stdout);
    let row = text.lines().nth(1).expect("one account");
    row.split_whitespace().last().and_then(|n| n.parse().ok()).expect("tasks column")
}
