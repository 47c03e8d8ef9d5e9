//! Token tasks and callbacks through the real binary: ALTCHA and Cap pages of
//! the widget test site solved by the native pool over the classic and the
//! JSON API, tokens verified (once) by the sites' own server libraries, the
//! address policy, and signed callbacks that survive a failing receiver.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use common::*;
use serde_json::{json, Value};

async fn get_in(http: &reqwest::Client, base: &str, query: &[(&str, &str)]) -> String {
    http.get(format!("{base}/in.php")).query(query).send().await.expect("in.php").text().await.expect("text")
}

async fn verify(http: &reqwest::Client, url: &str, body: Value) -> Value {
    http.post(url).json(&body).send().await.expect("verify").json().await.expect("json")
}

async fn call(http: &reqwest::Client, base: &str, path: &str, body: Value) -> Value {
    http.post(format!("{base}{path}")).json(&body).send().await.expect("call").json().await.expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn altcha_and_cap_tokens_verify_once_at_the_site() {
    let site = widget_site();
    let dir = tempfile::tempdir().expect("tempdir");
    let key = create_account(dir.path(), "1");
    let server =
        Server::start(dir.path(), &["--allow-private-network", "127.0.0.0/8", "--ocr-workers", "1", "--browsers", "0"]);
    let (http, base) = (client(), server.base.clone());

    for (page, verify_path, field) in [
        ("/altcha-v1", "/altcha/verify", "payload"),
        ("/altcha", "/altcha/verify", "payload"),
        ("/cap", "/cap/verify", "token"),
    ] {
        let method = if page.starts_with("/cap") { "cap" } else { "altcha" };
        let page_url = format!("{}{page}", site.base());
        let text = get_in(&http, &base, &[("key", &key), ("method", method), ("pageurl", &page_url)]).await;
        let id = text.strip_prefix("OK|").unwrap_or_else(|| panic!("{page}: {text}")).to_string();
        let answer = wait_final(&http, &base, &key, &id, Duration::from_secs(90)).await;
        let token = answer.strip_prefix("OK|").unwrap_or_else(|| panic!("{page}: {answer}")).to_string();
        let url = format!("{}{verify_path}", site.base());
        let first = verify(&http, &url, json!({ field: token })).await;
        assert_eq!(first["ok"], true, "{page}: the site accepts the token: {first}");
        let replay = verify(&http, &url, json!({ field: token })).await;
        assert_eq!(replay["ok"], false, "{page}: a replayed token is refused: {replay}");
    }
    // Three tasks at 0.003 were charged.
    assert_eq!(balance(&http, &base, &key).await, "0.991");

    // A page without a widget: unsolvable (no browser pool here), not charged.
    let plain = format!("{}/plain", site.base());
    let text = get_in(&http, &base, &[("key", &key), ("method", "altcha"), ("pageurl", &plain)]).await;
    let id = text.trim_start_matches("OK|").to_string();
    assert_eq!(wait_final(&http, &base, &key, &id, Duration::from_secs(30)).await, "ERROR_CAPTCHA_UNSOLVABLE");
    assert_eq!(settled_balance(&http, &base, &key, "0.991").await, "0.991");
    // Turnstile needs the browser pool, which this server does not run.
    let t =
        get_in(&http, &base, &[("key", &key), ("method", "turnstile"), ("sitekey", "0x4"), ("pageurl", &plain)]).await;
    assert_eq!(t, "ERROR_TASK_NOT_SUPPORTED");
}

#[tokio::test]
async fn private_page_urls_are_refused_without_the_allow_list() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = create_account(dir.path(), "1");
    let server = Server::start(dir.path(), &["--ocr-workers", "1", "--browsers", "0"]);
    let http = client();
    for url in
        ["http://127.0.0.1:9/altcha", "http://10.1.2.3/", "http://169.254.169.254/latest/meta-data", "http://[::1]/"]
    {
        let text = get_in(&http, &server.base, &[("key", &key), ("method", "altcha"), ("pageurl", url)]).await;
        assert_eq!(text, "ERROR_PAGEURL", "{url}");
        let v = call(
            &http,
            &server.base,
            "/createTask",
            json!({"clientKey": key, "task": {"type": "CapTask", "websiteURL": url}}),
        )
        .await;
        assert_eq!(v["errorId"], 22, "{url}: {v}");
    }
    let text = get_in(
        &http,
        &server.base,
        &[("key", &key), ("method", "cap"), ("pageurl", "https://example.com/"), ("pingback", "http://127.0.0.1:9/cb")],
    )
    .await;
    assert_eq!(text, "ERROR_IP_ADDRES");
    assert_eq!(balance(&http, &server.base, &key).await, "1");
}

