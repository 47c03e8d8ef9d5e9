//! # captcha-api
//!
//! The classic 2Captcha/CaptchaAI protocol (`/in.php` to submit, `/res.php`
//! for results) as an axum [`Router`] over the core's [`CaptchaService`], so
//! existing clients work unchanged. The router holds no server concerns (no
//! listener, no TLS): `captchad` serves it with `axum::serve`, the Lambda
//! functions with `lambda_http::run`.
//!
//! ```ignore
//! let app = captcha_api::router(Arc::new(core), ApiConfig::default());
//! axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
//! ```
//!
//! ## Layout
//! - `params` — method + headers + query + body bytes → one flat parameter map;
//! - `base64img` — lenient base64 for `method=base64`;
//! - `submit` — `in.php` parameters → [`captcha_core::SubmitRequest`];
//! - `result` — `res.php` actions;
//! - `render` — plain-text / JSON answers, always HTTP 200.
//!
//! ## Requests
//! Both endpoints take **any HTTP method** (clients use GET and POST; `OPTIONS`
//! answers a CORS preflight) and **every body format**, told apart by content
//! type and, failing that, by sniffing:
//!
//! | body | how it is read |
//! |---|---|
//! | none | query string only |
//! | `application/x-www-form-urlencoded` | form fields |
//! | `multipart/form-data` | the part named `file` is the image (`method=post`); other parts are fields |
//! | `application/json`, or any body starting with `{` (npm `2captcha` sends `text/plain`) | a JSON object; `true`/`false` → `1`/`0`, `null` → absent |
//! | anything else / no content type | form fields |
//!
//! Query parameters are merged with the body; **the body wins** on a
//! conflict, and within one source the last occurrence wins. Blank values
//! count as absent. A body over [`ApiConfig::max_body_bytes`] (default 1 MiB,
//! room for a 600 kB image in base64) is answered `ERROR_TOO_BIG_CAPTCHA_FILESIZE`
//! on `in.php` and `ERROR_BAD_PARAMETERS` on `res.php`, never HTTP 413.
//!
//! ## Common parameters
//! | param | meaning |
//! |---|---|
//! | `key` | API key; missing → `ERROR_WRONG_USER_KEY` (format and existence are checked by the core) |
//! | `json` | `1`/`true`: answer `{"status":1,"request":"…"}` / `{"status":0,"request":"ERROR_…","error_text":"…"}` |
//! | `header_acao` | `1`/`true`: add `Access-Control-Allow-Origin: *` |
//! | `soft_id`, `pingback` | passed to the core (`in.php`) |
//!
//! ## `in.php`
//! | method | parameters | answer |
//! |---|---|---|
//! | `post` | multipart part `file` | `OK\|<id>` / `{"status":1,"request":"<id>"}` (id as a string) |
//! | `base64` | `body`: base64; whitespace, line breaks, a `data:image/…;base64,` prefix, the URL-safe alphabet, missing padding, `+` turned into a space and `%2B`-style escapes are tolerated | as above |
//! | none | inferred: `post` if there is a `file` part, `base64` if there is a `body` | as above |
//! | `userrecaptcha` | `googlekey` (or `sitekey`; else `ERROR_GOOGLEKEY`), `pageurl` (else `ERROR_PAGEURL`), `invisible`, `enterprise`, `data-s`, `version=v3` + `action` + `min_score`, `userAgent` | `OK\|<id>`; the answer is the token |
//! | `turnstile` | `sitekey`, `pageurl`, `action`, `data`, `pagedata`, `userAgent`/`useragent` | as above |
//! | `hcaptcha` | `sitekey`, `pageurl`, `invisible`, `data` | as above |
//! | `altcha`, `cap` | `pageurl`, `engine=browser\|native` (absent: the router picks) | as above; the answer is the widget's payload / token |
//! | anything else | | `ERROR_BAD_PARAMETERS` (the classic list has no `ERROR_NO_SUCH_METHOD`) |
//!
//! Image options: `phrase` 0/1, `regsense` 0/1, `numeric` 0–4, `calc` 0/1,
//! `min_len`/`max_len` 0–20 (min ≤ max when both set), `language` 0–2, `lang`
//! (letters, digits, `-`, `_`, ≤ 16), `textinstructions` (cut to 140 chars),
//! `imginstructions` (ignored). Switches also take `true`/`false`. `recaptcha=1`
//! (grid) or `coordinatescaptcha=1` → `ERROR_TASK_NOT_SUPPORTED`.
//!
//! Checks in order, first failure answered: `key` present
//! (`ERROR_WRONG_USER_KEY`); method known (`ERROR_TASK_NOT_SUPPORTED`,
//! `ERROR_BAD_PARAMETERS`); options valid (`ERROR_BAD_PARAMETERS`); image
//! present (`method=post` without a `file` part, or an unreadable multipart
//! body → `ERROR_UPLOAD`; `method=base64` without `body` or with an empty one,
//! or an empty file → `ERROR_ZERO_CAPTCHA_FILESIZE`); base64 decodable
//! (`ERROR_UPLOAD`); a JSON content type with a non-JSON body → `ERROR_UPLOAD`.
//! Then the core answers: `ERROR_KEY_DOES_NOT_EXIST`, `ERROR_ZERO_BALANCE`,
//! `ERROR_NO_SLOT_AVAILABLE`, `ERROR_ZERO_CAPTCHA_FILESIZE` (< 100 bytes),
//! `ERROR_TOO_BIG_CAPTCHA_FILESIZE`, `ERROR_IMAGE_TYPE_NOT_SUPPORTED`,
//! `ERROR_IP_NOT_ALLOWED`, `IP_BANNED`, `MAX_USER_TURN`, … — any
//! [`ErrorCode`] is rendered by its `code()`.
//!
//! ## `res.php`
//! | action | parameters | answer |
//! |---|---|---|
//! | `get` | `id` | `CAPCHA_NOT_READY`, `OK\|<answer>`, `ERROR_CAPTCHA_UNSOLVABLE`, or an error |
//! | `get` | `ids=1,2,3` (≤ [`ApiConfig::max_ids`], else `ERROR_BAD_PARAMETERS`) | per id, in order, joined by `\|`: the answer, `CAPCHA_NOT_READY` or an error code; JSON `{"status":1,"request":"a\|CAPCHA_NOT_READY"}`. A malformed id or a key-level error answers the whole request |
//! | `get2` | `id` | `OK\|<answer>\|<price>` / `{"status":1,"request":"<answer>","price":"0.00085"}` |
//! | `getbalance` | | bare number `12.3456` / `{"status":1,"request":"12.3456"}` |
//! | `reportbad`, `reportgood` | `id` | `OK_REPORT_RECORDED` (core: `ERROR_REPORT_NOT_RECORDED`, `ERROR_DUPLICATE_REPORT`) |
//! | `add_pingback` | `addr` (http(s), not a refused address, else `ERROR_IP_ADDRES`) | `OK_PINGBACK`; once any are registered, a `pingback` outside them is `ERROR_IP_ADDRES` |
//! | `get_pingback` | | `OK\|url\|url` (`OK\|` when none) |
//! | `del_pingback` | `addr` (a URL or `all`) | `OK_PINGBACK` |
//! | missing / other | | `ERROR_EMPTY_ACTION` |
//!
//! Checks in order: action (`ERROR_EMPTY_ACTION`), `key` present
//! (`ERROR_WRONG_USER_KEY`), id digits only (`ERROR_WRONG_ID_FORMAT`, also when
//! missing), id able to exist — positive, below 2^53 (`ERROR_WRONG_CAPTCHA_ID`);
//! then the core (`ERROR_WRONG_CAPTCHA_ID`, `ERROR_KEY_DOES_NOT_EXIST`, …). In
//! JSON, `CAPCHA_NOT_READY` is `{"status":0,"request":"CAPCHA_NOT_READY"}`.
//!
//! ## Failures
//! Every answer is HTTP 200 with `text/plain; charset=utf-8` or
//! `application/json` and `Cache-Control: no-store`. An internal failure of
//! the core is `ERROR_INTERNAL` on `in.php` and `CAPCHA_NOT_READY` when polling
//! (the client just polls again); a panic in a handler is caught and answered
//! `ERROR_INTERNAL`.
//!
//! ## Client IP
//! [`SubmitRequest::client_ip`](captcha_core::SubmitRequest) comes from, in
//! order: a [`ClientIp`] request extension (for hosts like Lambda to insert),
//! the first `X-Forwarded-For` address when [`ApiConfig::trust_forwarded_for`],
//! then axum's `ConnectInfo<SocketAddr>`; none of them is required.

