//! From the client's image bytes to the model's input tensor.
//!
//! These steps are the contract with the trainer's Python
//! (`shared/ocr/training/preprocess.py`); `model/preprocess_golden.json` pins
//! the numbers:
//!
//! 1. decode (PNG, JPEG, GIF's first frame); alpha composited over white the
//!    way Pillow's `alpha_composite` does it; RGB;
//! 2. gray = `(R*19595 + G*38470 + B*7471 + 32768) >> 16` (Pillow's `L`);
//!    then, per [`Crop`], only the columns that hold the text are kept
//!    ([`ink_columns`]; `None`, every model before attempt 17, keeps all);
//! 3. scales per [`Resize`]: `Fit` (every model so far) takes `min(H/h, W/w)` on
//!    both axes; `FillHeight` takes `H/h` for the height and `min(H/h, W/w)` for
//!    the width, so text fills the height and a wide image is squeezed only
//!    across, by at most `max_squeeze` when `model.json` sets one (the height
//!    scale is then `min(H/h, max_squeeze * scale_w)`).
//!    With `max_width` M (and `width_step` S; `Fit` only, attempt 27) the
//!    canvas is wider for wide text: W becomes the (cropped) image's width at
//!    height H, rounded up to a multiple of S, within `[W, M]`
//!    ([`InputSpec::canvas_width`]), and the model runs on that width.
//!    `nh = max(1, round(h*scale_h))`, `nw = max(1, round(w*scale_w))`
//!    (halves rounded up, capped at H and W),
//!    resized with Pillow's `BILINEAR` — reimplemented here bit for bit
//!    ([`resize_bilinear`]), because `image`'s `Triangle` filter samples in a
//!    different order and in floating point, and lands up to a few levels off;
//! 4. an H×W canvas filled with the rounded mean of the resized image's border
//!    (first/last row and column, corners counted twice), the resized image
//!    pasted at `x = 0`, `y = (H - nh) / 2`;
//! 5. `x = (v/255 - mean) / std` as f32.
//!
//! The size of an image is read from its header and checked against
//! [`ImageLimits`] before any pixel is decoded.

use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};

use image::{DynamicImage, GrayImage, ImageFormat, ImageReader, RgbImage};

use crate::error::OcrError;

/// What the preprocessing accepts. The defaults fit any real CAPTCHA with a
/// wide margin and bound the memory and time one request can cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageLimits {
    /// Encoded size.
    pub max_bytes: usize,
    /// Width and height, each.
    pub max_side: u32,
    /// Width times height.
    pub max_pixels: u64,
}

impl Default for ImageLimits {
    fn default() -> Self {
        ImageLimits { max_bytes: 600 * 1024, max_side: 4000, max_pixels: 16_000_000 }
    }
}

/// How step 3 scales an image into the canvas (`model.json` `"resize"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Resize {
    /// One scale for both axes, `min(H/h, W/w)`: the aspect ratio is kept.
    #[default]
    Fit,
    /// The height scaled to `H`; the width by `min(H/h, W/w)`, so only an
    /// image wider than `W/H` is squeezed, and only across (by at most
    /// [`InputSpec::max_squeeze`] when set).
    FillHeight,
}

impl Resize {
    /// Step 3's (height, width) scales for an `h`×`w` image into `height`×`width`.
    fn scales(self, h: u32, w: u32, height: u32, width: u32, max_squeeze: Option<f64>) -> (f64, f64) {
        let by_height = f64::from(height) / f64::from(h);
        let fit = by_height.min(f64::from(width) / f64::from(w));
        match (self, max_squeeze) {
            (Resize::Fit, _) => (fit, fit),
            (Resize::FillHeight, None) => (by_height, fit),
            (Resize::FillHeight, Some(m)) => (by_height.min(fit * m), fit),
        }
    }
}

/// What step 2 keeps of the gray image before the resize (`model.json`
/// `"crop"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Crop {
    /// The whole image.
    #[default]
    None,
    /// The columns from the first to the last that holds text ([`ink_columns`]),
    /// so text drawn in part of a wide image is not shrunk with the empty rest.
    /// Rows are all kept: a glyph's height against the image's is a cue for case.
    InkColumns,
}

impl Crop {
    /// The columns `[left, right)` of `gray` that the resize reads.
    pub fn columns(self, gray: &GrayImage) -> (usize, usize) {
        let (w, h) = (gray.width() as usize, gray.height() as usize);
        match self {
            Crop::None => (0, w),
            Crop::InkColumns => ink_columns(gray.as_raw(), w, h),
        }
    }
}

