//! The glyph-cell reader: CAPTCHAs that draw each character in its own square
//! cell, side by side, each cell with its own colour and a rotated glyph
//! (multicolorcaptcha and its clones).
//!
//! Read as one gray line these are hopeless: the glyph and cell colours are
//! often equal in luma, and a tall black canvas leaves the text a thin band.
//! Cut into cells, each is a small colour classification. The steps are the
//! contract with the trainer's `shared/ocr/training/cells.py`;
//! `model-cells/cells_golden.json` pins the numbers:
//!
//! 1. the RGB image of the main preprocessing (alpha over white);
//! 2. the band: rows dropped from the top and from the bottom while the row is
//!    dark (at least `dark_share` of its pixels have `max(R, G, B) <= dark`);
//! 3. `n = round(width / band height)`; a strip only if `min_cells <= n <=
//!    max_cells` and `|width / band height - n| <= square_tolerance`;
//! 4. cell `i` spans columns `[round(i*w/n), round((i+1)*w/n))` of the band;
//! 5. each channel of each cell resized to S×S with Pillow's `BILINEAR`
//!    ([`crate::preprocess::resize_bilinear_planes`], all three at once);
//! 6. the cell's colour taken out ([`features`]): per channel `v = |v - m|`,
//!    `m` the channel's median, so a glyph is bright on black whatever its
//!    and its cell's colours;
//! 7. `x = (v/255 - mean)/std`.
//!
//! The model classifies each cell into its charset or "not a glyph cell". An
//! image is read as cells only when it is a strip and most cells are glyphs;
//! the cells' distributions then become a CTC matrix (each cell one step,
//! separated by certain blanks), so that [`crate::ctc::decode`] applies the
//! client's constraints to them exactly as to the main model's output.

use std::path::Path;

use image::RgbImage;
use serde::Deserialize;
use tract_onnx::prelude::*;

use crate::ctc::{Charset, LogProbs};
use crate::error::OcrError;
use crate::model::{cpu_has_amx, plan_for, read_model_file, refuse_int8_on_amx, AlphabetShare, Plan};
use crate::preprocess::{resize_bilinear_planes, shift_planes, Region};

/// `model-cells/model.json`: the cell model's input and the splitting rules.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CellSpec {
    /// S: cells are resized to S×S.
    pub cell_size: u32,
    /// Step 6; `abs-median` is the only one.
    pub features: String,
    /// Class `i` is `charset[i]`; class `not_a_glyph` is the last.
    pub charset: String,
    pub not_a_glyph: u32,
    pub min_cells: u32,
    pub max_cells: u32,
    pub dark: u8,
    pub dark_share: f64,
    pub square_tolerance: f64,
    pub mean: f32,
    pub std: f32,
    pub version: String,
    /// The alphabets a strip's text is drawn from, and how often (see
    /// [`crate::ctc::AlphabetPrior`]); absent or empty: none.
    #[serde(default)]
    pub alphabet_prior: Vec<AlphabetShare>,
    /// Test-time shifts (MODEL.md, attempt 23): a cell whose surest class has
    /// a probability below `tta_below` is read again moved by each `[dy, dx]`
    /// pixels of the S×S cell (the uncovered border repeats the edge, as
    /// training's `shift` augmentation does), and its distribution becomes
    /// the normalised geometric mean of all its readings. Absent or empty:
    /// one reading per cell.
    #[serde(default)]
    pub tta_shifts: Vec<[i32; 2]>,
    /// See `tta_shifts`; absent: 1.0, every cell.
    #[serde(default = "every_cell")]
    pub tta_below: f32,
}

fn every_cell() -> f32 {
    1.0
}

/// Where the cells of a strip are: rows `[top, bottom)`, and per cell its
/// columns `[x0, x1)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Strip {
    pub top: usize,
    pub bottom: usize,
    pub columns: Vec<(usize, usize)>,
}

/// The cell classifier, loaded once into a tract plan for one cell.
pub struct CellReader {
    plan: Plan,
    spec: CellSpec,
}

