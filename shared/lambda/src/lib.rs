//! # captcha-lambda
//!
//! What the seven Lambda functions (`functions/captcha-*`) share, so that each
//! `main` is a few lines:
//!
//! - [`config`] — [`Settings::from_env`], one parser for every function's
//!   environment (`infra/README.md`, "Parameters → function environment");
//! - [`runtime`] — start-up ([`Init`]: logging, TLS provider, the core over
//!   `captcha_aws::AwsStores`, built once per cold start, the init-time line)
//!   and the loops: [`run_sqs`] (SQS event sources) and [`run_scheduled`]
//!   (the sweeper's schedule);
//! - [`sqs`] — [`handle_batch`], every record on its own with a partial batch
//!   response (`batchItemFailures`);
//! - [`handlers`] — one record of each queue (route, solve-ocr, solve-browser,
//!   pingback) and the sweep, over the core, unit-tested on the in-memory adapters;
//! - [`http`] — the API router behind API Gateway REST (v1) proxy events.
//!
//! Serverless pools are `{ocr, browser}` (the stack has no native queue):
//! ALTCHA and Cap go to the browser queue, whose function runs the native
//! proof-of-work solver first ([`handlers::BrowserQueueSolver`]).

pub mod config;
pub mod handlers;
pub mod http;
pub mod runtime;
pub mod sqs;

pub use captcha_core::{ImageSolver, TokenSolver};
pub use config::{BrowserSettings, Settings};
pub use runtime::{run_scheduled, run_sqs, Error, Init};
pub use sqs::{handle_batch, Verdict};
