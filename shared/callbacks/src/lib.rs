//! # captcha-callbacks
//!
//! The pingback stage: delivers a finished task's result to the URL the
//! client gave (`pingback=` on `in.php`, `callbackUrl` on `createTask`),
//! taking one message per task from the core's callback queue.
//!
//! - **Body**: classic tasks get `POST` form `id=<id>&code=<answer>` (the same
//!   two repeated in the query string, for receivers that read `GET`-style
//!   parameters); unsolvable ones `code=ERROR_CAPTCHA_UNSOLVABLE`. JSON-API
//!   tasks get the JSON `getTaskResult` would return.
//! - **Signature**: `X-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret,
//!   "<t>.<body>")>` with the account's callback secret; [`verify`] is what a
//!   receiver runs (and refuses timestamps older than its tolerance, 5 min).
//! - **Delivery**: through a [`GuardedClient`] (refused addresses are never
//!   contacted, redirects are not followed), a 2 s timeout per attempt, any
//!   2xx is success. A failed attempt is retried with exponential back-off by
//!   hiding the message ([`Schedule::delay`]); after [`Schedule::attempts`]
//!   the message moves to the callback dead-letter queue. The task's result
//!   is never touched: pollers see it the whole time.
//!
//! [`Deliverer::deliver_once`] is the embedded server's loop step;
//! [`Deliverer::deliver`] + [`Schedule`] serve one SQS record in Lambda.

use std::sync::Arc;
use std::time::Duration;

use captcha_core::ports::{Message, Queue, StoreError};
use captcha_core::{Core, Protocol, Task, TaskResult};
use captcha_netguard::{GuardedClient, NetError, NetPolicy};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "X-Signature";
/// The task id header (also in the body).
pub const TASK_HEADER: &str = "X-Captcha-Task-Id";

/// When to retry and when to give up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Deliveries tried before the message is dead-lettered.
    pub attempts: u32,
    /// Delay after the first failure; doubled after each further one.
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl Default for Schedule {
    /// 5 attempts with 3 s · 2ⁿ back-off: retries after 3, 6, 12 and 24 s,
    /// with the 2 s timeouts about a minute in all. (Five, because the
    /// embedded queue dead-letters a message on its sixth receive anyway.)
    fn default() -> Self {
        Schedule { attempts: 5, first_delay: Duration::from_secs(3), max_delay: Duration::from_secs(30) }
    }
}

impl Schedule {
    /// How long to hide a message whose `receive_count`-th delivery failed;
    /// `None` once the attempts are used up (dead-letter it).
    pub fn delay(&self, receive_count: u32) -> Option<Duration> {
        if receive_count >= self.attempts {
            return None;
        }
        let factor = 1u32.checked_shl(receive_count.saturating_sub(1)).unwrap_or(u32::MAX);
        Some(self.first_delay.saturating_mul(factor).min(self.max_delay))
    }
}

/// The pingback stage's settings.
#[derive(Debug, Clone)]
pub struct PingbackConfig {
    pub schedule: Schedule,
    /// Per attempt (connect + answer).
    pub timeout: Duration,
    /// Messages taken per [`Deliverer::deliver_once`] (delivered concurrently).
    pub batch: usize,
    /// Which addresses callbacks may reach.
    pub policy: NetPolicy,
    /// Sent with Turnstile solutions in JSON callbacks.
    pub browser_user_agent: Option<String>,
}

impl Default for PingbackConfig {
    fn default() -> Self {
        PingbackConfig {
            schedule: Schedule::default(),
            timeout: Duration::from_secs(2),
            batch: 16,
            policy: NetPolicy::strict(),
            browser_user_agent: None,
        }
    }
}

/// What one delivery attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The receiver answered 2xx.
    Delivered,
    /// Nothing to deliver (task gone, unfinished or without a pingback): drop the message.
    Nothing,
    /// The receiver failed, timed out, redirected or was refused; retry later.
    Failed(String),
}

/// What [`Deliverer::deliver_once`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Round {
    pub delivered: usize,
    pub retrying: usize,
    pub dead_lettered: usize,
    pub dropped: usize,
}

impl Round {
    pub fn handled(&self) -> usize {
        self.delivered + self.retrying + self.dead_lettered + self.dropped
    }
}

/// Delivers callbacks. Build once per process (it owns the HTTP client).
pub struct Deliverer {
    core: Arc<Core>,
    client: GuardedClient,
    cfg: PingbackConfig,
}

