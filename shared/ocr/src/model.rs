//! The loaded model: `model.json` read and checked, the ONNX graph turned
//! once into an optimised tract plan for each fixed input shape (one, or one
//! per canvas width when `model.json` sets `max_width`).

use std::io::Cursor;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use image::RgbImage;
use serde::Deserialize;
use tract_onnx::prelude::*;

use crate::cells::{CellMap, CellReader};
use crate::ctc::{self, AlphabetPrior, Answer, Charset, Constraints, LogProbs};
use crate::error::OcrError;
use crate::preprocess::{self, Crop, ImageLimits, InputSpec, Resize};

/// `model/model.json`: what the trainer promises about `captcha.onnx`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ModelSpec {
    pub input_height: u32,
    pub input_width: u32,
    /// Class `i` (from 1) is `charset[i - 1]`.
    pub charset: String,
    /// The CTC blank's class; the contract fixes it at 0.
    pub blank: u32,
    pub mean: f32,
    pub std: f32,
    pub version: String,
    /// Step 2's crop; absent means `none`, as for every model before the
    /// option existed.
    #[serde(default)]
    pub crop: Crop,
    /// Step 3 of the preprocessing; absent means `fit`, as for every model
    /// before the option existed.
    #[serde(default)]
    pub resize: Resize,
    /// With `fill-height`: the most a wide image is squeezed across (>= 1);
    /// absent: no limit.
    #[serde(default)]
    pub max_squeeze: Option<f64>,
    /// The alphabets texts are drawn from, and how often: a prior the decode
    /// of this model's output applies (see [`ctc::AlphabetPrior`]); absent
    /// or empty: none.
    #[serde(default)]
    pub alphabet_prior: Vec<AlphabetShare>,
    /// Test-time shifts (MODEL.md, attempt 23 part C): when the least sure
    /// step of a reading has its likeliest class below `tta_below`, the
    /// model also reads the input moved by each `[dy, dx]` (rows down,
    /// columns right; the uncovered border repeats the edge). Each
    /// reading's decode is a candidate, and the answer is the candidate the
    /// readings together find likeliest ([`Ocr::decode_readings`]). Absent
    /// or empty: one run.
    #[serde(default)]
    pub tta_shifts: Vec<[i32; 2]>,
    /// See `tta_shifts`; absent: 1.0, every reading.
    #[serde(default = "every_reading")]
    pub tta_below: f32,
    /// With `max_width`: the `tta_below` of a canvas wider than
    /// `input_width` (MODEL.md, attempt 33). A wider canvas has more CTC
    /// steps, so more chances for one to fall under a threshold chosen for
    /// `input_width`; absent: `tta_below` for every canvas.
    #[serde(default)]
    pub tta_below_wide: Option<f32>,
    /// With `resize` `fit`: the widest canvas a wide image gets (MODEL.md,
    /// attempt 27; [`InputSpec::canvas_width`]); the graph must take any
    /// width, and one plan is built per canvas width. Absent: every canvas
    /// is `input_width`.
    #[serde(default)]
    pub max_width: Option<u32>,
    /// The canvas widths from `input_width` to `max_width` go in steps of
    /// this (a multiple of 4); absent: 8.
    #[serde(default = "eight_columns")]
    pub width_step: u32,
}

fn every_reading() -> f32 {
    1.0
}

impl ModelSpec {
    /// The re-read threshold of a canvas `width` columns wide:
    /// `tta_below_wide` above `input_width` when it is set, else `tta_below`.
    pub fn tta_below_at(&self, width: usize) -> f32 {
        match self.tta_below_wide {
            Some(wide) if width > self.input_width as usize => wide,
            _ => self.tta_below,
        }
    }
}

fn eight_columns() -> u32 {
    8
}

/// One entry of `alphabet_prior`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AlphabetShare {
    pub alphabet: String,
    /// The share of texts drawn from `alphabet` (the shares sum to at most 1).
    pub share: f64,
}

/// The plan tract runs: the optimised graph, fixed at batch 1.
pub(crate) type Plan = Arc<TypedSimplePlan>;

/// A model.json's `alphabet_prior` against the charset the decode reads;
/// `None` when it lists no alphabet.
fn compile_prior(charset: &Charset, modes: &[AlphabetShare]) -> Result<Option<AlphabetPrior>, OcrError> {
    if modes.is_empty() {
        return Ok(None);
    }
    AlphabetPrior::new(charset, modes.iter().map(|m| (m.alphabet.as_str(), m.share))).map(Some)
}

