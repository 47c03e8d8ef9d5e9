//! `captcha-route`: intake queue records → each task routed to its pool's queue.

use captcha_lambda::{handlers, run_sqs, Error, Init};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let init = Init::start("captcha-route");
    let (_, core) = init.core().await?;
    run_sqs(init, 10, move |record| {
        let core = core.clone();
        async move { handlers::route(&core, &record).await }
    })
    .await
}