impl Deliverer {
    pub fn new(core: Arc<Core>, cfg: PingbackConfig) -> Result<Deliverer, reqwest::Error> {
        let ua = concat!("captcha-callbacks/", env!("CARGO_PKG_VERSION"));
        let client = GuardedClient::new(cfg.policy.clone(), cfg.timeout, ua)?;
        Ok(Deliverer { core, client, cfg })
    }

    pub fn config(&self) -> &PingbackConfig {
        &self.cfg
    }

    /// One attempt for one callback message body (a task id).
    pub async fn deliver(&self, body: &str) -> Result<Attempt, StoreError> {
        let Some((task, account)) = self.core.callback_of(body).await? else {
            return Ok(Attempt::Nothing);
        };
        let Some(url) = task.pingback.clone() else { return Ok(Attempt::Nothing) };
        let now_s = self.core.ports().clock.now_ms() / 1000;
        let (payload, content_type, url) = self.payload(&task, &url);
        let request = match self.client.post(&url) {
            Ok(r) => r,
            Err(e) => return Ok(Attempt::Failed(refusal(&e))),
        };
        let result = request
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .header(SIGNATURE_HEADER, sign(&account.callback_secret, now_s, payload.as_bytes()))
            .header(TASK_HEADER, task.id.to_string())
            .body(payload)
            .send()
            .await;
        Ok(match result {
            Ok(resp) if resp.status().is_success() => Attempt::Delivered,
            Ok(resp) => Attempt::Failed(format!("receiver answered {}", resp.status())),
            Err(e) => Attempt::Failed(describe(&e)),
        })
    }

    /// The body, its content type and the URL to post to.
    fn payload(&self, task: &Task, url: &str) -> (String, &'static str, String) {
        let result = self.core.result_of(task);
        match task.protocol {
            Protocol::Json => {
                // The getTaskResult body, plus the task id so one receiver can tell tasks apart.
                let mut v = captcha_api::json::task_result_body(&result, self.cfg.browser_user_agent.as_deref());
                if let Some(o) = v.as_object_mut() {
                    o.insert("taskId".into(), serde_json::json!(task.id));
                }
                (v.to_string(), "application/json", url.to_string())
            }
            Protocol::Classic => {
                let code = match &result {
                    TaskResult::Solved { answer, .. } => answer.clone(),
                    _ => captcha_core::ErrorCode::CaptchaUnsolvable.code().to_string(),
                };
                let form = form_urlencoded::Serializer::new(String::new())
                    .append_pair("id", &task.id.to_string())
                    .append_pair("code", &code)
                    .finish();
                let sep = if url.contains('?') { '&' } else { '?' };
                (form.clone(), "application/x-www-form-urlencoded", format!("{url}{sep}{form}"))
            }
        }
    }

    /// The embedded loop's step: takes up to `batch` callback messages,
    /// attempts each (concurrently), deletes the delivered and the empty
    /// ones, hides failed ones for their back-off, dead-letters the
    /// exhausted. Returns what it did; `Ok` with nothing when idle.
    pub async fn deliver_once(self: &Arc<Self>) -> Result<Round, StoreError> {
        let queue = self.core.ports().queue.clone();
        // Hidden long enough for every attempt in the batch to end first.
        let hide = self.cfg.timeout * 4 + Duration::from_secs(5);
        let msgs = queue.receive(Queue::CALLBACK, self.cfg.batch, hide).await?;
        let mut tasks = tokio::task::JoinSet::new();
        for m in msgs {
            let me = self.clone();
            tasks.spawn(async move {
                let attempt = me.deliver(&m.body).await;
                (m, attempt)
            });
        }
        let mut round = Round::default();
        while let Some(joined) = tasks.join_next().await {
            let Ok((m, attempt)) = joined else {
                tracing::error!("a callback delivery task panicked; its message comes back");
                continue;
            };
            match attempt {
                Ok(Attempt::Delivered) => {
                    queue.delete(Queue::CALLBACK, &m.receipt).await?;
                    round.delivered += 1;
                }
                Ok(Attempt::Nothing) => {
                    queue.delete(Queue::CALLBACK, &m.receipt).await?;
                    round.dropped += 1;
                }
                Ok(Attempt::Failed(why)) => match self.after_failure(&m, &why).await? {
                    true => round.retrying += 1,
                    false => round.dead_lettered += 1,
                },
                Err(e) => {
                    // Storage trouble: leave the message to come back by itself.
                    tracing::warn!(error = %e, "callback lookup failed");
                }
            }
        }
        Ok(round)
    }

