//! Process start-up shared by the seven `main`s: logging, the TLS provider, the
//! [`Core`] over the AWS adapters (built once per cold start), the init-time
//! log line, and the runtime loops.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use captcha_aws::AwsStores;
use captcha_core::ports::SystemClock;
use captcha_core::Core;
use lambda_runtime::{service_fn, LambdaEvent};

use crate::config::Settings;
use crate::sqs::{handle_batch, Verdict};

pub type Error = lambda_runtime::Error;

/// A cold start in progress: call [`Init::start`] first thing in `main`.
pub struct Init {
    function: &'static str,
    started: Instant,
}

impl Init {
    /// Logging (`RUST_LOG`, default `info`, to stderr: CloudWatch) and the one
    /// TLS crypto provider (ring, as in captchad; the SDK and reqwest both link rustls).
    pub fn start(function: &'static str) -> Init {
        let started = Instant::now();
        let _ = rustls::crypto::ring::default_provider().install_default();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
            .with_ansi(false)
            .with_writer(std::io::stderr)
            .try_init();
        Init { function, started }
    }

    /// Settings and the core over DynamoDB + SQS, from the environment.
    pub async fn core(&self) -> Result<(Settings, Arc<Core>), Error> {
        let settings = Settings::from_env()?;
        let stores = AwsStores::from_env().await?;
        let core = Arc::new(Core::new(settings.core.clone(), stores.into_ports(Arc::new(SystemClock))));
        Ok((settings, core))
    }

    /// Logs the init time (process start to the runtime's first `next`
    /// poll, which follows immediately) in a fixed, greppable form.
    pub fn ready(&self) {
        let ms = self.started.elapsed().as_secs_f64() * 1000.0;
        eprintln!("CAPTCHA_LAMBDA_INIT function={} init_ms={ms:.1}", self.function);
        tracing::info!(function = self.function, init_ms = ms, "initialised");
    }
}

/// Serves an SQS event source: every record through `handler`, at most
/// `concurrency` at once, answering with the partial batch response.
pub async fn run_sqs<F, Fut>(init: Init, concurrency: usize, handler: F) -> Result<(), Error>
where
    F: Fn(SqsMessage) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Verdict> + Send,
{
    let handler = Arc::new(handler);
    init.ready();
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let handler = handler.clone();
        async move {
            let n = event.payload.records.len();
            let response: SqsBatchResponse = handle_batch(event.payload, concurrency, |r| handler(r)).await;
            tracing::debug!(records = n, failures = response.batch_item_failures.len(), "batch done");
            Ok::<_, Error>(response)
        }
    }))
    .await
}

/// Serves a scheduled (EventBridge) invocation: the event's content does not
/// matter; `job` runs once per invocation and its JSON is the result. An
/// error fails the invocation (the schedule runs it again next time).
pub async fn run_scheduled<F, Fut>(init: Init, job: F) -> Result<(), Error>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<serde_json::Value, Error>> + Send,
{
    let job = Arc::new(job);
    init.ready();
    lambda_runtime::run(service_fn(move |_event: LambdaEvent<serde_json::Value>| {
        let job = job.clone();
        async move { job().await }
    }))
    .await
}
