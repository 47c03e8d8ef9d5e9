//! The core's [`TokenSolver`] port over the pool: what the `browser` pool's
//! workers run.

use async_trait::async_trait;
use captcha_core::{Method, SolveError, TokenOptions, TokenSolver};

use crate::widgets::{self, TokenWidget};
use crate::{BrowserError, BrowserPool};

/// Token tasks through the honest browser. Build once per process.
pub struct BrowserSolver {
    pool: BrowserPool,
}

impl BrowserSolver {
    pub fn new(pool: BrowserPool) -> BrowserSolver {
        BrowserSolver { pool }
    }

    pub fn pool(&self) -> &BrowserPool {
        &self.pool
    }
}

/// How a browser failure counts: a refused address or a page without the
/// widget never improves; everything else (a crash, a hang, a deadline, a
/// widget that gave no token this time) is worth another attempt, and ends
/// `ERROR_CAPTCHA_UNSOLVABLE` (uncharged) when the attempts run out.
pub fn classify(e: &BrowserError) -> SolveError {
    match e {
        BrowserError::Refused(_) | BrowserError::NoWidget | BrowserError::Config(_) => {
            SolveError::Unsolvable(e.to_string())
        }
        _ => SolveError::Failed(e.to_string()),
    }
}

#[async_trait]
impl TokenSolver for BrowserSolver {
    async fn solve(&self, method: Method, o: &TokenOptions) -> Result<String, SolveError> {
        let key = || o.site_key.clone().unwrap_or_default();
        let result = match method {
            Method::Altcha => widgets::altcha(&self.pool, &o.page_url).await,
            Method::Cap => widgets::cap(&self.pool, &o.page_url).await,
            Method::Turnstile => widgets::token_widget(&self.pool, TokenWidget::Turnstile, &o.page_url, &key()).await,
            Method::RecaptchaV2 | Method::RecaptchaV3 => {
                widgets::token_widget(&self.pool, TokenWidget::Recaptcha, &o.page_url, &key()).await
            }
            Method::Hcaptcha => widgets::token_widget(&self.pool, TokenWidget::Hcaptcha, &o.page_url, &key()).await,
            other => return Err(SolveError::Unsolvable(format!("the browser does not solve {other} tasks"))),
        };
        result.map_err(|e| {
            tracing::info!(%method, error = %e, "browser attempt failed");
            classify(&e)
        })
    }
}
