//! # captcha-pow
//!
//! Native solvers for self-hosted proof-of-work widgets. This crate owns
//! reading a widget's configuration out of a page (without running its
//! scripts), fetching the widget's challenge, computing the proof the widget
//! itself would compute (multi-threaded, bounded, cancellable) and handing it
//! in exactly as the widget does. It does nothing a widget does not do: no
//! fingerprints, no instrumentation answers, no header games. A page whose
//! widget needs anything beyond the proof (a script-only configuration, Cap
//! instrumentation, ALTCHA server verification or code challenges, an
//! algorithm we do not compute) gives [`PowError::NotReadable`] or
//! [`PowError::Unsupported`] so the caller can use a real browser.
//!
//! - [`solve`]: page URL in, [`Solution`] (the value the widget puts in its
//!   form field) out. Every request goes through a
//!   [`captcha_netguard::GuardedClient`], so the URL policy applies to the page,
//!   the challenge and the redeem endpoint alike.
//! - Widgets ([`Widget`]): **ALTCHA** (`<altcha-widget challenge=…>` or the
//!   older `challengeurl=`): altcha-lib v2 challenges (`SHA-256/384/512`
//!   iterated, `PBKDF2/SHA-*`) and v1 challenges (`SHA-256(salt + n)`); the
//!   answer is the base64 payload. **Cap** (`<cap-widget
//!   data-cap-api-endpoint=…>`): the challenge list is derived from the token
//!   with Cap's FNV-1a/xorshift PRNG, solved, and redeemed; the answer is the
//!   redeemed token.
//! - [`engine`]: the key derivations and the parallel counter search.
//! - [`html`]: the start-tag scanner.
//! - [`port`]: [`NativeSolver`], the core's `TokenSolver` port (the `native` pool).

pub mod altcha;
pub mod cap;
pub mod engine;
pub mod html;
pub mod port;

pub use port::NativeSolver;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use captcha_netguard::{GuardedClient, NetError, Url};

/// Which widget to look for on the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Widget {
    Altcha,
    Cap,
    /// Whichever of the two the page has (ALTCHA first).
    Auto,
}

impl Widget {
    pub fn name(self) -> &'static str {
        match self {
            Widget::Altcha => "altcha",
            Widget::Cap => "cap",
            Widget::Auto => "auto",
        }
    }
}

/// The proof-of-work scheme a solution was computed for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheme {
    /// altcha-lib v1: `SHA-256(salt + n) == challenge`, `n <= maxnumber`.
    AltchaV1,
    /// altcha-lib v2 with this algorithm name (`SHA-256`, `PBKDF2/SHA-256`, …).
    AltchaV2(String),
    /// Cap: `c` SHA-256 prefix puzzles derived from the token.
    Cap,
}

