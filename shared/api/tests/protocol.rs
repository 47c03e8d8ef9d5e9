//! The classic protocol end to end through the router, against the REAL core
//! (`captcha_core::Core` over the SQLite adapter `captcha-embedded` in a temp
//! dir) and, where a result has to be solved, the real OCR model
//! (`captcha-ocr`) as the solver, driven by the core's single-step worker
//! functions. Nothing is stubbed; the clock is the core's `ManualClock`
//! (shared by core and store) so report windows and result expiry are testable.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::Router;
use base64::Engine as _;
use captcha_api::{router, ApiConfig};
use captcha_core::ports::{ManualClock, Ports};
use captcha_core::{Config, Core, ImageOptions, ImageSolver, Pool, SolveError, TaskParams};
use captcha_embedded::{EmbeddedStore, Options};
use captcha_ocr::{Constraints, Ocr};
use serde_json::{json, Value};
use tower::ServiceExt as _;

// ------------------------------------------------------------------ harness

/// 10.00 in micro-units; the default price of an image task is 0.001.
const BALANCE: u64 = 10_000_000;

struct Env {
    core: Arc<Core>,
    app: Router,
    clock: Arc<ManualClock>,
    key: String,
    /// Holds the database file; removed on drop.
    _dir: tempfile::TempDir,
}

impl Env {
    async fn new() -> Env {
        Env::with(Config::default(), ApiConfig::default(), BALANCE).await
    }

    async fn with(config: Config, api: ApiConfig, balance: u64) -> Env {
        let clock = ManualClock::new(1_750_000_000_000);
        let dir = tempfile::tempdir().expect("tempdir");
        let options = Options { clock: clock.clone(), ..Options::default() };
        let store = Arc::new(EmbeddedStore::open_with(dir.path(), options).expect("open the SQLite store"));
        let core = Arc::new(Core::new(config, Ports::from_store(store, clock.clone())));
        let key = core.admin().create(balance).await.expect("create account").key;
        let app = router(core.clone(), api);
        Env { core, app, clock, key, _dir: dir }
    }

    /// Another account on the same core.
    async fn other_key(&self, balance: u64) -> String {
        self.core.admin().create(balance).await.expect("create account").key
    }

    /// Sends a request; every answer must be HTTP 200.
    async fn send(&self, req: Request<Body>) -> (HeaderMap, String) {
        let resp = self.app.clone().oneshot(req).await.expect("infallible");
        assert_eq!(resp.status(), StatusCode::OK, "every answer is HTTP 200");
        let headers = resp.headers().clone();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("body");
        (headers, String::from_utf8(body.to_vec()).expect("utf-8 answer"))
    }

    async fn get(&self, uri: &str) -> String {
        self.send(Request::get(uri).body(Body::empty()).expect("request")).await.1
    }

    async fn post(&self, uri: &str, content_type: Option<&str>, body: impl Into<Body>) -> String {
        let mut b = Request::post(uri);
        if let Some(ct) = content_type {
            b = b.header(header::CONTENT_TYPE, ct);
        }
        self.send(b.body(body.into()).expect("request")).await.1
    }

    async fn get_json(&self, uri: &str) -> Value {
        let (headers, body) = self.send(Request::get(uri).body(Body::empty()).expect("request")).await;
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
    }

    /// Submits `image` by query-string base64 and returns the id.
    async fn submit(&self, image: &[u8]) -> u64 {
        let answer = self
            .post(
                &format!("/in.php?key={}&method=base64", self.key),
                Some("application/x-www-form-urlencoded"),
                form(&[("body", &b64(image))]),
            )
            .await;
        task_id(&answer)
    }

    async fn res(&self, query: &str) -> String {
        self.get(&format!("/res.php?key={}&{query}", self.key)).await
    }

    /// Runs the worker stages until nothing is left to do, with the real OCR model.
    async fn drain(&self) {
        let solver = OcrSolver::load();
        for _ in 0..20 {
            let routed = self.core.route_once().await.expect("route");
            let solved = self.core.solve_once(Pool::Ocr, &solver, 8).await.expect("solve");
            if routed + solved == 0 {
                return;
            }
        }
        panic!("worker stages did not settle");
    }
}

/// The OCR model as the core's solver port (what `captchad` does too).
struct OcrSolver(&'static Ocr);

impl OcrSolver {
    fn load() -> OcrSolver {
        OcrSolver(Ocr::global().expect("the committed OCR model loads"))
    }
}

impl ImageSolver for OcrSolver {
    fn solve(&self, image: &[u8], o: &ImageOptions) -> Result<String, SolveError> {
        let c = Constraints {
            numeric: o.numeric,
            min_len: o.min_len,
            max_len: o.max_len,
            case_sensitive: o.case_sensitive,
            calc: o.calc,
            phrase: o.phrase,
        };
        match self.0.recognize(image, &c) {
            Ok(a) if !a.text.is_empty() => Ok(a.text),
            Ok(_) => Err(SolveError::Unsolvable("nothing read".into())),
            Err(e) if e.is_bad_image() => Err(SolveError::Unsolvable(e.to_string())),
            Err(e) => Err(SolveError::Failed(e.to_string())),
        }
    }
}

fn captcha_png() -> Vec<u8> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../ocr/validation/captcha-default/0001.png");
    std::fs::read(path).expect("validation image")
}

