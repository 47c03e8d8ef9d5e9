//! `captcha-solve-browser`: browser queue records → the native proof-of-work
//! solver for ALTCHA and Cap; other widgets need the browser pool, which is
//! not deployed yet (they end `ERROR_CAPTCHA_UNSOLVABLE`).

use std::sync::Arc;
use std::time::Duration;

use captcha_lambda::handlers::{self, BrowserQueueSolver};
use captcha_lambda::{run_sqs, Error, Init};
use captcha_netguard::GuardedClient;
use captcha_pow::{NativeSolver, SolveOptions};

/// Tasks solved at once per instance (the mapping's batch size is 1; the
/// bound matters when it is raised).
const CONCURRENCY: usize = 2;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let init = Init::start("captcha-solve-browser");
    let (settings, core) = init.core().await?;
    let client = GuardedClient::new(settings.net_policy.clone(), Duration::from_secs(15), "captcha-solve-browser")?;
    let solver = Arc::new(BrowserQueueSolver {
        native: Some(Arc::new(NativeSolver::new(client, SolveOptions::default()))),
        // browser pool plugs in here (the Chromium crate's TokenSolver, started once per cold start).
        browser: None,
    });
    run_sqs(init, CONCURRENCY, move |record| {
        let (core, solver) = (core.clone(), solver.clone());
        async move { handlers::solve_token(&core, solver.as_ref(), &record).await }
    })
    .await
}