/// The cell model's glyph classes as classes of a main model's charset,
/// computed once when the reader is attached ([`CellReader::map_onto`]).
#[derive(Debug, Clone)]
pub struct CellMap {
    to_main: Vec<usize>,
    classes: usize,
}

impl CellReader {
    pub fn from_files(onnx: impl AsRef<Path>, json: impl AsRef<Path>) -> Result<CellReader, OcrError> {
        CellReader::from_bytes(&read_model_file(onnx.as_ref())?, &read_model_file(json.as_ref())?)
    }

    /// Loads the model, checks its `model.json` and runs it once.
    pub fn from_bytes(onnx: &[u8], json: &[u8]) -> Result<CellReader, OcrError> {
        let spec: CellSpec =
            serde_json::from_slice(json).map_err(|e| OcrError::Model(format!("cells model.json: {e}")))?;
        let glyphs = spec.charset.chars().count();
        if spec.not_a_glyph as usize != glyphs {
            return Err(OcrError::Model(format!(
                "cells: not_a_glyph is class {}, the last ({glyphs}) expected",
                spec.not_a_glyph
            )));
        }
        if spec.features != "abs-median" {
            return Err(OcrError::Model(format!("cells: unknown features {:?}", spec.features)));
        }
        if !(4..=256).contains(&spec.cell_size)
            || spec.min_cells == 0
            || spec.min_cells > spec.max_cells
            || spec.max_cells > 64
            || !(spec.std.is_finite() && spec.std != 0.0 && spec.mean.is_finite())
            || !(spec.tta_below > 0.0 && spec.tta_below <= 1.0)
            || spec.tta_shifts.len() > 48
            || spec.tta_shifts.iter().flatten().any(|d| d.unsigned_abs() >= spec.cell_size / 2)
        {
            return Err(OcrError::Model(format!("cells: implausible model.json {spec:?}")));
        }
        let s = spec.cell_size as usize;
        refuse_int8_on_amx(onnx, cpu_has_amx()).map_err(|e| OcrError::Model(format!("cells: {e}")))?;
        let plan = plan_for(onnx, [1, 3, s, s]).map_err(|e| OcrError::Model(format!("cells: {e:#}")))?;
        let reader = CellReader { plan, spec };
        let probe = reader.classify(&vec![0.0; 3 * s * s]).map_err(|e| OcrError::Model(format!("cells: {e}")))?;
        if probe.len() != glyphs + 1 {
            return Err(OcrError::Model(format!(
                "cells: the model has {} classes, the charset {} + 1",
                probe.len(),
                glyphs
            )));
        }
        Ok(reader)
    }

    pub fn spec(&self) -> &CellSpec {
        &self.spec
    }

    /// Runs the model on one normalised `[3, S, S]` cell: its log-probabilities.
    fn classify(&self, input: &[f32]) -> Result<Vec<f32>, OcrError> {
        let s = self.spec.cell_size as usize;
        let tensor = Tensor::from_shape(&[1, 3, s, s], input).map_err(OcrError::Inference)?;
        let outputs = self.plan.run(tvec!(tensor.into())).map_err(OcrError::Inference)?;
        let output = outputs.first().ok_or_else(|| OcrError::Model("cells: the model has no output".into()))?;
        let data = output
            .to_plain_array_view::<f32>()
            .map_err(|e| OcrError::Model(format!("cells: output is not f32: {e}")))?;
        Ok(data.iter().copied().collect())
    }

    /// One cell's log-probabilities from its `[3, S, S]` bytes (step 5):
    /// steps 6 and 7 and the model, then the test-time shifts when the
    /// cell is unsure (`tta_shifts`, `tta_below`).
    pub fn classify_cell(&self, bytes: &[u8]) -> Result<Vec<f32>, OcrError> {
        let lp = self.classify(&self.normalised(bytes.to_vec()))?;
        let classes = lp.len();
        let first = LogProbs::new(1, classes, lp)?;
        if self.spec.tta_shifts.is_empty() || first.least_sure() >= self.spec.tta_below {
            return Ok(first.row(0).to_vec());
        }
        let s = self.spec.cell_size as usize;
        let mut readings = vec![first];
        for &[dy, dx] in &self.spec.tta_shifts {
            let moved = self.classify(&self.normalised(shift_planes(bytes, s, s, dy, dx)))?;
            readings.push(LogProbs::new(1, classes, moved)?);
        }
        Ok(LogProbs::log_mean(&readings)?.row(0).to_vec())
    }