/// A PNG signature and garbage: accepted at submit (type sniffed by magic
/// bytes), but no decoder can read it, so the solver gives up on it.
fn broken_png() -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
    v.extend(std::iter::repeat_n(0x5a, 400));
    v
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn form(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

const BOUNDARY: &str = "----captchaBoundary7MA4YWxkTrZu0gW";

/// A multipart body: text fields, then an optional `file` part.
fn multipart(fields: &[(&str, &str)], file: Option<&[u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in fields {
        out.extend(format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n").bytes());
    }
    if let Some(f) = file {
        out.extend(
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"captcha.png\"\r\nContent-Type: image/png\r\n\r\n")
                .bytes(),
        );
        out.extend_from_slice(f);
        out.extend(b"\r\n");
    }
    out.extend(format!("--{BOUNDARY}--\r\n").bytes());
    out
}

fn multipart_ct() -> String {
    format!("multipart/form-data; boundary={BOUNDARY}")
}

/// `OK|<id>` → id (digits only, positive, below 2^53).
fn task_id(answer: &str) -> u64 {
    let id = answer.strip_prefix("OK|").unwrap_or_else(|| panic!("not OK|id: {answer}"));
    assert!(id.bytes().all(|b| b.is_ascii_digit()), "{answer}");
    let id: u64 = id.parse().expect("id");
    assert!(id > 0 && id < 1 << 53);
    id
}

// ------------------------------------------------------------------ in.php: body formats

#[tokio::test]
async fn submit_accepts_every_body_format() {
    let env = Env::new().await;
    let img = captcha_png();
    let key = env.key.clone();
    let enc = b64(&img);
    let q = |s: &str| form(&[("body", s)]);

    let mut answers = Vec::new();
    // 1. GET, query string only (base64 percent-encoded).
    answers.push(env.get(&format!("/in.php?key={key}&method=base64&{}", q(&enc))).await);
    // 2. POST with everything in the query and no body.
    answers.push(env.post(&format!("/in.php?key={key}&method=base64&{}", q(&enc)), None, Body::empty()).await);
    // 3. application/x-www-form-urlencoded (python client, method=base64).
    answers.push(
        env.post(
            "/in.php",
            Some("application/x-www-form-urlencoded"),
            form(&[("key", &key), ("method", "base64"), ("body", &enc), ("soft_id", "4580")]),
        )
        .await,
    );
    // 4. multipart/form-data with a `file` part (method=post) plus fields.
    answers.push(
        env.post(
            "/in.php",
            Some(&multipart_ct()),
            multipart(&[("key", &key), ("method", "post"), ("numeric", "0")], Some(&img)),
        )
        .await,
    );
    // 5. multipart with the other parameters in the query string.
    answers.push(
        env.post(&format!("/in.php?key={key}&method=post"), Some(&multipart_ct()), multipart(&[], Some(&img))).await,
    );
    // 6. application/json (@2captcha/captcha-solver).
    answers.push(
        env.post(
            "/in.php",
            Some("application/json"),
            json!({"key": key, "method": "base64", "body": enc, "regsense": 0}).to_string(),
        )
        .await,
    );
    // 7. JSON sent as text/plain with the rest in the query (npm `2captcha`).
    answers.push(
        env.post(
            &format!("/in.php?key={key}&method=base64&json=0"),
            Some("text/plain;charset=UTF-8"),
            json!({"body": enc}).to_string(),
        )
        .await,
    );
    // 8. JSON with an urlencoded content type (axios posting a string).
    answers.push(
        env.post(
            "/in.php",
            Some("application/x-www-form-urlencoded"),
            json!({"key": key, "method": "base64", "body": enc}).to_string(),
        )
        .await,
    );
    // 9. No content type at all: sniffed as urlencoded.
    answers.push(env.post("/in.php", None, form(&[("key", &key), ("method", "base64"), ("body", &enc)])).await);
    // 10. base64 as sloppy clients send it: data: prefix, wrapped lines, `+` unencoded in the query.
    let wrapped: String = enc.as_bytes().chunks(76).map(|c| format!("{}\n", String::from_utf8_lossy(c))).collect();
    answers.push(
        env.post(
            "/in.php",
            Some("application/x-www-form-urlencoded"),
            form(&[("key", &key), ("method", "base64"), ("body", &format!("data:image/png;base64,{wrapped}"))]),
        )
        .await,
    );
    answers.push(env.get(&format!("/in.php?key={key}&method=base64&body={}", enc.replace('=', "%3D"))).await);

    let mut ids = Vec::new();
    for (i, a) in answers.iter().enumerate() {
        let id = task_id(a);
        assert!(!ids.contains(&id), "format {} reused an id", i + 1);
        ids.push(id);
        // The task exists, belongs to this key, and carries the exact image.
        assert_eq!(env.res(&format!("action=get&id={id}")).await, "CAPCHA_NOT_READY", "format {}", i + 1);
        let image = env.core.ports().tasks.image(id).await.expect("store").expect("image stored");
        assert_eq!(image, img, "format {} image differs", i + 1);
    }
}

#[tokio::test]
async fn submit_json_mode_acao_and_content_types() {
    let env = Env::new().await;
    let enc = b64(&captcha_png());
    let (headers, body) = env
        .send(
            Request::post("/in.php")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(
                    json!({"key": env.key, "method": "base64", "body": enc, "json": 1, "header_acao": 1}).to_string(),
                ))
                .expect("request"),
        )
        .await;
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["status"], 1);
    let id = v["request"].as_str().expect("the id is a JSON string");
    assert!(id.parse::<u64>().is_ok_and(|n| n > 0));

    let (headers, body) = env
        .send(
            Request::post(format!("/in.php?key={}&method=base64", env.key))
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(form(&[("body", &enc)])))
                .expect("request"),
        )
        .await;
    assert_eq!(headers[header::CONTENT_TYPE], "text/plain; charset=utf-8");
    assert!(headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
    task_id(&body);
}

