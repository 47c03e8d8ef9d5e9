//! One SQS record of each queue, as the stage functions handle it. Each
//! returns a [`Verdict`]: storage trouble is retried (the record comes back
//! and, past the redrive policy's receive count, lands in the dead-letter
//! queue); a poison record (not a task id, an unknown or stale task) is
//! acknowledged and dropped by the core with a warning.

use std::sync::Arc;

use async_trait::async_trait;
use aws_lambda_events::event::sqs::SqsMessage;
use captcha_core::{Core, Finished, ImageSolver, Method, Pool, SolveError, TokenOptions, TokenSolver};
use captcha_callbacks::{Attempt, Deliverer};

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
/// Cap first, then the browser; without a browser (none deployed yet) a page
/// that needs one is unsolvable at once (never retried into the same queue).
pub struct BrowserQueueSolver {
    pub native: Option<Arc<dyn TokenSolver>>,
    /// The browser pool plugs in here (the Chromium crate's `TokenSolver`).
    pub browser: Option<Arc<dyn TokenSolver>>,
}

#[async_trait]
impl TokenSolver for BrowserQueueSolver {
    async fn solve(&self, method: Method, options: &TokenOptions) -> Result<String, SolveError> {
        let native_first = matches!(method, Method::Altcha | Method::Cap)
            && options.engine != Some(captcha_core::Engine::Browser);
        if native_first {
            if let Some(native) = &self.native {
                match native.solve(method, options).await {
                    Err(SolveError::NeedsBrowser(why)) => tracing::info!(why, "native solver needs a browser"),
                    other => return other,
                }
            }
        }
        match &self.browser {
            Some(browser) => browser.solve(method, options).await,
            None => Err(SolveError::Unsolvable(format!(
                "{} needs a browser; this deployment has none",
                method.as_str()
            ))),
        }
    }
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