    /// Steps 6 and 7: the model's input from a cell's bytes.
    fn normalised(&self, mut bytes: Vec<u8>) -> Vec<f32> {
        features(&mut bytes);
        bytes.iter().map(|&v| (f32::from(v) / 255.0 - self.spec.mean) / self.spec.std).collect()
    }

    /// Maps the glyph classes onto `charset` (a main model's). Errors if the
    /// cell model reads a character the charset lacks.
    pub fn map_onto(&self, charset: &Charset) -> Result<CellMap, OcrError> {
        let to_main = self
            .spec
            .charset
            .chars()
            .map(|c| {
                charset
                    .class_of(c)
                    .ok_or_else(|| OcrError::Model(format!("the cell model reads {c:?}, which the main charset lacks")))
            })
            .collect::<Result<_, _>>()?;
        Ok(CellMap { to_main, classes: charset.classes() })
    }

    /// Reads an image as a strip of glyph cells: its cells' distributions as
    /// a CTC matrix over the charset `map` was made for, or `None` when the
    /// image is not a strip, its first cell is "not a glyph", or at least
    /// half its cells are (one misjudged later cell does not send a strip to
    /// the main model, which cannot read it; a non-strip has nearly every
    /// cell judged so, and leaving at the first one spares it the rest,
    /// attempt 18). A later cell judged "not a glyph" in a strip still gets
    /// its most likely glyph.
    pub fn read(&self, rgb: &RgbImage, map: &CellMap) -> Result<Option<LogProbs>, OcrError> {
        let Some(strip) = split(rgb, &self.spec) else { return Ok(None) };
        let classes = map.classes;
        let mut data = Vec::with_capacity((2 * strip.columns.len()) * classes);
        let mut not_glyphs = 0;
        for cell in 0..strip.columns.len() {
            let bytes = cell_u8(rgb, &strip, cell, self.spec.cell_size);
            let lp = self.classify_cell(&bytes)?;
            let best = lp.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(k, _)| k);
            if best == Some(self.spec.not_a_glyph as usize) {
                not_glyphs += 1;
                // The first cell of a strip is a glyph; an image whose first
                // cell is not one only looks like a strip (attempt 18).
                if cell == 0 || 2 * not_glyphs >= strip.columns.len() {
                    return Ok(None);
                }
            }
            if cell > 0 {
                // A certain blank between cells: two equal glyphs stay two.
                data.push(0.0);
                data.extend(std::iter::repeat_n(f32::NEG_INFINITY, classes - 1));
            }
            let mut row = vec![f32::NEG_INFINITY; classes];
            for (&main, &v) in map.to_main.iter().zip(&lp) {
                row[main] = v;
            }
            data.extend(row);
        }
        let steps = 2 * strip.columns.len() - 1;
        LogProbs::new(steps, classes, data).map(Some)
    }
}

/// Steps 2–4: where the cells are, or `None` if the image is not a strip.
pub fn split(rgb: &RgbImage, spec: &CellSpec) -> Option<Strip> {
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    let raw = rgb.as_raw();
    // At most this many bright pixels in a dark row (`dark / w >= dark_share`).
    let bright_allowed = (0..=w).rev().find(|b| (w - b) as f64 / w as f64 >= spec.dark_share);
    let dark_row = |y: usize| {
        let Some(allowed) = bright_allowed else { return false };
        let mut bright = 0;
        for p in raw[y * w * 3..(y + 1) * w * 3].chunks_exact(3) {
            if p[0].max(p[1]).max(p[2]) > spec.dark {
                bright += 1;
                if bright > allowed {
                    return false;
                }
            }
        }
        true
    };
    let mut top = 0;
    while top < h && dark_row(top) {
        top += 1;
    }
    let mut bottom = h;
    while bottom > top && dark_row(bottom - 1) {
        bottom -= 1;
    }
    let band = bottom - top;
    if band < 4 {
        return None;
    }
    let ratio = w as f64 / band as f64;
    let n = (ratio + 0.5).floor();
    if n < f64::from(spec.min_cells) || n > f64::from(spec.max_cells) || (ratio - n).abs() > spec.square_tolerance {
        return None;
    }
    let n = n as usize;
    let edge = |i: usize| ((i * w) as f64 / n as f64 + 0.5).floor() as usize;
    let columns = (0..n).map(|i| (edge(i), edge(i + 1))).collect();
    Some(Strip { top, bottom, columns })
}

