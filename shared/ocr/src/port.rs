//! The OCR model behind the core's `ImageSolver` port (feature `core-port`),
//! shared by the embedded server (`captchad`) and the `captcha-solve-ocr` Lambda.

use std::path::Path;
use std::sync::Arc;

use captcha_core::{ImageOptions, ImageSolver, SolveError};

use crate::{CellReader, Constraints, Ocr, OcrError};

/// Reads images with the model loaded once per process.
pub struct OcrSolver {
    ocr: Arc<Ocr>,
}

impl OcrSolver {
    /// Loads the models compiled into the binary (the main model and the
    /// glyph-cell reader).
    pub fn load() -> Result<OcrSolver, OcrError> {
        OcrSolver::load_with(None, None)
    }

    /// Loads the main model from `model` (a directory with `captcha.onnx` and
    /// `model.json`, e.g. `shared/ocr/model-bilstm`; it comes without a cell
    /// reader) instead of the embedded one, and attaches the glyph-cell
    /// reader from `cells` (with `cells.onnx` and `model.json`, e.g.
    /// `shared/ocr/model-cells`) instead of the embedded one.
    pub fn load_with(model: Option<&Path>, cells: Option<&Path>) -> Result<OcrSolver, OcrError> {
        let ocr = match model {
            Some(dir) => Ocr::from_files(dir.join("captcha.onnx"), dir.join("model.json"))?,
            None => Ocr::embedded()?,
        };
        let ocr = match cells {
            Some(dir) => {
                ocr.with_cells(Some(CellReader::from_files(dir.join("cells.onnx"), dir.join("model.json"))?))?
            }
            None => ocr,
        };
        Ok(OcrSolver { ocr: Arc::new(ocr) })
    }

    /// The engine behind the solver.
    pub fn ocr(&self) -> &Ocr {
        &self.ocr
    }
}

/// The classic options, as the decoder's constraints.
pub fn constraints(opts: &ImageOptions) -> Constraints {
    Constraints {
        numeric: opts.numeric,
        min_len: opts.min_len,
        max_len: opts.max_len,
        case_sensitive: opts.case_sensitive,
        calc: opts.calc,
        phrase: opts.phrase,
    }
}

impl ImageSolver for OcrSolver {
    fn solve(&self, image: &[u8], opts: &ImageOptions) -> Result<String, SolveError> {
        match self.ocr.recognize(image, &constraints(opts)) {
            Ok(answer) if !answer.text.is_empty() => Ok(answer.text),
            Ok(_) => Err(SolveError::Unsolvable("nothing read".into())),
            // The model is deterministic: an image it cannot read, or read
            // within the constraints, will not read on a retry either.
            Err(
                e @ (OcrError::Empty
                | OcrError::TooManyBytes { .. }
                | OcrError::TooLarge { .. }
                | OcrError::UnknownFormat
                | OcrError::Decode(_)
                | OcrError::DecoderPanic
                | OcrError::NoValidAnswer),
            ) => Err(SolveError::Unsolvable(e.to_string())),
            Err(e) => Err(SolveError::Failed(e.to_string())),
        }
    }
}