#[derive(Default)]
struct Receiver {
    seen: Mutex<Vec<(HeaderMap, String)>>,
}

/// A callback receiver that answers 500 to its first two requests.
async fn receiver() -> (String, Arc<Receiver>) {
    use axum::extract::State;
    async fn take(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: String) -> StatusCode {
        let mut seen = r.seen.lock().expect("lock");
        seen.push((headers, body));
        if seen.len() <= 2 {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::OK
        }
    }
    let r = Arc::new(Receiver::default());
    let app = axum::Router::new().route("/cb", axum::routing::post(take)).with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/cb"), r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_api_task_with_a_signed_callback_that_survives_two_failures() {
    let site = widget_site();
    let (cb, rx) = receiver().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, secret) = create_account_with_secret(dir.path(), "1");
    let server =
        Server::start(dir.path(), &["--allow-private-network", "127.0.0.0/8", "--ocr-workers", "1", "--browsers", "0"]);
    let (http, base) = (client(), server.base.clone());

    let created = call(
        &http,
        &base,
        "/createTask",
        json!({"clientKey": key, "callbackUrl": cb,
        "task": {"type": "AltchaTask", "websiteURL": format!("{}/altcha-v1", site.base())}}),
    )
    .await;
    let id = created["taskId"].as_u64().unwrap_or_else(|| panic!("{created}"));
    // Poll like the official clients until ready.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let result = loop {
        let r = call(&http, &base, "/getTaskResult", json!({"clientKey": key, "taskId": id})).await;
        if r["status"] == "ready" {
            break r;
        }
        assert_eq!(r["status"], "processing", "{r}");
        assert!(tokio::time::Instant::now() < deadline, "not ready in time");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let token = result["solution"]["token"].as_str().expect("token").to_string();
    assert_eq!(result["cost"], "0.003");

    // The callback arrives on the third attempt (back-off 3 s, then 6 s).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    while rx.seen.lock().expect("lock").len() < 3 {
        assert!(tokio::time::Instant::now() < deadline, "callback not retried to success in time");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (headers, body) = rx.seen.lock().expect("lock")[2].clone();
    let v: Value = serde_json::from_str(&body).expect("JSON callback");
    assert_eq!(v["solution"]["token"], token.as_str(), "the callback is what getTaskResult returns");
    assert_eq!(v["taskId"], id, "plus the task id");
    let sig = headers["x-signature"].to_str().expect("ascii");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_secs();
    let five_min = Duration::from_secs(300);
    assert_eq!(captcha_callbacks::verify(&secret, sig, body.as_bytes(), now, five_min), Ok(()));
    assert!(captcha_callbacks::verify(&secret, sig, b"{\"tampered\":1}", now, five_min).is_err());
    assert!(
        captcha_callbacks::verify(&secret, sig, body.as_bytes(), now + 3600, five_min).is_err(),
        "old replays refused"
    );

    // The token is good at the site.
    let ok = verify(&http, &format!("{}/altcha/verify", site.base()), json!({"payload": token})).await;
    assert_eq!(ok["ok"], true, "{ok}");
}

