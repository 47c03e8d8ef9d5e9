//! # captcha-core
//!
//! The domain of the CAPTCHA-solving service with no AWS and no HTTP in it:
//! task ids, methods and pools, the task state machine, accounts and money
//! rules, limits, the ports (queue, task store, account store, clock, solver)
//! and the stage logic (submit, route, solve, poll, report) written once over
//! those ports, so the embedded server and the Lambda functions share it.

pub mod error;
pub mod service;

pub use error::ErrorCode;
pub use service::{
    format_money, parse_money, CaptchaService, ImageOptions, Report, SubmitRequest, TaskId,
    TaskResult, TaskSpec,
};