mod base64img;
pub mod json;
mod params;
mod render;
mod result;
mod submit;

use std::future::{poll_fn, Future};
use std::net::{IpAddr, SocketAddr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::task::Poll;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, request::Parts, HeaderValue, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use captcha_core::{CaptchaService, ErrorCode};
pub use captcha_netguard::NetPolicy;

use params::{BodyError, Params};
use render::{Flags, Reply};

/// Limits and trust settings of the protocol layer.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ApiConfig {
    /// Largest request body read, in bytes; larger ones are answered with an
    /// error code (not HTTP 413). 1 MiB fits a 600 kB image in base64, even
    /// urlencoded.
    pub max_body_bytes: usize,
    /// Most ids one `res.php?action=get&ids=…` may ask for (each is a lookup).
    pub max_ids: usize,
    /// Take the client IP from the first `X-Forwarded-For` entry. Only safe
    /// behind a proxy that sets it; off by default.
    pub trust_forwarded_for: bool,
    /// Which addresses `pageurl`, `pingback` and `callbackUrl` may name:
    /// public only unless ranges are allowed (the same policy the browser and
    /// the pingback stage enforce when they connect).
    pub net_policy: NetPolicy,
    /// The user agent of the solving browser, returned with Turnstile
    /// solutions in the JSON API (`userAgent`) when known.
    pub browser_user_agent: Option<String>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            max_body_bytes: 1 << 20,
            max_ids: 100,
            trust_forwarded_for: false,
            net_policy: NetPolicy::strict(),
            browser_user_agent: None,
        }
    }
}

