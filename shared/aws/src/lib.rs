//! # captcha-aws
//!
//! The storage ports of `captcha-core` on AWS, for the serverless deployment
//! (`infra/template.yaml`):
//!
//! | port | adapter | on |
//! |---|---|---|
//! | [`TaskQueue`](captcha_core::ports::TaskQueue) | [`SqsQueue`] | the intake, pool and callback queues and their dead-letter queues |
//! | [`TaskStore`](captcha_core::ports::TaskStore) | [`DynamoTasks`] | the `tasks` and `images` tables |
//! | [`AccountStore`](captcha_core::ports::AccountStore) | [`DynamoAccounts`] | the `accounts` and `holds` tables |
//!
//! The attribute layout of every table is the contract in `infra/README.md`
//! ("Tables"); this crate is its only writer. Semantics mirror the SQLite
//! adapter (`captcha-embedded`) and are checked by the same shared suite
//! (`captcha_core::port_suite!`, run against LocalStack by `tests/aws.sh`).
//!
//! # What this crate owns
//! - the mapping from a core [`Queue`](captcha_core::ports::Queue) to a queue
//!   URL, and the SQS calls (batches of ten, no long polling); moving a message
//!   to its dead-letter queue is SQS's redrive policy, not code here;
//! - the item codecs of the four tables (a malformed item is
//!   [`StoreError::Corrupt`](captcha_core::StoreError::Corrupt), never a panic);
//! - every conditional write: task transitions guarded by state and attempt,
//!   holds as one `TransactWriteItems` that cannot overdraw, settle / release /
//!   refund at most once per task;
//! - the TTL attribute `expires_at` (Unix seconds) of finished tasks, images
//!   and closed holds, from [`Retention`].
//!
//! # Configuration
//! [`AwsStores::from_env`] (or each adapter's `from_env`) loads the SDK
//! configuration once with `aws_config::load_defaults`, which honours
//! `AWS_ENDPOINT_URL`: LocalStack is only a different endpoint, there is no
//! code path for it. Names come from `CAPTCHA_{INTAKE,OCR,BROWSER,CALLBACK}_QUEUE_URL`,
//! `CAPTCHA_*_DLQ_URL` (default: the queue URL + `-dlq`, the template's naming) and
//! `CAPTCHA_{TASKS,IMAGES,ACCOUNTS,HOLDS}_TABLE`.

mod accounts;
mod item;
mod sqs;
mod tasks;

use std::sync::Arc;
use std::time::Duration;

use aws_config::{BehaviorVersion, SdkConfig};
use captcha_core::ports::{Clock, Ports};
use captcha_core::Config;

pub use crate::accounts::{AccountTables, DynamoAccounts};
pub use crate::sqs::{QueueUrls, SqsQueue};
pub use crate::tasks::{DynamoTasks, TaskTables, IMAGE_PART_BYTES};

/// A required setting is missing or malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error("environment variable {0} is not set")]
    Missing(String),
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid { name: String, reason: String },
}

/// Reads a required, non-empty environment variable.
pub(crate) fn env_var(name: &str) -> Result<String, EnvError> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => Ok(v.trim().to_string()),
        _ => Err(EnvError::Missing(name.to_string())),
    }
}

/// Reads an optional environment variable (unset or empty = `None`).
pub(crate) fn env_opt(name: &str) -> Option<String> {
    std::env::var(name).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

/// How long finished records stay before DynamoDB's TTL removes them (the
/// `expires_at` attribute). The sweeper's `purge` / `purge_holds` delete them
/// earlier; TTL is the backstop when no sweeper runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// A finished task is kept this long after it ended …
    pub results: Duration,
    /// … and at least this long after it was created (it may be reported until then).
    pub report_window: Duration,
    /// A closed hold is kept this long after it closed.
    pub holds: Duration,
}

impl Retention {
    /// What the core's sweeper keeps with this configuration.
    pub fn from_config(c: &Config) -> Retention {
        Retention {
            results: c.result_retention,
            report_window: c.report_window,
            holds: c.report_window.max(c.result_retention) + c.task_deadline,
        }
    }

    /// From `CAPTCHA_RESULT_RETENTION_SECS` (the template sets it) over the
    /// core's defaults.
    pub fn from_env() -> Result<Retention, EnvError> {
        let mut c = Config::default();
        if let Some(v) = env_opt("CAPTCHA_RESULT_RETENTION_SECS") {
            let secs: u64 = v.parse().map_err(|_| EnvError::Invalid {
                name: "CAPTCHA_RESULT_RETENTION_SECS".into(),
                reason: format!("{v:?} is not a number of seconds"),
            })?;
            c.result_retention = Duration::from_secs(secs);
        }
        Ok(Retention::from_config(&c))
    }
}

impl Default for Retention {
    fn default() -> Self {
        Retention::from_config(&Config::default())
    }
}

/// Loads the SDK configuration (region, credentials, `AWS_ENDPOINT_URL`) the
/// standard way. Load it once per process and build every client from it.
pub async fn sdk_config() -> SdkConfig {
    aws_config::load_defaults(BehaviorVersion::latest()).await
}

/// All three adapters, built from one SDK configuration.
#[derive(Clone)]
pub struct AwsStores {
    pub queue: SqsQueue,
    pub tasks: DynamoTasks,
    pub accounts: DynamoAccounts,
}

impl AwsStores {
    /// Everything from the environment (see the crate docs).
    pub async fn from_env() -> Result<AwsStores, EnvError> {
        let sdk = sdk_config().await;
        AwsStores::from_sdk_env(&sdk)
    }

    /// Names from the environment, clients from `sdk`.
    pub fn from_sdk_env(sdk: &SdkConfig) -> Result<AwsStores, EnvError> {
        let retention = Retention::from_env()?;
        Ok(AwsStores {
            queue: SqsQueue::new(aws_sdk_sqs::Client::new(sdk), QueueUrls::from_env()?),
            tasks: DynamoTasks::new(aws_sdk_dynamodb::Client::new(sdk), TaskTables::from_env()?, retention),
            accounts: DynamoAccounts::new(aws_sdk_dynamodb::Client::new(sdk), AccountTables::from_env()?, retention),
        })
    }

    /// The core's port bundle.
    pub fn into_ports(self, clock: Arc<dyn Clock>) -> Ports {
        Ports { queue: Arc::new(self.queue), tasks: Arc::new(self.tasks), accounts: Arc::new(self.accounts), clock }
    }
}