#[tokio::test]
async fn body_wins_over_query_and_options_reach_the_task() {
    let env = Env::new().await;
    let other = env.other_key(BALANCE).await;
    let enc = b64(&captcha_png());
    let answer = env
        .post(
            &format!("/in.php?key={other}&method=post&numeric=9"),
            Some("application/x-www-form-urlencoded"),
            form(&[
                ("key", &env.key),
                ("method", "base64"),
                ("body", &enc),
                ("numeric", "1"),
                ("phrase", "0"),
                ("regsense", "1"),
                ("min_len", "4"),
                ("max_len", "6"),
                ("language", "2"),
                ("lang", "en"),
                ("textinstructions", "type the digits"),
                ("imginstructions", "aWdub3JlZA=="),
                ("pingback", "https://example.test/cb"),
                ("soft_id", "4580"),
            ]),
        )
        .await;
    let id = task_id(&answer);
    // The body's key won: the task is this key's, not the query's.
    assert_eq!(env.res(&format!("action=get&id={id}")).await, "CAPCHA_NOT_READY");
    assert_eq!(env.get(&format!("/res.php?key={other}&action=get&id={id}")).await, "ERROR_WRONG_CAPTCHA_ID");

    let task = env.core.ports().tasks.get(id).await.expect("store").expect("task");
    assert_eq!(
        task.params,
        TaskParams::Image(ImageOptions {
            phrase: false,
            case_sensitive: true,
            numeric: 1,
            calc: false,
            min_len: 4,
            max_len: 6,
            language: 2,
            lang: Some("en".into()),
            instructions: Some("type the digits".into()),
        })
    );
    assert_eq!(task.pingback.as_deref(), Some("https://example.test/cb"));
    assert_eq!(task.soft_id.as_deref(), Some("4580"));
}

// ------------------------------------------------------------------ in.php: errors

