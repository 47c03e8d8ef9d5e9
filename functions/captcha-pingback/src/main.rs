//! `captcha-pingback`: callback queue records → one signed delivery attempt
//! each; failures back off via the message's visibility, exhausted ones go to
//! the callback dead-letter queue.

use std::sync::Arc;

use captcha_callbacks::{Deliverer, PingbackConfig};
use captcha_lambda::{handlers, run_sqs, Error, Init};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let init = Init::start("captcha-pingback");
    let (settings, core) = init.core().await?;
    let cfg = PingbackConfig { policy: settings.net_policy.clone(), ..Default::default() };
    let deliverer = Arc::new(Deliverer::new(core, cfg)?);
    run_sqs(init, 10, move |record| {
        let deliverer = deliverer.clone();
        async move { handlers::pingback(&deliverer, &record).await }
    })
    .await
}
