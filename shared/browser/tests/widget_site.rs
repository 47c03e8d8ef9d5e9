//! The drivers against the real widgets (ALTCHA, Cap) served by the local
//! widget site `tests/web/server.js` on 127.0.0.1: every token the honest
//! browser gets must verify at the site's own verify endpoint, once.

mod common;

use std::time::{Duration, Instant};

use captcha_browser::widgets;
use common::*;
use widget_site::WidgetSite;

/// Starts the widget site (after `tests/web/install.sh`, which is idempotent).
fn web_site() -> WidgetSite {
    WidgetSite::install_and_start().unwrap_or_else(|e| panic!("{e}"))
}

async fn verify(base: &str, path: &str, body: serde_json::Value) -> serde_json::Value {
    reqwest::Client::new()
        .post(format!("{base}{path}"))
        .json(&body)
        .send()
        .await
        .expect("verify request")
        .json()
        .await
        .expect("verify json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn altcha_tokens_verify_once() {
    let _s = serial().await;
    let site = web_site();
    let pool = pool(config(loopback(), Duration::from_secs(60)));
    let launch = pool.warm_up().await.expect("launch");
    eprintln!("launch {launch:?}");
    for page in ["/altcha", "/altcha-v1"] {
        let t = Instant::now();
        let payload = widgets::altcha(&pool, &format!("{}{page}", site.base())).await.expect("altcha payload");
        eprintln!("{page}: token in {:?}", t.elapsed());
        let ok = verify(site.base(), "/altcha/verify", serde_json::json!({ "payload": payload })).await;
        assert_eq!(ok["ok"], true, "{page}: {ok}");
        let replay = verify(site.base(), "/altcha/verify", serde_json::json!({ "payload": payload })).await;
        assert_eq!(replay["ok"], false, "{page}: replay accepted: {replay}");
    }
    pool.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cap_tokens_verify_once() {
    let _s = serial().await;
    let site = web_site();
    let pool = pool(config(loopback(), Duration::from_secs(60)));
    pool.warm_up().await.expect("launch");
    for _ in 0..2 {
        let t = Instant::now();
        let token = widgets::cap(&pool, &format!("{}/cap", site.base())).await.expect("cap token");
        eprintln!("/cap: token in {:?}", t.elapsed());
        let ok = verify(site.base(), "/cap/verify", serde_json::json!({ "token": token })).await;
        assert_eq!(ok["ok"], true, "{ok}");
        let replay = verify(site.base(), "/cap/verify", serde_json::json!({ "token": token })).await;
        assert_eq!(replay["ok"], false, "replay accepted: {replay}");
    }
    pool.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_page_has_no_widget() {
    let _s = serial().await;
    let site = web_site();
    let pool = pool(config(loopback(), Duration::from_secs(30)));
    let r = widgets::altcha(&pool, &format!("{}/plain", site.base())).await;
    assert_eq!(r, Err(captcha_browser::BrowserError::NoWidget));
    pool.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_cap_pages_at_once_on_one_browser() {
    let _s = serial().await;
    let site = web_site();
    let pool = pool(config(loopback(), Duration::from_secs(90)));
    pool.warm_up().await.expect("launch");
    let url = format!("{}/cap", site.base());
    let t = Instant::now();
    let tokens = futures_util::future::join_all((0..4).map(|_| widgets::cap(&pool, &url))).await;
    let elapsed = t.elapsed();
    eprintln!("4 concurrent Cap solves on one browser: {elapsed:?} ({:.2}/s)", 4.0 / elapsed.as_secs_f64());
    assert_eq!(pool.browser_pids().await.len(), 1);
    for token in tokens {
        let token = token.expect("cap token");
        let ok = verify(site.base(), "/cap/verify", serde_json::json!({ "token": token })).await;
        assert_eq!(ok["ok"], true, "{ok}");
    }
    pool.shutdown().await;
}