#[tokio::test]
async fn submit_errors_reachable_from_the_protocol() {
    let env = Env::new().await;
    let key = env.key.clone();
    let img = captcha_png();
    let enc = b64(&img);
    let base = |extra: &str| format!("/in.php?key={key}&method=base64&{}{extra}", form(&[("body", &enc)]));
    let urlenc = Some("application/x-www-form-urlencoded");

    // Missing key, malformed key (core), unknown key (core).
    assert_eq!(env.get(&format!("/in.php?method=base64&{}", form(&[("body", &enc)]))).await, "ERROR_WRONG_USER_KEY");
    assert_eq!(
        env.get(&format!("/in.php?key=short&method=base64&{}", form(&[("body", &enc)]))).await,
        "ERROR_WRONG_USER_KEY"
    );
    let unknown = "0123456789abcdef0123456789abcdef";
    assert_eq!(
        env.get(&format!("/in.php?key={unknown}&method=base64&{}", form(&[("body", &enc)]))).await,
        "ERROR_KEY_DOES_NOT_EXIST"
    );

    // Methods.
    assert_eq!(env.get(&format!("/in.php?key={key}&method=nonsense")).await, "ERROR_BAD_PARAMETERS");
    assert_eq!(env.get(&format!("/in.php?key={key}")).await, "ERROR_BAD_PARAMETERS");
    for m in ["userrecaptcha", "turnstile", "hcaptcha", "altcha", "cap"] {
        assert_eq!(
            env.get(&format!("/in.php?key={key}&method={m}&sitekey=x&pageurl=https://a.test/")).await,
            "ERROR_TASK_NOT_SUPPORTED",
            "{m}"
        );
    }
    // Token methods are parsed (and their parameters checked) before the core
    // says no pool takes them here.
    assert_eq!(env.get(&format!("/in.php?key={key}&method=turnstile")).await, "ERROR_GOOGLEKEY");
    assert_eq!(
        env.get(&format!("/in.php?key={key}&method=userrecaptcha&pageurl=https://a.test/")).await,
        "ERROR_GOOGLEKEY"
    );
    assert_eq!(env.get(&format!("/in.php?key={key}&method=altcha")).await, "ERROR_PAGEURL");
    assert_eq!(env.get(&format!("/in.php?key={key}&method=cap&pageurl=http://192.168.1.1/")).await, "ERROR_PAGEURL");
    assert_eq!(
        env.get(&format!("/in.php?key={key}&method=cap&pageurl=https://a.test/&engine=warp")).await,
        "ERROR_BAD_PARAMETERS"
    );
    assert_eq!(env.get(&base("&pingback=http://127.0.0.1:9/cb")).await, "ERROR_IP_ADDRES");
    assert_eq!(env.get(&base("&recaptcha=1")).await, "ERROR_TASK_NOT_SUPPORTED");
    assert_eq!(env.get(&base("&coordinatescaptcha=1")).await, "ERROR_TASK_NOT_SUPPORTED");

    // Bad option values.
    for bad in [
        "numeric=9",
        "min_len=abc",
        "max_len=21",
        "phrase=2",
        "regsense=x",
        "calc=5",
        "language=7",
        "min_len=8&max_len=3",
    ] {
        assert_eq!(env.get(&base(&format!("&{bad}"))).await, "ERROR_BAD_PARAMETERS", "{bad}");
    }

    // Missing, empty, broken or refused images.
    assert_eq!(env.get(&format!("/in.php?key={key}&method=base64")).await, "ERROR_ZERO_CAPTCHA_FILESIZE");
    assert_eq!(env.get(&format!("/in.php?key={key}&method=base64&body=")).await, "ERROR_ZERO_CAPTCHA_FILESIZE");
    assert_eq!(env.get(&format!("/in.php?key={key}&method=base64&body=%21%21notbase64")).await, "ERROR_UPLOAD");
    assert_eq!(env.get(&format!("/in.php?key={key}&method=post")).await, "ERROR_UPLOAD");
    assert_eq!(
        env.post("/in.php", Some(&multipart_ct()), multipart(&[("key", &key), ("method", "post")], None)).await,
        "ERROR_UPLOAD",
        "multipart without a file part"
    );
    assert_eq!(
        env.post("/in.php", Some(&multipart_ct()), multipart(&[("key", &key), ("method", "post")], Some(b""))).await,
        "ERROR_ZERO_CAPTCHA_FILESIZE",
        "empty file part"
    );
    assert_eq!(
        env.post(&format!("/in.php?key={key}&method=post"), Some(&multipart_ct()), "--nope\r\ngarbage").await,
        "ERROR_UPLOAD",
        "broken multipart"
    );
    assert_eq!(
        env.post(&format!("/in.php?key={key}&method=base64"), Some("application/json"), "{\"body\": ").await,
        "ERROR_UPLOAD",
        "invalid JSON"
    );
    // The core's image checks: under 100 bytes, not an image.
    assert_eq!(
        env.post("/in.php", urlenc, form(&[("key", &key), ("method", "base64"), ("body", &b64(&img[..60]))])).await,
        "ERROR_ZERO_CAPTCHA_FILESIZE"
    );
    assert_eq!(
        env.post("/in.php", urlenc, form(&[("key", &key), ("method", "base64"), ("body", &b64(&[b'x'; 500]))])).await,
        "ERROR_IMAGE_TYPE_NOT_SUPPORTED"
    );

    // JSON rendering of an error.
    let v =
        env.get_json(&format!("/in.php?key={key}&method=base64&numeric=9&json=1&{}", form(&[("body", &enc)]))).await;
    assert_eq!(v["status"], 0);
    assert_eq!(v["request"], "ERROR_BAD_PARAMETERS");
    assert!(v["error_text"].as_str().is_some_and(|t| !t.is_empty()));

    // Nothing was charged or held by any of these.
    assert_eq!(env.res("action=getbalance").await, "10");
}

#[tokio::test]
async fn submit_size_limits() {
    // The core's image limit (600 kB by default; 2 kB here) and the router's body limit.
    let config = Config { max_image_bytes: 2_000, ..Config::default() };
    let env = Env::with(config, ApiConfig::default().with_max_body_bytes(64 * 1024), BALANCE).await;
    let mut big = captcha_png();
    big.resize(3_000, 0);
    let answer = env
        .post(
            "/in.php",
            Some("application/x-www-form-urlencoded"),
            form(&[("key", &env.key), ("method", "base64"), ("body", &b64(&big))]),
        )
        .await;
    assert_eq!(answer, "ERROR_TOO_BIG_CAPTCHA_FILESIZE");
    let huge = vec![0u8; 100 * 1024];
    let answer = env
        .post(
            &format!("/in.php?key={}&method=post&json=1", env.key),
            Some(&multipart_ct()),
            multipart(&[], Some(&huge)),
        )
        .await;
    let v: Value = serde_json::from_str(&answer).expect("json");
    assert_eq!(v["request"], "ERROR_TOO_BIG_CAPTCHA_FILESIZE");
}

