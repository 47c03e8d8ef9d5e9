//! End-to-end: the widget test site in `tests/web` (real altcha-lib and
//! @cap.js/server under Node, on 127.0.0.1) is solved natively, and the site's
//! own verify endpoints accept the answer once and refuse a replay.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use captcha_netguard::{GuardedClient, NetPolicy};
use captcha_pow::{solve, PowError, Scheme, SolveOptions, Widget};
use serde_json::{json, Value};
use widget_site::WidgetSite;

fn start_site() -> WidgetSite {
    WidgetSite::start().unwrap_or_else(|e| panic!("{e}"))
}

fn local_client() -> GuardedClient {
    GuardedClient::new(
        NetPolicy::parse_list("127.0.0.0/8").expect("policy"),
        Duration::from_secs(20),
        "captcha-pow-test",
    )
    .expect("client")
}

async fn post_json(client: &GuardedClient, url: &str, body: Value) -> Value {
    let resp = client.post(url).expect("url").json(&body).send().await.expect("post");
    resp.json().await.expect("json")
}

async fn solve_and_verify(path: &str, kind: Widget, want: Scheme) {
    let site = start_site();
    let client = local_client();
    let page = format!("{}{path}", site.base());
    let sol = solve(&client, kind, &page, &SolveOptions::default()).await.unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(sol.scheme, want);
    eprintln!("{path}: {:?} attempts {} compute {:?} total {:?}", sol.scheme, sol.attempts, sol.compute, sol.elapsed);
    let (verify, body) = match sol.widget {
        Widget::Altcha => {
            assert_eq!(sol.field, "altcha");
            ("/altcha/verify", json!({ "payload": sol.token }))
        }
        _ => {
            assert_eq!(sol.field, "cap-token");
            ("/cap/verify", json!({ "token": sol.token }))
        }
    };
    let url = format!("{}{verify}", site.base());
    let first = post_json(&client, &url, body.clone()).await;
    assert_eq!(first["ok"], true, "{path}: first submission refused: {first}");
    let replay = post_json(&client, &url, body).await;
    assert_eq!(replay["ok"], false, "{path}: replay accepted: {replay}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn altcha_default_pbkdf2() {
    solve_and_verify("/altcha", Widget::Altcha, Scheme::AltchaV2("PBKDF2/SHA-256".into())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn altcha_v2_sha256() {
    solve_and_verify("/altcha-v2", Widget::Altcha, Scheme::AltchaV2("SHA-256".into())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn altcha_v1_sha256() {
    solve_and_verify("/altcha-v1", Widget::Altcha, Scheme::AltchaV1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cap_redeem_and_validate() {
    solve_and_verify("/cap", Widget::Cap, Scheme::Cap).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_picks_the_widget_on_the_page() {
    solve_and_verify("/cap", Widget::Auto, Scheme::Cap).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn altcha_form_field_is_accepted_by_the_site() {
    // The widget submits its payload as the form field `altcha`.
    let site = start_site();
    let client = local_client();
    let sol = solve(&client, Widget::Altcha, &format!("{}/altcha-v1", site.base()), &SolveOptions::default())
        .await
        .expect("solve");
    let form = format!("altcha={}", form_urlencode(&sol.token));
    let resp = client
        .post(&format!("{}/altcha/verify", site.base()))
        .expect("url")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .expect("post");
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["ok"], true, "{v}");
}

fn form_urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_page_has_no_widget() {
    let site = start_site();
    let client = local_client();
    for kind in [Widget::Altcha, Widget::Cap, Widget::Auto] {
        let err = solve(&client, kind, &format!("{}/plain", site.base()), &SolveOptions::default())
            .await
            .expect_err("no widget");
        assert!(matches!(err, PowError::NoWidget(_)), "{err}");
        assert!(err.needs_browser());
    }
    // The ALTCHA page has no Cap widget either.
    let err = solve(&client, Widget::Cap, &format!("{}/altcha", site.base()), &SolveOptions::default())
        .await
        .expect_err("no cap");
    assert!(matches!(err, PowError::NoWidget(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_policy_refuses_loopback() {
    let site = start_site();
    let strict = GuardedClient::new(NetPolicy::strict(), Duration::from_secs(5), "captcha-pow-test").expect("client");
    let err = solve(&strict, Widget::Altcha, &format!("{}/altcha", site.base()), &SolveOptions::default())
        .await
        .expect_err("refused");
    assert!(matches!(err, PowError::Refused(_)), "{err}");
    assert!(!err.needs_browser());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_time_limit_stop_the_proof() {
    let site = start_site();
    let client = local_client();
    let page = format!("{}/altcha-v2", site.base());
    let opts = SolveOptions { cancel: Some(Arc::new(AtomicBool::new(true))), ..SolveOptions::default() };
    let err = solve(&client, Widget::Altcha, &page, &opts).await.expect_err("cancelled");
    assert!(matches!(err, PowError::Cancelled), "{err}");
    let opts = SolveOptions { time_limit: Duration::ZERO, ..SolveOptions::default() };
    let err = solve(&client, Widget::Altcha, &page, &opts).await.expect_err("timed out");
    assert!(matches!(err, PowError::TimedOut(_)), "{err}");
    let opts = SolveOptions { max_attempts: 10, ..SolveOptions::default() };
    let err = solve(&client, Widget::Cap, &format!("{}/cap", site.base()), &opts).await.expect_err("bounded");
    assert!(matches!(err, PowError::Exhausted(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_payload_is_refused_by_the_site() {
    // Guards the verify endpoint itself: a wrong derived key fails. (With a
    // key signature, altcha-lib checks the key, not the counter.)
    use base64::Engine as _;
    let site = start_site();
    let client = local_client();
    let sol = solve(&client, Widget::Altcha, &format!("{}/altcha-v2", site.base()), &SolveOptions::default())
        .await
        .expect("solve");
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut v: Value = serde_json::from_slice(&b64.decode(&sol.token).expect("b64")).expect("json");
    let key = v["solution"]["derivedKey"].as_str().expect("key").to_string();
    let flipped = if key.ends_with('0') { "1" } else { "0" };
    v["solution"]["derivedKey"] = json!(format!("{}{flipped}", &key[..key.len() - 1]));
    let resp =
        post_json(&client, &format!("{}/altcha/verify", site.base()), json!({ "payload": b64.encode(v.to_string()) }))
            .await;
    assert_eq!(resp["ok"], false, "{resp}");
}