/// ONNX operators whose products tract runs on its int8 kernels.
const INT8_OPS: &[&str] = &["QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"];

/// The int8 operators among an ONNX graph's nodes, each named once.
pub(crate) fn int8_ops(onnx: &[u8]) -> Result<Vec<String>, OcrError> {
    let proto = tract_onnx::onnx()
        .proto_model_for_read(&mut Cursor::new(onnx))
        .map_err(|e| OcrError::Model(format!("not an ONNX model: {e:#}")))?;
    let mut found: Vec<String> = Vec::new();
    for node in proto.graph.iter().flat_map(|g| &g.node) {
        if INT8_OPS.contains(&node.op_type.as_str()) && !found.contains(&node.op_type) {
            found.push(node.op_type.clone());
        }
    }
    Ok(found)
}

/// Whether this CPU has AMX tiles (CPUID leaf 7, EDX bit 24).
pub(crate) fn cpu_has_amx() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: CPUID exists on every x86-64 CPU; leaf 7 is reported as
        // zeros where it is not implemented.
        #[allow(unused_unsafe)]
        let leaf7 = unsafe { std::arch::x86_64::__cpuid_count(7, 0) };
        leaf7.edx & (1 << 24) != 0
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Refuses an int8 graph on a CPU with AMX: tract 0.23.9 picks its AMX
/// int8 kernel there, and that kernel faults (SIGSEGV, the whole process)
/// on a thread other than the one that loaded the model (MODEL.md, "int8
/// convs in tract"), which is how the engine's worker threads call it.
/// Every shipped model is f32; this stops a user's int8 file from taking
/// the service down.
pub(crate) fn refuse_int8_on_amx(onnx: &[u8], amx: bool) -> Result<(), OcrError> {
    if !amx {
        return Ok(());
    }
    let ops = int8_ops(onnx)?;
    if ops.is_empty() {
        return Ok(());
    }
    Err(OcrError::Model(format!(
        "an int8 graph ({}) on a CPU with AMX: tract's AMX int8 kernel crashes when threads share the model; use an f32 model here",
        ops.join(", ")
    )))
}

/// An ONNX graph as an optimised tract plan for one fixed input shape.
pub(crate) fn plan_for(onnx: &[u8], input: [usize; 4]) -> TractResult<Plan> {
    tract_onnx::onnx()
        .model_for_read(&mut Cursor::new(onnx))?
        .with_input_fact(0, f32::fact(input).into())?
        .into_optimized()?
        .into_runnable()
}

/// A model file's bytes; a missing file is a model error naming the path.
pub(crate) fn read_model_file(path: &Path) -> Result<Vec<u8>, OcrError> {
    std::fs::read(path).map_err(|e| OcrError::Model(format!("{}: {e}", path.display())))
}

/// An OCR engine: one model, loaded once, shared by every thread.
///
/// `Ocr` is `Send + Sync`; [`Ocr::recognize`] takes `&self` and may be called
/// from any number of threads at once (each call runs the shared read-only
/// plan with its own tract state).
pub struct Ocr {
    /// One plan per canvas width ([`InputSpec::canvas_widths`]), narrowest first.
    plans: Vec<(usize, Plan)>,
    spec: ModelSpec,
    charset: Charset,
    /// `spec.alphabet_prior`, compiled; for the main model's output only.
    prior: Option<AlphabetPrior>,
    input: InputSpec,
    limits: ImageLimits,
    /// CTC time steps of the output.
    steps: usize,
    /// Reads strips of glyph cells, when a cell model is attached, with its
    /// classes mapped onto this model's charset.
    cells: Option<AttachedCells>,
}

/// A cell reader attached to a main model.
struct AttachedCells {
    reader: CellReader,
    /// Its classes onto the main model's charset.
    map: CellMap,
    /// Its `alphabet_prior`, compiled against the main charset.
    prior: Option<AlphabetPrior>,
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Ocr>();
};

/// The model committed in `shared/ocr/model/`, when the build found it.
#[cfg(ocr_embedded_model)]
const EMBEDDED: Option<(&[u8], &[u8])> =
    Some((include_bytes!("../model/captcha.onnx"), include_bytes!("../model/model.json")));
#[cfg(not(ocr_embedded_model))]
const EMBEDDED: Option<(&[u8], &[u8])> = None;

