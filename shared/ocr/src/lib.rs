//! # captcha-ocr
//!
//! Reads the text of image CAPTCHAs on the CPU, in-process: the solver the
//! service falls back to before (or instead of) a human worker.
//!
//! This crate owns the *inference* side of the OCR engine; the trainer's side
//! (`training/`, `model/`, `validation/`, `MODEL.md`) produces what it runs:
//! `model/captcha.onnx`, a CTC recogniser, and `model/model.json`, its input
//! size, normalisation and charset.
//!
//! # Layout
//! - [`preprocess`]: bytes → the model's input tensor — decoding with size
//!   limits checked on the header first, alpha over white, gray, the crop to
//!   the text's columns when `model.json` asks for it, resize bit-exact with
//!   the trainer's Pillow, pad, normalise.
//! - [`model`]: [`Ocr`], the model loaded **once** (embedded in the binary
//!   with [`Ocr::embedded`] / [`Ocr::global`], or from files with
//!   [`Ocr::from_files`]) into an optimised tract plan; `Send + Sync`, one
//!   instance serves every thread.
//! - [`cells`]: [`CellReader`], a second model (`model-cells/`, embedded
//!   beside the main one and attached by [`Ocr::embedded`]; another one with
//!   [`Ocr::with_cells`]), for images that draw each character in its own
//!   coloured, rotated cell (multicolorcaptcha and its clones): split by
//!   geometry, each cell classified in colour, the cells decoded like a CTC
//!   output.
//! - [`ctc`]: decoding the model's per-step log-probabilities under the
//!   client's [`Constraints`] (digits only, length bounds, phrase, calc, case),
//!   applied to the probabilities — masks plus a constrained prefix beam
//!   search for the rules masks cannot enforce (a length bound the best
//!   reading already meets needs none) — never by filtering the decoded
//!   string; and, where the client set no rule the best reading misses,
//!   each model's [`AlphabetPrior`] (`alphabet_prior` in
//!   its `model.json`): the alphabets texts are drawn from, which decide a
//!   character the model leaves nearly even from the string's others.
//! - [`error`]: [`OcrError`]; no input, however broken or large, panics.
//!
//! The `ocr-bench` binary measures accuracy per validation style, latency
//! and throughput, next to the ddddocr anchor (see `BENCHMARKS.md`).

pub mod cells;
pub mod ctc;
pub mod error;
pub mod model;
#[cfg(feature = "core-port")]
pub mod port;
pub mod preprocess;

pub use cells::CellReader;
pub use ctc::{AlphabetPrior, Answer, Charset, Constraints, LogProbs};
pub use error::OcrError;
pub use model::{AlphabetShare, ModelSpec, Ocr};
pub use preprocess::ImageLimits;