    /// A failed attempt: hide the message for its back-off (`true`), or move
    /// it to the dead-letter queue when its attempts are used up (`false`).
    pub async fn after_failure(&self, m: &Message, why: &str) -> Result<bool, StoreError> {
        let queue = &self.core.ports().queue;
        match self.cfg.schedule.delay(m.receive_count) {
            Some(delay) => {
                tracing::info!(task = %m.body, attempt = m.receive_count, ?delay, why, "callback failed; will retry");
                queue.change_visibility(Queue::CALLBACK, &m.receipt, delay).await?;
                Ok(true)
            }
            None => {
                tracing::warn!(task = %m.body, attempts = m.receive_count, why, "callback given up; dead-lettered");
                queue.send(Queue::CALLBACK.dead(), &m.body).await?;
                queue.delete(Queue::CALLBACK, &m.receipt).await?;
                Ok(false)
            }
        }
    }
}

fn refusal(e: &NetError) -> String {
    format!("refused: {e}")
}

/// A reqwest error with its causes (a refused address shows up as a resolver error).
fn describe(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(cause) = src {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        src = cause.source();
    }
    s
}

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &str, t: u64, body: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut m = match HmacSha256::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    m.update(t.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m
}

/// The `X-Signature` value for `body` sent at Unix second `t`.
pub fn sign(secret: &str, t: u64, body: &[u8]) -> String {
    format!("t={t},v1={}", hex::encode(mac(secret, t, body).finalize().into_bytes()))
}

/// Why a callback failed verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the signature header is missing or malformed")]
    Malformed,
    #[error("the timestamp is outside the tolerance (a replay or a skewed clock)")]
    Stale,
    #[error("the signature does not match the body")]
    Mismatch,
}

/// What a receiver runs: checks `header` (the `X-Signature` value) against
/// `body` with the account's `secret`, and that its timestamp is within
/// `tolerance` of `now_s` (refusing replays of old callbacks). Comparison is
/// constant-time.
pub fn verify(secret: &str, header: &str, body: &[u8], now_s: u64, tolerance: Duration) -> Result<(), VerifyError> {
    let mut t = None;
    let mut sigs = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<u64>().ok(),
            Some(("v1", v)) => sigs.push(hex::decode(v).map_err(|_| VerifyError::Malformed)?),
            _ => {}
        }
    }
    let t = t.ok_or(VerifyError::Malformed)?;
    if sigs.is_empty() {
        return Err(VerifyError::Malformed);
    }
    if now_s.abs_diff(t) > tolerance.as_secs() {
        return Err(VerifyError::Stale);
    }
    if sigs.iter().any(|s| mac(secret, t, body).verify_slice(s).is_ok()) {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_then_gives_up() {
        let s = Schedule::default();
        let delays: Vec<_> = (1..=5).map(|n| s.delay(n).map(|d| d.as_secs())).collect();
        assert_eq!(delays, vec![Some(3), Some(6), Some(12), Some(24), None]);
        let capped = Schedule { attempts: 10, ..s };
        assert_eq!(capped.delay(8), Some(Duration::from_secs(30)));
    }

    #[test]
    fn signatures_verify_and_refuse_tampering_and_replays() {
        let body = br#"{"errorId":0}"#;
        let h = sign("whsec_x", 1_700_000_000, body);
        let five_min = Duration::from_secs(300);
        assert_eq!(verify("whsec_x", &h, body, 1_700_000_100, five_min), Ok(()));
        assert_eq!(verify("whsec_x", &h, b"{\"errorId\":1}", 1_700_000_100, five_min), Err(VerifyError::Mismatch));
        assert_eq!(verify("whsec_other", &h, body, 1_700_000_100, five_min), Err(VerifyError::Mismatch));
        assert_eq!(verify("whsec_x", &h, body, 1_700_000_301, five_min), Err(VerifyError::Stale));
        assert_eq!(verify("whsec_x", "t=1,v1=zz", body, 1, five_min), Err(VerifyError::Malformed));
        assert_eq!(verify("whsec_x", "v1=00", body, 1, five_min), Err(VerifyError::Malformed));
        // A changed timestamp breaks the signature (it is signed too).
        let forged = h.replace("t=1700000000", "t=1700000200");
        assert_eq!(verify("whsec_x", &forged, body, 1_700_000_200, five_min), Err(VerifyError::Mismatch));
    }
}