/// The glyph-cell reader committed in `shared/ocr/model-cells/`, when the
/// build found it.
#[cfg(ocr_embedded_cells)]
const EMBEDDED_CELLS: Option<(&[u8], &[u8])> =
    Some((include_bytes!("../model-cells/cells.onnx"), include_bytes!("../model-cells/model.json")));
#[cfg(not(ocr_embedded_cells))]
const EMBEDDED_CELLS: Option<(&[u8], &[u8])> = None;

impl Ocr {
    /// Loads the model embedded in the binary at build time, with the
    /// embedded glyph-cell reader attached when the build has one.
    pub fn embedded() -> Result<Ocr, OcrError> {
        let (onnx, json) = EMBEDDED
            .ok_or_else(|| OcrError::Model("this build has no embedded model (shared/ocr/model/ was empty)".into()))?;
        let cells = EMBEDDED_CELLS.map(|(onnx, json)| CellReader::from_bytes(onnx, json)).transpose()?;
        Ocr::from_bytes(onnx, json)?.with_cells(cells)
    }

    /// The same engine with (or without) a cell reader for strips of glyph
    /// cells. Errors if the cell model reads a character the main charset lacks.
    pub fn with_cells(mut self, cells: Option<CellReader>) -> Result<Ocr, OcrError> {
        self.cells = match cells {
            Some(reader) => {
                let map = reader.map_onto(&self.charset)?;
                let prior = compile_prior(&self.charset, &reader.spec().alphabet_prior)?;
                Some(AttachedCells { reader, map, prior })
            }
            None => None,
        };
        Ok(self)
    }

    /// The cell reader, if one is attached.
    pub fn cells(&self) -> Option<&CellReader> {
        self.cells.as_ref().map(|cells| &cells.reader)
    }