/// Step 5 without the normalisation: cell `cell` of `strip` as `[3, size, size]` bytes.
pub fn cell_u8(rgb: &RgbImage, strip: &Strip, cell: usize, size: u32) -> Vec<u8> {
    let s = size as usize;
    let (x0, x1) = strip.columns[cell];
    let region = Region {
        data: rgb.as_raw(),
        stride: rgb.width() as usize * 3,
        left: x0,
        top: strip.top,
        w: x1 - x0,
        h: strip.bottom - strip.top,
    };
    resize_bilinear_planes::<3>(region, s, s)
}

/// Step 6 on one `[3, S, S]` cell, in place: each channel's values become
/// their distance to the channel's median (element `S*S/2` of its sorted
/// values).
pub fn features(cell: &mut [u8]) {
    let plane = cell.len() / 3;
    if plane == 0 {
        return;
    }
    for channel in cell.chunks_exact_mut(plane) {
        // The median by counting: element plane/2 of the sorted values.
        let mut counts = [0usize; 256];
        for &v in channel.iter() {
            counts[usize::from(v)] += 1;
        }
        let mut seen = 0;
        let mut median = 0u8;
        for (v, &n) in counts.iter().enumerate() {
            seen += n;
            if seen > plane / 2 {
                median = v as u8;
                break;
            }
        }
        for v in channel.iter_mut() {
            *v = v.abs_diff(median);
        }
    }
}

impl std::fmt::Debug for CellReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CellReader").field("spec", &self.spec).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_are_the_distance_to_each_channels_median() {
        // 2x2 cells: a channel of 10, 10, 10, 250 has median 10 (element 2 of
        // the sorted four); another of 0, 100, 200, 255 has median 200.
        let mut cell = vec![10, 10, 10, 250, 0, 100, 200, 255, 7, 7, 7, 7];
        features(&mut cell);
        assert_eq!(cell, vec![0, 0, 0, 240, 200, 100, 0, 55, 0, 0, 0, 0]);
    }

    #[test]
    fn a_strip_is_cut_into_square_cells_between_dark_margins() {
        let spec = CellSpec {
            cell_size: 8,
            features: "abs-median".into(),
            charset: "ab".into(),
            not_a_glyph: 2,
            min_cells: 3,
            max_cells: 8,
            dark: 48,
            dark_share: 0.97,
            square_tolerance: 0.15,
            mean: 0.5,
            std: 0.5,
            version: "test".into(),
            alphabet_prior: Vec::new(),
            tta_shifts: Vec::new(),
            tta_below: 1.0,
        };
        // 40x20 black canvas, a 40x10 coloured band at rows 5..15: 4 cells of 10.
        let mut img = RgbImage::from_pixel(40, 20, image::Rgb([0, 0, 0]));
        for y in 5..15 {
            for x in 0..40 {
                img.put_pixel(x, y, image::Rgb([200, 60, 90]));
            }
        }
        let strip = split(&img, &spec).expect("a strip");
        assert_eq!((strip.top, strip.bottom), (5, 15));
        assert_eq!(strip.columns, vec![(0, 10), (10, 20), (20, 30), (30, 40)]);
        // 40x20 without margins is 2 cells wide: not a strip (min 3).
        let plain = RgbImage::from_pixel(40, 20, image::Rgb([200, 60, 90]));
        assert_eq!(split(&plain, &spec), None);
        // 33x10 is 3.3 cells: not square cells.
        let odd = RgbImage::from_pixel(33, 10, image::Rgb([200, 60, 90]));
        assert_eq!(split(&odd, &spec), None);
    }
}
