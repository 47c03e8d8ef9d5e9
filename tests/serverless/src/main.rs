//! End-to-end test of the six Lambda functions running under `cargo lambda
//! watch` (invoke endpoint `LAMBDA_INVOKE_URL`, default http://127.0.0.1:9000)
//! over the LocalStack queues and tables (`CAPTCHA_*` from the stack outputs).
//! Run by `tests/serverless.sh`, which sets everything up.
//!
//! - HTTP goes to captcha-submit / captcha-poll as API Gateway REST (v1) proxy
//!   events; the answers are read from the proxy responses.
//! - SQS functions are fed by [`poller`]s that behave like Lambda's event
//!   source mapping: receive a batch, invoke with an `SqsEvent`, delete only
//!   the records not in `batchItemFailures`, leave the rest to the queue's
//!   visibility timeout and redrive policy.
//! - Accounts are created with `captcha_core::AccountAdmin` over the AWS adapters.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context, Result};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};
use base64::Engine as _;
use captcha_aws::AwsStores;
use captcha_core::ports::SystemClock;
use captcha_core::{AccountAdmin, Config, Core, TaskId, TaskState};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use widget_site::WidgetSite;

mod bridge;

const PRICE: u64 = 1_000; // CAPTCHA_PRICE_IMAGE=0.001 in the test env

fn env(name: &str) -> Result<String> {
    std::env::var(name).with_context(|| format!("{name} is not set (run tests/serverless.sh)"))
}

#[derive(Clone)]
struct Lambda {
    http: reqwest::Client,
    base: String,
}

impl Lambda {
    async fn invoke(&self, function: &str, payload: &Value) -> Result<Value> {
        let url = format!("{}/2015-03-31/functions/{function}/invocations", self.base);
        let resp = self.http.post(&url).json(payload).send().await.with_context(|| format!("invoke {function}"))?;
        let status = resp.status();
        let text = resp.text().await?;
        ensure!(status.is_success(), "{function} answered {status}: {text}");
        let v: Value = serde_json::from_str(&text).with_context(|| format!("{function} returned {text:?}"))?;
        if v.get("errorType").is_some() {
            bail!("{function} failed: {v}");
        }
        Ok(v)
    }

    /// One HTTP request through the function as API Gateway (REST v1) would send it.
    async fn api(
        &self,
        function: &str,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        body: Option<(&str, String)>,
    ) -> Result<String> {
        let mut mv_query: HashMap<&str, Vec<&str>> = HashMap::new();
        for (k, v) in query {
            mv_query.entry(k).or_default().push(v);
        }
        let mut headers = json!({"Host": "api.local", "User-Agent": "serverless-e2e"});
        if let Some((ct, _)) = &body {
            headers["Content-Type"] = json!(ct);
        }
        let mv_headers: serde_json::Map<String, Value> =
            headers.as_object().into_iter().flatten().map(|(k, v)| (k.clone(), json!([v]))).collect();
        let event = json!({
            "resource": "/{proxy+}",
            "path": path,
            "httpMethod": method,
            "headers": headers,
            "multiValueHeaders": mv_headers,
            "queryStringParameters": if query.is_empty() { Value::Null } else { json!(query.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>()) },
            "multiValueQueryStringParameters": if query.is_empty() { Value::Null } else { json!(mv_query) },
            "pathParameters": {"proxy": path.trim_start_matches('/')},
            "stageVariables": null,
            "requestContext": {
                "accountId": "000000000000", "resourceId": "proxy", "stage": "api",
                "requestId": format!("req-{}", now_ms()), "resourcePath": "/{proxy+}", "httpMethod": method,
                "apiId": "local", "path": format!("/api{path}"), "protocol": "HTTP/1.1",
                "requestTimeEpoch": now_ms(),
                "identity": {"sourceIp": "127.0.0.1", "userAgent": "serverless-e2e"}
            },
            "body": body.as_ref().map(|(_, b)| b.clone()),
            "isBase64Encoded": false
        });
        let resp = self.invoke(function, &event).await?;
        let status = resp["statusCode"].as_u64().unwrap_or(0);
        let raw = resp["body"].as_str().unwrap_or("").to_string();
        let text = if resp["isBase64Encoded"].as_bool() == Some(true) {
            String::from_utf8(base64::engine::general_purpose::STANDARD.decode(raw.as_bytes())?)?
        } else {
            raw
        };
        ensure!(status == 200, "{function} {path} → HTTP {status}: {text}");
        Ok(text)
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn form(pairs: &[(&str, &str)]) -> String {
    let mut s = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            s.push('&');
        }
        s.push_str(k);
        s.push('=');
        s.push_str(&urlencode(v));
    }
    s
}

fn urlencode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

// ------------------------------------------------------------------ event-source poller

/// One event source mapping: queue → function, `batch` records per invocation.
struct Mapping {
    function: &'static str,
    queue_url: String,
    batch: i32,
    paused: AtomicBool,
    /// Held for one receive → invoke → delete round, so a pause can wait for the round in flight.
    round: tokio::sync::Mutex<()>,
    invocations: AtomicUsize,
    records: AtomicUsize,
    failures: AtomicUsize,
}

