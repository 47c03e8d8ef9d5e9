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
                    Err(_) => return, // the server is gone
                }
            }
        }));
    }
    loop {
        if accepted.lock().await.len() >= 150 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    server.kill9();
    for s in submitters {
        s.await.expect("submitter");
    }
    let accepted = accepted.lock().await.clone();
    assert!(accepted.len() >= 150, "{} accepted", accepted.len());

    let server = Server::start(dir.path(), &[]);
    let mut solved = 0u64;
    for id in &accepted {
        let text = wait_final(&http, &server.base, &key, id, Duration::from_secs(120)).await;
        if text.starts_with("OK|") {
            solved += 1;
        } else {
            assert_eq!(text, "ERROR_CAPTCHA_UNSOLVABLE", "task {id}");
        }
    }
    let expected = 100_000_000 - solved * PRICE_MICROS;
    let got = balance(&http, &server.base, &key).await;
    assert_eq!(
        captcha_core::parse_money(&got),
        Some(expected),
        "balance {got} after {solved} solved of {} accepted",
        accepted.len()
    );
}
