#![allow(dead_code)]
//! Shared test helpers: a pool that can only reach 127.0.0.1, and a tiny local site.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::response::Html;
use axum::routing::get;
use axum::Router;
use captcha_browser::{BrowserError, BrowserPool, PoolConfig};
use captcha_netguard::NetPolicy;

/// Browser tests run one at a time (2 shared cores).
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: OnceLock<tokio::sync::Mutex<()>> = OnceLock::new();
    LOCK.get_or_init(|| tokio::sync::Mutex::new(())).lock().await
}

pub fn config(policy: NetPolicy, deadline: Duration) -> PoolConfig {
    PoolConfig {
        // CAPTCHA_CHROMIUM points the tests at another Chromium (or a missing one).
        chromium: std::env::var_os("CAPTCHA_CHROMIUM")
            .map_or_else(|| captcha_browser::DEFAULT_CHROMIUM.into(), Into::into),
        max_browsers: 1,
        pages_per_browser: 4,
        task_deadline: deadline,
        host_resolver_rules: Some("MAP * ~NOTFOUND , EXCLUDE 127.0.0.1".into()),
        proxy_server: Some("http://127.0.0.1:9".into()),
        policy,
        ..PoolConfig::default()
    }
}

pub fn loopback() -> NetPolicy {
    NetPolicy::parse_list("127.0.0.0/8").expect("policy")
}

/// A pool; a missing Chromium fails the test with the install hint.
pub fn pool(config: PoolConfig) -> BrowserPool {
    match BrowserPool::new(config) {
        Ok(p) => p,
        Err(e @ BrowserError::ChromiumMissing(_)) => panic!("{e}"),
        Err(e) => panic!("{e} (is Chromium installed? run shared/browser/install-chromium.sh)"),
    }
}

const CLICK: &str = r#"<!doctype html><html><body>
<button id="b" style="position:absolute;left:100px;top:100px;width:120px;height:60px">Click</button>
<div id="out"></div>
<script>
document.getElementById('b').addEventListener('click', (e) => {
  if (!e.isTrusted) return;
  setTimeout(() => { document.getElementById('out').textContent = 'tok-' + Math.random().toString(36).slice(2); }, 100);
});
</script></body></html>"#;

const NEVER: &str = r#"<!doctype html><html><body><div id="out"></div></body></html>"#;

/// A stand-in for ALTCHA: a checkbox in a shadow root; a trusted click issues `verified`.
const FAKE_ALTCHA: &str = r#"<!doctype html><html><body>
<form><altcha-widget></altcha-widget></form>
<script>
customElements.define('altcha-widget', class extends HTMLElement {
  connectedCallback() {
    const r = this.attachShadow({ mode: 'open' });
    r.innerHTML = '<label><input type="checkbox" style="width:22px;height:22px"> I am human</label>';
    r.querySelector('input').addEventListener('click', (e) => {
      if (!e.isTrusted) return;
      setTimeout(() => this.dispatchEvent(new CustomEvent('verified', { detail: { payload: 'fake-altcha-' + Date.now() } })), 300);
    });
  }
});
</script></body></html>"#;

/// A stand-in for Cap: a trigger div in a shadow root; a trusted click issues `solve`.
const FAKE_CAP: &str = r#"<!doctype html><html><body>
<cap-widget></cap-widget>
<script>
customElements.define('cap-widget', class extends HTMLElement {
  connectedCallback() {
    const r = this.attachShadow({ mode: 'open' });
    r.innerHTML = '<div class="captcha-trigger" role="button" style="width:200px;height:40px">verify</div>';
    r.querySelector('.captcha-trigger').addEventListener('click', (e) => {
      if (!e.isTrusted) return;
      setTimeout(() => this.dispatchEvent(new CustomEvent('solve', { bubbles: true, composed: true, detail: { token: 'fake-cap-' + Date.now() } })), 300);
    });
  }
});
</script></body></html>"#;

/// A stand-in for Turnstile: a same-origin iframe whose trusted click fills the response field.
const FAKE_TURNSTILE: &str = r#"<!doctype html><html><body>
<form><div class="cf-turnstile" data-sitekey="local-key">
<iframe style="width:300px;height:65px;border:0" srcdoc="<body style='margin:0'><div id=c style='width:300px;height:65px'></div><script>document.getElementById('c').addEventListener('click',function(e){if(!e.isTrusted)return;parent.document.querySelector('[name=cf-turnstile-response]').value='turnstile-local-token';});</script></body>"></iframe>
<input type="hidden" name="cf-turnstile-response" value="">
</div></form></body></html>"#;