#[tokio::test]
async fn submit_account_limits() {
    // Zero balance.
    let env = Env::new().await;
    let poor = env.other_key(0).await;
    let enc = b64(&captcha_png());
    let submit = |key: &str| format!("/in.php?key={key}&method=base64&{}", form(&[("body", &enc)]));
    assert_eq!(env.get(&submit(&poor)).await, "ERROR_ZERO_BALANCE");

    // Too many unfinished tasks.
    let config = Config { max_in_flight_per_key: 1, ..Config::default() };
    let env = Env::with(config, ApiConfig::default(), BALANCE).await;
    task_id(&env.get(&submit(&env.key)).await);
    assert_eq!(env.get(&submit(&env.key)).await, "ERROR_NO_SLOT_AVAILABLE");

    // Request rate.
    let config = Config { max_requests_per_sec: 1, request_burst: 1, ..Config::default() };
    let env = Env::with(config, ApiConfig::default(), BALANCE).await;
    task_id(&env.get(&submit(&env.key)).await);
    assert_eq!(env.get(&submit(&env.key)).await, "MAX_USER_TURN");
}

// ------------------------------------------------------------------ res.php

#[tokio::test]
async fn results_lifecycle_with_the_real_solver() {
    let env = Env::new().await;
    let solved = env.submit(&captcha_png()).await;
    let broken = env.submit(&broken_png()).await;
    assert_eq!(env.res(&format!("action=get&id={solved}")).await, "CAPCHA_NOT_READY");
    let v = env.get_json(&format!("/res.php?key={}&action=get&id={solved}&json=1", env.key)).await;
    assert_eq!(v, json!({"status": 0, "request": "CAPCHA_NOT_READY"}));
    // Both held: 10 - 2 × 0.001.
    assert_eq!(env.res("action=getbalance").await, "9.998");

    env.drain().await;

    let got = env.res(&format!("action=get&id={solved}")).await;
    let answer = got.strip_prefix("OK|").unwrap_or_else(|| panic!("{got}")).to_string();
    assert!(!answer.is_empty());
    assert_eq!(env.res(&format!("action=get2&id={solved}")).await, format!("OK|{answer}|0.001"));
    let v = env.get_json(&format!("/res.php?key={}&action=get&id={solved}&json=1", env.key)).await;
    assert_eq!(v, json!({"status": 1, "request": answer}));
    let v = env.get_json(&format!("/res.php?key={}&action=get2&id={solved}&json=1", env.key)).await;
    assert_eq!(v, json!({"status": 1, "request": answer, "price": "0.001"}));

    // The unreadable image is unsolvable and not charged.
    assert_eq!(env.res(&format!("action=get&id={broken}")).await, "ERROR_CAPTCHA_UNSOLVABLE");
    assert_eq!(env.res(&format!("action=get2&id={broken}")).await, "ERROR_CAPTCHA_UNSOLVABLE");
    let v = env.get_json(&format!("/res.php?key={}&action=get&id={broken}&json=1", env.key)).await;
    assert_eq!(v["status"], 0);
    assert_eq!(v["request"], "ERROR_CAPTCHA_UNSOLVABLE");
    assert_eq!(env.res("action=getbalance").await, "9.999");
    let v = env.get_json(&format!("/res.php?key={}&action=getbalance&json=1", env.key)).await;
    assert_eq!(v, json!({"status": 1, "request": "9.999"}));

    // Several at once, in the order asked.
    let pending = env.submit(&captcha_png()).await;
    let other = env.other_key(BALANCE).await;
    let foreign = task_id(
        &env.get(&format!("/in.php?key={other}&method=base64&{}", form(&[("body", &b64(&captcha_png()))]))).await,
    );
    let ids = format!("{solved},{pending},{broken},{foreign},0");
    assert_eq!(
        env.res(&format!("action=get&ids={ids}")).await,
        format!("{answer}|CAPCHA_NOT_READY|ERROR_CAPTCHA_UNSOLVABLE|ERROR_WRONG_CAPTCHA_ID|ERROR_WRONG_CAPTCHA_ID")
    );
    let v = env.get_json(&format!("/res.php?key={}&action=get&ids={solved},{pending}&json=1", env.key)).await;
    assert_eq!(v, json!({"status": 1, "request": format!("{answer}|CAPCHA_NOT_READY")}));
    assert_eq!(env.res(&format!("action=get&ids={solved},abc")).await, "ERROR_WRONG_ID_FORMAT");
    assert_eq!(env.res("action=get&ids=,").await, "ERROR_WRONG_ID_FORMAT");

    // Results expire: the core keeps them 10 minutes by default.
    env.clock.advance(Duration::from_secs(11 * 60));
    assert_eq!(env.res(&format!("action=get&id={solved}")).await, "ERROR_WRONG_CAPTCHA_ID");
}

