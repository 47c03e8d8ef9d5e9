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
//! - [`store`]: opening the data dir;
//! - [`emit`]: what the commands print on stdout.

pub mod account;
/// The OCR model behind the core's solver port (now in `captcha_ocr::port`).
pub mod ocr_solver {
    pub use captcha_ocr::port::{constraints, OcrSolver};
}
pub mod serve;
pub mod store;

/// Writes a command's output to stdout in one go. A reader that closed the
/// pipe early (`captchad account create | head -n 1`) has taken what it
/// wanted, so a broken pipe is not an error: neither the command nor the
/// server dies of it (`println!` would panic).
pub fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(anyhow::Error::new(e).context("writing to stdout")),
        _ => Ok(()),
    }
}