/// The columns `[left, right)` that hold the text of a `w`×`h` gray image, all
/// in integers so that the trainer's `preprocess.py::ink_columns` gives the
/// same: a pixel is ink when its distance to the image's median gray, times
/// 100, exceeds `max(2000, 35 * contrast)`, the contrast being the larger
/// distance from the median to the 2nd and the 98th percentile; a column is
/// strong when it holds at least 4 ink pixels and, times 100, at least 15 times
/// the busiest column's count. The kept span runs from the first to the last
/// strong column, widened by `round(0.15 * h)` on each side within the image,
/// and is used only when it drops at least a tenth of the width; otherwise, or
/// with no strong column, `(0, w)`. Noise dots and thin lines do not make a
/// column strong.
pub fn ink_columns(gray: &[u8], w: usize, h: usize) -> (usize, usize) {
    let n = (w * h) as u64;
    let mut hist = [0u64; 256];
    for &p in gray {
        hist[usize::from(p)] += 1;
    }
    // The smallest gray level whose cumulative count c has c * den >= n * num.
    let percentile = |num: u64, den: u64| -> i64 {
        let mut c = 0u64;
        for (v, &k) in hist.iter().enumerate() {
            c += k;
            if c * den >= n * num {
                return v as i64;
            }
        }
        255
    };
    let median = percentile(1, 2);
    let contrast = (median - percentile(2, 100)).max(percentile(98, 100) - median);
    let threshold = (35 * contrast).max(2000);
    let mut count = vec![0u64; w];
    for row in gray.chunks_exact(w.max(1)) {
        for (c, &p) in count.iter_mut().zip(row) {
            if (i64::from(p) - median).abs() * 100 > threshold {
                *c += 1;
            }
        }
    }
    let busiest = count.iter().copied().max().unwrap_or(0);
    let strong = |c: &u64| *c >= 4 && *c * 100 >= 15 * busiest;
    let (Some(first), Some(last)) = (count.iter().position(strong), count.iter().rposition(strong)) else {
        return (0, w);
    };
    let margin = (15 * h + 50) / 100;
    let (left, right) = (first.saturating_sub(margin), (last + 1 + margin).min(w));
    if (w - (right - left)) * 10 < w {
        return (0, w);
    }
    (left, right)
}

/// The geometry and normalisation of the model's input (from `model.json`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InputSpec {
    pub height: u32,
    pub width: u32,
    pub mean: f32,
    pub std: f32,
    pub crop: Crop,
    pub resize: Resize,
    /// `FillHeight` only: the most a wide image is squeezed across (>= 1;
    /// `None`: no limit).
    pub max_squeeze: Option<f64>,
    /// `Fit` only: the widest canvas a wide image gets (`None`: every
    /// canvas is `width` columns); see [`InputSpec::canvas_width`].
    pub max_width: Option<u32>,
    /// The canvas widths from `width` to `max_width` go in steps of this.
    pub width_step: u32,
}

impl InputSpec {
    /// The canvas width for a (cropped) `h`×`w` image: `width`, or with
    /// `max_width`, the columns the image takes at the canvas height, rounded
    /// up to a multiple of `width_step`, within `[width, max_width]` (all in
    /// integers, as `preprocess.py`).
    pub fn canvas_width(&self, h: u32, w: u32) -> u32 {
        match self.max_width {
            None => self.width,
            Some(max_width) => {
                let step = u64::from(self.width_step.max(1));
                let per_step = u64::from(h.max(1)) * step;
                let need = (u64::from(w) * u64::from(self.height)).div_ceil(per_step) * step;
                need.clamp(u64::from(self.width), u64::from(max_width.max(self.width))) as u32
            }
        }
    }

    /// Every canvas width [`InputSpec::canvas_width`] can give, narrowest first.
    pub fn canvas_widths(&self) -> Vec<u32> {
        let last = self.max_width.unwrap_or(self.width).max(self.width);
        (self.width..=last).step_by(self.width_step.max(1) as usize).collect()
    }
}

/// Decodes `bytes` into the 8-bit gray image of steps 1–2.
pub fn decode_gray(bytes: &[u8], limits: &ImageLimits) -> Result<GrayImage, OcrError> {
    Ok(gray_of(&decode_rgb(bytes, limits)?))
}