#[tokio::test]
async fn reports() {
    let env = Env::new().await;
    let good = env.submit(&captcha_png()).await;
    let bad = env.submit(&captcha_png()).await;
    let late = env.submit(&captcha_png()).await;
    env.drain().await;
    let pending = env.submit(&captcha_png()).await;
    assert_eq!(env.res("action=getbalance").await, "9.996");

    assert_eq!(env.res(&format!("action=reportgood&id={good}")).await, "OK_REPORT_RECORDED");
    assert_eq!(env.res(&format!("action=reportgood&id={good}")).await, "ERROR_DUPLICATE_REPORT");
    assert_eq!(env.res(&format!("action=reportbad&id={good}")).await, "ERROR_DUPLICATE_REPORT");
    let v = env.get_json(&format!("/res.php?key={}&action=reportbad&id={bad}&json=1", env.key)).await;
    assert_eq!(v, json!({"status": 1, "request": "OK_REPORT_RECORDED"}));
    // reportbad refunds.
    assert_eq!(env.res("action=getbalance").await, "9.997");
    assert_eq!(env.res(&format!("action=reportbad&id={pending}")).await, "ERROR_REPORT_NOT_RECORDED");
    assert_eq!(env.res("action=reportbad&id=12345").await, "ERROR_WRONG_CAPTCHA_ID");
    assert_eq!(env.res("action=reportbad&id=12x").await, "ERROR_WRONG_ID_FORMAT");
    assert_eq!(env.res("action=reportgood").await, "ERROR_WRONG_ID_FORMAT");

    env.clock.advance(Duration::from_secs(16 * 60));
    assert_eq!(env.res(&format!("action=reportbad&id={late}")).await, "ERROR_REPORT_NOT_RECORDED");
}

#[tokio::test]
async fn res_errors_and_actions() {
    let env = Env::new().await;
    let key = env.key.clone();
    let id = env.submit(&captcha_png()).await;

    assert_eq!(env.get("/res.php").await, "ERROR_EMPTY_ACTION");
    assert_eq!(env.get(&format!("/res.php?key={key}")).await, "ERROR_EMPTY_ACTION");
    assert_eq!(env.get(&format!("/res.php?key={key}&action=fly")).await, "ERROR_EMPTY_ACTION");
    // Registered pingbacks: add, list, refuse others at submit, delete.
    assert_eq!(env.res("action=get_pingback").await, "OK|");
    assert_eq!(env.res("action=add_pingback&addr=https://example.test/").await, "OK_PINGBACK");
    assert_eq!(env.res("action=add_pingback&addr=https://example.test/two").await, "OK_PINGBACK");
    assert_eq!(env.res("action=get_pingback").await, "OK|https://example.test/|https://example.test/two");
    let v = env.get_json(&format!("/res.php?key={key}&action=get_pingback&json=1")).await;
    assert_eq!(v, json!({"status": 1, "request": "https://example.test/|https://example.test/two"}));
    for bad in ["http://10.0.0.1/", "http://169.254.169.254/", "ftp://example.test/", "nonsense"] {
        assert_eq!(env.res(&format!("action=add_pingback&addr={bad}")).await, "ERROR_IP_ADDRES", "{bad}");
    }
    assert_eq!(env.res("action=add_pingback").await, "ERROR_IP_ADDRES");
    let enc = b64(&captcha_png());
    let submit_with = |cb: &str| format!("/in.php?key={key}&method=base64&pingback={cb}&{}", form(&[("body", &enc)]));
    assert_eq!(env.get(&submit_with("https://elsewhere.test/")).await, "ERROR_IP_ADDRES");
    assert!(env.get(&submit_with("https://example.test/two")).await.starts_with("OK|"));
    assert_eq!(env.res("action=del_pingback&addr=https://example.test/two").await, "OK_PINGBACK");
    assert_eq!(env.res("action=get_pingback").await, "OK|https://example.test/");
    assert_eq!(env.res("action=del_pingback&addr=all").await, "OK_PINGBACK");
    assert_eq!(env.res("action=get_pingback").await, "OK|");
    assert!(env.get(&submit_with("https://elsewhere.test/")).await.starts_with("OK|"));
    assert_eq!(env.get("/res.php?action=get_pingback").await, "ERROR_WRONG_USER_KEY");
    let v = env.get_json(&format!("/res.php?key={key}&action=fly&json=1")).await;
    assert_eq!(v["request"], "ERROR_EMPTY_ACTION");
    assert_eq!(v["status"], 0);

    assert_eq!(env.get(&format!("/res.php?action=get&id={id}")).await, "ERROR_WRONG_USER_KEY");
    assert_eq!(env.get("/res.php?action=getbalance").await, "ERROR_WRONG_USER_KEY");
    assert_eq!(env.get("/res.php?key=short&action=getbalance").await, "ERROR_WRONG_USER_KEY");
    assert_eq!(
        env.get("/res.php?key=0123456789abcdef0123456789abcdef&action=getbalance").await,
        "ERROR_KEY_DOES_NOT_EXIST"
    );
    assert_eq!(
        env.get(&format!("/res.php?key=0123456789abcdef0123456789abcdef&action=get&ids={id},1")).await,
        "ERROR_KEY_DOES_NOT_EXIST",
        "a key error answers the whole ids= request"
    );

    for bad in ["abc", "-1", "1.5", "1e3", ""] {
        assert_eq!(env.res(&format!("action=get&id={bad}")).await, "ERROR_WRONG_ID_FORMAT", "{bad:?}");
    }
    assert_eq!(env.res("action=get").await, "ERROR_WRONG_ID_FORMAT");
    assert_eq!(env.res("action=get2&id=x").await, "ERROR_WRONG_ID_FORMAT");
    assert_eq!(env.res("action=get&id=0").await, "ERROR_WRONG_CAPTCHA_ID");
    assert_eq!(env.res("action=get&id=9007199254740992").await, "ERROR_WRONG_CAPTCHA_ID");
    assert_eq!(env.res("action=get&id=424242").await, "ERROR_WRONG_CAPTCHA_ID");

    let too_many: Vec<String> = (1..=101).map(|n| n.to_string()).collect();
    assert_eq!(env.res(&format!("action=get&ids={}", too_many.join(","))).await, "ERROR_BAD_PARAMETERS");
}