    /// The embedded model, loaded on first use and then shared for the life
    /// of the process.
    pub fn global() -> Result<&'static Ocr, OcrError> {
        static GLOBAL: OnceLock<Result<Ocr, String>> = OnceLock::new();
        GLOBAL
            .get_or_init(|| Ocr::embedded().map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| OcrError::Model(e.clone()))
    }

    /// Loads a model and its `model.json` from files.
    pub fn from_files(onnx: impl AsRef<Path>, json: impl AsRef<Path>) -> Result<Ocr, OcrError> {
        Ocr::from_bytes(&read_model_file(onnx.as_ref())?, &read_model_file(json.as_ref())?)
    }

    /// Loads a model from its ONNX bytes and its `model.json` bytes, checks
    /// them against each other and runs it once.
    pub fn from_bytes(onnx: &[u8], json: &[u8]) -> Result<Ocr, OcrError> {
        let spec: ModelSpec = serde_json::from_slice(json).map_err(|e| OcrError::Model(format!("model.json: {e}")))?;
        if spec.blank != 0 {
            return Err(OcrError::Model(format!("blank is class {}, 0 expected", spec.blank)));
        }
        if spec.input_height == 0 || spec.input_width == 0 || spec.input_height > 1024 || spec.input_width > 4096 {
            return Err(OcrError::Model(format!(
                "input {}x{} is not a plausible size",
                spec.input_height, spec.input_width
            )));
        }
        if !(spec.std.is_finite() && spec.std != 0.0 && spec.mean.is_finite()) {
            return Err(OcrError::Model("mean and std must be finite, std non-zero".into()));
        }
        match (spec.resize, spec.max_squeeze) {
            (_, Some(m)) if !(m.is_finite() && m >= 1.0) => {
                return Err(OcrError::Model("max_squeeze must be a finite number >= 1".into()));
            }
            (Resize::Fit, Some(_)) => {
                return Err(OcrError::Model("max_squeeze applies to resize \"fill-height\" only".into()));
            }
            _ => {}
        }
        if !(spec.tta_below > 0.0 && spec.tta_below <= 1.0)
            || spec.tta_shifts.len() > 24
            || spec.tta_shifts.iter().any(|&[dy, dx]| {
                dy.unsigned_abs() >= spec.input_height / 2 || dx.unsigned_abs() >= spec.input_width / 2
            })
        {
            return Err(OcrError::Model(format!(
                "tta_shifts {:?} / tta_below {}: at most 24 shifts of under half the canvas, 0 < tta_below <= 1",
                spec.tta_shifts, spec.tta_below
            )));
        }
        if let Some(wide) = spec.tta_below_wide {
            if !(wide > 0.0 && wide <= 1.0) || spec.max_width.is_none() {
                return Err(OcrError::Model(format!(
                    "tta_below_wide {wide}: 0 < tta_below_wide <= 1, and only with max_width (no canvas is wider without it)"
                )));
            }
        }
        if let Some(max_width) = spec.max_width {
            let (w, step) = (spec.input_width, spec.width_step);
            if spec.resize != Resize::Fit
                || step == 0
                || step % 4 != 0
                || max_width < w
                || max_width > 4096
                || (max_width - w) % step != 0
                || (max_width - w) / step >= 32
            {
                return Err(OcrError::Model(format!(
                    "max_width {max_width} / width_step {step}: resize \"fit\" only, a step that is a multiple of 4, \
                     and at most 31 steps above input_width {w}"
                )));
            }
        }
        let charset = Charset::new(&spec.charset)?;
        let prior = compile_prior(&charset, &spec.alphabet_prior)?;
        let input = InputSpec {
            height: spec.input_height,
            width: spec.input_width,
            mean: spec.mean,
            std: spec.std,
            crop: spec.crop,
            resize: spec.resize,
            max_squeeze: spec.max_squeeze,
            max_width: spec.max_width,
            width_step: spec.width_step,
        };
        let h = spec.input_height as usize;
        refuse_int8_on_amx(onnx, cpu_has_amx())?;
        let mut plans = Vec::new();
        for w in input.canvas_widths() {
            let w = w as usize;
            plans.push((w, plan_for(onnx, [1, 1, h, w]).map_err(|e| OcrError::Model(format!("{e:#}")))?));
        }
        let mut ocr = Ocr { plans, input, spec, charset, prior, limits: ImageLimits::default(), steps: 0, cells: None };
        // One run on a blank canvas of each width: checks the output against
        // the contract and learns the number of time steps (of the narrowest).
        let widths: Vec<usize> = ocr.plans.iter().map(|(w, _)| *w).collect();
        for w in widths.into_iter().rev() {
            let probe = ocr.infer(&vec![0.0; h * w]).map_err(|e| match e {
                OcrError::Inference(e) => OcrError::Model(format!("{e:#}")),
                other => other,
            })?;
            ocr.steps = probe.steps();
        }
        Ok(ocr)
    }

    /// The same model with other limits on the images it accepts.
    pub fn with_limits(mut self, limits: ImageLimits) -> Ocr {
        self.limits = limits;
        self
    }

    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    pub fn limits(&self) -> &ImageLimits {
        &self.limits
    }

    /// CTC time steps per image on the narrowest canvas (`input_width`).
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// Reads the text of one image (PNG, JPEG or GIF bytes) under `constraints`.
    ///
    /// A strip of glyph cells goes to the cell reader when one is loaded; if
    /// the image is not one, or no reading of its cells satisfies the
    /// constraints, the main model reads it.
    pub fn recognize(&self, image: &[u8], constraints: &Constraints) -> Result<Answer, OcrError> {
        let rgb = self.decode_image(image)?;
        if let Some(log_probs) = self.infer_cells(&rgb, constraints)? {
            if let Some(answer) = self.decode_cells(&log_probs, constraints) {
                return answer;
            }
        }
        let readings = self.line_readings(&self.line_input(&rgb))?;
        self.decode_readings(&readings, constraints)
    }

    /// The answer of a cell reading ([`Ocr::infer_cells`]), or `None` when no
    /// reading of the cells satisfies the constraints and the main model must
    /// read the image instead: the one place [`Ocr::recognize`] (and the
    /// benchmark that times its steps) decides.
    ///
    /// The cell model's own alphabet prior applies, not the main model's:
    /// strips are drawn by other generators.
    pub fn decode_cells(&self, log_probs: &LogProbs, constraints: &Constraints) -> Option<Result<Answer, OcrError>> {
        let prior = self.cells.as_ref().and_then(|cells| cells.prior.as_ref());
        match ctc::decode_with_prior(log_probs, &self.charset, constraints, prior) {
            Err(OcrError::NoValidAnswer) => None,
            answer => Some(answer),
        }
    }

    /// Step 1: the decoded RGB image, its size checked against the limits.
    pub fn decode_image(&self, image: &[u8]) -> Result<RgbImage, OcrError> {
        preprocess::decode_rgb(image, &self.limits)
    }

    /// The cell reader's output for an image, as a CTC matrix; `None` when
    /// no cell model is loaded, the answer is a phrase (no cell holds a
    /// space), the image is not a strip, its first cell or half its cells
    /// are not glyphs.
    pub fn infer_cells(&self, rgb: &RgbImage, constraints: &Constraints) -> Result<Option<LogProbs>, OcrError> {
        match &self.cells {
            Some(cells) if !constraints.phrase => cells.reader.read(rgb, &cells.map),
            _ => Ok(None),
        }
    }

    /// Steps 2–5 for the main model: the `[H*W]` input of a decoded image.
    pub fn line_input(&self, rgb: &RgbImage) -> Vec<f32> {
        preprocess::canvas_input(&preprocess::gray_of(rgb), &self.input)
    }

    /// Steps 1–5 of the preprocessing: the `[H*W]` model input.
    pub fn preprocess(&self, image: &[u8]) -> Result<Vec<f32>, OcrError> {
        preprocess::preprocess(image, &self.input, &self.limits)
    }

    /// The plan for an input of `len` values, and its canvas width.
    fn plan_of(&self, len: usize) -> Result<(usize, &Plan), OcrError> {
        let h = self.input.height as usize;
        self.plans.iter().find(|(w, _)| h * w == len).map(|(w, plan)| (*w, plan)).ok_or_else(|| {
            let widths: Vec<usize> = self.plans.iter().map(|(w, _)| *w).collect();
            OcrError::Model(format!("an input of {len} values is not {h} rows of one of the widths {widths:?}"))
        })
    }

    /// Runs the model on one preprocessed input of `H*W` values, W one of the
    /// canvas widths ([`InputSpec::canvas_widths`]).
    pub fn infer(&self, input: &[f32]) -> Result<LogProbs, OcrError> {
        let (w, plan) = self.plan_of(input.len())?;
        let h = self.input.height as usize;
        let tensor = Tensor::from_shape(&[1, 1, h, w], input).map_err(OcrError::Inference)?;
        let outputs = plan.run(tvec!(tensor.into())).map_err(OcrError::Inference)?;
        let output = outputs.first().ok_or_else(|| OcrError::Model("the model has no output".into()))?;
        let shape = output.shape();
        let classes = self.charset.classes();
        if shape.len() != 3 || shape[0] != 1 || shape[2] != classes {
            return Err(OcrError::Model(format!("output shape {shape:?}, [1, T, {classes}] expected")));
        }
        let data =
            output.to_plain_array_view::<f32>().map_err(|e| OcrError::Model(format!("output is not f32: {e}")))?;
        LogProbs::new(shape[1], classes, data.iter().copied().collect())
    }

    /// The main model's readings of one input: one run, and when that
    /// reading is unsure and the model.json asks for it, one more per
    /// test-time shift (`tta_shifts`, `tta_below`, `tta_below_wide`).
    pub fn line_readings(&self, input: &[f32]) -> Result<Vec<LogProbs>, OcrError> {
        let first = self.infer(input)?;
        let h = self.input.height as usize;
        let w = input.len() / h;
        if self.spec.tta_shifts.is_empty() || first.least_sure() >= self.spec.tta_below_at(w) {
            return Ok(vec![first]);
        }
        let mut readings = vec![first];
        for &[dy, dx] in &self.spec.tta_shifts {
            readings.push(self.infer(&preprocess::shift_planes(input, h, w, dy, dx))?);
        }
        Ok(readings)
    }

    /// The answer from [`Ocr::line_readings`] under `constraints`: the
    /// first reading's decode when it is the only one. Otherwise each
    /// reading's decode is a candidate, and the answer is the candidate with
    /// the highest CTC log-likelihood summed over all the readings (the
    /// earliest on a tie), its confidence the geometric mean of its
    /// probability under them (MODEL.md, attempt 23 part C).
    pub fn decode_readings(&self, readings: &[LogProbs], constraints: &Constraints) -> Result<Answer, OcrError> {
        let (first, others) = readings.split_first().ok_or_else(|| OcrError::Model("no reading to decode".into()))?;
        let first_answer = self.decode(first, constraints);
        if others.is_empty() {
            return first_answer;
        }
        let mut candidates: Vec<Answer> = Vec::with_capacity(readings.len());
        for answer in std::iter::once(first_answer).chain(others.iter().map(|lp| self.decode(lp, constraints))) {
            match answer {
                Ok(answer) => {
                    if !candidates.iter().any(|c| c.raw == answer.raw) {
                        candidates.push(answer);
                    }
                }
                Err(OcrError::NoValidAnswer) => {}
                Err(e) => return Err(e),
            }
        }
        let mut best: Option<(f32, Answer)> = None;
        for candidate in candidates {
            let mut score = 0.0;
            for lp in readings {
                score += ctc::answer_log_likelihood(lp, &self.charset, constraints, &candidate.raw)?;
            }
            if best.as_ref().is_none_or(|(top, _)| score > *top) {
                best = Some((score, candidate));
            }
        }
        let (score, mut answer) = best.ok_or(OcrError::NoValidAnswer)?;
        answer.confidence = (score / readings.len() as f32).exp().clamp(0.0, 1.0);
        Ok(answer)
    }

    /// Decodes the main model's output under `constraints`, with the
    /// model's alphabet prior when it has one (see [`ctc::decode_with_prior`]).
    pub fn decode(&self, log_probs: &LogProbs, constraints: &Constraints) -> Result<Answer, OcrError> {
        ctc::decode_with_prior(log_probs, &self.charset, constraints, self.prior.as_ref())
    }
}

