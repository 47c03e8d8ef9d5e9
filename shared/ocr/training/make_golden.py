"""Write model/preprocess_golden.json: reference preprocessing numbers for the Rust crate.

For a few committed images of different sizes/modes: file (relative to
shared/ocr/), image mode and size, resized (nw, nh), pad value, the first 64
values of row H//2 of the float32 tensor, the same row as uint8, and the sum
of the whole float32 tensor. Resize is PIL BILINEAR; Rust's Triangle filter is
close but not bit-identical, so compare with a tolerance (e.g. |diff| <= 0.1
per value after normalisation, relative sum diff <= 1%).
"""
from __future__ import annotations

import json
import math
import os
import sys

import numpy as np
from PIL import Image, ImageDraw, ImageFont

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from preprocess import InputSpec, cropped_and_size, ink_columns, load_config, preprocess, preprocess_u8, to_gray  # noqa: E402

OCR = os.path.normpath(os.path.join(HERE, ".."))
FILES = [
    "validation/captcha-default/0001.png",   # 160x60 RGB
    "validation/multicolor/0008.png",        # 256x144 RGBA (opaque black margins)
    "validation/pillow/0007.gif",            # 255x52 palette GIF
    "model/golden_alpha.png",                # 120x40 RGBA with real transparency (alpha -> white)
    "validation/captcha-fonts/0076.png",     # 300x62, text in the left half that "ink-columns" keeps whole
                                             # (overlapping noise dots pass its column bar; MODEL.md attempt 17)
]
# "ink_columns": the columns crop "ink-columns" keeps, for the first INK_PER_STYLE
# images of every style
INK_PER_STYLE = 25


CAPPED = 1.35  # the pillow GIF (255x52, 4.9:1) is squeezed 1.47x uncapped
# "images_wide": resize "fit" after the crop "ink-columns" on a canvas up to WIDE
# columns (model.json "max_width", step WIDE_STEP): the crops of the pillow GIF and of
# the wide captcha-fonts image get canvases of 200 and 240 and fill the height; the
# rest keep the model's width.
WIDE, WIDE_STEP = 240, 8


def make_alpha_png(path):
    im = Image.new("RGBA", (120, 40), (0, 0, 0, 0))
    d = ImageDraw.Draw(im)
    f = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf", 26)
    d.text((6, 4), "aB3x", font=f, fill=(20, 40, 160, 255))
    d.line([(0, 30), (119, 12)], fill=(200, 30, 30, 128), width=3)
    im.save(path)


def main():
    cfg = load_config()
    H, W = cfg["input_height"], cfg["input_width"]
    alpha = os.path.join(OCR, "model", "golden_alpha.png")
    if not os.path.exists(alpha):
        make_alpha_png(alpha)
    out = {"input_height": H, "input_width": W, "mean": cfg["mean"], "std": cfg["std"],
           "row": H // 2, "resize": "PIL BILINEAR (Rust: image Triangle; not bit-identical)",
           "tolerance_hint": {"per_value_abs": 0.1, "sum_rel": 0.01}}
    # "images": resize "fit"; "images_fill_height": the same files under resize
    # "fill-height"; "images_fill_height_capped": under "fill-height" with max_squeeze
    # CAPPED. Every mode is pinned for parity, whichever the shipped model uses.
    out["capped_max_squeeze"] = CAPPED
    # "images_ink_columns": under resize "fit" after the crop "ink-columns".
    for key, resize, cap, crop in (("images", "fit", None, "none"), ("images_fill_height", "fill-height", None, "none"),
                                   ("images_fill_height_capped", "fill-height", CAPPED, "none"),
                                   ("images_ink_columns", "fit", None, "ink-columns")):
        spec = InputSpec(H, W, cfg["mean"], cfg["std"], resize, cap, crop)
        out[key] = [entry(rel, spec) for rel in FILES]
    # "images_wide": step 3b's wider canvas, "canvas_width" each image's.
    out["wide_max_width"], out["wide_width_step"] = WIDE, WIDE_STEP
    wide = InputSpec(H, W, cfg["mean"], cfg["std"], "fit", None, "ink-columns", WIDE, WIDE_STEP)
    out["images_wide"] = [entry(rel, wide) for rel in FILES]
    out["ink_columns"] = []
    val = os.path.join(OCR, "validation")
    for style in sorted(d for d in os.listdir(val) if os.path.exists(os.path.join(val, d, "labels.tsv"))):
        with open(os.path.join(val, style, "labels.tsv"), encoding="utf-8") as f:
            names = [line.split("\t", 1)[0] for line in f if line.strip()][:INK_PER_STYLE]
        for name in names:
            g = to_gray(Image.open(os.path.join(val, style, name)))
            left, right = ink_columns(g)
            out["ink_columns"].append({"file": f"validation/{style}/{name}", "width": g.shape[1], "left": left,
                                       "right": right})
    with open(os.path.join(OCR, "model", "preprocess_golden.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print("wrote model/preprocess_golden.json")


def entry(rel, spec: InputSpec):
    H = spec.h
    img = Image.open(os.path.join(OCR, rel))
    img.load()
    g, nh, nw, W = cropped_and_size(to_gray(img), spec)
    ih, iw = g.shape
    x = preprocess(img, spec)
    u8 = preprocess_u8(img, spec).astype(int)
    return {
        "file": rel, "mode": img.mode, "width": iw, "height": ih, "resized_width": nw, "resized_height": nh,
        "canvas_width": W,
        "pad": int(u8[0, -1]) if nw < W else (int(u8[0, 0]) if nh < H else None),
        "row_values": [round(float(v), 6) for v in x[H // 2, :64]],
        "row_u8": [int(v) for v in u8[H // 2, :64]],
        "sum": round(float(x.astype(np.float64).sum()), 4),
    }


if __name__ == "__main__":
    main()