async fn poller(sqs: aws_sdk_sqs::Client, lambda: Lambda, m: Arc<Mapping>, stop: Arc<AtomicBool>) {
    let arn = format!("arn:aws:sqs:us-east-1:000000000000:{}", m.queue_url.rsplit('/').next().unwrap_or(""));
    while !stop.load(Ordering::Relaxed) {
        let _round = m.round.lock().await;
        if m.paused.load(Ordering::SeqCst) {
            drop(_round);
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let got = sqs
            .receive_message()
            .queue_url(&m.queue_url)
            .max_number_of_messages(m.batch)
            .wait_time_seconds(1)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await;
        let msgs = match got {
            Ok(r) => r.messages.unwrap_or_default(),
            Err(e) => {
                eprintln!("poller {}: receive failed: {e:?}", m.function);
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        if msgs.is_empty() {
            continue;
        }
        let records: Vec<Value> = msgs
            .iter()
            .map(|msg| {
                let attrs: serde_json::Map<String, Value> =
                    msg.attributes().into_iter().flatten().map(|(k, v)| (k.as_str().to_string(), json!(v))).collect();
                json!({
                    "messageId": msg.message_id(), "receiptHandle": msg.receipt_handle(), "body": msg.body(),
                    "attributes": attrs, "messageAttributes": {}, "md5OfBody": msg.md5_of_body(),
                    "eventSource": "aws:sqs", "eventSourceARN": arn, "awsRegion": "us-east-1"
                })
            })
            .collect();
        m.invocations.fetch_add(1, Ordering::Relaxed);
        m.records.fetch_add(records.len(), Ordering::Relaxed);
        let failed: Vec<String> = match lambda.invoke(m.function, &json!({"Records": records})).await {
            Ok(resp) => resp["batchItemFailures"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| f["itemIdentifier"].as_str().map(str::to_string))
                .collect(),
            Err(e) => {
                // A failed invocation: the whole batch comes back (Lambda's behaviour).
                eprintln!("poller {}: invocation failed: {e:#}", m.function);
                msgs.iter().filter_map(|x| x.message_id().map(str::to_string)).collect()
            }
        };
        m.failures.fetch_add(failed.len(), Ordering::Relaxed);
        let entries: Vec<DeleteMessageBatchRequestEntry> = msgs
            .iter()
            .enumerate()
            .filter(|(_, x)| !x.message_id().is_some_and(|id| failed.iter().any(|f| f == id)))
            .filter_map(|(i, x)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(x.receipt_handle()?)
                    .build()
                    .ok()
            })
            .collect();
        if !entries.is_empty() {
            if let Err(e) = sqs.delete_message_batch().queue_url(&m.queue_url).set_entries(Some(entries)).send().await {
                eprintln!("poller {}: delete failed: {e:?}", m.function);
            }
        }
    }
}

// ------------------------------------------------------------------ the test world

struct World {
    lambda: Lambda,
    core: Arc<Core>,
    admin: AccountAdmin,
    sqs: aws_sdk_sqs::Client,
    mappings: HashMap<&'static str, Arc<Mapping>>,
    png: Vec<u8>,
    label: String,
}

impl World {
    async fn account(&self, micros: u64) -> Result<captcha_core::CreatedAccount> {
        Ok(self.admin.create(micros).await?)
    }

    async fn submit_classic(&self, key: &str, image: &[u8], extra: &[(&str, &str)]) -> Result<String> {
        let b64 = base64::engine::general_purpose::STANDARD.encode(image);
        let mut pairs = vec![("key", key), ("method", "base64"), ("body", b64.as_str())];
        pairs.extend_from_slice(extra);
        self.lambda
            .api("captcha-submit", "POST", "/in.php", &[], Some(("application/x-www-form-urlencoded", form(&pairs))))
            .await
    }

    async fn res(&self, query: &[(&str, &str)]) -> Result<String> {
        self.lambda.api("captcha-poll", "GET", "/res.php", query, None).await
    }

    /// Polls res.php until the task is finished; returns the final answer line.
    async fn wait_result(&self, key: &str, id: &str, timeout: Duration) -> Result<String> {
        let start = Instant::now();
        loop {
            let r = self.res(&[("key", key), ("action", "get"), ("id", id)]).await?;
            if r != "CAPCHA_NOT_READY" {
                return Ok(r);
            }
            ensure!(start.elapsed() < timeout, "task {id} not finished after {timeout:?}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    async fn task(&self, id: &str) -> Result<captcha_core::Task> {
        let id: TaskId = id.parse()?;
        self.core.ports().tasks.get(id).await?.context("task exists")
    }

    /// Waits (up to 30 s) until a task reaches `state`.
    async fn wait_state(&self, id: &str, state: TaskState) -> Result<()> {
        let start = Instant::now();
        while self.task(id).await?.state != state {
            ensure!(start.elapsed() < Duration::from_secs(30), "task {id} never reached {state:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Pauses (and waits out the round in flight) or resumes one event source.
    async fn pause(&self, function: &str, paused: bool) {
        if let Some(m) = self.mappings.get(function) {
            m.paused.store(paused, Ordering::SeqCst);
            drop(m.round.lock().await);
        }
    }

    /// An account's balance and holds once every finished task's money step
    /// is done (a poller can see `solved` a moment before the charge lands).
    async fn settled_account(&self, key: &str, want_balance: u64) -> Result<captcha_core::Account> {
        let start = Instant::now();
        loop {
            let a = self.admin.find_by_key(key).await?.context("account")?;
            if (a.balance_micros == want_balance && a.held_micros == 0) || start.elapsed() > Duration::from_secs(5) {
                return Ok(a);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn ok_id(reply: &str) -> Result<String> {
    reply.strip_prefix("OK|").map(str::to_string).with_context(|| format!("expected OK|<id>, got {reply:?}"))
}

struct Report {
    passed: Vec<String>,
    failed: Vec<String>,
}

impl Report {
    fn record(&mut self, name: &str, r: Result<String>) {
        match r {
            Ok(note) => {
                println!("PASS {name}{}", if note.is_empty() { String::new() } else { format!(" — {note}") });
                self.passed.push(name.into());
            }
            Err(e) => {
                println!("FAIL {name}: {e:#}");
                self.failed.push(name.into());
            }
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

// ------------------------------------------------------------------ cases

async fn case_image_solved_and_latency(w: &World, n: usize) -> Result<String> {
    let acct = w.account(1_000_000).await?;
    let mut lat = Vec::new();
    let mut correct = 0;
    for _ in 0..n {
        let t0 = Instant::now();
        let id = ok_id(&w.submit_classic(&acct.key, &w.png, &[]).await?)?;
        let r = w.wait_result(&acct.key, &id, Duration::from_secs(60)).await?;
        lat.push(t0.elapsed().as_secs_f64() * 1000.0);
        let answer = r.strip_prefix("OK|").with_context(|| format!("task {id}: {r}"))?;
        if answer.eq_ignore_ascii_case(&w.label) {
            correct += 1;
        }
    }
    ensure!(correct > 0, "the model never read {:?}", w.label);
    let a = w.settled_account(&acct.key, 1_000_000 - n as u64 * PRICE).await?;
    ensure!(a.balance_micros == 1_000_000 - n as u64 * PRICE && a.held_micros == 0, "balance {a:?}");
    lat.sort_by(f64::total_cmp);
    let (p50, p95) = (percentile(&lat, 0.5), percentile(&lat, 0.95));
    println!("METRIC image_e2e_ms n={n} p50={p50:.0} p95={p95:.0} min={:.0} max={:.0}", lat[0], lat[lat.len() - 1]);
    Ok(format!("{n} tasks, {correct} read as {:?}; e2e p50 {p50:.0} ms, p95 {p95:.0} ms", w.label))
}

async fn case_error_codes(w: &World) -> Result<String> {
    let rich = w.account(1_000_000).await?;
    let broke = w.account(0).await?;
    let mut checks: Vec<(&str, String)> = Vec::new();
    let mut png_garbage = b"\x89PNG\r\n\x1a\n".to_vec();
    png_garbage.resize(500, 7);
    let unknown_key = "0123456789abcdef0123456789abcdef";
    checks.push(("ERROR_WRONG_USER_KEY", w.submit_classic("short", &w.png, &[]).await?));
    checks.push(("ERROR_KEY_DOES_NOT_EXIST", w.submit_classic(unknown_key, &w.png, &[]).await?));
    checks.push(("ERROR_ZERO_BALANCE", w.submit_classic(&broke.key, &w.png, &[]).await?));
    checks.push(("ERROR_ZERO_CAPTCHA_FILESIZE", w.submit_classic(&rich.key, &w.png[..50], &[]).await?));
    checks.push(("ERROR_TOO_BIG_CAPTCHA_FILESIZE", w.submit_classic(&rich.key, &vec![0x89; 700 * 1024], &[]).await?));
    checks.push(("ERROR_IMAGE_TYPE_NOT_SUPPORTED", w.submit_classic(&rich.key, &[b'x'; 500], &[]).await?));
    let upload = form(&[("key", &rich.key), ("method", "base64"), ("body", "not*base64!")]);
    checks.push((
        "ERROR_UPLOAD",
        w.lambda
            .api("captcha-submit", "POST", "/in.php", &[], Some(("application/x-www-form-urlencoded", upload)))
            .await?,
    ));
    let bad = form(&[("key", &rich.key), ("method", "no-such-method")]);
    checks.push((
        "ERROR_BAD_PARAMETERS",
        w.lambda
            .api("captcha-submit", "POST", "/in.php", &[], Some(("application/x-www-form-urlencoded", bad)))
            .await?,
    ));
    checks.push(("ERROR_WRONG_ID_FORMAT", w.res(&[("key", &rich.key), ("action", "get"), ("id", "abc")]).await?));
    checks
        .push(("ERROR_WRONG_CAPTCHA_ID", w.res(&[("key", &rich.key), ("action", "get"), ("id", "123456789")]).await?));
    checks.push(("ERROR_EMPTY_ACTION", w.res(&[("key", &rich.key), ("id", "123")]).await?));
    checks.push(("ERROR_KEY_DOES_NOT_EXIST", w.res(&[("key", unknown_key), ("action", "getbalance")]).await?));
    checks.push(("ERROR_PAGEURL", {
        let f = form(&[("key", &rich.key), ("method", "altcha"), ("pageurl", "http://10.1.2.3/")]);
        w.lambda.api("captcha-submit", "POST", "/in.php", &[], Some(("application/x-www-form-urlencoded", f))).await?
    }));

    // NO_SLOT_AVAILABLE: CAPTCHA_MAX_IN_FLIGHT=12 in the test env; hold the queue still.
    w.pause("captcha-route", true).await;
    let slots = w.account(1_000_000).await?;
    let mut ids = Vec::new();
    let mut last = String::new();
    for _ in 0..13 {
        last = w.submit_classic(&slots.key, &w.png, &[]).await?;
        if let Ok(id) = ok_id(&last) {
            ids.push(id);
        }
    }
    w.pause("captcha-route", false).await;
    ensure!(ids.len() == 12, "in-flight cap: {} accepted", ids.len());
    checks.push(("ERROR_NO_SLOT_AVAILABLE", last));
    for id in &ids {
        w.wait_result(&slots.key, id, Duration::from_secs(60)).await?;
    }

    // Unsolvable at once: a PNG signature followed by garbage does not decode.
    let id = ok_id(&w.submit_classic(&rich.key, &png_garbage, &[]).await?)?;
    checks.push(("ERROR_CAPTCHA_UNSOLVABLE", w.wait_result(&rich.key, &id, Duration::from_secs(60)).await?));
    let t = w.task(&id).await?;
    ensure!(t.state == TaskState::Unsolvable && t.attempts == 1, "garbage task: {t:?}");
    let start = Instant::now();
    loop {
        let hold = w.core.ports().accounts.hold_of(t.id).await?.context("hold")?;
        if hold.state == captcha_core::HoldState::Released {
            break;
        }
        ensure!(start.elapsed() < Duration::from_secs(5), "hold of the unsolvable task: {hold:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let wrong: Vec<String> = checks
        .iter()
        .filter(|(want, got)| got.trim() != *want)
        .map(|(want, got)| format!("want {want}, got {got:?}"))
        .collect();
    ensure!(wrong.is_empty(), "{}", wrong.join("; "));
    let a = w.admin.find_by_key(&rich.key).await?.context("account")?;
    ensure!(a.balance_micros == 1_000_000 && a.held_micros == 0, "nothing charged for refusals: {a:?}");
    Ok(format!("{} codes", checks.len()))
}

async fn case_duplicate_message(w: &World) -> Result<String> {
    let acct = w.account(100_000).await?;
    w.pause("captcha-solve-ocr", true).await;
    let id = ok_id(&w.submit_classic(&acct.key, &w.png, &[]).await?)?;
    w.wait_state(&id, TaskState::Routed).await?;
    // The same task id twice more on the ocr queue, and once more on intake.
    let ocr = env("CAPTCHA_OCR_QUEUE_URL")?;
    for _ in 0..2 {
        w.sqs.send_message().queue_url(&ocr).message_body(&id).send().await?;
    }
    w.sqs.send_message().queue_url(env("CAPTCHA_INTAKE_QUEUE_URL")?).message_body(&id).send().await?;
    w.pause("captcha-solve-ocr", false).await;
    let r = w.wait_result(&acct.key, &id, Duration::from_secs(60)).await?;
    ensure!(r.starts_with("OK|"), "{r}");
    tokio::time::sleep(Duration::from_secs(3)).await; // let the duplicates drain
    let t = w.task(&id).await?;
    ensure!(t.attempts == 1, "solved once: {t:?}");
    let a = w.settled_account(&acct.key, 100_000 - PRICE).await?;
    ensure!(a.balance_micros == 100_000 - PRICE && a.held_micros == 0, "one charge: {a:?}");
    Ok(format!("{r}, one attempt, charged {PRICE} µ once"))
}

async fn case_parallel_balance(w: &World) -> Result<String> {
    let acct = w.account(10 * PRICE).await?;
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let (lambda, key) = (w.lambda.clone(), acct.key.clone());
        let body = form(&[
            ("key", &key),
            ("method", "base64"),
            ("body", &base64::engine::general_purpose::STANDARD.encode(&w.png)),
        ]);
        set.spawn(async move {
            lambda
                .api("captcha-submit", "POST", "/in.php", &[], Some(("application/x-www-form-urlencoded", body)))
                .await
        });
    }
    let mut ok = Vec::new();
    let mut other: HashMap<String, usize> = HashMap::new();
    while let Some(r) = set.join_next().await {
        let r = r??;
        match ok_id(&r) {
            Ok(id) => ok.push(id),
            Err(_) => *other.entry(r).or_default() += 1,
        }
    }
    ensure!(ok.len() == 10, "accepted {} (others {other:?})", ok.len());
    for id in &ok {
        w.wait_result(&acct.key, id, Duration::from_secs(120)).await?;
    }
    let a = w.settled_account(&acct.key, 0).await?;
    ensure!(a.held_micros == 0 && a.balance_micros == 0, "all ten charged: {a:?}");
    Ok(format!("10 of 50 accepted, refusals {other:?}, balance left {} µ", a.balance_micros))
}

async fn case_json_api(w: &World) -> Result<String> {
    let acct = w.account(100_000).await?;
    let body = json!({"clientKey": acct.key, "task": {"type": "ImageToTextTask", "body": base64::engine::general_purpose::STANDARD.encode(&w.png)}});
    let created: Value = serde_json::from_str(
        &w.lambda
            .api("captcha-submit", "POST", "/createTask", &[], Some(("application/json", body.to_string())))
            .await?,
    )?;
    ensure!(created["errorId"] == 0, "createTask: {created}");
    let task_id = created["taskId"].clone();
    let start = Instant::now();
    loop {
        let q = json!({"clientKey": acct.key, "taskId": task_id});
        let r: Value = serde_json::from_str(
            &w.lambda
                .api("captcha-poll", "POST", "/getTaskResult", &[], Some(("application/json", q.to_string())))
                .await?,
        )?;
        ensure!(r["errorId"] == 0, "getTaskResult: {r}");
        if r["status"] == "ready" {
            let text = r["solution"]["text"].as_str().unwrap_or_default().to_string();
            ensure!(!text.is_empty(), "{r}");
            let bal: Value = serde_json::from_str(
                &w.lambda
                    .api(
                        "captcha-poll",
                        "POST",
                        "/getBalance",
                        &[],
                        Some(("application/json", json!({"clientKey": acct.key}).to_string())),
                    )
                    .await?,
            )?;
            return Ok(format!("taskId {task_id} → {text:?}, balance {}", bal["balance"]));
        }
        ensure!(start.elapsed() < Duration::from_secs(60), "not ready: {r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A one-request HTTP receiver on 127.0.0.1: returns the request's headers and body.
async fn receive_one(listener: tokio::net::TcpListener) -> Result<(String, Vec<u8>)> {
    let (mut sock, _) = listener.accept().await?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = sock.read(&mut chunk).await?;
        ensure!(n > 0, "connection closed early");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0))
                })
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = sock.read(&mut chunk).await?;
                ensure!(n > 0, "body cut short");
                buf.extend_from_slice(&chunk[..n]);
            }
            sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok").await?;
            return Ok((head, buf[end + 4..end + 4 + len].to_vec()));
        }
    }
}

/// A receiver on 127.0.0.1 for one callback: its URL, and the signature-checked
/// body once it arrives (`X-Signature` verified with `secret`, 5-minute window).
async fn signed_receiver(
    path: &str,
    secret: &str,
) -> Result<(String, impl std::future::Future<Output = Result<Vec<u8>>>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://127.0.0.1:{}{path}", listener.local_addr()?.port());
    let receiver = tokio::spawn(receive_one(listener));
    let secret = secret.to_string();
    let body = async move {
        let (head, body) =
            tokio::time::timeout(Duration::from_secs(60), receiver).await.context("no callback within 60 s")???;
        let sig = head
            .lines()
            .find_map(|l| {
                l.split_once(':')
                    .filter(|(k, _)| k.eq_ignore_ascii_case(captcha_callbacks::SIGNATURE_HEADER))
                    .map(|(_, v)| v.trim().to_string())
            })
            .context("no signature header")?;
        captcha_callbacks::verify(&secret, &sig, &body, now_ms() / 1000, Duration::from_secs(300))
            .map_err(|e| anyhow::anyhow!("signature: {e}"))?;
        Ok(body)
    };
    Ok((url, body))
}

async fn case_callback(w: &World) -> Result<String> {
    let acct = w.account(100_000).await?;
    let secret = &acct.account.callback_secret;
    let (url, delivered) = signed_receiver("/cb", secret).await?;
    let id = ok_id(&w.submit_classic(&acct.key, &w.png, &[("pingback", &url)]).await?)?;
    let body = String::from_utf8_lossy(&delivered.await?).to_string();
    ensure!(body.contains(&format!("id={id}")) && body.contains("code="), "body {body:?}");

    // The JSON API's callbackUrl: the getTaskResult body (+ taskId), signed the same way.
    let (url, delivered) = signed_receiver("/json-cb", secret).await?;
    let req = json!({"clientKey": acct.key, "callbackUrl": url, "task": {"type": "ImageToTextTask", "body": base64::engine::general_purpose::STANDARD.encode(&w.png)}});
    let created: Value = serde_json::from_str(
        &w.lambda
            .api("captcha-submit", "POST", "/createTask", &[], Some(("application/json", req.to_string())))
            .await?,
    )?;
    ensure!(created["errorId"] == 0, "createTask: {created}");
    let v: Value =
        serde_json::from_slice(&delivered.await.context("the JSON callback")?).context("the JSON callback's body")?;
    ensure!(
        v["status"] == "ready" && v["taskId"] == created["taskId"] && v["solution"]["text"].is_string(),
        "JSON callback {v}"
    );
    Ok(format!("signed callbacks: classic {body:?}, JSON taskId {} text {}", v["taskId"], v["solution"]["text"]))
}

/// The widget test site (`tests/web`: real altcha-lib and @cap.js/server
/// under Node) on 127.0.0.1, for the token cases.
struct Site(WidgetSite);

impl Site {
    async fn start() -> Result<Site> {
        Ok(Site(tokio::task::spawn_blocking(WidgetSite::start).await?.map_err(anyhow::Error::msg)?))
    }

    fn base(&self) -> &str {
        self.0.base()
    }

    /// Asks the site whether it accepts `token` (each token once).
    async fn verify(&self, w: &World, path: &str, field: &str, token: &str) -> Result<bool> {
        let ok: Value = w
            .lambda
            .http
            .post(format!("{}{path}", self.base()))
            .json(&json!({ field: token }))
            .send()
            .await?
            .json()
            .await?;
        Ok(ok["ok"] == true)
    }
}

/// Submits a token task over in.php and waits for its final answer.
async fn token_task(w: &World, key: &str, pairs: &[(&str, &str)]) -> Result<(String, String)> {
    let mut all = vec![("key", key)];
    all.extend_from_slice(pairs);
    let f = form(&all);
    let id = ok_id(
        &w.lambda.api("captcha-submit", "POST", "/in.php", &[], Some(("application/x-www-form-urlencoded", f))).await?,
    )?;
    let r = w.wait_result(key, &id, Duration::from_secs(120)).await?;
    Ok((id, r))
}

/// ALTCHA and Cap go to the browser queue; captcha-solve-browser's native
/// proof-of-work solver answers them; the site accepts each token once.
async fn case_native_pow(w: &World, site: &Site) -> Result<String> {
    let acct = w.account(100_000).await?;
    let mut notes = Vec::new();
    for (page, verify_path, field, method) in
        [("/altcha", "/altcha/verify", "payload", "altcha"), ("/cap", "/cap/verify", "token", "cap")]
    {
        let t0 = Instant::now();
        let (_, r) =
            token_task(w, &acct.key, &[("method", method), ("pageurl", &format!("{}{page}", site.base()))]).await?;
        let token = r.strip_prefix("OK|").with_context(|| format!("{method}: {r}"))?;
        ensure!(site.verify(w, verify_path, field, token).await?, "{method}: the site refused the token");
        ensure!(!site.verify(w, verify_path, field, token).await?, "{method}: the site accepted a replay");
        notes.push(format!("{method} solved + verified in {:.0} ms", t0.elapsed().as_secs_f64() * 1000.0));
    }
    Ok(notes.join(", "))
}

/// `engine=browser`: captcha-solve-browser's Chromium pool renders the page,
/// the widget computes its proof, the token it issues verifies at the site;
/// a page without a widget ends unsolvable after one attempt, uncharged.
async fn case_browser_in_lambda(w: &World, site: &Site) -> Result<String> {
    let acct = w.account(100_000).await?;
    let mut notes = Vec::new();
    for (page, verify_path, field, method) in
        [("/cap", "/cap/verify", "token", "cap"), ("/altcha-v1", "/altcha/verify", "payload", "altcha")]
    {
        let t0 = Instant::now();
        let (id, r) = token_task(
            w,
            &acct.key,
            &[("method", method), ("pageurl", &format!("{}{page}", site.base())), ("engine", "browser")],
        )
        .await?;
        let token = r.strip_prefix("OK|").with_context(|| format!("{method} in Chromium: {r}"))?;
        ensure!(site.verify(w, verify_path, field, token).await?, "{method}: the site refused the browser's token");
        let t = w.task(&id).await?;
        notes.push(format!("{method} by Chromium in {:.1} s (attempts {})", t0.elapsed().as_secs_f64(), t.attempts));
    }
    let paid = 100_000 - 2 * 3_000;
    let (id, r) = token_task(
        w,
        &acct.key,
        &[("method", "turnstile"), ("sitekey", "0x4AAAAAAA"), ("pageurl", &format!("{}/plain", site.base()))],
    )
    .await?;
    ensure!(r == "ERROR_CAPTCHA_UNSOLVABLE", "turnstile on a page without it: {r}");
    let t = w.task(&id).await?;
    ensure!(t.attempts == 1, "given up at once: {t:?}");
    let a = w.settled_account(&acct.key, paid).await?;
    ensure!(a.balance_micros == paid && a.held_micros == 0, "two tokens charged, the unsolvable one not: {a:?}");
    notes.push(format!("turnstile without a widget → {r} ({})", t.error.unwrap_or_default()));
    Ok(notes.join(", "))
}

/// A scheduled-event invocation of captcha-sweep (what EventBridge sends).
async fn sweep(w: &World) -> Result<Value> {
    let event = json!({
        "version": "0", "id": format!("sweep-{}", now_ms()), "detail-type": "Scheduled Event",
        "source": "aws.events", "account": "000000000000", "time": "2026-11-24T00:00:00Z",
        "region": "us-east-1", "resources": ["arn:aws:events:us-east-1:000000000000:rule/captcha-sweep"], "detail": {}
    });
    w.lambda.invoke("captcha-sweep", &event).await
}

/// A solve function that dies after claiming a task: its message comes back
/// and finds the task claimed, so only the sweeper can move it on. After the
/// solve timeout (3 s in the test env) captcha-sweep retries it; the retry
/// is solved and charged once.
async fn case_sweeper_retries_a_dead_solvers_task(w: &World) -> Result<String> {
    let acct = w.account(100_000).await?;
    w.pause("captcha-solve-ocr", true).await;
    let id = ok_id(&w.submit_classic(&acct.key, &w.png, &[]).await?)?;
    w.wait_state(&id, TaskState::Routed).await?;
    // The "solve function" that dies: receives the record, claims the task, never finishes.
    let ocr = env("CAPTCHA_OCR_QUEUE_URL")?;
    let got = w
        .sqs
        .receive_message()
        .queue_url(&ocr)
        .max_number_of_messages(1)
        .visibility_timeout(1)
        .wait_time_seconds(2)
        .send()
        .await?;
    let msg = got.messages().first().context("the ocr message")?;
    ensure!(msg.body() == Some(id.as_str()), "ocr message {:?}", msg.body());
    ensure!(w.core.claim_message(captcha_core::Pool::Ocr, &id).await?.is_some(), "claimed");
    w.pause("captcha-solve-ocr", false).await;
    // The message reappears, the real solve-ocr drops it: the task stays `solving`.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let t = w.task(&id).await?;
    ensure!(t.state == TaskState::Solving && t.attempts == 1, "stuck: {t:?}");
    // Once the solve timeout has passed, a sweep retries it (the unit tests check it is left alone before).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut swept = Vec::new();
    let start = Instant::now();
    loop {
        let r = sweep(w).await?;
        swept.push(r.clone());
        if r["retried"].as_u64().unwrap_or(0) >= 1 {
            break;
        }
        ensure!(start.elapsed() < Duration::from_secs(20), "never retried: {swept:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let r = w.wait_result(&acct.key, &id, Duration::from_secs(60)).await?;
    ensure!(r.starts_with("OK|"), "retry: {r}");
    let t = w.task(&id).await?;
    ensure!(t.attempts == 2, "solved on the second attempt: {t:?}");
    let a = w.settled_account(&acct.key, 100_000 - PRICE).await?;
    ensure!(a.balance_micros == 100_000 - PRICE && a.held_micros == 0, "charged once: {a:?}");
    Ok(format!("sweep {} → {r} on attempt {}", swept.last().cloned().unwrap_or_default(), t.attempts))
}

/// A message the queue's redrive moved to the dead-letter queue (here moved
/// by hand: maxReceiveCount × a 180 s visibility is too long for a test):
/// captcha-sweep makes its task unsolvable and releases the hold.
async fn case_sweeper_gives_up_dead_letters(w: &World) -> Result<String> {
    let acct = w.account(100_000).await?;
    w.pause("captcha-route", true).await;
    let id = ok_id(&w.submit_classic(&acct.key, &w.png, &[]).await?)?;
    let intake = env("CAPTCHA_INTAKE_QUEUE_URL")?;
    let dlq = std::env::var("CAPTCHA_INTAKE_DLQ_URL").unwrap_or_else(|_| format!("{intake}-dlq"));
    let got = w
        .sqs
        .receive_message()
        .queue_url(&intake)
        .max_number_of_messages(1)
        .visibility_timeout(30)
        .wait_time_seconds(2)
        .send()
        .await?;
    let msg = got.messages().first().context("the intake message")?;
    ensure!(msg.body() == Some(id.as_str()), "intake message {:?}", msg.body());
    w.sqs.send_message().queue_url(&dlq).message_body(&id).send().await?;
    w.sqs.delete_message().queue_url(&intake).receipt_handle(msg.receipt_handle().context("receipt")?).send().await?;
    w.pause("captcha-route", false).await;
    let r = sweep(w).await?;
    ensure!(r["deadLetters"].as_u64().unwrap_or(0) >= 1 && r["gaveUp"].as_u64().unwrap_or(0) >= 1, "sweep: {r}");
    let answer = w.wait_result(&acct.key, &id, Duration::from_secs(10)).await?;
    ensure!(answer == "ERROR_CAPTCHA_UNSOLVABLE", "{answer}");
    let a = w.settled_account(&acct.key, 100_000).await?;
    ensure!(a.balance_micros == 100_000 && a.held_micros == 0, "hold released: {a:?}");
    Ok(format!("sweep {r} → {answer}, nothing charged"))
}

/// The official client libraries, unmodified but for their endpoint, through
/// the HTTPS bridge that serves the template's API routes (as API Gateway
/// would): `2captcha-python` (PyPI, https only) and `@2captcha/captcha-solver`
/// (npm) on the classic API; `anticaptchaofficial` (PyPI: images, balance, a
/// refunded report, a wrong key, an ALTCHA page) and
/// `@antiadmin/anticaptchaofficial` (npm) on the JSON API. The same scripts
/// run against captchad in `tests/clients/run.sh`.
async fn case_official_clients(w: &World, site: &Site) -> Result<String> {
    let routes_file = env("E2E_API_ROUTES")?;
    let routes = bridge::parse_routes(&std::fs::read_to_string(&routes_file).with_context(|| routes_file.clone())?)?;
    let (cert, key) = (env("E2E_TLS_CERT")?, env("E2E_TLS_KEY")?);
    let addr = bridge::start(w.lambda.clone(), routes, &cert, &key).await?;
    let base = format!("https://{addr}");
    // What API Gateway answers for a path the template does not route. (This
    // probe of our own loopback bridge skips verification: rustls refuses the
    // throwaway self-signed CA certificate as a server certificate; the
    // clients below do verify it, through REQUESTS_CA_BUNDLE / NODE_EXTRA_CA_CERTS.)
    let https = reqwest::Client::builder().danger_accept_invalid_certs(true).build()?;
    let nope = https.post(format!("{base}/nope")).body("{}").send().await?;
    ensure!(nope.status() == 403, "an unrouted path: HTTP {}", nope.status());

    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let clients = root.join("tests/clients");
    let images = root.join("shared/ocr/validation/captcha-default").display().to_string();
    let venv = std::env::var("CAPTCHA_TEST_VENV").map(std::path::PathBuf::from).unwrap_or_else(|_| {
        std::path::PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/captcha-test-venv")
    });
    let python = venv.join("bin/python");
    let script = |name: &str| clients.join(name).display().to_string();
    let acct = w.account(1_000_000).await?;
    let k = acct.key.clone();
    let runs: Vec<(&str, std::path::PathBuf, Vec<String>)> = vec![
        (
            "2captcha-python (PyPI)",
            python.clone(),
            vec![script("python_client.py"), addr.clone(), k.clone(), images.clone(), "5".into()],
        ),
        (
            "@2captcha/captcha-solver (npm)",
            "node".into(),
            vec![script("node_client.js"), base.clone(), k.clone(), images.clone(), "5".into()],
        ),
        (
            "anticaptchaofficial (PyPI)",
            python,
            vec![
                script("anticaptcha_client.py"),
                base.clone(),
                k.clone(),
                images.clone(),
                "5".into(),
                site.base().to_string(),
            ],
        ),
        (
            "@antiadmin/anticaptchaofficial (npm)",
            "node".into(),
            vec![script("anticaptcha_client.js"), base.clone(), k.clone(), images.clone(), "5".into()],
        ),
    ];
    let mut notes = Vec::new();
    for (name, program, args) in runs {
        let t0 = Instant::now();
        let out = tokio::time::timeout(
            Duration::from_secs(240),
            tokio::process::Command::new(&program)
                .args(&args)
                .current_dir(&clients)
                .env("REQUESTS_CA_BUNDLE", &cert)
                .env("NODE_EXTRA_CA_CERTS", &cert)
                .kill_on_drop(true)
                .output(),
        )
        .await
        .with_context(|| format!("{name}: no answer within 240 s"))?
        .with_context(|| format!("{name}: cannot run {}", program.display()))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        for line in stdout.lines() {
            println!("    {line}");
        }
        ensure!(out.status.success(), "{name} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
        let summary = stdout.lines().find(|l| l.contains(" right; balance ")).unwrap_or("").to_string();
        notes.push(format!(
            "{name} ok in {:.1} s ({})",
            t0.elapsed().as_secs_f64(),
            summary.split_once(": ").map(|x| x.1).unwrap_or("")
        ));
    }
    Ok(notes.join("; "))
}

// ------------------------------------------------------------------ main

#[tokio::main]
async fn main() -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let t_all = Instant::now();
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = root.join("shared/ocr/validation/captcha-default");
    let png = std::fs::read(dir.join("0001.png")).context("the validation image")?;
    let labels = std::fs::read_to_string(dir.join("labels.tsv"))?;
    let label =
        labels.lines().find_map(|l| l.strip_prefix("0001.png\t")).context("label of 0001.png")?.trim().to_string();

    let lambda = Lambda {
        http: reqwest::Client::builder().timeout(Duration::from_secs(120)).build()?,
        base: std::env::var("LAMBDA_INVOKE_URL").unwrap_or_else(|_| "http://127.0.0.1:9000".into()),
    };
    let sdk = captcha_aws::sdk_config().await;
    let stores = AwsStores::from_sdk_env(&sdk)?;
    let core = Arc::new(Core::new(Config::default(), stores.into_ports(Arc::new(SystemClock))));
    let admin = core.admin();
    let sqs = aws_sdk_sqs::Client::new(&sdk);

    let mut mappings = HashMap::new();
    for (function, var, batch) in [
        ("captcha-route", "CAPTCHA_INTAKE_QUEUE_URL", 10),
        ("captcha-solve-ocr", "CAPTCHA_OCR_QUEUE_URL", 5),
        ("captcha-solve-browser", "CAPTCHA_BROWSER_QUEUE_URL", 1),
        ("captcha-pingback", "CAPTCHA_CALLBACK_QUEUE_URL", 10),
    ] {
        let m = Arc::new(Mapping {
            function,
            queue_url: env(var)?,
            batch,
            paused: AtomicBool::new(false),
            round: tokio::sync::Mutex::new(()),
            invocations: AtomicUsize::new(0),
            records: AtomicUsize::new(0),
            failures: AtomicUsize::new(0),
        });
        mappings.insert(function, m);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut pollers = Vec::new();
    for m in mappings.values() {
        pollers.push(tokio::spawn(poller(sqs.clone(), lambda.clone(), m.clone(), stop.clone())));
    }

    let w = World { lambda, core, admin, sqs, mappings, png, label };
    // Warm-up: the first invocation of each HTTP function starts its process.
    let t = Instant::now();
    let warm = w.res(&[("key", "0123456789abcdef0123456789abcdef"), ("action", "getbalance")]).await?;
    println!("warm-up poll → {warm} in {:.0} ms", t.elapsed().as_secs_f64() * 1000.0);

    let mut report = Report { passed: Vec::new(), failed: Vec::new() };
    let n: usize = std::env::var("E2E_LATENCY_TASKS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    report.record("image task over HTTP solved and polled (latency)", case_image_solved_and_latency(&w, n).await);
    report.record("classic error codes + unsolvable releases the hold", case_error_codes(&w).await);
    report.record("duplicated SQS messages: one result, one charge", case_duplicate_message(&w).await);
    report.record("50 parallel submits against a balance for 10", case_parallel_balance(&w).await);
    report.record("JSON createTask + getTaskResult", case_json_api(&w).await);
    report.record(
        "signed callbacks (classic pingback + JSON callbackUrl) delivered by captcha-pingback",
        case_callback(&w).await,
    );
    match Site::start().await {
        Ok(site) => {
            report.record("ALTCHA + Cap via the browser queue's native solver", case_native_pow(&w, &site).await);
            report.record(
                "Chromium in captcha-solve-browser: Cap + ALTCHA tokens, widgetless page unsolvable",
                case_browser_in_lambda(&w, &site).await,
            );
            report.record(
                "official clients (2captcha + anticaptcha, PyPI + npm) over HTTPS",
                case_official_clients(&w, &site).await,
            );
        }
        Err(e) => report.record("the widget site starts", Err(e)),
    }
    report.record(
        "captcha-sweep retries the task of a solver that died",
        case_sweeper_retries_a_dead_solvers_task(&w).await,
    );
    report.record(
        "captcha-sweep gives up dead-lettered tasks, releasing the hold",
        case_sweeper_gives_up_dead_letters(&w).await,
    );

    stop.store(true, Ordering::SeqCst);
    for p in pollers {
        let _ = p.await;
    }
    for m in w.mappings.values() {
        println!(
            "poller {}: {} invocations, {} records, {} reported failures",
            m.function,
            m.invocations.load(Ordering::Relaxed),
            m.records.load(Ordering::Relaxed),
            m.failures.load(Ordering::Relaxed)
        );
    }
    println!("{} passed, {} failed ({:.1} s)", report.passed.len(), report.failed.len(), t_all.elapsed().as_secs_f64());
    if !report.failed.is_empty() {
        bail!("failed: {}", report.failed.join(", "));
    }
    Ok(())
}
