//! `captcha-sweep`: run by a schedule (every minute in the template). Rounds
//! of the core's sweep: a task whose solve function died after claiming it is
//! retried (or given up once out of attempts), overdue and dead-lettered tasks
//! end `ERROR_CAPTCHA_UNSOLVABLE` with their holds released, holds left open
//! by a crash are reconciled, old results are purged.

use captcha_lambda::{handlers, run_scheduled, Error, Init};

/// Sweep rounds per invocation (each round is bounded per kind of work).
const MAX_ROUNDS: usize = 8;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let init = Init::start("captcha-sweep");
    let (_, core) = init.core().await?;
    run_scheduled(init, move || {
        let core = core.clone();
        async move {
            let r = handlers::sweep(&core, MAX_ROUNDS).await?;
            tracing::info!(?r, "swept");
            Ok(serde_json::json!({
                "retried": r.retried,
                "gaveUp": r.gave_up,
                "deadLetters": r.dead_letters,
                "holdsRepaired": r.holds_repaired,
                "purged": r.purged,
            }))
        }
    })
    .await
}
