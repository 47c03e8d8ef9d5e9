//! Domain types: methods and the pools that solve them, the task record and
//! its state machine, accounts and API keys, task ids, image sniffing.

use std::fmt;
use std::str::FromStr;

use rand::rngs::OsRng;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::service::{ImageOptions, Protocol, Report, TaskId, TaskSpec, TokenOptions};

/// Task ids are drawn from `1..2^53` so JavaScript clients can hold them as numbers.
pub const TASK_ID_LIMIT: u64 = 1 << 53;

/// A fresh task id: 53 random bits from the operating system's CSPRNG, so ids
/// are neither sequential nor guessable across accounts. Uniqueness is enforced
/// by the stores' conditional inserts; the caller retries on a collision.
pub fn new_task_id() -> TaskId {
    loop {
        let id = OsRng.next_u64() & (TASK_ID_LIMIT - 1);
        if id != 0 {
            return id;
        }
    }
}

/// What kind of work a task is. A method is solved by one of its [`Method::pools`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Method {
    /// A text image CAPTCHA (`method=post|base64`, `ImageToTextTask`).
    Image,
    /// A self-hosted ALTCHA proof-of-work widget (`method=altcha`, `AltchaTask`).
    Altcha,
    /// A self-hosted Cap proof-of-work widget (`method=cap`, `CapTask`).
    Cap,
    /// Cloudflare Turnstile (`method=turnstile`, `TurnstileTask`).
    Turnstile,
    /// reCAPTCHA v2, invisible and enterprise included (`method=userrecaptcha`).
    RecaptchaV2,
    /// reCAPTCHA v3 (`method=userrecaptcha&version=v3`).
    RecaptchaV3,
    /// hCaptcha (`method=hcaptcha`).
    Hcaptcha,
}

impl Method {
    pub const ALL: &'static [Method] = &[
        Method::Image,
        Method::Altcha,
        Method::Cap,
        Method::Turnstile,
        Method::RecaptchaV2,
        Method::RecaptchaV3,
        Method::Hcaptcha,
    ];

    /// The method of a submitted task.
    pub fn of(spec: &TaskSpec) -> Method {
        match spec {
            TaskSpec::Image { .. } => Method::Image,
            TaskSpec::Token { method, .. } => *method,
        }
    }

    /// The pools whose workers can solve this method, in the router's order
    /// of preference (the cheapest first).
    pub fn pools(self) -> &'static [Pool] {
        match self {
            Method::Image => &[Pool::Ocr],
            Method::Altcha | Method::Cap => &[Pool::Native, Pool::Browser],
            _ => &[Pool::Browser],
        }
    }

    /// Whether the answer is a token issued by a widget on a page (not text read off an image).
    pub fn is_token(self) -> bool {
        self != Method::Image
    }

    /// Whether the widget needs a site key (`googlekey` / `sitekey` / `websiteKey`).
    pub fn needs_site_key(self) -> bool {
        matches!(self, Method::Turnstile | Method::RecaptchaV2 | Method::RecaptchaV3 | Method::Hcaptcha)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Image => "image",
            Method::Altcha => "altcha",
            Method::Cap => "cap",
            Method::Turnstile => "turnstile",
            Method::RecaptchaV2 => "recaptcha_v2",
            Method::RecaptchaV3 => "recaptcha_v3",
            Method::Hcaptcha => "hcaptcha",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Method {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Method::ALL.iter().copied().find(|m| m.as_str() == s).ok_or_else(|| UnknownName(s.to_string()))
    }
}

/// A group of workers that solve one family of methods, fed by its own queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pool {
    /// Text recognition on images (the OCR model).
    Ocr,
    /// A real headless browser (token CAPTCHAs).
    Browser,
    /// Native proof-of-work solvers (ALTCHA, Cap) that read the widget's
    /// challenge without running the page's scripts.
    Native,
}

impl Pool {
    pub const ALL: &'static [Pool] = &[Pool::Ocr, Pool::Browser, Pool::Native];

    pub fn as_str(self) -> &'static str {
        match self {
            Pool::Ocr => "ocr",
            Pool::Browser => "browser",
            Pool::Native => "native",
        }
    }
}

impl fmt::Display for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Pool {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Pool::ALL.iter().copied().find(|p| p.as_str() == s).ok_or_else(|| UnknownName(s.to_string()))
    }
}

