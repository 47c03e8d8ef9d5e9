//! The facade the protocol layer talks to: one trait, implemented by the core
//! over its ports, so the HTTP router (embedded or in Lambda) never sees storage.

use std::net::IpAddr;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::ErrorCode;

/// A task id as the protocols show it: digits only, positive, below 2^53.
pub type TaskId = u64;

/// Options of an image task, as the classic `in.php` and `ImageToTextTask` carry them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageOptions {
    /// The answer has two or more words.
    pub phrase: bool,
    /// `regsense=1`: the answer is case-sensitive.
    pub case_sensitive: bool,
    /// 0 any; 1 digits only; 2 letters only; 3 digits or letters; 4 digits and letters.
    pub numeric: u8,
    /// The image shows arithmetic; the answer is its result.
    pub calc: bool,
    /// 0 = no bound.
    pub min_len: u8,
    /// 0 = no bound.
    pub max_len: u8,
    /// 0 any; 1 Cyrillic; 2 Latin.
    pub language: u8,
    pub lang: Option<String>,
    pub instructions: Option<String>,
}

/// How a token task's solver may work: the real browser, or the native
/// proof-of-work solver (ALTCHA and Cap only). `None` lets the router choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    Browser,
    Native,
}

/// Options of a token task (a widget on a page that issues a token).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TokenOptions {
    /// The page the widget is on (`pageurl`, `websiteURL`).
    pub page_url: String,
    /// `googlekey` / `sitekey` / `websiteKey`.
    pub site_key: Option<String>,
    /// reCAPTCHA v3 / Turnstile `action`.
    pub action: Option<String>,
    /// Turnstile `data` (cData), reCAPTCHA `data-s`.
    pub data: Option<String>,
    /// Turnstile `pagedata` (chlPageData).
    pub page_data: Option<String>,
    pub invisible: bool,
    pub enterprise: bool,
    /// reCAPTCHA v3 `min_score`, as sent (e.g. `0.3`).
    pub min_score: Option<String>,
    /// The client's user agent, if it sent one (informational: an honest
    /// browser keeps its own).
    pub user_agent: Option<String>,
    /// Forced solver path; `None` = the router decides.
    pub engine: Option<Engine>,
}

/// What the client asked to have solved.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TaskSpec {
    /// An image CAPTCHA: the raw image bytes (already base64-decoded).
    Image { image: Vec<u8>, options: ImageOptions },
    /// A token CAPTCHA of `method` (any but [`Method::Image`](crate::Method::Image)).
    Token { method: crate::Method, options: TokenOptions },
}

/// The API a task came in through; callbacks are shaped to match it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// `in.php` / `res.php`: callbacks are `id=…&code=…` forms.
    #[default]
    Classic,
    /// `createTask` / `getTaskResult`: callbacks are the `getTaskResult` JSON.
    Json,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Classic => "classic",
            Protocol::Json => "json",
        }
    }

    pub fn parse(s: &str) -> Option<Protocol> {
        match s {
            "classic" => Some(Protocol::Classic),
            "json" => Some(Protocol::Json),
            _ => None,
        }
    }
}

/// A change to an account's registered callback URLs (`res.php` pingback actions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PingbackOp {
    Add(String),
    List,
    Remove(String),
    RemoveAll,
}

/// A submit as the protocol layer parsed it.
#[derive(Debug, Clone)]
pub struct SubmitRequest {
    /// The API key exactly as sent (validated by the core).
    pub key: String,
    pub spec: TaskSpec,
    /// Callback URL, if any (already checked against the outbound network
    /// policy by the protocol layer).
    pub pingback: Option<String>,
    pub soft_id: Option<String>,
    pub client_ip: Option<IpAddr>,
    pub protocol: Protocol,
}

/// The state of a task as a poller sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskResult {
    NotReady,
    Solved {
        method: crate::Method,
        answer: String,
        /// Price charged, in micro-units of the balance currency.
        price_micros: u64,
        /// Unix milliseconds.
        created_ms: u64,
        /// Unix milliseconds.
        ended_ms: u64,
        /// Solve attempts made.
        attempts: u32,
    },
    Unsolvable,
}

/// `reportbad` / `reportgood`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    Bad,
    Good,
}

/// Everything the public API can do, independent of deployment.
#[async_trait]
pub trait CaptchaService: Send + Sync {
    /// Validates, holds the price, stores and enqueues the task.
    async fn submit(&self, req: SubmitRequest) -> Result<TaskId, ErrorCode>;
    /// The result of one of this key's tasks.
    async fn result(&self, key: &str, id: TaskId) -> Result<TaskResult, ErrorCode>;
    /// Available balance (balance minus holds), in micro-units.
    async fn balance(&self, key: &str) -> Result<u64, ErrorCode>;
    /// Records a report on a solved task; `Bad` refunds once within the window.
    async fn report(&self, key: &str, id: TaskId, report: Report) -> Result<(), ErrorCode>;
    /// Changes or lists the account's registered callback URLs; returns the
    /// list after the change.
    async fn pingbacks(&self, key: &str, op: PingbackOp) -> Result<Vec<String>, ErrorCode>;
}

/// Formats micro-units the way the classic API prints money: `12.3456`, `0.00085`.
pub fn format_money(micros: u64) -> String {
    let whole = micros / 1_000_000;
    let frac = micros % 1_000_000;
    if frac == 0 {
        return format!("{whole}");
    }
    let s = format!("{whole}.{frac:06}");
    s.trim_end_matches('0').to_string()
}

/// Parses `10`, `10.5`, `0.000850` into micro-units; at most 6 decimals.
pub fn parse_money(s: &str) -> Option<u64> {
    let s = s.trim();
    let (whole, frac) = match s.split_once('.') {
        Some((w, f)) => (w, f),
        None => (s, ""),
    };
    if whole.is_empty() && frac.is_empty() {
        return None;
    }
    if frac.len() > 6 || !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let w: u64 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
    let f: u64 = if frac.is_empty() { 0 } else { format!("{frac:0<6}").parse().ok()? };
    w.checked_mul(1_000_000)?.checked_add(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_round_trips() {
        assert_eq!(format_money(850), "0.00085");
        assert_eq!(format_money(12_345_600), "12.3456");
        assert_eq!(format_money(10_000_000), "10");
        assert_eq!(parse_money("10.00"), Some(10_000_000));
        assert_eq!(parse_money("0.00085"), Some(850));
        assert_eq!(parse_money("1.0000001"), None);
        assert_eq!(parse_money("-1"), None);
        assert_eq!(parse_money(""), None);
    }
}