/// Decodes `bytes` into the RGB image of step 1 (alpha over white).
pub fn decode_rgb(bytes: &[u8], limits: &ImageLimits) -> Result<RgbImage, OcrError> {
    if bytes.is_empty() {
        return Err(OcrError::Empty);
    }
    if bytes.len() > limits.max_bytes {
        return Err(OcrError::TooManyBytes { len: bytes.len(), limit: limits.max_bytes });
    }
    let format = image::guess_format(bytes).map_err(|_| OcrError::UnknownFormat)?;
    if !matches!(format, ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::Gif) {
        return Err(OcrError::UnknownFormat);
    }
    // The size as the header states it, before the decoder sees anything
    // (GIF's decoder reads on to the first frame to tell its dimensions).
    if let Some((width, height)) = header_dimensions(bytes, format) {
        check_dimensions(width, height, limits)?;
    }
    let (width, height) =
        ImageReader::with_format(Cursor::new(bytes), format).into_dimensions().map_err(OcrError::Decode)?;
    check_dimensions(width, height, limits)?;

    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut decoder_limits = image::Limits::default();
    decoder_limits.max_image_width = Some(limits.max_side);
    decoder_limits.max_image_height = Some(limits.max_side);
    // RGBA at 16 bits per channel, twice over for the decoder's own buffers.
    decoder_limits.max_alloc = Some(limits.max_pixels.saturating_mul(16));
    reader.limits(decoder_limits);
    // The decoders are not supposed to panic; if one does on hostile input,
    // it is this image's error, not the worker's death.
    let decoded = catch_unwind(AssertUnwindSafe(|| reader.decode()))
        .map_err(|_| OcrError::DecoderPanic)?
        .map_err(OcrError::Decode)?;
    Ok(to_rgb(decoded))
}

fn check_dimensions(width: u32, height: u32, limits: &ImageLimits) -> Result<(), OcrError> {
    if width == 0 || height == 0 {
        return Err(OcrError::Empty);
    }
    if width > limits.max_side || height > limits.max_side || u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(OcrError::TooLarge { width, height });
    }
    Ok(())
}

/// Width and height from a PNG's IHDR or a GIF's logical screen descriptor;
/// `None` for JPEG (its size sits in a frame header the decoder finds).
fn header_dimensions(bytes: &[u8], format: ImageFormat) -> Option<(u32, u32)> {
    match format {
        ImageFormat::Png if bytes.get(12..16) == Some(b"IHDR") => {
            let be = |at: usize| -> Option<u32> { Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?)) };
            Some((be(16)?, be(20)?))
        }
        ImageFormat::Gif => {
            let le = |at: usize| -> Option<u32> {
                Some(u32::from(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?)))
            };
            Some((le(6)?, le(8)?))
        }
        _ => None,
    }
}

/// Step 1: alpha over white.
fn to_rgb(img: DynamicImage) -> RgbImage {
    if !img.color().has_alpha() {
        return img.into_rgb8();
    }
    let mut rgba = img.into_rgba8();
    for p in rgba.pixels_mut() {
        let [r, g, b, a] = p.0;
        p.0 = [over_white(r, a), over_white(g, a), over_white(b, a), 255];
    }
    DynamicImage::ImageRgba8(rgba).into_rgb8()
}

/// Step 2: Pillow's integer luma.
pub fn gray_of(rgb: &RgbImage) -> GrayImage {
    let pixels: Vec<u8> = rgb
        .pixels()
        .map(|p| {
            let [r, g, b] = p.0;
            ((u32::from(r) * 19595 + u32::from(g) * 38470 + u32::from(b) * 7471 + 32768) >> 16) as u8
        })
        .collect();
    // The buffer has exactly width*height bytes.
    GrayImage::from_raw(rgb.width(), rgb.height(), pixels).unwrap_or_else(|| GrayImage::new(rgb.width(), rgb.height()))
}

/// One channel of Pillow's `alpha_composite(white, src)` (its 7-bit
/// fixed-point formula; with an opaque white background it reduces to this).
fn over_white(c: u8, a: u8) -> u8 {
    if a == 0 {
        return 255;
    }
    const PRECISION_BITS: u32 = 7;
    let (c, a) = (u32::from(c), u32::from(a));
    let blend = 255 * (255 - a);
    let outa255 = a * 255 + blend;
    let coef1 = a * 255 * 255 * (1 << PRECISION_BITS) / outa255;
    let coef2 = 255 * (1 << PRECISION_BITS) - coef1;
    let tmp = c * coef1 + 255 * coef2 + (0x80 << PRECISION_BITS);
    let div255 = ((tmp >> 8) + tmp) >> 8;
    (div255 >> PRECISION_BITS).min(255) as u8
}

