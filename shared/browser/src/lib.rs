//! # captcha-browser
//!
//! An **honest** headless Chromium for widgets that only a browser can solve:
//! the browser renders the page and the widget, does what a person's click on
//! the checkbox triggers, and returns the token the widget issues. It runs
//! with a fixed argument list and changes nothing about how the browser
//! identifies itself: the user agent is Chromium's unmodified one and
//! `navigator.webdriver` stays true, so sites can see it is automated (the
//! pool test asserts both); third-party image/audio/behavioural challenges are
//! not solved. If a provider refuses an honest browser, the task fails with
//! [`BrowserError::Unsolvable`].
//!
//! What this crate owns:
//! - [`BrowserPool`]: Chromium processes (Debian's `/usr/lib/chromium/chromium`,
//!   installed by `shared/browser/install-chromium.sh`), started through a
//!   `setpriv --pdeathsig KILL` wrapper so they die with this process, with a
//!   fresh profile directory each, flags that keep Chromium off the network
//!   except where a task points it, a page semaphore per browser, health checks
//!   and relaunch after a crash or hang.
//! - Task isolation: every task runs in its own browser context
//!   (`Target.createBrowserContext`), disposed afterwards, so tasks share no
//!   cookies, storage or cache.
//! - Network policy: every navigation and every request a page makes is
//!   checked against a [`captcha_netguard::NetPolicy`] (scheme, address,
//!   resolution) and refused otherwise.
//! - Deadlines: every wait is bounded by the task deadline.
//! - Widget drivers ([`widgets`]): ALTCHA, Cap, and the generic token widgets
//!   (Turnstile / reCAPTCHA / hCaptcha) that return whatever response the
//!   widget issues to an honest click, or fail.
//! - [`BrowserSolver`]: the core's `TokenSolver` port over the pool.

//!
//! Limits worth knowing:
//! - The request guard pauses requests through the DevTools `Fetch` domain:
//!   it sees navigations, redirects, subresources and `fetch`/XHR, but not
//!   WebSocket or WebRTC traffic, and Chromium resolves names itself after the
//!   guard did (a rebinding DNS answer could differ). In production, also give
//!   Chromium `host_resolver_rules` / `proxy_server` that confine it.
//! - The parent-death signal follows the *thread* that started Chromium; the
//!   pool launches from the tokio worker running the task, which lives as long
//!   as the runtime.
//!
//! Tests: `cargo test -p captcha-browser` (needs Chromium; the widget-site
//! tests also need `node`, see `tests/web/`).

mod error;
mod pool;
pub mod port;
pub mod widgets;

pub use error::BrowserError;
pub use pool::{BrowserPool, PoolConfig, TaskPage, DEFAULT_CHROMIUM, INSTALL_HINT};
pub use port::BrowserSolver;
