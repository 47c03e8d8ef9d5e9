//! One SQS record of each queue, as the stage functions handle it. Each
//! returns a [`Verdict`]: storage trouble is retried (the record comes back
//! and, past the redrive policy's receive count, lands in the dead-letter
//! queue); a poison record (not a task id, an unknown or stale task) is
//! acknowledged and dropped by the core with a warning.

use std::sync::Arc;

use async_trait::async_trait;
use aws_lambda_events::event::sqs::SqsMessage;
use captcha_callbacks::{Attempt, Deliverer};
use captcha_core::{Core, Finished, ImageSolver, Method, Pool, SolveError, SweepReport, TokenOptions, TokenSolver};

use crate::sqs::{message_of, Verdict};

fn body(record: &SqsMessage) -> &str {
    record.body.as_deref().unwrap_or("")
}

/// `captcha-route`: an intake message → its task routed to its pool's queue.
pub async fn route(core: &Core, record: &SqsMessage) -> Verdict {
    core.route_message(body(record)).await.into()
}

/// `captcha-solve-ocr`: claims the task an ocr message names, reads the image
/// on a blocking thread, records the outcome (answer + charge, retry via the
/// intake queue, or unsolvable + hold released).
pub async fn solve_image(core: &Core, solver: Arc<dyn ImageSolver>, record: &SqsMessage) -> Verdict {
    solve_image_outcome(core, solver, record).await.map(|_| ()).into()
}

/// [`solve_image`], with what became of the task (`None`: nothing to do).
pub async fn solve_image_outcome(
    core: &Core,
    solver: Arc<dyn ImageSolver>,
    record: &SqsMessage,
) -> Result<Option<Finished>, captcha_core::StoreError> {
    let Some(mut claim) = core.claim_message(Pool::Ocr, body(record)).await? else { return Ok(None) };
    let outcome = match claim.task.params.image_options().cloned() {
        Some(opts) => {
            let image = std::mem::take(&mut claim.image);
            tokio::task::spawn_blocking(move || solver.solve(&image, &opts))
                .await
                .unwrap_or_else(|_| Err(SolveError::Failed("the solver panicked".into())))
        }
        None => Err(SolveError::Unsolvable("not an image task".into())),
    };
    Ok(Some(core.finish(claim, outcome).await?))
}

/// `captcha-solve-browser`: claims the token task a browser message names,
/// solves it with `solver`, records the outcome.
pub async fn solve_token(core: &Core, solver: &dyn TokenSolver, record: &SqsMessage) -> Verdict {
    solve_token_outcome(core, solver, record).await.map(|_| ()).into()
}

/// [`solve_token`], with what became of the task (`None`: nothing to do).
pub async fn solve_token_outcome(
    core: &Core,
    solver: &dyn TokenSolver,
    record: &SqsMessage,
) -> Result<Option<Finished>, captcha_core::StoreError> {
    let Some(claim) = core.claim_message(Pool::Browser, body(record)).await? else { return Ok(None) };
    let outcome = match claim.task.params.token_options() {
        Some(opts) => solver.solve(claim.task.method, opts).await,
        None => Err(SolveError::Unsolvable("not a token task".into())),
    };
    Ok(Some(core.finish(claim, outcome).await?))
}

/// The browser queue's solver: the native proof-of-work solver for ALTCHA and
/// Cap first (unless `engine=browser`), then the browser; without a browser
/// (no Chromium deployed) a page that needs one is unsolvable at once (never
/// retried into the same queue); one forced to `engine=native` is never
/// handed to the browser.
pub struct BrowserQueueSolver {
    pub native: Option<Arc<dyn TokenSolver>>,
    /// The Chromium pool (`captcha_browser::BrowserSolver`), if deployed.
    pub browser: Option<Arc<dyn TokenSolver>>,
}

#[async_trait]
impl TokenSolver for BrowserQueueSolver {
    async fn solve(&self, method: Method, options: &TokenOptions) -> Result<String, SolveError> {
        let native_first =
            matches!(method, Method::Altcha | Method::Cap) && options.engine != Some(captcha_core::Engine::Browser);
        if native_first {
            if let Some(native) = &self.native {
                // With engine=native the outcome stands as it is: the core's
                // `finish` gives up a forced-native task that needs a browser.
                match native.solve(method, options).await {
                    Err(SolveError::NeedsBrowser(why)) if options.engine != Some(captcha_core::Engine::Native) => {
                        tracing::info!(why, "native solver needs a browser")
                    }
                    other => return other,
                }
            }
        }
        match &self.browser {
            Some(browser) => browser.solve(method, options).await,
            None => {
                Err(SolveError::Unsolvable(format!("{} needs a browser; this deployment has none", method.as_str())))
            }
        }
    }
}

/// `captcha-sweep` (a schedule, every minute in the template): rounds of
/// [`Core::sweep_once`] until one finds nothing to do, at most `max_rounds`
/// (each round handles a bounded batch of each kind). Retries tasks whose
/// solver died after claiming them, gives up overdue and dead-lettered ones
/// (releasing their holds), repairs holds left open, purges old results.
pub async fn sweep(core: &Core, max_rounds: usize) -> Result<SweepReport, captcha_core::StoreError> {
    let mut total = SweepReport::default();
    for _ in 0..max_rounds.max(1) {
        let r = core.sweep_once().await?;
        total.retried += r.retried;
        total.gave_up += r.gave_up;
        total.dead_letters += r.dead_letters;
        total.holds_repaired += r.holds_repaired;
        total.purged += r.purged;
        if r.is_empty() {
            break;
        }
    }
    Ok(total)
}

/// `captcha-pingback`: one delivery attempt. On failure the message is hidden
/// for its back-off (`Schedule::delay`) and reported as a batch failure; once
/// the attempts are used up it goes to the callback DLQ and is acknowledged.
pub async fn pingback(deliverer: &Deliverer, record: &SqsMessage) -> Verdict {
    match deliverer.deliver(body(record)).await {
        Ok(Attempt::Delivered | Attempt::Nothing) => Verdict::Ack,
        Ok(Attempt::Failed(why)) => match deliverer.after_failure(&message_of(record), &why).await {
            Ok(true) => Verdict::Retry(why),
            Ok(false) => Verdict::Ack,
            Err(e) => Verdict::Retry(format!("{why}; and then: {e}")),
        },
        Err(e) => Verdict::Retry(e.to_string()),
    }
}
