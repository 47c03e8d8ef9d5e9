//! The one error type of the crate: every way an image or the model can fail.

use tract_onnx::prelude::TractError;

/// Why an image could not be read, or the model could not be loaded or run.
///
/// The image variants are the client's fault (the service answers them with an
/// image error, never retries); [`OcrError::Model`] and [`OcrError::Inference`]
/// are ours.
#[derive(Debug, thiserror::Error)]
pub enum OcrError {
    /// Zero bytes, or an image with a zero width or height.
    #[error("the image is empty")]
    Empty,
    /// More bytes than [`crate::ImageLimits::max_bytes`].
    #[error("the image is {len} bytes, more than the {limit} allowed")]
    TooManyBytes { len: usize, limit: usize },
    /// A side or the pixel count over [`crate::ImageLimits`], read from the header.
    #[error("the image is {width}x{height} pixels, more than allowed")]
    TooLarge { width: u32, height: u32 },
    /// Not PNG, JPEG nor GIF.
    #[error("the image format is not recognised (PNG, JPEG or GIF expected)")]
    UnknownFormat,
    /// A known format that does not decode: truncated, corrupt, unsupported variant.
    #[error("the image does not decode: {0}")]
    Decode(#[source] image::ImageError),
    /// The decoder itself panicked on this input (a bug in it; caught, not propagated).
    #[error("the image decoder failed on this input")]
    DecoderPanic,
    /// No reading of the image satisfies the requested constraints.
    #[error("no reading of the image satisfies the constraints")]
    NoValidAnswer,
    /// The model or its `model.json` is missing, malformed or does not match the contract.
    #[error("the OCR model cannot be loaded: {0}")]
    Model(String),
    /// tract failed while running the loaded model.
    #[error("the OCR model failed to run: {0}")]
    Inference(#[source] TractError),
}

impl OcrError {
    /// True when the input image is at fault (as opposed to the model or its runtime).
    pub fn is_bad_image(&self) -> bool {
        matches!(
            self,
            OcrError::Empty
                | OcrError::TooManyBytes { .. }
                | OcrError::TooLarge { .. }
                | OcrError::UnknownFormat
                | OcrError::Decode(_)
                | OcrError::DecoderPanic
        )
    }
}
