//! # captchad
//!
//! The embedded deployment: one binary that runs every stage of the service
//! (HTTP API, router, OCR workers, sweeper) in one process over one SQLite
//! file, plus the account CLI. The Lambda functions run the same core stages
//! one per function; this crate only wires them together.
//!
//! - [`serve`]: the server and its stage loops;
//! - [`account`]: `create`, `topup`, `list`;
//! - [`ocr_solver`]: the OCR model behind the core's solver port;
//! - [`store`]: opening the data dir.

pub mod account;
/// The OCR model behind the core's solver port (now in `captcha_ocr::port`).
pub mod ocr_solver {
    pub use captcha_ocr::port::{constraints, OcrSolver};
}
pub mod serve;
pub mod store;