/// A name that is not one of the known methods, pools or states.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown name {0:?}")]
pub struct UnknownName(pub String);

/// Where a task is in its life.
///
/// ```text
/// queued ──route──▶ routed ──solve──▶ solving ──▶ solved
///   ▲                                    │
///   └──────── retry (attempts < max) ────┤
///                                        └──▶ unsolvable (attempts exhausted,
///                                             dead-lettered or overdue)
/// ```
/// Every change is a conditional transition in the [`TaskStore`](crate::ports::TaskStore):
/// it only happens if the task is still in the state (and attempt) the stage saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Stored and on the intake queue.
    Queued,
    /// Sent to its pool's queue.
    Routed,
    /// A worker has it.
    Solving,
    /// Answered; the hold was charged.
    Solved,
    /// Given up; the hold was released.
    Unsolvable,
}

impl TaskState {
    pub const ALL: &'static [TaskState] =
        &[TaskState::Queued, TaskState::Routed, TaskState::Solving, TaskState::Solved, TaskState::Unsolvable];

    pub fn is_terminal(self) -> bool {
        matches!(self, TaskState::Solved | TaskState::Unsolvable)
    }

    /// Whether the state machine allows `self → to`.
    pub fn can_become(self, to: TaskState) -> bool {
        use TaskState::*;
        matches!(
            (self, to),
            (Queued, Routed)
                | (Routed, Solving)
                | (Solving, Solved)
                | (Solving, Queued)
                | (Queued | Routed | Solving, Unsolvable)
        )
    }

    /// A small stable number for storage.
    pub fn as_i64(self) -> i64 {
        match self {
            TaskState::Queued => 0,
            TaskState::Routed => 1,
            TaskState::Solving => 2,
            TaskState::Solved => 3,
            TaskState::Unsolvable => 4,
        }
    }

    pub fn from_i64(n: i64) -> Option<TaskState> {
        TaskState::ALL.iter().copied().find(|s| s.as_i64() == n)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Queued => "queued",
            TaskState::Routed => "routed",
            TaskState::Solving => "solving",
            TaskState::Solved => "solved",
            TaskState::Unsolvable => "unsolvable",
        }
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The method-specific parameters a worker needs, stored with the task.
/// (The image bytes themselves are stored beside the task, see
/// [`TaskStore::image`](crate::ports::TaskStore::image).)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum TaskParams {
    Image(ImageOptions),
    Token(TokenOptions),
}

impl TaskParams {
    pub fn to_json(&self) -> String {
        // Serialising plain data structs cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }

    pub fn from_json(s: &str) -> Result<TaskParams, serde_json::Error> {
        serde_json::from_str(s)
    }

    pub fn image_options(&self) -> Option<&ImageOptions> {
        match self {
            TaskParams::Image(o) => Some(o),
            TaskParams::Token(_) => None,
        }
    }

    pub fn token_options(&self) -> Option<&TokenOptions> {
        match self {
            TaskParams::Token(o) => Some(o),
            TaskParams::Image(_) => None,
        }
    }
}

/// The stored record of one task (without its image bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub id: TaskId,
    /// The owner; polls and reports from any other account see `WrongCaptchaId`.
    pub account: AccountId,
    pub method: Method,
    pub params: TaskParams,
    pub state: TaskState,
    /// Solve attempts started so far (incremented on `routed → solving`).
    pub attempts: u32,
    /// The price held at submit and charged on success, in micro-units.
    pub price_micros: u64,
    /// Unix ms of each stage; `started_ms` is the latest attempt's start.
    pub created_ms: u64,
    pub routed_ms: Option<u64>,
    pub started_ms: Option<u64>,
    pub ended_ms: Option<u64>,
    /// Unix ms of the last transition (what the sweeper measures staleness by).
    pub updated_ms: u64,
    pub answer: Option<String>,
    /// Why the last attempt failed (for operators, never shown to clients).
    pub error: Option<String>,
    pub report: Option<Report>,
    pub reported_ms: Option<u64>,
    pub pingback: Option<String>,
    pub soft_id: Option<String>,
    /// Which API created the task: decides the shape of its callback.
    pub protocol: Protocol,
}

/// Marks a task's `error` when its last attempt found that the page needs a
/// real browser; the router then sends it to the browser pool.
pub const NEEDS_BROWSER: &str = "needs a browser: ";

