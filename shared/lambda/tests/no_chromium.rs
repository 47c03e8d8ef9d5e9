//! `captcha-solve-browser` deployed without Chromium (no layer): the browser
//! queue's solver is the real native proof-of-work solver with no browser
//! behind it. Against the local widget site (`tests/web`, on 127.0.0.1):
//! ALTCHA and Cap still get tokens the site accepts; everything that needs a
//! browser ends unsolvable at once (never `Failed`, which would be retried
//! into the same queue); a forced `engine=native` keeps its own outcome.

use std::sync::Arc;
use std::time::Duration;

use captcha_core::{Engine, Method, SolveError, TokenOptions, TokenSolver};
use captcha_lambda::handlers::BrowserQueueSolver;
use captcha_netguard::{GuardedClient, NetPolicy};
use captcha_pow::{NativeSolver, SolveOptions};
use serde_json::{json, Value};
use widget_site::WidgetSite;

fn loopback_client() -> GuardedClient {
    GuardedClient::new(
        NetPolicy::parse_list("127.0.0.0/8").expect("policy"),
        Duration::from_secs(20),
        "no-chromium-test",
    )
    .expect("client")
}

/// As `captcha-solve-browser` builds it when `CAPTCHA_CHROMIUM_PATH` is unset.
fn solver_without_chromium() -> BrowserQueueSolver {
    BrowserQueueSolver {
        native: Some(Arc::new(NativeSolver::new(loopback_client(), SolveOptions::default()))),
        browser: None,
    }
}

fn on(page_url: String, engine: Option<Engine>) -> TokenOptions {
    TokenOptions { page_url, engine, ..TokenOptions::default() }
}

async fn site_accepts(site: &WidgetSite, path: &str, body: Value) -> bool {
    let url = format!("{}{path}", site.base());
    let resp = loopback_client().post(&url).expect("url").json(&body).send().await.expect("verify");
    let v: Value = resp.json().await.expect("json");
    v["ok"] == true
}

#[tokio::test]
async fn proof_of_work_widgets_are_still_solved_natively() {
    let site = WidgetSite::install_and_start().unwrap_or_else(|e| panic!("{e}"));
    let solver = solver_without_chromium();
    let altcha =
        solver.solve(Method::Altcha, &on(format!("{}/altcha-v1", site.base()), None)).await.expect("altcha token");
    assert!(site_accepts(&site, "/altcha/verify", json!({ "payload": altcha })).await, "ALTCHA token refused");
    let cap = solver.solve(Method::Cap, &on(format!("{}/cap", site.base()), None)).await.expect("cap token");
    assert!(site_accepts(&site, "/cap/verify", json!({ "token": cap })).await, "Cap token refused");
}

#[tokio::test]
async fn what_needs_a_browser_is_unsolvable_at_once() {
    let site = WidgetSite::install_and_start().unwrap_or_else(|e| panic!("{e}"));
    let solver = solver_without_chromium();
    let cases = [
        (Method::Altcha, "/altcha-v1", Some(Engine::Browser)), // a widget it could solve, but the client asked for a browser
        (Method::Cap, "/plain", None),                         // no widget in the HTML: only a browser could find one
        (Method::Turnstile, "/plain", None),                   // no native solver for this method
    ];
    for (method, path, engine) in cases {
        let r = solver.solve(method, &on(format!("{}{path}", site.base()), engine)).await;
        match r {
            Err(SolveError::Unsolvable(why)) => assert!(why.contains("needs a browser"), "{method} {path}: {why}"),
            other => panic!("{method} {path} {engine:?}: want unsolvable, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_forced_native_task_keeps_the_native_outcome() {
    let site = WidgetSite::install_and_start().unwrap_or_else(|e| panic!("{e}"));
    let r =
        solver_without_chromium().solve(Method::Cap, &on(format!("{}/plain", site.base()), Some(Engine::Native))).await;
    assert!(matches!(r, Err(SolveError::NeedsBrowser(_))), "{r:?}");
}