const FAKE_TURNSTILE_NEVER: &str = r#"<!doctype html><html><body>
<form><div class="cf-turnstile" data-sitekey="local-key">
<iframe style="width:300px;height:65px;border:0" srcdoc="<body>challenge</body>"></iframe>
<input type="hidden" name="cf-turnstile-response" value="">
</div></form></body></html>"#;

pub struct Site {
    pub addr: SocketAddr,
    /// The paths requested from the server on 127.0.0.2, in order.
    pub other_paths: Arc<Mutex<Vec<String>>>,
    pub other_addr: SocketAddr,
}

impl Site {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
    /// Every request that reached 127.0.0.2, whatever asked for it.
    pub fn other_hits(&self) -> usize {
        self.other_paths.lock().map(|p| p.len()).unwrap_or(usize::MAX)
    }
    /// The paths the pages asked 127.0.0.2 for, without the favicon that
    /// Chromium fetches by itself, at a moment of its choosing, once a page
    /// from there has loaded.
    pub fn other_page_paths(&self) -> Vec<String> {
        let paths = self.other_paths.lock().map(|p| p.clone()).unwrap_or_default();
        paths.into_iter().filter(|p| p != "/favicon.ico").collect()
    }
}

/// Serves the test pages on 127.0.0.1, and a second server on 127.0.0.2
/// that records the paths requested from it (for the request guard test).
pub async fn site() -> Site {
    let other_paths = Arc::new(Mutex::new(Vec::new()));
    let paths = other_paths.clone();
    let other = Router::new().fallback(move |uri: axum::http::Uri| {
        let paths = paths.clone();
        async move {
            if let Ok(mut p) = paths.lock() {
                p.push(uri.path().to_string());
            }
            "hit"
        }
    });
    let other_listener = tokio::net::TcpListener::bind("127.0.0.2:0").await.expect("bind 127.0.0.2");
    let other_addr = other_listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(other_listener, other).await;
    });

    let guard_page = format!(
        r#"<!doctype html><html><body><div id="out"></div><script>
fetch('http://{other_addr}/x', {{ mode: 'no-cors' }}).then(() => {{ document.getElementById('out').textContent = 'reached'; }},
  () => {{ document.getElementById('out').textContent = 'blocked'; }});
</script></body></html>"#
    );
    let altcha_code = FAKE_ALTCHA.replace(
        "this.dispatchEvent(new CustomEvent('verified', { detail: { payload: 'fake-altcha-' + Date.now() } }))",
        "this.dispatchEvent(new CustomEvent('codechallenge', { detail: { codeChallenge: { image: 'data:,' } } }))",
    );
    let cap_error = FAKE_CAP.replace(
        "new CustomEvent('solve', { bubbles: true, composed: true, detail: { token: 'fake-cap-' + Date.now() } })",
        "new CustomEvent('error', { bubbles: true, composed: true, detail: { isCap: true, code: 500, message: 'instrumentation check failed' } })",
    );
    assert!(altcha_code != FAKE_ALTCHA && cap_error != FAKE_CAP);
    let app = Router::new()
        .route("/fake-altcha-code", get(move || async move { Html(altcha_code) }))
        .route("/fake-cap-error", get(move || async move { Html(cap_error) }))
        .route("/click", get(|| async { Html(CLICK) }))
        .route("/never", get(|| async { Html(NEVER) }))
        .route("/fake-altcha", get(|| async { Html(FAKE_ALTCHA) }))
        .route("/fake-cap", get(|| async { Html(FAKE_CAP) }))
        .route("/fake-turnstile", get(|| async { Html(FAKE_TURNSTILE) }))
        .route("/fake-turnstile-never", get(|| async { Html(FAKE_TURNSTILE_NEVER) }))
        .route("/guard", get(move || async move { Html(guard_page) }))
        .route(
            "/redirect",
            get(move || async move { axum::response::Redirect::temporary(&format!("http://{other_addr}/redirected")) }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Site { addr, other_paths, other_addr }
}

/// The PID and all its descendants (from /proc).
pub fn process_tree(root: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
            let Some(i) = stat.rfind(')') else { continue };
            let mut f = stat[i + 1..].split_whitespace();
            let _state = f.next();
            if let Some(ppid) = f.next().and_then(|p| p.parse::<u32>().ok()) {
                parents.push((pid, ppid));
            }
        }
    }
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let p = tree[i];
        for (c, pp) in &parents {
            if *pp == p && !tree.contains(c) {
                tree.push(*c);
            }
        }
        i += 1;
    }
    tree
}

pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => match stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().next()) {
            Some(s) => s != "Z" && s != "X",
            None => true,
        },
        Err(_) => false,
    }
}
