"""The ONE preprocessing function of the OCR engine (the contract).

Used for training data, evaluation and the benchmark. The Rust crate
(shared/ocr/src) implements the same steps; model/preprocess_golden.json
pins the numbers.

Steps:
  1. alpha (RGBA, LA, P with transparency) composited over white; RGB.
  2. gray uint8 = (R*19595 + G*38470 + B*7471 + 32768) >> 16.
  2b. crop "ink-columns" (model.json "crop"; absent = "none", every model before
     attempt 17): keep only the columns that hold the text, so that text drawn in
     the left part of a wide image is not shrunk with the empty rest. All in
     integers (see ink_columns): the background is the gray image's median, the
     contrast its larger distance to the 2nd and 98th percentiles; a pixel is ink
     when |v - median| * 100 > max(2000, 35 * contrast); a column is strong when
     it holds at least 4 ink pixels and at least 15% of the busiest column's;
     keep from the first to the last strong column, widened by round(0.15 * h) on
     each side (within the image), only if that drops at least 10% of the width.
     Rows are never cropped: the text's height against the image's stays a cue
     for case.
  (round = half away from zero, like Rust's f64::round; not Python's banker's round)
  3. resize "fit" (the default, and every model so far): scale = min(H/h, W/w) on
     both axes. resize "fill-height" (model.json "resize"): the height scale is H/h,
     the width scale min(H/h, W/w), so the text fills the canvas height and an
     image wider than W/H is squeezed only across; with "max_squeeze" m
     (model.json, optional, >= 1) the height scale is min(H/h, m * the width
     scale), so no image is squeezed by more than m. nh = max(1, round(h*scale_h));
     nw = max(1, round(w*scale_w)), both capped at H and W;
     resize gray to (nw, nh) with PIL BILINEAR.
  3b. a wider canvas for wide text (model.json "max_width" M and "width_step" S,
     resize "fit" only; absent = the fixed width W, every model before attempt 27):
     the canvas width is the (cropped) image's width at the canvas height, rounded
     up to a multiple of S, within [W, M], in integers:
     cw = min(M, max(W, ceil(iw * H / (ih * S)) * S)). Step 3 fits into H x cw, so
     text up to M/H wide fills the height instead of shrinking; the model runs on
     the H x cw input (one plan per width in the Rust crate).
  4. canvas H x cw (cw = W without "max_width") filled with pad = round(mean of the border pixels of the resized
     image: first/last row, first/last column); paste at x=0, y=(H-nh)//2.
  5. x = (v/255 - mean)/std (float32).
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass

import numpy as np
from PIL import Image

_HERE = os.path.dirname(os.path.abspath(__file__))
MODEL_DIR = os.path.join(_HERE, "..", "model")

# Defaults of the shipped model; model.json is the source of truth at runtime.
INPUT_H = 48
INPUT_W = 160
MEAN = 0.5
STD = 0.5
CHARSET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz+-*=? "


def load_config(model_dir: str = MODEL_DIR) -> dict:
    with open(os.path.join(model_dir, "model.json")) as f:
        return json.load(f)


def round_half_up(x: float) -> int:
    """round() as in Rust's f64::round for x >= 0 (halves go up, not to even)."""
    return int(math.floor(x + 0.5))


def to_rgb(img: Image.Image) -> Image.Image:
    """Step 1: composite any alpha over white, return an RGB image."""
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        img = img.convert("RGBA")
        bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
        bg.alpha_composite(img)
        img = bg
    return img.convert("RGB")


def to_gray(img: Image.Image) -> np.ndarray:
    """Step 2: integer luma, identical to PIL's convert('L')."""
    a = np.asarray(to_rgb(img), dtype=np.uint32)
    g = (a[..., 0] * 19595 + a[..., 1] * 38470 + a[..., 2] * 7471 + 32768) >> 16
    return g.astype(np.uint8)


RESIZE_MODES = ("fit", "fill-height")
CROP_MODES = ("none", "ink-columns")


def _percentile_u8(hist: np.ndarray, n: int, num: int, den: int) -> int:
    """Smallest gray value v whose cumulative count c satisfies c * den >= n * num."""
    c = np.cumsum(hist)
    return int(np.argmax(c * den >= n * num))


def ink_columns(gray: np.ndarray) -> tuple[int, int]:
    """Step 2b: the (left, right) columns to keep, right exclusive; (0, w) keeps all."""
    ih, iw = gray.shape
    n = ih * iw
    hist = np.bincount(gray.ravel(), minlength=256).astype(np.int64)
    bg = _percentile_u8(hist, n, 1, 2)
    lo = _percentile_u8(hist, n, 2, 100)
    hi = _percentile_u8(hist, n, 98, 100)
    contrast = max(bg - lo, hi - bg)
    ink = np.abs(gray.astype(np.int32) - bg) * 100 > max(2000, 35 * contrast)
    col = ink.sum(0).astype(np.int64)
    strong = (col >= 4) & (col * 100 >= 15 * int(col.max()))
    idx = np.nonzero(strong)[0]
    if len(idx) == 0:
        return 0, iw
    m = (15 * ih + 50) // 100
    left = max(0, int(idx[0]) - m)
    right = min(iw, int(idx[-1]) + 1 + m)
    if (iw - (right - left)) * 10 < iw:
        return 0, iw
    return left, right


def scales(ih: int, iw: int, h: int, w: int, resize: str = "fit",
           max_squeeze: float | None = None) -> tuple[float, float]:
    """Step 3's (height, width) scales."""
    fit = min(h / ih, w / iw)
    if resize == "fit":
        if max_squeeze is not None:
            raise ValueError("max_squeeze applies to resize 'fill-height' only")
        return fit, fit
    if resize == "fill-height":
        if max_squeeze is None:
            return h / ih, fit
        if not (math.isfinite(max_squeeze) and max_squeeze >= 1.0):  # as the Rust load check
            raise ValueError(f"max_squeeze must be a finite number >= 1: {max_squeeze!r}")
        return min(h / ih, fit * max_squeeze), fit
    raise ValueError(f"resize must be one of {RESIZE_MODES}: {resize!r}")


