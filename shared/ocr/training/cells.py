"""The glyph-cell path of the OCR engine (the contract, like preprocess.py).

Some CAPTCHAs draw each character in its own square cell, side by side, each
cell with its own background colour and a rotated glyph (multicolorcaptcha and
its clones), sometimes centred in a taller black canvas. Read as one grey line
they are hopeless (the glyph colours often match the cell colour in luma, and
the margins leave a 21 px band); cut into cells, each is a small colour
classification problem. The Rust crate (shared/ocr/src/cells.rs) implements
the same steps; model-cells/cells_golden.json pins the numbers.

Steps:
  1. RGB as in preprocess.to_rgb (alpha over white).
  2. band: drop rows from the top and from the bottom while the row is dark
     (at least 97% of its pixels have max(R, G, B) <= 48).
  3. n = round(w / band height); a strip only if 3 <= n <= 8 and
     |w / band height - n| <= 0.15 (cells are square).
  4. cell i spans columns [round(i*w/n), round((i+1)*w/n)) of the band.
  5. each cell, each channel, resized to SxS with PIL BILINEAR (uint8 [3, S, S]);
  6. the cell's colour taken out: per channel v = |v - m| with m the channel's
     median (the sorted S*S values' element S*S//2: the cell colour, which
     covers most of the cell), so a glyph is bright on black whatever its and
     its cell's colours;
  7. x = (v/255 - 0.5)/0.5, float32 [3, S, S].
The model classifies each cell into CELL_CHARSET or "not a glyph cell" (the
last class). A strip is read as cells only when fewer than half its cells are
"not a glyph".
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from preprocess import round_half_up, to_rgb

CELL = 48  # every cell model since attempt 14 (model-cells/: cells v5, attempt 19); cells v1 was 32
CELL_CHARSET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz+-*=?"
NOT_A_GLYPH = len(CELL_CHARSET)  # the last class
MIN_CELLS, MAX_CELLS = 3, 8
DARK = 48
DARK_SHARE = 0.97
SQUARE_TOLERANCE = 0.15


def rgb_array(img: Image.Image) -> np.ndarray:
    return np.asarray(to_rgb(img), dtype=np.uint8)


def band(rgb: np.ndarray) -> tuple[int, int]:
    """Step 2: rows [y0, y1) between the dark margins (the whole image if none)."""
    dark = (rgb.max(axis=2) <= DARK).mean(axis=1) >= DARK_SHARE
    h = rgb.shape[0]
    y0 = 0
    while y0 < h and dark[y0]:
        y0 += 1
    y1 = h
    while y1 > y0 and dark[y1 - 1]:
        y1 -= 1
    return y0, y1


def cell_count(width: int, band_height: int) -> int | None:
    """Step 3: the number of square cells, or None if this is not a strip."""
    if band_height <= 0:
        return None
    ratio = width / band_height
    n = round_half_up(ratio)
    if MIN_CELLS <= n <= MAX_CELLS and abs(ratio - n) <= SQUARE_TOLERANCE:
        return n
    return None


def split(rgb: np.ndarray, n: int | None = None) -> list[np.ndarray] | None:
    """Steps 2-4: the cells of a strip as uint8 [h, w, 3] arrays, or None.
    `n` forces the count (for training negatives)."""
    y0, y1 = band(rgb)
    w = rgb.shape[1]
    if n is None:
        n = cell_count(w, y1 - y0)
        if n is None:
            return None
    if y1 - y0 < 4 or w < n:
        return None
    edges = [round_half_up(i * w / n) for i in range(n + 1)]
    return [rgb[y0:y1, edges[i]:edges[i + 1]] for i in range(n)]


def cell_u8(cell: np.ndarray, s: int = CELL) -> np.ndarray:
    """Step 5 without the normalisation: uint8 [3, s, s] (what training stores)."""
    chans = [np.asarray(Image.fromarray(np.ascontiguousarray(cell[..., c]), "L").resize((s, s), Image.BILINEAR))
             for c in range(3)]
    return np.stack(chans).astype(np.uint8)


def features(u8: np.ndarray) -> np.ndarray:
    """Step 6 on [..., 3, S, S] uint8: |v - the channel's median|."""
    flat = u8.reshape(*u8.shape[:-2], -1)
    k = flat.shape[-1] // 2
    m = np.partition(flat, k, axis=-1)[..., k]  # the sorted values' element k, without the full sort
    return np.abs(u8.astype(np.int16) - m[..., None, None].astype(np.int16)).astype(np.uint8)