#[tokio::test]
async fn res_accepts_every_body_format() {
    let env = Env::new().await;
    let key = env.key.clone();
    let id = env.submit(&captcha_png()).await;
    let uenc = Some("application/x-www-form-urlencoded");
    let ids = id.to_string();

    assert_eq!(
        env.post("/res.php", uenc, form(&[("key", &key), ("action", "get"), ("id", &ids)])).await,
        "CAPCHA_NOT_READY"
    );
    assert_eq!(
        env.post(&format!("/res.php?key={key}&action=get&id={id}"), None, Body::empty()).await,
        "CAPCHA_NOT_READY"
    );
    assert_eq!(
        env.post("/res.php", Some("application/json"), json!({"key": key, "action": "get", "id": id}).to_string())
            .await,
        "CAPCHA_NOT_READY"
    );
    assert_eq!(
        env.post(&format!("/res.php?key={key}"), Some("text/plain"), json!({"action": "getbalance"}).to_string()).await,
        "9.999"
    );
    assert_eq!(
        env.post("/res.php", Some(&multipart_ct()), multipart(&[("key", &key), ("action", "getbalance")], None)).await,
        "9.999"
    );
    // Body wins over the query.
    assert_eq!(
        env.post(&format!("/res.php?key={key}&action=get&id=abc"), uenc, form(&[("id", &ids)])).await,
        "CAPCHA_NOT_READY"
    );
    // JSON flag from a JSON body (a JSON `true`).
    let v: Value = serde_json::from_str(
        &env.post(
            "/res.php",
            Some("application/json"),
            json!({"key": key, "action": "getbalance", "json": true}).to_string(),
        )
        .await,
    )
    .expect("json");
    assert_eq!(v, json!({"status": 1, "request": "9.999"}));
    // Broken JSON declared as JSON.
    assert_eq!(env.post("/res.php", Some("application/json"), "{").await, "ERROR_BAD_PARAMETERS");
}

// ------------------------------------------------------------------ JSON task API

