//! `captcha-solve-browser`: browser queue records → the native proof-of-work
//! solver for ALTCHA and Cap first, then the honest Chromium pool of
//! `captcha-browser` when `CAPTCHA_CHROMIUM_PATH` names an installed
//! Chromium (a layer in AWS, see `infra/README.md`). Without one, widgets that
//! need a browser end `ERROR_CAPTCHA_UNSOLVABLE` at once.

use std::sync::Arc;
use std::time::Duration;

use captcha_browser::{BrowserPool, BrowserSolver, PoolConfig};
use captcha_core::TokenSolver;
use captcha_lambda::handlers::{self, BrowserQueueSolver};
use captcha_lambda::{run_sqs, Error, Init};
use captcha_netguard::GuardedClient;
use captcha_pow::{NativeSolver, SolveOptions};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let init = Init::start("captcha-solve-browser");
    let (settings, core) = init.core().await?;
    let client = GuardedClient::new(settings.net_policy.clone(), Duration::from_secs(15), "captcha-solve-browser")?;
    // One Chromium per instance, started on the first task that needs it.
    let (browser, concurrency) = match &settings.browser {
        Some(b) if b.chromium.is_file() => {
            let mut config = PoolConfig {
                chromium: b.chromium.clone(),
                max_browsers: 1,
                pages_per_browser: b.pages,
                task_deadline: b.deadline,
                policy: settings.net_policy.clone(),
                host_resolver_rules: b.host_resolver_rules.clone(),
                ..PoolConfig::default()
            };
            if let Some(sandbox) = b.sandbox {
                config.sandbox = sandbox;
            }
            let solver: Arc<dyn TokenSolver> = Arc::new(BrowserSolver::new(BrowserPool::new(config)?));
            (Some(solver), b.pages)
        }
        Some(b) => {
            tracing::warn!(chromium = %b.chromium.display(), "CAPTCHA_CHROMIUM_PATH does not exist: native solvers only");
            (None, 2)
        }
        None => (None, 2),
    };
    let solver = Arc::new(BrowserQueueSolver {
        native: Some(Arc::new(NativeSolver::new(client, SolveOptions::default()))),
        browser,
    });
    run_sqs(init, concurrency, move |record| {
        let (core, solver) = (core.clone(), solver.clone());
        async move { handlers::solve_token(&core, solver.as_ref(), &record).await }
    })
    .await
}