impl std::fmt::Debug for Ocr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ocr")
            .field("spec", &self.spec)
            .field("limits", &self.limits)
            .field("steps", &self.steps)
            .field("cells", &self.cells())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod int8_guard_tests {
    use super::*;

    /// A protobuf length-delimited field: tag (field, wire type 2), length, bytes.
    fn field(number: u8, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![(number << 3) | 2];
        let mut len = bytes.len();
        loop {
            let byte = (len & 0x7f) as u8;
            len >>= 7;
            if len == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        }
        out.extend_from_slice(bytes);
        out
    }

    /// A ModelProto (graph: field 7) whose GraphProto holds one NodeProto
    /// (field 1) per op type (NodeProto.op_type: field 4).
    fn model_of(ops: &[&str]) -> Vec<u8> {
        let graph: Vec<u8> = ops.iter().flat_map(|op| field(1, &field(4, op.as_bytes()))).collect();
        field(7, &graph)
    }

    #[test]
    fn int8_operators_are_found_once_each() {
        let onnx = model_of(&["QLinearConv", "Relu", "QLinearConv", "MaxPool", "QLinearMatMul"]);
        assert_eq!(int8_ops(&onnx).unwrap(), vec!["QLinearConv".to_string(), "QLinearMatMul".to_string()]);
        assert!(int8_ops(&model_of(&["Conv", "Relu", "LSTM", "MatMul"])).unwrap().is_empty());
    }

    #[test]
    fn an_int8_graph_is_refused_only_on_amx() {
        let int8 = model_of(&["DequantizeLinear", "ConvInteger", "Relu"]);
        let err = refuse_int8_on_amx(&int8, true).unwrap_err();
        assert!(matches!(&err, OcrError::Model(m) if m.contains("ConvInteger") && m.contains("AMX")), "{err}");
        assert!(refuse_int8_on_amx(&int8, false).is_ok());
        assert!(refuse_int8_on_amx(&model_of(&["Conv", "Relu"]), true).is_ok());
    }

    /// CPUID and the kernel agree: where Linux lists `amx_tile` among the
    /// CPU's flags, `cpu_has_amx` must see it (a kernel may hide AMX that
    /// CPUID reports, never the reverse).
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    #[test]
    fn cpu_has_amx_sees_what_linux_lists() {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap();
        let flags = cpuinfo.lines().find(|l| l.starts_with("flags")).unwrap();
        let listed = flags.split_whitespace().any(|f| f == "amx_tile");
        assert!(!listed || cpu_has_amx(), "/proc/cpuinfo lists amx_tile, CPUID leaf 7 EDX bit 24 is clear");
        if !cpu_has_amx() {
            assert!(!flags.split_whitespace().any(|f| f.starts_with("amx")), "{flags}");
        }
    }

    #[test]
    fn the_shipped_models_are_f32() {
        let main = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/model/captcha.onnx")).unwrap();
        let cells = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/model-cells/cells.onnx")).unwrap();
        assert!(int8_ops(&main).unwrap().is_empty());
        assert!(int8_ops(&cells).unwrap().is_empty());
        // So the guard never stands between the embedded engine and an AMX CPU.
        assert!(refuse_int8_on_amx(&main, true).is_ok());
    }
}
