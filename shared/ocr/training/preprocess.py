"""The ONE preprocessing function of the OCR engine (the contract).

Used for training data, evaluation and the benchmark. The Rust crate
(shared/ocr/src) implements the same steps; model/preprocess_golden.json
pins the numbers.

Steps:
  1. alpha (RGBA, LA, P with transparency) composited over white; RGB.
  2. gray uint8 = (R*19595 + G*38470 + B*7471 + 32768) >> 16.
  (round = half away from zero, like Rust's f64::round; not Python's banker's round)
  3. resize "fit" (the default, and every model so far): scale = min(H/h, W/w) on
     both axes. resize "fill-height" (model.json "resize"): the height scale is H/h,
     the width scale min(H/h, W/w), so the text fills the canvas height and an
     image wider than W/H is squeezed only across; with "max_squeeze" m
     (model.json, optional, >= 1) the height scale is min(H/h, m * the width
     scale), so no image is squeezed by more than m. nh = max(1, round(h*scale_h));
     nw = max(1, round(w*scale_w)), both capped at H and W;
     resize gray to (nw, nh) with PIL BILINEAR.
  4. canvas HxW filled with pad = round(mean of the border pixels of the resized
     image: first/last row, first/last column); paste at x=0, y=(H-nh)//2.
  5. x = (v/255 - mean)/std (float32).
"""
from __future__ import annotations

import json
import math
import os

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


def preprocess_u8(img: Image.Image, h: int = INPUT_H, w: int = INPUT_W, resize: str = "fit",
                  max_squeeze: float | None = None) -> np.ndarray:
    """Steps 1-4: the padded uint8 canvas [h, w] (what training data stores)."""
    gray = to_gray(img)
    ih, iw = gray.shape
    sh, sw = scales(ih, iw, h, w, resize, max_squeeze)
    nh = max(1, round_half_up(ih * sh))
    nw = max(1, round_half_up(iw * sw))
    nh = min(nh, h)
    nw = min(nw, w)
    r = np.asarray(Image.fromarray(gray, "L").resize((nw, nh), Image.BILINEAR), dtype=np.uint8)
    border = np.concatenate([r[0, :], r[-1, :], r[:, 0], r[:, -1]]).astype(np.float64)
    pad = round_half_up(float(border.mean()))
    canvas = np.full((h, w), pad, dtype=np.uint8)
    y = (h - nh) // 2
    canvas[y:y + nh, 0:nw] = r
    return canvas


def normalize(u8: np.ndarray, mean: float = MEAN, std: float = STD) -> np.ndarray:
    """Step 5."""
    return ((u8.astype(np.float32) / np.float32(255.0)) - np.float32(mean)) / np.float32(std)


def preprocess(img: Image.Image, h: int = INPUT_H, w: int = INPUT_W,
               mean: float = MEAN, std: float = STD, resize: str = "fit",
               max_squeeze: float | None = None) -> np.ndarray:
    """The contract: PIL image -> float32 [h, w]."""
    return normalize(preprocess_u8(img, h, w, resize, max_squeeze), mean, std)
