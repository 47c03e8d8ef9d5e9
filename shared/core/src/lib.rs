//! # captcha-core
//!
//! The domain of the CAPTCHA-solving service with no AWS and no HTTP in it:
//! task ids, methods and pools, the task state machine, accounts and money
//! rules, limits, the ports (queue, task store, account store, clock, solver)
//! and the stage logic (submit, route, solve, poll, report) written once over
//! those ports, so the embedded server and the Lambda functions share it.
//!
//! # Layout
//! - [`service`]: the [`CaptchaService`] facade the protocol layer calls.
//! - [`error`]: [`ErrorCode`], every client-visible error.
//! - [`domain`]: [`Method`], [`Pool`], [`Task`] and its [`TaskState`] machine,
//!   [`Account`], [`ApiKey`], holds, task ids, image sniffing.
//! - [`config`]: [`Config`], prices, limits and timings.
//! - [`ports`]: the small async traits the stages need, plus
//!   [`ports::memory::MemoryStore`], an in-memory adapter of all of them.
//! - [`core`](mod@core): [`Core`], the stage logic and the single-step worker API
//!   (`route_once`, `solve_once`, `claim`/`finish`, `sweep_once`,
//!   `recover_interrupted`).
//! - [`admin`]: [`AccountAdmin`] for the account CLI.
//!
//! # Wiring (what a binary does)
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use captcha_core::{Config, Core, Pool, ports::{Ports, SystemClock, memory::MemoryStore}};
//! let clock = Arc::new(SystemClock);
//! let store = Arc::new(MemoryStore::new(clock.clone()));
//! let core = Arc::new(Core::new(Config::default(), Ports::from_store(store, clock)));
//! let solver = |_img: &[u8], _o: &captcha_core::ImageOptions| Ok::<_, captcha_core::ports::SolveError>("42".to_string());
//! loop {
//!     let routed = core.route_once().await?;
//!     let solved = core.solve_once(Pool::Ocr, &solver, 8).await?;
//!     if routed + solved == 0 { break; }
//! }
//! core.sweep_once().await?;
//! # Ok(()) }
//! ```

pub mod admin;
pub mod config;
pub mod core;
pub mod domain;
pub mod error;
pub mod ports;
pub mod ratelimit;
pub mod service;

#[cfg(any(test, feature = "testkit"))]
pub mod testkit;

pub use crate::admin::{AccountAdmin, AdminError, CreatedAccount};
pub use crate::config::Config;
pub use crate::core::{Claim, Core, CoreError, Finished, SweepReport};
pub use crate::domain::{
    new_callback_secret, new_task_id, Account, AccountId, ApiKey, Hold, HoldState, ImageFormat, Method, Pool, Task,
    TaskParams, TaskState, Transition,
};
pub use crate::error::ErrorCode;
pub use crate::ports::{ImageSolver, Ports, SolveError, StoreError, TokenSolver};
pub use crate::service::{
    format_money, parse_money, CaptchaService, Engine, ImageOptions, PingbackOp, Protocol, Report, SubmitRequest,
    TaskId, TaskResult, TaskSpec, TokenOptions,
};