@dataclass(frozen=True)
class InputSpec:
    """Steps 2b-5's settings, as model.json gives them (the Rust crate's `InputSpec`):
    the canvas, the normalisation, the resize (with its optional squeeze cap) and the
    crop. The defaults are the shipped graph's canvas with "fit" and no crop, the
    meaning of a model.json without those keys."""
    h: int = INPUT_H
    w: int = INPUT_W
    mean: float = MEAN
    std: float = STD
    resize: str = "fit"
    max_squeeze: float | None = None
    crop: str = "none"
    max_w: int | None = None
    w_step: int = 8

    def __post_init__(self):
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {RESIZE_MODES}: {self.resize!r}")
        if self.crop not in CROP_MODES:
            raise ValueError(f"crop must be one of {CROP_MODES}: {self.crop!r}")
        scales(self.h, self.w, self.h, self.w, self.resize, self.max_squeeze)  # checks max_squeeze
        if self.max_w is not None:  # as the Rust load check
            if self.resize != "fit":
                raise ValueError("max_width applies to resize 'fit' only")
            if not (self.w_step > 0 and self.w_step % 4 == 0 and self.max_w >= self.w
                    and (self.max_w - self.w) % self.w_step == 0 and (self.max_w - self.w) // self.w_step < 32):
                raise ValueError(f"max_width {self.max_w} / width_step {self.w_step}: a step that is a multiple of 4, "
                                 f"and at most 31 steps above input_width {self.w}")

    def widths(self) -> list:
        """Every canvas width step 3b can give."""
        return list(range(self.w, (self.max_w or self.w) + 1, self.w_step))

    def canvas_w(self, ih: int, iw: int) -> int:
        """Step 3b: the canvas width for a (cropped) ih x iw image."""
        if self.max_w is None:
            return self.w
        need = -(-(iw * self.h) // (ih * self.w_step)) * self.w_step
        return min(self.max_w, max(self.w, need))

    @classmethod
    def from_config(cls, cfg: dict) -> "InputSpec":
        """From a model.json (load_config)."""
        return cls(cfg["input_height"], cfg["input_width"], cfg["mean"], cfg["std"], cfg.get("resize", "fit"),
                   cfg.get("max_squeeze"), cfg.get("crop", "none"), cfg.get("max_width"), cfg.get("width_step", 8))

    def optional_keys(self) -> dict:
        """model.json's "resize", "max_squeeze" and "crop" for this spec, each only
        when it differs from its default, so a model that does not use them keeps a
        model.json older readers understand."""
        cfg = {}
        if self.resize != "fit":
            cfg["resize"] = self.resize
            if self.max_squeeze is not None:
                cfg["max_squeeze"] = self.max_squeeze
        if self.crop != "none":
            cfg["crop"] = self.crop
        if self.max_w is not None:
            cfg["max_width"] = self.max_w
            cfg["width_step"] = self.w_step
        return cfg


def cropped_and_size(gray: np.ndarray, spec: InputSpec) -> tuple[np.ndarray, int, int, int]:
    """Steps 2b, 3b and 3's size: the cropped gray image, its resized (height, width),
    and the canvas width."""
    if spec.crop == "ink-columns":
        left, right = ink_columns(gray)
        gray = np.ascontiguousarray(gray[:, left:right])
    ih, iw = gray.shape
    cw = spec.canvas_w(ih, iw)
    sh, sw = scales(ih, iw, spec.h, cw, spec.resize, spec.max_squeeze)
    nh = min(max(1, round_half_up(ih * sh)), spec.h)
    nw = min(max(1, round_half_up(iw * sw)), cw)
    return gray, nh, nw, cw


def canvas_u8(img: Image.Image, spec: InputSpec = InputSpec(), out_w: int = 0) -> tuple[np.ndarray, int]:
    """Steps 1-4: the padded uint8 canvas and its width cw (spec.w unless the spec has
    a max_w). With out_w > cw the array is out_w wide, the extra columns padded as the
    canvas is (what training data of a max_w spec stores, with cw beside it)."""
    h = spec.h
    gray, nh, nw, cw = cropped_and_size(to_gray(img), spec)
    r = np.asarray(Image.fromarray(gray, "L").resize((nw, nh), Image.BILINEAR), dtype=np.uint8)
    border = np.concatenate([r[0, :], r[-1, :], r[:, 0], r[:, -1]]).astype(np.float64)
    pad = round_half_up(float(border.mean()))
    canvas = np.full((h, max(cw, out_w)), pad, dtype=np.uint8)
    y = (h - nh) // 2
    canvas[y:y + nh, 0:nw] = r
    return canvas, cw


def preprocess_u8(img: Image.Image, spec: InputSpec = InputSpec()) -> np.ndarray:
    """Steps 1-4: the padded uint8 canvas [h, cw] (what training data stores)."""
    return canvas_u8(img, spec)[0]


def normalize(u8: np.ndarray, mean: float = MEAN, std: float = STD) -> np.ndarray:
    """Step 5."""
    return ((u8.astype(np.float32) / np.float32(255.0)) - np.float32(mean)) / np.float32(std)


def preprocess(img: Image.Image, spec: InputSpec = InputSpec()) -> np.ndarray:
    """The contract: PIL image -> float32 [h, w]."""
    return normalize(preprocess_u8(img, spec), spec.mean, spec.std)