/// Why a page could not be solved natively.
#[derive(Debug, thiserror::Error)]
pub enum PowError {
    /// The page has no widget of the kind asked for.
    #[error("the page has no {0} widget")]
    NoWidget(&'static str),
    /// The widget is there but what it needs cannot be had without running
    /// the page's scripts (or is more than a proof of work).
    #[error("the widget cannot be solved without a browser: {0}")]
    NotReadable(String),
    /// The challenge uses an algorithm or format this crate does not compute.
    #[error("unsupported challenge: {0}")]
    Unsupported(String),
    /// The URL policy refused a URL (page, challenge or redeem endpoint).
    #[error("refused by the network policy: {0}")]
    Refused(#[from] NetError),
    #[error("request to {url} failed: {source}")]
    Request {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("the response from {url} is larger than {limit} bytes")]
    TooLarge { url: String, limit: usize },
    /// The challenge is malformed or out of the bounds we accept.
    #[error("bad challenge: {0}")]
    BadChallenge(String),
    /// Every allowed counter was tried without a match.
    #[error("no solution within {0} attempts")]
    Exhausted(u64),
    #[error("cancelled")]
    Cancelled,
    #[error("the proof took longer than {0:?}")]
    TimedOut(Duration),
    /// The site refused the proof (Cap redeem).
    #[error("the site refused the proof: {0}")]
    Rejected(String),
}

impl PowError {
    /// True when a real browser may still solve the page (no PoW widget we
    /// can read, or one we do not compute).
    pub fn needs_browser(&self) -> bool {
        matches!(self, PowError::NoWidget(_) | PowError::NotReadable(_) | PowError::Unsupported(_))
    }
}

/// Limits and knobs of one solve.
#[derive(Debug, Clone)]
pub struct SolveOptions {
    /// Worker threads for the proof; 0 = all available cores.
    pub threads: usize,
    /// Upper bound on attempts (counters tried) for one puzzle, on top of the
    /// challenge's own bound (ALTCHA v1 `maxnumber`, the 2^32 counter space).
    pub max_attempts: u64,
    /// Wall-clock budget for the proof computation.
    pub time_limit: Duration,
    /// Set to stop the computation (polled between chunks of work).
    pub cancel: Option<Arc<AtomicBool>>,
    /// Largest page read, in bytes.
    pub max_page_bytes: usize,
    /// Largest challenge or redeem response read, in bytes.
    pub max_json_bytes: usize,
}

impl Default for SolveOptions {
    fn default() -> Self {
        SolveOptions {
            threads: 0,
            max_attempts: 100_000_000,
            time_limit: Duration::from_secs(60),
            cancel: None,
            max_page_bytes: 2 << 20,
            max_json_bytes: 256 << 10,
        }
    }
}

impl SolveOptions {
    fn thread_count(&self) -> usize {
        if self.threads > 0 {
            self.threads
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}

/// A solved widget: what to put in the form and how it was had.
#[derive(Debug, Clone)]
pub struct Solution {
    /// The widget that was solved (never [`Widget::Auto`]).
    pub widget: Widget,
    pub scheme: Scheme,
    /// ALTCHA's base64 payload or Cap's redeemed token.
    pub token: String,
    /// The form field the widget writes the token to (`altcha`, `cap-token`, or the page's choice).
    pub field: String,
    /// Counters tried, over all puzzles.
    pub attempts: u64,
    /// Time spent computing the proof.
    pub compute: Duration,
    /// Time from start to answer, network included.
    pub elapsed: Duration,
}

/// Fetches `page_url`, finds the widget, fetches its challenge, computes the
/// proof and (for Cap) redeems it. See the crate documentation.
pub async fn solve(
    client: &GuardedClient,
    kind: Widget,
    page_url: &str,
    opts: &SolveOptions,
) -> Result<Solution, PowError> {
    let started = Instant::now();
    let page = client.policy().check_url(page_url)?;
    let html = fetch_text(client, reqwest::Method::GET, page.as_str(), None, opts.max_page_bytes).await?;
    let found = match kind {
        Widget::Altcha => altcha::find(&html).map(|w| (Widget::Altcha, Found::Altcha(w))),
        Widget::Cap => cap::find(&html).map(|w| (Widget::Cap, Found::Cap(w))),
        Widget::Auto => altcha::find(&html)
            .map(|w| (Widget::Altcha, Found::Altcha(w)))
            .or_else(|| cap::find(&html).map(|w| (Widget::Cap, Found::Cap(w)))),
    };
    let Some((widget, found)) = found else {
        return Err(PowError::NoWidget(kind.name()));
    };
    let mut sol = match found {
        Found::Altcha(w) => altcha::solve(client, &page, w, opts).await?,
        Found::Cap(w) => cap::solve(client, &page, w, opts).await?,
    };
    sol.widget = widget;
    sol.elapsed = started.elapsed();
    Ok(sol)
}

enum Found {
    Altcha(altcha::AltchaWidget),
    Cap(cap::CapWidget),
}

/// Resolves a widget's URL attribute against the page URL, then checks it.
pub(crate) fn resolve_url(client: &GuardedClient, page: &Url, rel: &str) -> Result<Url, PowError> {
    let url = page.join(rel.trim()).map_err(|_| PowError::BadChallenge(format!("bad URL {rel:?}")))?;
    Ok(client.policy().check_url(url.as_str())?)
}

/// A bounded response body plus the headers the solvers look at.
pub(crate) struct Body {
    pub bytes: Vec<u8>,
    pub altcha_config: Option<String>,
}

pub(crate) async fn fetch(
    client: &GuardedClient,
    method: reqwest::Method,
    url: &str,
    json_body: Option<&serde_json::Value>,
    limit: usize,
) -> Result<Body, PowError> {
    let mut req = client.request(method, url)?;
    if let Some(b) = json_body {
        req = req.header(reqwest::header::CONTENT_TYPE, "application/json").body(b.to_string());
    }
    let request_error = |source| PowError::Request { url: url.to_string(), source };
    let mut resp = req.send().await.map_err(request_error)?;
    let status = resp.status();
    let altcha_config = resp.headers().get("x-altcha-config").and_then(|v| v.to_str().ok()).map(str::to_string);
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(PowError::TooLarge { url: url.to_string(), limit });
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(request_error)? {
        if bytes.len() + chunk.len() > limit {
            return Err(PowError::TooLarge { url: url.to_string(), limit });
        }
        bytes.extend_from_slice(&chunk);
    }
    // Cap answers a refused redeem with an error status and a JSON reason; the caller reads it.
    let readable_refusal = status.is_client_error() && json_body.is_some();
    if !status.is_success() && !readable_refusal {
        return Err(PowError::Status { url: url.to_string(), status: status.as_u16() });
    }
    Ok(Body { bytes, altcha_config })
}

async fn fetch_text(
    client: &GuardedClient,
    method: reqwest::Method,
    url: &str,
    json_body: Option<&serde_json::Value>,
    limit: usize,
) -> Result<String, PowError> {
    let body = fetch(client, method, url, json_body, limit).await?;
    Ok(String::from_utf8_lossy(&body.bytes).into_owned())
}

pub(crate) fn parse_json(url: &str, bytes: &[u8]) -> Result<serde_json::Value, PowError> {
    serde_json::from_slice(bytes).map_err(|_| PowError::BadChallenge(format!("{url} did not answer JSON")))
}

/// Runs `f` (a CPU-bound search) on a blocking thread. `f` gets a cancel
/// check that is true once the caller's flag is set or this future is dropped.
pub(crate) async fn run_blocking<T: Send + 'static>(
    opts: &SolveOptions,
    f: impl FnOnce(&(dyn Fn() -> bool + Sync)) -> T + Send + 'static,
) -> Result<T, PowError> {
    struct SetOnDrop(Arc<AtomicBool>);
    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let dropped = Arc::new(AtomicBool::new(false));
    let _guard = SetOnDrop(dropped.clone());
    let user = opts.cancel.clone();
    tokio::task::spawn_blocking(move || {
        let cancelled =
            move || dropped.load(Ordering::Relaxed) || user.as_ref().is_some_and(|u| u.load(Ordering::Relaxed));
        f(&cancelled)
    })
    .await
    .map_err(|_| PowError::Cancelled)
}

pub(crate) fn stop_error(stop: engine::Stop, attempts: u64, opts: &SolveOptions) -> PowError {
    match stop {
        engine::Stop::Exhausted => PowError::Exhausted(attempts),
        engine::Stop::Cancelled => PowError::Cancelled,
        engine::Stop::TimedOut => PowError::TimedOut(opts.time_limit),
    }
}