impl Task {
    /// Whether the native solver found that this task's page needs a browser.
    pub fn needs_browser(&self) -> bool {
        self.error.as_deref().is_some_and(|e| e.starts_with(NEEDS_BROWSER))
    }

    /// The engine the client forced, if any.
    pub fn engine(&self) -> Option<crate::Engine> {
        self.params.token_options().and_then(|o| o.engine)
    }
}

/// A conditional state change: applied only if the task is in `from` with
/// `from_attempts` attempts; the store also sets the timestamp of the stage
/// entered (`routed_ms`, `started_ms` or `ended_ms`) and `updated_ms` to `at_ms`.
/// Entering a terminal state drops the stored image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub from: TaskState,
    pub from_attempts: u32,
    pub to: TaskState,
    /// The attempt count after the change.
    pub attempts: u32,
    pub at_ms: u64,
    /// Set on `→ solved`.
    pub answer: Option<String>,
    /// Set on a failed attempt; `None` keeps the previous value.
    pub error: Option<String>,
}

impl Transition {
    /// A transition from the task's current state and attempt count.
    pub fn of(task: &Task, to: TaskState, at_ms: u64) -> Transition {
        Transition {
            from: task.state,
            from_attempts: task.attempts,
            to,
            attempts: task.attempts,
            at_ms,
            answer: None,
            error: None,
        }
    }

    pub fn attempts(mut self, n: u32) -> Self {
        self.attempts = n;
        self
    }

    pub fn answer(mut self, answer: String) -> Self {
        self.answer = Some(answer);
        self
    }

    pub fn error(mut self, error: impl Into<String>) -> Self {
        self.error = Some(error.into());
        self
    }

    /// Applies the change to an in-memory copy (adapters may use it).
    pub fn apply(&self, task: &mut Task) {
        task.state = self.to;
        task.attempts = self.attempts;
        task.updated_ms = self.at_ms;
        match self.to {
            TaskState::Routed => task.routed_ms = Some(self.at_ms),
            TaskState::Solving => task.started_ms = Some(self.at_ms),
            TaskState::Solved | TaskState::Unsolvable => task.ended_ms = Some(self.at_ms),
            TaskState::Queued => {}
        }
        if self.answer.is_some() {
            task.answer = self.answer.clone();
        }
        if self.error.is_some() {
            task.error = self.error.clone();
        }
    }

    /// Whether a task in this state and attempt count may take this transition.
    pub fn matches(&self, task: &Task) -> bool {
        task.state == self.from && task.attempts == self.from_attempts
    }
}

/// An account's id: the lowercase hex SHA-256 of its API key. The plain key is
/// never stored.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountId(pub String);

impl AccountId {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 hex digits, enough to tell accounts apart in a listing.
    pub fn short(&self) -> &str {
        &self.0[..self.0.len().min(12)]
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A client's API key: 32 characters of `[0-9a-f]`.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub const LEN: usize = 32;

    /// Parses a key as a client sent it. Upper-case hex is accepted and
    /// normalised, since some clients upper-case what they are given.
    pub fn parse(s: &str) -> Option<ApiKey> {
        let s = s.trim();
        if s.len() == Self::LEN && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            Some(ApiKey(s.to_ascii_lowercase()))
        } else {
            None
        }
    }

    /// A fresh key: 128 bits from the operating system's CSPRNG, hex-encoded.
    pub fn generate() -> ApiKey {
        let mut bytes = [0u8; 16];
        OsRng.fill_bytes(&mut bytes);
        ApiKey(hex::encode(bytes))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id under which the account is stored.
    pub fn account_id(&self) -> AccountId {
        AccountId(hex::encode(Sha256::digest(self.0.as_bytes())))
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keys are secrets; never print them whole.
        write!(f, "ApiKey({}…)", &self.0[..4])
    }
}

/// An account's money, all in integer micro-units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: AccountId,
    /// Money on the account; charges are taken from it when a hold settles.
    pub balance_micros: u64,
    /// The sum of open holds (prices of unfinished tasks).
    pub held_micros: u64,
    /// The number of open holds, i.e. unfinished tasks.
    pub open_holds: u32,
    pub created_ms: u64,
    /// The key that signs this account's callbacks (HMAC-SHA256). Shown when
    /// the account is created; rotatable.
    pub callback_secret: String,
    /// Registered callback URLs (`add_pingback`). When any are registered, a
    /// task's `pingback` must be one of them.
    pub pingback_urls: Vec<String>,
}