impl ApiConfig {
    /// Sets [`ApiConfig::max_body_bytes`].
    pub fn with_max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// Sets [`ApiConfig::max_ids`].
    pub fn with_max_ids(mut self, ids: usize) -> Self {
        self.max_ids = ids;
        self
    }

    /// Sets [`ApiConfig::trust_forwarded_for`].
    pub fn with_trust_forwarded_for(mut self, trust: bool) -> Self {
        self.trust_forwarded_for = trust;
        self
    }

    /// Sets [`ApiConfig::net_policy`].
    pub fn with_net_policy(mut self, policy: NetPolicy) -> Self {
        self.net_policy = policy;
        self
    }

    /// Sets [`ApiConfig::browser_user_agent`].
    pub fn with_browser_user_agent(mut self, ua: Option<String>) -> Self {
        self.browser_user_agent = ua;
        self
    }
}

/// The client's address, for hosts without `ConnectInfo` (e.g. a Lambda
/// wrapper reading the API Gateway request context) to insert as a request
/// extension. Takes precedence over everything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

struct AppState {
    service: Arc<dyn CaptchaService>,
    cfg: ApiConfig,
}

/// Every path [`router`] serves (what a deployment must route to it).
pub fn paths() -> Vec<&'static str> {
    let mut out = vec!["/in.php", "/res.php"];
    out.extend(json::Call::PATHS.iter().map(|(p, _)| *p));
    out
}

/// Both APIs over `service`: the classic `/in.php` and `/res.php`, and the
/// JSON task API (`/createTask`, `/getTaskResult`, `/getBalance`, reports).
pub fn router(service: Arc<dyn CaptchaService>, cfg: ApiConfig) -> Router {
    let state = Arc::new(AppState { service, cfg });
    let mut r = Router::new().route("/in.php", any(in_php)).route("/res.php", any(res_php));
    for (path, call) in json::Call::PATHS {
        let call = *call;
        r = r.route(path, any(move |state: State<Arc<AppState>>, req: Request<Body>| json_call(state, call, req)));
    }
    r.with_state(state)
}