def normalize(u8: np.ndarray) -> np.ndarray:
    return ((u8.astype(np.float32) / np.float32(255.0)) - np.float32(0.5)) / np.float32(0.5)


def cells_of(img: Image.Image, s: int = CELL) -> np.ndarray | None:
    """The contract (steps 1-7): PIL image -> float32 [n, 3, s, s], or None if not a strip."""
    cells = split(rgb_array(img))
    if cells is None:
        return None
    return normalize(features(np.stack([cell_u8(c, s) for c in cells])))


# ------------------------------------------------------------------ golden
GOLDEN_FILES = [
    "validation/multicolor/0000.gif",   # 848x240 GIF: black margins, 8 cells of 106 px
    "validation/multicolor/0003.png",   # 256x64: no margins, 4 cells
    "validation/multicolor/0002.png",   # 424x240 with margins, 4 cells
    "validation/multicolor/0008.png",   # 256x144 RGBA with margins
    # No JPEG: Pillow's libjpeg and the `image` crate's decoder round their
    # IDCTs differently, so a JPEG's pixels (not the steps) differ by a level.
    "validation/calc/0003.png",         # other styles, cut the same way when their shape fits
    "validation/pillow/0002.png",
    "validation/captcha-fonts/0011.png",
    "validation/captcha-default/0001.png",  # not a strip
    "validation/pillow/0007.gif",
]


def checksum(u8: np.ndarray) -> int:
    """sum of v * (i % 251 + 1) over the flat [3, S, S] bytes: catches a moved or changed value."""
    flat = u8.reshape(-1).astype(np.int64)
    return int((flat * (np.arange(flat.size) % 251 + 1)).sum())


def write_golden(out_path: str, s: int = CELL):
    """<model dir>/cells_golden.json: per image the band, the cells' columns, and
    per cell the byte sum and checksum of step 5's [3, S, S] bytes and the
    checksum of step 6's, for cells of S x S."""
    import json
    import os
    ocr = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    images = []
    for rel in GOLDEN_FILES:
        rgb = rgb_array(Image.open(os.path.join(ocr, rel)))
        y0, y1 = band(rgb)
        n = cell_count(rgb.shape[1], y1 - y0)
        entry = {"file": rel, "width": int(rgb.shape[1]), "height": int(rgb.shape[0]), "top": y0, "bottom": y1,
                 "cells": None}
        if n is not None:
            w = rgb.shape[1]
            edges = [round_half_up(i * w / n) for i in range(n + 1)]
            u8s = [cell_u8(c, s) for c in split(rgb)]
            entry["cells"] = [{"x0": edges[i], "x1": edges[i + 1], "sum": int(u.astype(np.int64).sum()),
                               "checksum": checksum(u), "features_checksum": checksum(features(u))}
                              for i, u in enumerate(u8s)]
        images.append(entry)
    with open(out_path, "w") as f:
        json.dump({"cell_size": s, "images": images}, f, indent=1)
        f.write("\n")
    print(f"wrote {out_path}")


if __name__ == "__main__":
    import argparse
    import json
    import os
    ap = argparse.ArgumentParser(description="writes <model dir>/cells_golden.json at the model's own cell_size")
    ap.add_argument("model_dir", nargs="?", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "model-cells"))
    a = ap.parse_args()
    with open(os.path.join(a.model_dir, "model.json")) as f:
        size = int(json.load(f)["cell_size"])
    write_golden(os.path.join(a.model_dir, "cells_golden.json"), size)