impl Env {
    async fn call(&self, path: &str, body: Value) -> Value {
        let req = Request::post(path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .expect("request");
        let (headers, body) = self.send(req).await;
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
    }
}

fn error_code(v: &Value) -> (u64, &str) {
    (v["errorId"].as_u64().unwrap_or(0), v["errorCode"].as_str().unwrap_or(""))
}

#[tokio::test]
async fn json_api_image_task_lifecycle_with_the_real_solver() {
    let env = Env::new().await;
    let key = env.key.clone();
    // Options the official clients send unset, as null/false/0.
    let created = env
        .call(
            "/createTask",
            json!({"clientKey": key, "softId": 0, "languagePool": "en", "callbackUrl": null, "task": {
                "type": "ImageToTextTask", "body": b64(&captcha_png()), "phrase": false, "case": true,
                "numeric": 0, "math": false, "minLength": 0, "maxLength": 0, "comment": null}}),
        )
        .await;
    assert_eq!(created["errorId"], 0, "{created}");
    let id = created["taskId"].as_u64().expect("numeric task id");
    assert_eq!(
        env.call("/getTaskResult", json!({"clientKey": key, "taskId": id})).await,
        json!({"errorId": 0, "status": "processing"})
    );
    env.drain().await;
    let r = env.call("/getTaskResult", json!({"clientKey": key, "taskId": id})).await;
    assert_eq!(r["status"], "ready", "{r}");
    let text = r["solution"]["text"].as_str().expect("text");
    let label =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../ocr/validation/captcha-default/labels.tsv"))
            .expect("labels");
    let expected = label.lines().find_map(|l| l.strip_prefix("0001.png\t")).expect("label of 0001");
    assert_eq!(text, expected, "the real model reads the image");
    assert_eq!(r["cost"], "0.001");
    assert_eq!(r["solveCount"], 1);
    assert!(r["endTime"].as_u64() >= r["createTime"].as_u64());
    // The same id through the classic API: one core, two protocols.
    assert_eq!(env.res(&format!("action=get&id={id}")).await, format!("OK|{expected}"));

    let b = env.call("/getBalance", json!({"clientKey": key})).await;
    assert_eq!(b, json!({"errorId": 0, "balance": 9.999}));
    let rep = env.call("/reportIncorrectImageCaptcha", json!({"clientKey": key, "taskId": id})).await;
    assert_eq!(rep, json!({"errorId": 0, "status": "success"}));
    assert_eq!(env.call("/getBalance", json!({"clientKey": key})).await["balance"], 10.0, "refunded");
    let again = env.call("/reportCorrect", json!({"clientKey": key, "taskId": id})).await;
    assert_eq!(error_code(&again), (16, "ERROR_NO_SUCH_CAPCHA_ID"), "a second report is refused");
}

#[tokio::test]
async fn json_api_errors_are_http_200_with_anti_captcha_numbers() {
    let env = Env::new().await;
    let key = env.key.clone();
    let img = b64(&captcha_png());
    let cases: Vec<(&str, Value, (u64, &str))> = vec![
        ("/createTask", json!({"task": {"type": "ImageToTextTask", "body": img}}), (1, "ERROR_KEY_DOES_NOT_EXIST")),
        (
            "/createTask",
            json!({"clientKey": "0123456789abcdef0123456789abcdef", "task": {"type": "ImageToTextTask", "body": img}}),
            (1, "ERROR_KEY_DOES_NOT_EXIST"),
        ),
        ("/createTask", json!({"clientKey": key}), (22, "ERROR_TASK_ABSENT")),
        (
            "/createTask",
            json!({"clientKey": key, "task": {"type": "ImageToTextTask"}}),
            (3, "ERROR_ZERO_CAPTCHA_FILESIZE"),
        ),
        (
            "/createTask",
            json!({"clientKey": key, "task": {"type": "ImageToTextTask", "body": b64(&[0x89; 50])}}),
            (3, "ERROR_ZERO_CAPTCHA_FILESIZE"),
        ),
        (
            "/createTask",
            json!({"clientKey": key, "task": {"type": "ImageToTextTask", "body": b64(&[7u8; 700 * 1024])}}),
            (4, "ERROR_TOO_BIG_CAPTCHA_FILESIZE"),
        ),
        (
            "/createTask",
            json!({"clientKey": key, "task": {"type": "ImageToTextTask", "body": b64(&[7u8; 500])}}),
            (15, "ERROR_IMAGE_TYPE_NOT_SUPPORTED"),
        ),
        (
            "/createTask",
            json!({"clientKey": key, "task": {"type": "ImageToTextTask", "body": img, "numeric": 9}}),
            (22, "ERROR_TASK_ABSENT"),
        ),
        (
            "/createTask",
            json!({"clientKey": key, "task": {"type": "FunCaptchaTaskProxyless"}}),
            (23, "ERROR_TASK_NOT_SUPPORTED"),
        ),
        (
            "/createTask",
            json!({"clientKey": key, "task": {"type": "TurnstileTaskProxyless", "websiteURL": "https://a.test/", "websiteKey": "0x4"}}),
            (23, "ERROR_TASK_NOT_SUPPORTED"),
        ),
        (
            "/createTask",
            json!({"clientKey": key, "task": {"type": "TurnstileTaskProxyless", "websiteURL": "https://a.test/"}}),
            (31, "ERROR_RECAPTCHA_INVALID_SITEKEY"),
        ),
        (
            "/createTask",
            json!({"clientKey": key, "callbackUrl": "http://127.0.0.1/cb", "task": {"type": "ImageToTextTask", "body": img}}),
            (22, "ERROR_TASK_ABSENT"),
        ),
        ("/getTaskResult", json!({"clientKey": key}), (16, "ERROR_NO_SUCH_CAPCHA_ID")),
        ("/getTaskResult", json!({"clientKey": key, "taskId": 12345}), (16, "ERROR_NO_SUCH_CAPCHA_ID")),
        ("/getTaskResult", json!({"clientKey": key, "taskId": "abc"}), (16, "ERROR_NO_SUCH_CAPCHA_ID")),
        ("/getBalance", json!({"clientKey": "short"}), (1, "ERROR_KEY_DOES_NOT_EXIST")),
    ];
    for (path, body, expected) in cases {
        let v = env.call(path, body.clone()).await;
        assert_eq!(error_code(&v), expected, "{path} {body}");
        assert!(v["errorDescription"].as_str().is_some_and(|d| !d.is_empty()));
    }
    // Not JSON, or not an object: an error, never a 4xx/5xx.
    for raw in ["not json", "[1,2]", ""] {
        let (_, body) = env.send(Request::post("/createTask").body(Body::from(raw)).expect("request")).await;
        let v: Value = serde_json::from_str(&body).expect("json error");
        assert_eq!(error_code(&v), (22, "ERROR_TASK_ABSENT"), "{raw:?}");
    }
    // Zero balance.
    let poor = env.other_key(0).await;
    let v = env.call("/createTask", json!({"clientKey": poor, "task": {"type": "ImageToTextTask", "body": img}})).await;
    assert_eq!(error_code(&v), (10, "ERROR_ZERO_BALANCE"));
    // Another account's task is not visible.
    let created =
        env.call("/createTask", json!({"clientKey": key, "task": {"type": "ImageToTextTask", "body": img}})).await;
    let other = env.other_key(BALANCE).await;
    let v = env.call("/getTaskResult", json!({"clientKey": other, "taskId": created["taskId"]})).await;
    assert_eq!(error_code(&v), (16, "ERROR_NO_SUCH_CAPCHA_ID"));
}