/// Step 2's crop and steps 3–4: the padded canvas of gray levels,
/// `spec.height` rows of [`InputSpec::canvas_width`] columns (so its width is
/// its length over the height).
pub fn fit_to_canvas(gray: &GrayImage, spec: &InputSpec) -> Vec<u8> {
    let (left, right) = spec.crop.columns(gray);
    let (w, h) = ((right - left) as u32, gray.height());
    let (height, width) = (spec.height, spec.canvas_width(h, w));
    let (scale_h, scale_w) = spec.resize.scales(h, w, height, width, spec.max_squeeze);
    let nh = ((f64::from(h) * scale_h + 0.5).floor() as u32).clamp(1, height);
    let nw = ((f64::from(w) * scale_w + 0.5).floor() as u32).clamp(1, width);
    let region =
        Region { data: gray.as_raw(), stride: gray.width() as usize, left, top: 0, w: w as usize, h: h as usize };
    let resized = resize_bilinear_planes::<1>(region, nw as usize, nh as usize);
    let (nw, nh) = (nw as usize, nh as usize);

    let mut border_sum = 0u64;
    for x in 0..nw {
        border_sum += u64::from(resized[x]) + u64::from(resized[(nh - 1) * nw + x]);
    }
    for y in 0..nh {
        border_sum += u64::from(resized[y * nw]) + u64::from(resized[y * nw + nw - 1]);
    }
    let border_count = 2 * (nw + nh) as u64;
    let pad = (border_sum as f64 / border_count as f64 + 0.5).floor() as u8;

    let (height, width) = (height as usize, width as usize);
    let mut canvas = vec![pad; height * width];
    let top = (height - nh) / 2;
    for y in 0..nh {
        let row = (top + y) * width;
        canvas[row..row + nw].copy_from_slice(&resized[y * nw..(y + 1) * nw]);
    }
    canvas
}

/// Step 5.
pub fn normalize(canvas: &[u8], mean: f32, std: f32) -> Vec<f32> {
    canvas.iter().map(|&v| (f32::from(v) / 255.0 - mean) / std).collect()
}

/// Steps 1–5: image bytes to the `[H*W]` model input, row-major.
pub fn preprocess(bytes: &[u8], spec: &InputSpec, limits: &ImageLimits) -> Result<Vec<f32>, OcrError> {
    Ok(canvas_input(&decode_gray(bytes, limits)?, spec))
}

/// Steps 2 (the crop) to 5: a gray image to the `[H*W]` model input, row-major
/// (W is the canvas width, [`InputSpec::canvas_width`]).
pub fn canvas_input(gray: &GrayImage, spec: &InputSpec) -> Vec<f32> {
    normalize(&fit_to_canvas(gray, spec), spec.mean, spec.std)
}

/// Planes of `h*w` values (one or more, one after the other) moved `dy`
/// rows down and `dx` columns right (up and left if negative), the
/// uncovered border repeating the edge (numpy's `pad(mode="edge")` then a
/// crop, as the trainers' shift augmentation). Any trailing values short
/// of a whole plane are dropped.
pub fn shift_planes<T: Copy>(planes: &[T], h: usize, w: usize, dy: i32, dx: i32) -> Vec<T> {
    let from = |i: usize, d: i32, n: usize| (i as i64 - i64::from(d)).clamp(0, n as i64 - 1) as usize;
    let mut out = Vec::with_capacity(planes.len());
    if h == 0 || w == 0 {
        return out;
    }
    for plane in planes.chunks_exact(h * w) {
        for y in 0..h {
            let row = &plane[from(y, dy, h) * w..][..w];
            out.extend((0..w).map(|x| row[from(x, dx, w)]));
        }
    }
    out
}

/// Pillow's `Image.resize(size, BILINEAR)` on an 8-bit gray image: a
/// horizontal pass then a vertical one, each with the triangle filter widened
/// by the downscale factor, 22-bit fixed-point weights and rounding to u8
/// between the passes. A pass whose size does not change is skipped, as
/// Pillow skips it.
pub fn resize_bilinear(src: &[u8], w: usize, h: usize, nw: usize, nh: usize) -> Vec<u8> {
    resize_bilinear_planes::<1>(Region { data: src, stride: w, left: 0, top: 0, w, h }, nw, nh)
}

/// A region of an image with `CH` interleaved 8-bit channels: rows `[top,
/// top + h)`, columns `[left, left + w)`, `stride` bytes per image row.
#[derive(Debug, Clone, Copy)]
pub struct Region<'a> {
    pub data: &'a [u8],
    pub stride: usize,
    pub left: usize,
    pub top: usize,
    pub w: usize,
    pub h: usize,
}