/// One JSON API call: the body must be a JSON object (any content type);
/// the answer is always JSON with HTTP 200, CORS allowed.
async fn json_call(State(app): State<Arc<AppState>>, call: json::Call, req: Request<Body>) -> Response {
    let on_panic = Reply::Json(json::error_body(ErrorCode::Internal));
    endpoint(req, on_panic, move |parts, body| async move {
        let flags = Flags { json: true, acao: true };
        let obj = match params::read_body(&parts, body, app.cfg.max_body_bytes).await {
            Ok(bytes) => match serde_json::from_slice::<serde_json::Value>(&bytes) {
                Ok(serde_json::Value::Object(m)) => Some(m),
                _ => None,
            },
            Err(BodyError::TooLarge) => {
                return (Reply::Json(json::error_body(ErrorCode::TooBigCaptchaFilesize)), flags);
            }
            Err(BodyError::Malformed) => None,
        };
        let ip = client_ip(&parts, &app.cfg);
        let v = json::handle(
            app.service.as_ref(),
            call,
            obj,
            ip,
            &app.cfg.net_policy,
            app.cfg.browser_user_agent.as_deref(),
        )
        .await;
        (Reply::Json(v), flags)
    })
    .await
}

/// The query merged with the body (the body wins), and whether the body
/// could be read: callers answer a body error with their own code.
async fn read_params(parts: &Parts, body: Body, max_bytes: usize) -> (Params, Result<(), BodyError>) {
    let mut params = Params::from_query(parts.uri.query());
    let read = match params::read_body(parts, body, max_bytes).await {
        Ok(bytes) => params.merge_body(parts, bytes).await,
        Err(e) => Err(e),
    };
    (params, read)
}

async fn in_php(State(app): State<Arc<AppState>>, req: Request<Body>) -> Response {
    endpoint(req, Reply::Error(ErrorCode::Internal), move |parts, body| async move {
        let (params, body_result) = read_params(&parts, body, app.cfg.max_body_bytes).await;
        let flags = flags(&params);
        if let Err(e) = body_result {
            let code = match e {
                BodyError::TooLarge => ErrorCode::TooBigCaptchaFilesize,
                BodyError::Malformed => ErrorCode::Upload,
            };
            return (Reply::Error(code), flags);
        }
        let ip = client_ip(&parts, &app.cfg);
        let reply = match submit::parse_submit(params, ip, &app.cfg.net_policy) {
            Err(code) => Reply::Error(code),
            Ok(req) => match app.service.submit(req).await {
                Ok(id) => Reply::Ok(id.to_string()),
                Err(code) => {
                    if code == ErrorCode::Internal {
                        tracing::error!("submit failed internally");
                    }
                    Reply::Error(code)
                }
            },
        };
        (reply, flags)
    })
    .await
}

async fn res_php(State(app): State<Arc<AppState>>, req: Request<Body>) -> Response {
    endpoint(req, Reply::Error(ErrorCode::Internal), move |parts, body| async move {
        let (params, body_result) = read_params(&parts, body, app.cfg.max_body_bytes).await;
        let flags = flags(&params);
        if body_result.is_err() {
            return (Reply::Error(ErrorCode::BadParameters), flags);
        }
        (result::handle(app.service.as_ref(), &params, app.cfg.max_ids, &app.cfg.net_policy).await, flags)
    })
    .await
}

fn flags(p: &Params) -> Flags {
    Flags { json: p.wants_json(), acao: p.wants_acao() }
}

/// Shared by every endpoint: answers CORS preflights, runs `handler` with a
/// panic guard, and renders its reply. A panic becomes `on_panic`
/// (`ERROR_INTERNAL`), rendered with the flags of the query string (the body
/// is gone by then).
async fn endpoint<F, Fut>(req: Request<Body>, on_panic: Reply, handler: F) -> Response
where
    F: FnOnce(Parts, Body) -> Fut,
    Fut: Future<Output = (Reply, Flags)>,
{
    let (parts, body) = req.into_parts();
    if parts.method == Method::OPTIONS {
        return preflight(&parts);
    }
    let fallback_flags = flags(&Params::from_query(parts.uri.query()));
    let mut fut = Box::pin(handler(parts, body));
    let guarded = poll_fn(move |cx| match catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
        Ok(Poll::Ready(out)) => Poll::Ready(Some(out)),
        Ok(Poll::Pending) => Poll::Pending,
        Err(_) => Poll::Ready(None),
    })
    .await;
    match guarded {
        Some((reply, flags)) => reply.into_response(flags),
        None => {
            tracing::error!("handler panicked; answering ERROR_INTERNAL");
            on_panic.into_response(fallback_flags)
        }
    }
}

