//! The core's [`TokenSolver`] port over the native solvers: what the `native`
//! pool's workers run (captchad, and the solve Lambda).

use async_trait::async_trait;
use captcha_core::{Method, SolveError, TokenOptions, TokenSolver};
use captcha_netguard::GuardedClient;

use crate::{solve, PowError, SolveOptions, Widget};

/// Native ALTCHA and Cap solving for the core. Build once per process.
pub struct NativeSolver {
    client: GuardedClient,
    opts: SolveOptions,
}

impl NativeSolver {
    pub fn new(client: GuardedClient, opts: SolveOptions) -> NativeSolver {
        NativeSolver { client, opts }
    }
}

/// How a native failure counts for the task: pages that need scripts go to
/// the browser; a refused address or a malformed page never improves;
/// network trouble, a slow proof or a refused proof may succeed next attempt.
pub fn classify(e: &PowError) -> SolveError {
    match e {
        e if e.needs_browser() => SolveError::NeedsBrowser(e.to_string()),
        PowError::Refused(_) | PowError::BadChallenge(_) | PowError::TooLarge { .. } => {
            SolveError::Unsolvable(e.to_string())
        }
        _ => SolveError::Failed(e.to_string()),
    }
}

#[async_trait]
impl TokenSolver for NativeSolver {
    async fn solve(&self, method: Method, options: &TokenOptions) -> Result<String, SolveError> {
        let widget = match method {
            Method::Altcha => Widget::Altcha,
            Method::Cap => Widget::Cap,
            other => return Err(SolveError::NeedsBrowser(format!("no native solver for {other}"))),
        };
        match solve(&self.client, widget, &options.page_url, &self.opts).await {
            Ok(solution) => {
                tracing::info!(
                    %method,
                    attempts = solution.attempts,
                    compute_ms = solution.compute.as_millis() as u64,
                    "native proof of work solved"
                );
                Ok(solution.token)
            }
            Err(e) => Err(classify(&e)),
        }
    }
}