/// Pillow's `BILINEAR` ([`resize_bilinear`]) on each channel of an
/// interleaved region at once, without copying the channels out first: the
/// planes `[CH, nh, nw]`, byte for byte what Pillow gives each channel's plane
/// alone. The coefficients are computed once for all channels. The region must lie inside `data`
/// (the cell reader's come from [`crate::cells::split`], the crop's from
/// [`ink_columns`], both inside by construction), or this panics.
pub fn resize_bilinear_planes<const CH: usize>(region: Region<'_>, nw: usize, nh: usize) -> Vec<u8> {
    let Region { data, stride, left, top, w, h } = region;
    let row_of = |y: usize| &data[(top + y) * stride + left * CH..(top + y) * stride + (left + w) * CH];
    // The horizontal pass, or the channels copied out when the width stays.
    let cur_w = if nw != w { nw } else { w };
    let mut planes = vec![0u8; CH * cur_w * h];
    if nw != w {
        let coeffs = Coefficients::new(w, nw);
        for y in 0..h {
            let row = row_of(y);
            for x in 0..nw {
                let (start, k) = coeffs.of(x);
                let taps = &row[start * CH..(start + k.len()) * CH];
                let mut ss = [Coefficients::HALF; CH];
                for (px, &wgt) in taps.chunks_exact(CH).zip(k) {
                    for (s, &p) in ss.iter_mut().zip(px) {
                        *s += i64::from(p) * i64::from(wgt);
                    }
                }
                for (c, &s) in ss.iter().enumerate() {
                    planes[(c * h + y) * nw + x] = Coefficients::clip(s);
                }
            }
        }
    } else {
        for y in 0..h {
            for (x, px) in row_of(y).chunks_exact(CH).enumerate() {
                for (c, &p) in px.iter().enumerate() {
                    planes[(c * h + y) * w + x] = p;
                }
            }
        }
    }
    if nh == h {
        return planes;
    }
    let mut out = Vec::with_capacity(CH * nw * nh);
    for plane in planes.chunks_exact(cur_w * h) {
        out.extend(resize_rows(plane, cur_w, h, nh));
    }
    out
}

/// The vertical pass of [`resize_bilinear`]: `h` rows of `w` to `nh` rows.
fn resize_rows(pixels: &[u8], w: usize, h: usize, nh: usize) -> Vec<u8> {
    let coeffs = Coefficients::new(h, nh);
    let mut out = vec![0u8; w * nh];
    // One output row at a time, accumulated over its input rows: the
    // inner loops run along rows, so they vectorise.
    let mut acc = vec![0i64; w];
    for (y, out_row) in out.chunks_exact_mut(w).enumerate() {
        let (start, k) = coeffs.of(y);
        acc.fill(Coefficients::HALF);
        for (i, &wgt) in k.iter().enumerate() {
            let row = &pixels[(start + i) * w..(start + i + 1) * w];
            for (a, &p) in acc.iter_mut().zip(row) {
                *a += i64::from(p) * i64::from(wgt);
            }
        }
        for (o, &a) in out_row.iter_mut().zip(&acc) {
            *o = Coefficients::clip(a);
        }
    }
    out
}

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for the bilinear filter.
struct Coefficients {
    /// Per output pixel: first input pixel and the range of `weights` it uses.
    spans: Vec<(usize, usize, usize)>,
    weights: Vec<i32>,
}

impl Coefficients {
    const PRECISION_BITS: u32 = 32 - 8 - 2;

    fn new(in_size: usize, out_size: usize) -> Self {
        let scale = in_size as f64 / out_size as f64;
        let filterscale = scale.max(1.0);
        let support = 1.0 * filterscale;
        let mut spans = Vec::with_capacity(out_size);
        let mut weights = Vec::new();
        let mut k = Vec::new();
        for xx in 0..out_size {
            let center = (xx as f64 + 0.5) * scale;
            let ss = 1.0 / filterscale;
            // C's (int) cast truncates towards zero.
            let xmin = ((center - support + 0.5).trunc() as i64).max(0) as usize;
            let xmax = ((center + support + 0.5).trunc() as i64).min(in_size as i64).max(0) as usize;
            let n = xmax.saturating_sub(xmin);
            k.clear();
            let mut ww = 0.0;
            for x in 0..n {
                let t = ((x + xmin) as f64 - center + 0.5) * ss;
                let w = triangle(t);
                k.push(w);
                ww += w;
            }
            let from = weights.len();
            for &w in &k {
                let w = if ww != 0.0 { w / ww } else { w };
                let fixed = w * f64::from(1u32 << Self::PRECISION_BITS);
                weights.push(if w < 0.0 { (fixed - 0.5) as i32 } else { (fixed + 0.5) as i32 });
            }
            spans.push((xmin, from, weights.len()));
        }
        Coefficients { spans, weights }
    }

    fn of(&self, out: usize) -> (usize, &[i32]) {
        let (start, from, to) = self.spans[out];
        (start, &self.weights[from..to])
    }

    /// The rounding offset every sum starts from.
    const HALF: i64 = 1 << (Self::PRECISION_BITS - 1);

    /// A weighted sum back to 8 bits, clipped.
    fn clip(ss: i64) -> u8 {
        if ss <= 0 {
            0
        } else if ss >= (1i64 << Self::PRECISION_BITS << 8) {
            255
        } else {
            (ss >> Self::PRECISION_BITS) as u8
        }
    }
}