/// Direct children of `pid` whose command name contains `name` (Linux /proc).
fn children_named(pid: u32, name: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else { continue };
        // pid (comm) state ppid ...
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        let comm = &stat[open + 1..close];
        let ppid = stat[close + 1..].split_whitespace().nth(1).and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) && comm.contains(name) {
            out.push(child);
        }
    }
    out
}

async fn classic_token(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    method: &str,
    page_url: &str,
    engine: &str,
) -> String {
    let text = get_in(http, base, &[("key", key), ("method", method), ("pageurl", page_url), ("engine", engine)]).await;
    let id = text.strip_prefix("OK|").unwrap_or_else(|| panic!("{page_url}: {text}")).to_string();
    wait_final(http, base, key, &id, Duration::from_secs(150)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browser_engine_solves_altcha_and_cap_and_survives_a_killed_chromium() {
    assert!(
        std::path::Path::new(captcha_browser::DEFAULT_CHROMIUM).exists(),
        "chromium is missing: run shared/browser/install-chromium.sh"
    );
    let site = widget_site();
    let dir = tempfile::tempdir().expect("tempdir");
    let key = create_account(dir.path(), "1");
    let server = Server::start(
        dir.path(),
        &[
            "--allow-private-network",
            "127.0.0.0/8",
            "--ocr-workers",
            "1",
            "--browsers",
            "1",
            "--browser-deadline-secs",
            "30",
        ],
    );
    let (http, base) = (client(), server.base.clone());
    let server_pid = server.child.id();

    // Kill Chromium as soon as the first browser task has launched it: that
    // attempt fails, the retry relaunches Chromium and succeeds.
    let cap_page = format!("{}/cap", site.base());
    let text =
        get_in(&http, &base, &[("key", &key), ("method", "cap"), ("pageurl", &cap_page), ("engine", "browser")]).await;
    let id = text.strip_prefix("OK|").unwrap_or_else(|| panic!("{text}")).to_string();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let killed = loop {
        let pids = children_named(server_pid, "chrom");
        if !pids.is_empty() {
            for p in &pids {
                let _ = std::process::Command::new("kill").args(["-9", &p.to_string()]).status();
            }
            break pids;
        }
        assert!(tokio::time::Instant::now() < deadline, "chromium never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(!killed.is_empty());
    let answer = wait_final(&http, &base, &key, &id, Duration::from_secs(150)).await;
    let token = answer.strip_prefix("OK|").unwrap_or_else(|| panic!("after a killed chromium: {answer}")).to_string();
    let r =
        call(&http, &base, "/getTaskResult", json!({"clientKey": key, "taskId": id.parse::<u64>().expect("id")})).await;
    assert!(r["solveCount"].as_u64() >= Some(2), "the killed attempt was retried: {r}");
    let ok = verify(&http, &format!("{}/cap/verify", site.base()), json!({"token": token})).await;
    assert_eq!(ok["ok"], true, "{ok}");
    let replay = verify(&http, &format!("{}/cap/verify", site.base()), json!({"token": token})).await;
    assert_eq!(replay["ok"], false);

    // ALTCHA through the browser; its payload verifies once.
    let answer = classic_token(&http, &base, &key, "altcha", &format!("{}/altcha-v1", site.base()), "browser").await;
    let payload = answer.strip_prefix("OK|").unwrap_or_else(|| panic!("{answer}")).to_string();
    let url = format!("{}/altcha/verify", site.base());
    assert_eq!(verify(&http, &url, json!({"payload": payload})).await["ok"], true);
    assert_eq!(verify(&http, &url, json!({"payload": payload})).await["ok"], false);

    // A page without a widget ends unsolvable, uncharged.
    let before = balance(&http, &base, &key).await;
    let answer = classic_token(&http, &base, &key, "cap", &format!("{}/plain", site.base()), "browser").await;
    assert_eq!(answer, "ERROR_CAPTCHA_UNSOLVABLE");
    assert_eq!(settled_balance(&http, &base, &key, &before).await, before);
}
