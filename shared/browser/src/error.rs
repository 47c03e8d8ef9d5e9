/// Why a browser task did not produce a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrowserError {
    /// The URL (or a request the page made) is not allowed by the network policy.
    #[error("URL refused by the network policy: {0}")]
    Refused(String),
    /// The page loaded but the expected widget is not on it.
    #[error("no captcha widget found on the page")]
    NoWidget,
    /// The task deadline passed.
    #[error("deadline exceeded")]
    Deadline,
    /// The browser process died or its connection broke during the task.
    #[error("the browser crashed during the task")]
    Crashed,
    /// Chromium could not be started.
    #[error("could not launch chromium: {0}")]
    Launch(String),
    /// The Chromium executable does not exist.
    #[error("chromium not found at {0}: run shared/browser/install-chromium.sh")]
    ChromiumMissing(String),
    /// The widget issued no token to an honest browser before the deadline
    /// (it may demand a challenge this service does not solve, or refuse
    /// automated browsers).
    #[error("the widget issued no token to an honest browser")]
    Unsolvable,
    /// The widget reported an error of its own.
    #[error("the widget reported an error: {0}")]
    Widget(String),
    /// A DevTools protocol call failed.
    #[error("browser protocol error: {0}")]
    Cdp(String),
    /// Configuration not accepted (e.g. zero browsers or pages).
    #[error("bad browser configuration: {0}")]
    Config(String),
    /// The pool was shut down.
    #[error("the browser pool is shut down")]
    Closed,
}

impl From<chromiumoxide::error::CdpError> for BrowserError {
    fn from(e: chromiumoxide::error::CdpError) -> Self {
        use chromiumoxide::error::CdpError;
        match e {
            CdpError::Ws(_) | CdpError::ChannelSendError(_) | CdpError::NoResponse => BrowserError::Crashed,
            CdpError::Timeout => BrowserError::Deadline,
            other => BrowserError::Cdp(other.to_string()),
        }
    }
}