fn triangle(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        1.0 - x
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shifted_planes_repeat_the_edge() {
        let img: Vec<u8> = (1..=8).collect(); // 4 rows of 2
        assert_eq!(shift_planes(&img, 4, 2, 0, 0), img);
        assert_eq!(shift_planes(&img, 4, 2, 1, 0), vec![1, 2, 1, 2, 3, 4, 5, 6]);
        assert_eq!(shift_planes(&img, 4, 2, -2, 0), vec![5, 6, 7, 8, 7, 8, 7, 8]);
        assert_eq!(shift_planes(&img, 4, 2, 0, 1), vec![1, 1, 3, 3, 5, 5, 7, 7]);
        // Two 3x3 planes, each moved on its own; the second is the first plus 100.
        let plane = [1u8, 2, 3, 4, 5, 6, 7, 8, 9];
        let two: Vec<u8> = plane.iter().copied().chain(plane.iter().map(|v| v + 100)).collect();
        let right = shift_planes(&two, 3, 3, 0, 1);
        assert_eq!(&right[..9], &[1, 1, 2, 4, 4, 5, 7, 7, 8]);
        assert_eq!(&right[9..], &[101, 101, 102, 104, 104, 105, 107, 107, 108]);
        assert_eq!(&shift_planes(&two, 3, 3, -1, -2)[..9], &[6, 6, 6, 9, 9, 9, 9, 9, 9]);
    }

    fn png(img: &DynamicImage) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, ImageFormat::Png).expect("encode");
        out.into_inner()
    }

    #[test]
    fn planes_resize_as_each_channel_alone() {
        // A pseudo-random RGB image; regions that shrink, grow and keep a side.
        let (iw, ih) = (37usize, 29usize);
        let data: Vec<u8> = (0..iw * ih * 3).map(|i| ((i * 7919 + i / 5 * 104729) % 251) as u8).collect();
        for &(left, top, w, h, nw, nh) in &[
            (3, 2, 30, 25, 12, 12),
            (0, 0, 37, 29, 48, 48),
            (5, 4, 12, 20, 12, 9),
            (1, 1, 20, 9, 7, 9),
            (2, 3, 6, 6, 6, 6),
        ] {
            let region = Region { data: &data, stride: iw * 3, left, top, w, h };
            let planes = resize_bilinear_planes::<3>(region, nw, nh);
            assert_eq!(planes.len(), 3 * nw * nh);
            for c in 0..3 {
                let plane: Vec<u8> = (0..h)
                    .flat_map(|y| (0..w).map(move |x| (y, x)))
                    .map(|(y, x)| data[(top + y) * iw * 3 + (left + x) * 3 + c])
                    .collect();
                assert_eq!(
                    &planes[c * nw * nh..(c + 1) * nw * nh],
                    resize_bilinear(&plane, w, h, nw, nh).as_slice(),
                    "channel {c} of {w}x{h} -> {nw}x{nh}"
                );
            }
        }
    }

    fn spec_32x160(crop: Crop, resize: Resize, max_squeeze: Option<f64>) -> InputSpec {
        InputSpec {
            height: 32,
            width: 160,
            mean: 0.5,
            std: 0.5,
            crop,
            resize,
            max_squeeze,
            max_width: None,
            width_step: 8,
        }
    }

    /// A `w`x`h` white image with a black bar over rows 10..30 of the columns `ink`, and
    /// noise dots: one black pixel in every 7th column of row 2.
    fn text_in(w: u32, h: u32, ink: std::ops::Range<u32>) -> GrayImage {
        GrayImage::from_fn(w, h, |x, y| {
            let bar = ink.contains(&x) && (10..30).contains(&y) && x % 3 != 0;
            image::Luma([if bar || (y == 2 && x % 7 == 0) { 0 } else { 255 }])
        })
    }

    #[test]
    fn ink_columns_keeps_the_text_and_a_margin_but_not_the_noise() {
        // GIVEN a 300x40 image whose text spans columns 20..120, dots all over
        let img = text_in(300, 40, 20..120);
        // THEN the kept columns are the text's, widened by round(0.15 * 40) = 6
        assert_eq!(ink_columns(img.as_raw(), 300, 40), (14, 126));
        assert_eq!(Crop::InkColumns.columns(&img), (14, 126));
        assert_eq!(Crop::None.columns(&img), (0, 300));
        // AND text that fills more than nine tenths of the width keeps the image whole
        let full = text_in(300, 40, 10..285);
        assert_eq!(ink_columns(full.as_raw(), 300, 40), (0, 300));
        // AND an image without ink (or with dots only) keeps the image whole
        let blank = GrayImage::from_pixel(80, 30, image::Luma([200]));
        assert_eq!(ink_columns(blank.as_raw(), 80, 30), (0, 80));
        let dots = text_in(300, 40, 0..0);
        assert_eq!(ink_columns(dots.as_raw(), 300, 40), (0, 300));
        // AND light text on a dark ground is ink as well
        let mut dark = text_in(300, 40, 150..250);
        for p in dark.pixels_mut() {
            p.0[0] = 255 - p.0[0];
        }
        assert_eq!(ink_columns(dark.as_raw(), 300, 40), (145, 255));
    }

    #[test]
    fn a_wide_image_gets_a_wider_canvas_up_to_max_width() {
        // GIVEN a 32x160 input that may widen to 200 in steps of 8
        let spec = InputSpec { max_width: Some(200), ..spec_32x160(Crop::None, Resize::Fit, None) };
        assert_eq!(spec.canvas_widths(), vec![160, 168, 176, 184, 192, 200]);
        // WHEN images of 40 rows are measured THEN the width they take at 32 rows
        // is rounded up to a step, never under 160, never over 200
        for (w, want) in [(100, 160), (200, 160), (220, 176), (221, 184), (250, 200), (400, 200)] {
            assert_eq!(spec.canvas_width(40, w), want, "{w}x40");
        }
        // AND a 220x40 image fills the whole height of its 176-column canvas
        let img = GrayImage::from_fn(220, 40, |x, _| image::Luma([(x * 255 / 219) as u8]));
        let canvas = fit_to_canvas(&img, &spec);
        assert_eq!(canvas.len(), 32 * 176);
        assert_eq!(canvas[..176], canvas[31 * 176..], "the first and last rows are both image");
        assert!(canvas[170] > 100, "the image reaches the right columns: {}", canvas[170]);
        // AND without max_width it is fitted into 160 columns as before
        let fixed = fit_to_canvas(&img, &spec_32x160(Crop::None, Resize::Fit, None));
        assert_eq!(fixed.len(), 32 * 160);
        assert_eq!(spec_32x160(Crop::None, Resize::Fit, None).canvas_widths(), vec![160]);
    }

    #[test]
    fn the_crop_resizes_only_the_kept_columns() {
        // GIVEN text in the left third of a wide image
        let img = text_in(300, 40, 20..120);
        // WHEN the canvas is made with the crop THEN it is the resize of the kept
        // columns alone: 112x40 scaled by min(32/40, 160/112) = 0.8 to 90x32
        let cropped = fit_to_canvas(&img, &spec_32x160(Crop::InkColumns, Resize::Fit, None));
        let kept = GrayImage::from_fn(112, 40, |x, y| *img.get_pixel(x + 14, y));
        let want = fit_to_canvas(&kept, &spec_32x160(Crop::None, Resize::Fit, None));
        assert_eq!(cropped, want);
        // AND without the crop the text is smaller: 300x40 to 160x21
        let whole = fit_to_canvas(&img, &spec_32x160(Crop::None, Resize::Fit, None));
        let dark_rows = |c: &[u8]| c.chunks_exact(160).filter(|r| r.iter().any(|&v| v < 128)).count();
        assert!(dark_rows(&cropped) > dark_rows(&whole), "{} vs {}", dark_rows(&cropped), dark_rows(&whole));
    }

    #[test]
    fn crop_is_read_from_model_json_in_kebab_case() {
        assert_eq!(serde_json::from_str::<Crop>("\"ink-columns\"").expect("ink-columns"), Crop::InkColumns);
        assert_eq!(serde_json::from_str::<Crop>("\"none\"").expect("none"), Crop::None);
        assert!(serde_json::from_str::<Crop>("\"rows\"").is_err());
    }

    #[test]
    fn alpha_is_composited_over_white() {
        assert_eq!(over_white(0, 0), 255);
        assert_eq!(over_white(0, 255), 0);
        assert_eq!(over_white(200, 255), 200);
        assert_eq!(over_white(0, 128), 127);
    }

    #[test]
    fn gray_is_pillows_luma() {
        let rgb = image::RgbImage::from_pixel(2, 1, image::Rgb([10, 200, 30]));
        let gray = gray_of(&rgb);
        assert_eq!(gray.get_pixel(0, 0).0[0], 124);
    }

    #[test]
    fn fill_height_fills_the_height_and_squeezes_only_a_wide_image() {
        // GIVEN a 320x40 image, black on the left half and white on the right
        let mut wide = GrayImage::from_pixel(320, 40, image::Luma([255]));
        for y in 0..40 {
            for x in 0..160 {
                wide.put_pixel(x, y, image::Luma([0]));
            }
        }
        // WHEN it fills the height of a 32x160 canvas THEN it is 160x32: every row
        // is black then white, the top and bottom rows too
        let canvas = fit_to_canvas(&wide, &spec_32x160(Crop::None, Resize::FillHeight, None));
        for y in [0, 16, 31] {
            assert_eq!((canvas[y * 160], canvas[y * 160 + 159]), (0, 255), "row {y}");
        }
        // AND squeezed at most 1.5x it is 160x30 (scales 0.5 across, 0.75 down):
        // rows 1..31 hold the image, row 0 and row 31 are padding
        let canvas = fit_to_canvas(&wide, &spec_32x160(Crop::None, Resize::FillHeight, Some(1.5)));
        for y in [1, 16, 30] {
            assert_eq!((canvas[y * 160], canvas[y * 160 + 159]), (0, 255), "row {y}");
        }
        assert_eq!(canvas[0], canvas[31 * 160], "padding rows");
        assert_ne!((canvas[0], canvas[159]), (0, 255), "row 0 is padding, not the image");
        // a cap of 1 is Fit
        assert_eq!(
            fit_to_canvas(&wide, &spec_32x160(Crop::None, Resize::FillHeight, Some(1.0))),
            fit_to_canvas(&wide, &spec_32x160(Crop::None, Resize::Fit, None))
        );
        // while Fit keeps the aspect: 160x20 at rows 6..26, padded above and below
        let canvas = fit_to_canvas(&wide, &spec_32x160(Crop::None, Resize::Fit, None));
        assert_eq!((canvas[16 * 160], canvas[16 * 160 + 159]), (0, 255));
        assert!(canvas[0] != 0 && canvas[159] != 255, "padding, not the image");
        // AND an image narrower than the canvas's aspect reads the same under both
        let narrow = GrayImage::from_fn(40, 40, |x, y| image::Luma([((x * 5 + y * 3) % 256) as u8]));
        assert_eq!(
            fit_to_canvas(&narrow, &spec_32x160(Crop::None, Resize::FillHeight, None)),
            fit_to_canvas(&narrow, &spec_32x160(Crop::None, Resize::Fit, None))
        );
    }

    #[test]
    fn resize_is_read_from_model_json_in_kebab_case() {
        let r: Resize = serde_json::from_str("\"fill-height\"").expect("fill-height");
        assert_eq!(r, Resize::FillHeight);
        assert_eq!(serde_json::from_str::<Resize>("\"fit\"").expect("fit"), Resize::Fit);
        assert!(serde_json::from_str::<Resize>("\"stretch\"").is_err());
    }

    #[test]
    fn a_wide_image_is_scaled_to_the_width_and_centred() {
        // GIVEN a 320x40 black image and a 32x160 canvas
        let img = DynamicImage::ImageLuma8(GrayImage::from_pixel(320, 40, image::Luma([0])));
        let gray = decode_gray(&png(&img), &ImageLimits::default()).expect("gray");
        let canvas = fit_to_canvas(&gray, &spec_32x160(Crop::None, Resize::Fit, None));
        // THEN it becomes 160x20 at rows 6..26, the rest padded with its border (black)
        assert_eq!(canvas.len(), 32 * 160);
        assert!(canvas.iter().all(|&v| v == 0));
        // A white image with a black border pads with the border's mean instead.
        let mut img = GrayImage::from_pixel(16, 16, image::Luma([255]));
        for i in 0..16 {
            img.put_pixel(i, 0, image::Luma([0]));
        }
        let canvas = fit_to_canvas(&img, &spec_32x160(Crop::None, Resize::Fit, None));
        // 16x16 -> 32x32; top row black, others white: border mean = (32*255*3 - 2*255... )
        let pad = canvas[159];
        assert!(pad > 150 && pad < 220, "{pad}");
        assert_eq!(canvas[0], 0);
    }

    #[test]
    fn resizing_matches_pillow_on_known_values() {
        // Pillow: Image.fromarray(np.array([[0, 255, 0, 255]], np.uint8)).resize((2, 1), BILINEAR)
        // gives [[109, 146]]; .resize((8, 1), BILINEAR) gives [[0, 64, 191, 191, 64, 64, 191, 255]].
        assert_eq!(resize_bilinear(&[0, 255, 0, 255], 4, 1, 2, 1), vec![109, 146]);
        assert_eq!(resize_bilinear(&[0, 255, 0, 255], 4, 1, 8, 1), vec![0, 64, 191, 191, 64, 64, 191, 255]);
    }

    #[test]
    fn normalisation_maps_black_and_white_to_minus_one_and_one() {
        assert_eq!(normalize(&[0, 255], 0.5, 0.5), vec![-1.0, 1.0]);
    }
}