/// `OPTIONS`: lets browsers send JSON bodies cross-origin (the real answer
/// still carries `Access-Control-Allow-Origin` only with `header_acao=1`).
fn preflight(parts: &Parts) -> Response {
    let mut resp = StatusCode::OK.into_response();
    let h = resp.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, OPTIONS"));
    let allow_headers = parts
        .headers
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("Content-Type"));
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, allow_headers);
    h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
    resp
}

fn client_ip(parts: &Parts, cfg: &ApiConfig) -> Option<IpAddr> {
    if let Some(ClientIp(ip)) = parts.extensions.get::<ClientIp>() {
        return Some(ip.to_canonical());
    }
    if cfg.trust_forwarded_for {
        let forwarded = parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse::<IpAddr>().ok());
        if let Some(ip) = forwarded {
            return Some(ip.to_canonical());
        }
    }
    parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| addr.ip().to_canonical())
}

/// Router-level tests of what only the HTTP layer does (preflight, panic guard,
/// body limit, client IP, internal-failure mapping), with fault-injecting
/// doubles of the service. The protocol against the real core lives in
/// `tests/protocol.rs`.
#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use captcha_core::{Report, SubmitRequest, TaskId, TaskResult};
    use std::sync::Mutex;
    use tower::ServiceExt as _;

    /// Records submits; answers polls with `Internal`; panics on `balance`.
    #[derive(Default)]
    struct Faulty {
        submits: Mutex<Vec<SubmitRequest>>,
    }

    #[async_trait]
    impl CaptchaService for Faulty {
        async fn submit(&self, req: SubmitRequest) -> Result<TaskId, ErrorCode> {
            self.submits.lock().map_err(|_| ErrorCode::Internal)?.push(req);
            Ok(77)
        }
        async fn result(&self, _key: &str, _id: TaskId) -> Result<TaskResult, ErrorCode> {
            Err(ErrorCode::Internal)
        }
        async fn balance(&self, _key: &str) -> Result<u64, ErrorCode> {
            panic!("injected panic")
        }
        async fn report(&self, _key: &str, _id: TaskId, _r: Report) -> Result<(), ErrorCode> {
            Err(ErrorCode::Internal)
        }
        async fn pingbacks(&self, _key: &str, _op: captcha_core::PingbackOp) -> Result<Vec<String>, ErrorCode> {
            Err(ErrorCode::Internal)
        }
    }

    const KEY: &str = "0123456789abcdef0123456789abcdef";
    const B64: &str = "aGVsbG8gd29ybGQ=";

    async fn call(app: Router, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, String) {
        let resp = app.oneshot(req).await.expect("infallible");
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("body");
        (status, headers, String::from_utf8_lossy(&body).into_owned())
    }

    fn get(uri: &str) -> Request<Body> {
        Request::get(uri).body(Body::empty()).expect("request")
    }

    #[tokio::test]
    async fn panic_is_caught_and_rendered_with_query_flags() {
        let app = router(Arc::new(Faulty::default()), ApiConfig::default());
        let (status, headers, body) =
            call(app.clone(), get(&format!("/res.php?key={KEY}&action=getbalance&json=1&header_acao=1"))).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(v["status"], 0);
        assert_eq!(v["request"], "ERROR_INTERNAL");
        let (status, _, body) = call(app, get(&format!("/res.php?key={KEY}&action=getbalance"))).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ERROR_INTERNAL"));
    }

    #[tokio::test]
    async fn internal_failure_while_polling_is_not_ready() {
        let app = router(Arc::new(Faulty::default()), ApiConfig::default());
        let (_, _, body) = call(app.clone(), get(&format!("/res.php?key={KEY}&action=get&id=5"))).await;
        assert_eq!(body, "CAPCHA_NOT_READY");
        let (_, _, body) = call(app.clone(), get(&format!("/res.php?key={KEY}&action=get2&id=5&json=1"))).await;
        assert_eq!(body, r#"{"status":0,"request":"CAPCHA_NOT_READY"}"#);
        let (_, _, body) = call(app.clone(), get(&format!("/res.php?key={KEY}&action=get&ids=5,6"))).await;
        assert_eq!(body, "CAPCHA_NOT_READY|CAPCHA_NOT_READY");
        // Reports are not polls: the failure is reported as such.
        let (_, _, body) = call(app, get(&format!("/res.php?key={KEY}&action=reportbad&id=5"))).await;
        assert_eq!(body, "ERROR_INTERNAL");
    }

    #[tokio::test]
    async fn preflight_answers_cors() {
        let app = router(Arc::new(Faulty::default()), ApiConfig::default());
        let req = Request::options("/in.php")
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "content-type")
            .body(Body::empty())
            .expect("request");
        let (status, headers, body) = call(app, req).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_HEADERS], "content-type");
        assert!(body.is_empty());
    }

    #[tokio::test]
    async fn body_over_limit_is_an_error_code_not_413() {
        let cfg = ApiConfig::default().with_max_body_bytes(64);
        let app = router(Arc::new(Faulty::default()), cfg);
        let big = format!("key={KEY}&method=base64&body={}", "A".repeat(100));
        let post = |uri: &str| {
            Request::post(uri)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(big.clone()))
                .expect("request")
        };
        let (status, _, body) = call(app.clone(), post("/in.php?json=1")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains(r#""request":"ERROR_TOO_BIG_CAPTCHA_FILESIZE""#), "{body}");
        let (status, _, body) = call(app, post("/res.php")).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ERROR_BAD_PARAMETERS"));
    }

    #[tokio::test]
    async fn client_ip_sources_in_order() {
        let svc = Arc::new(Faulty::default());
        let cfg = ApiConfig::default().with_trust_forwarded_for(true);
        let app = router(svc.clone(), cfg);
        let uri = format!("/in.php?key={KEY}&method=base64&body={B64}");
        let conn: SocketAddr = "[::ffff:10.1.2.3]:5555".parse().expect("addr");

        // Nothing known (Lambda without a wrapper): no IP, and no failure.
        assert_eq!(call(app.clone(), get(&uri)).await.2, "OK|77");
        let mut req = get(&uri);
        req.extensions_mut().insert(ConnectInfo(conn));
        call(app.clone(), req).await;
        let mut req = get(&uri);
        req.extensions_mut().insert(ConnectInfo(conn));
        req.headers_mut().insert("x-forwarded-for", HeaderValue::from_static("192.0.2.9, 10.0.0.1"));
        call(app.clone(), req).await;
        let mut req = get(&uri);
        req.extensions_mut().insert(ConnectInfo(conn));
        req.headers_mut().insert("x-forwarded-for", HeaderValue::from_static("192.0.2.9"));
        req.extensions_mut().insert(ClientIp("198.51.100.4".parse().expect("ip")));
        call(app.clone(), req).await;

        let ips: Vec<Option<IpAddr>> = svc.submits.lock().expect("lock").iter().map(|r| r.client_ip).collect();
        let ip = |s: &str| Some(s.parse::<IpAddr>().expect("ip"));
        assert_eq!(ips, vec![None, ip("10.1.2.3"), ip("192.0.2.9"), ip("198.51.100.4")]);

        // Not trusted by default: the header is ignored.
        let app = router(svc.clone(), ApiConfig::default());
        let mut req = get(&uri);
        req.extensions_mut().insert(ConnectInfo(conn));
        req.headers_mut().insert("x-forwarded-for", HeaderValue::from_static("192.0.2.9"));
        call(app, req).await;
        let last = svc.submits.lock().expect("lock").last().and_then(|r| r.client_ip);
        assert_eq!(last, ip("10.1.2.3"));
    }

    #[tokio::test]
    async fn every_http_method_is_answered_200() {
        let app = router(Arc::new(Faulty::default()), ApiConfig::default());
        for m in [Method::GET, Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
            let req = Request::builder().method(m.clone()).uri("/res.php").body(Body::empty()).expect("request");
            let (status, headers, body) = call(app.clone(), req).await;
            assert_eq!((status, body.as_str()), (StatusCode::OK, "ERROR_EMPTY_ACTION"), "{m}");
            assert_eq!(headers[header::CONTENT_TYPE], "text/plain; charset=utf-8");
        }
    }
}