/// A fresh callback signing secret: 128 random bits, hex, prefixed `whsec_`.
pub fn new_callback_secret() -> String {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    format!("whsec_{}", hex::encode(bytes))
}

impl Account {
    /// What a new task can spend: balance minus holds.
    pub fn available_micros(&self) -> u64 {
        self.balance_micros.saturating_sub(self.held_micros)
    }
}

/// What happened to one task's hold. Each step happens at most once per task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldState {
    /// Reserved at submit.
    Held,
    /// Charged after a successful solve.
    Settled,
    /// Returned after the task became unsolvable.
    Released,
    /// Charged, then given back after a `reportbad`.
    Refunded,
}

impl HoldState {
    pub fn as_i64(self) -> i64 {
        match self {
            HoldState::Held => 0,
            HoldState::Settled => 1,
            HoldState::Released => 2,
            HoldState::Refunded => 3,
        }
    }

    pub fn from_i64(n: i64) -> Option<HoldState> {
        [HoldState::Held, HoldState::Settled, HoldState::Released, HoldState::Refunded]
            .into_iter()
            .find(|s| s.as_i64() == n)
    }
}

/// The money reserved for one task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub task_id: TaskId,
    pub account: AccountId,
    pub amount_micros: u64,
    pub state: HoldState,
    pub created_ms: u64,
    /// When it left `Held`.
    pub closed_ms: Option<u64>,
}

/// Image formats the OCR pool accepts, recognised from their magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Png,
    Jpeg,
    Gif,
}

impl ImageFormat {
    /// Sniffs the format from the first bytes; `None` if it is none of them.
    pub fn sniff(bytes: &[u8]) -> Option<ImageFormat> {
        if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(ImageFormat::Png)
        } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(ImageFormat::Jpeg)
        } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
            Some(ImageFormat::Gif)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_ids_are_positive_and_below_2_pow_53() {
        for _ in 0..10_000 {
            let id = new_task_id();
            assert!(id > 0 && id < TASK_ID_LIMIT);
        }
    }

    #[test]
    fn keys_are_32_hex_and_hash_to_their_account() {
        let key = ApiKey::generate();
        assert_eq!(key.as_str().len(), 32);
        assert!(key.as_str().bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        let parsed = ApiKey::parse(&key.as_str().to_ascii_uppercase()).expect("valid key");
        assert_eq!(parsed.account_id(), key.account_id());
        assert_eq!(key.account_id().as_str().len(), 64);
        assert!(ApiKey::parse("short").is_none());
        assert!(ApiKey::parse(&"g".repeat(32)).is_none());
        assert!(!format!("{key:?}").contains(key.as_str()));
    }

    #[test]
    fn state_machine_allows_only_the_drawn_edges() {
        use TaskState::*;
        assert!(Queued.can_become(Routed));
        assert!(Routed.can_become(Solving));
        assert!(Solving.can_become(Solved));
        assert!(Solving.can_become(Queued));
        assert!(Solving.can_become(Unsolvable));
        assert!(!Solved.can_become(Unsolvable));
        assert!(!Unsolvable.can_become(Queued));
        assert!(!Queued.can_become(Solved));
        for s in TaskState::ALL {
            assert_eq!(TaskState::from_i64(s.as_i64()), Some(*s));
        }
    }

    #[test]
    fn images_are_sniffed_by_magic_bytes() {
        assert_eq!(ImageFormat::sniff(b"\x89PNG\r\n\x1a\n...."), Some(ImageFormat::Png));
        assert_eq!(ImageFormat::sniff(&[0xFF, 0xD8, 0xFF, 0xE0]), Some(ImageFormat::Jpeg));
        assert_eq!(ImageFormat::sniff(b"GIF89a...."), Some(ImageFormat::Gif));
        assert_eq!(ImageFormat::sniff(b"BM........"), None);
    }

    #[test]
    fn params_round_trip_through_json() {
        let p = TaskParams::Image(ImageOptions { numeric: 1, min_len: 4, ..Default::default() });
        assert_eq!(TaskParams::from_json(&p.to_json()).ok(), Some(p));
    }
}
