"""Which extra readings of an unsure glyph cell help the cell reader: the
shipped one-pixel shifts, and small rotations or zooms of the cell (MODEL.md,
attempt 37).

  python cell_tta_probe.py --val-dir /tmp/tune [--model-dir ../model-cells]

For every multicolor strip of --val-dir (`labels.tsv` in its `multicolor/`),
the cells are cut as the engine cuts them (`cells.py`); each cell is read by
the cell model in onnxruntime; a cell whose likeliest class is below the
model.json's `tta_below` is read again under each variant's transforms of its
[3, S, S] bytes, and the readings' log-probabilities are averaged and
renormalised, as `CellReader::classify_cell` does. A strip's text is the
charset's likeliest letter per cell under the alphabet prior of
`alphabet_prior_probe.py` ("not a glyph" left out), so the variants differ
only in their readings. It prints exact strips (and case-insensitive) per
variant, and how many readings each costs.

`warp` (a rotation and a zoom) is the transform a Rust port would copy:
inverse mapping about the cell's centre, bilinear, coordinates clamped to the
cell (the border repeats the edge, as the shifts do) or the uncovered part
filled with the channel's median, rounded half up. The shifts are
`joint_probe.shifted`, the main model's.
"""
from __future__ import annotations

import argparse
import json
import math
import os

import numpy as np
from PIL import Image

import cells
from evaluate import read_labels
from joint_probe import shifted
from second_opinion import renormalised

HERE = os.path.dirname(os.path.abspath(__file__))
SHIFTS8 = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]


def warp(u8: np.ndarray, degrees: float, scale: float, fill_median: bool = False) -> np.ndarray:
    """The cell rotated by `degrees` (counter-clockwise as seen) and zoomed
    by `scale` about its centre: output pixel (x, y) samples the input at
    R(-degrees) ((x, y) - c) / scale + c, bilinearly, clamped to the cell."""
    s = u8.shape[-1]
    c = (s - 1) / 2.0
    t = math.radians(degrees)
    cos, sin = math.cos(t) / scale, math.sin(t) / scale
    ys, xs = np.mgrid[0:s, 0:s].astype(np.float64)
    u, v = xs - c, ys - c
    rx, ry = cos * u - sin * v + c, sin * u + cos * v + c
    outside = (rx < 0) | (rx > s - 1) | (ry < 0) | (ry > s - 1)
    sx = np.clip(rx, 0.0, s - 1.0)
    sy = np.clip(ry, 0.0, s - 1.0)
    x0 = np.minimum(np.floor(sx).astype(np.int64), s - 2)
    y0 = np.minimum(np.floor(sy).astype(np.int64), s - 2)
    fx, fy = sx - x0, sy - y0
    src = u8.astype(np.float64)
    out = ((1 - fy) * ((1 - fx) * src[:, y0, x0] + fx * src[:, y0, x0 + 1])
           + fy * ((1 - fx) * src[:, y0 + 1, x0] + fx * src[:, y0 + 1, x0 + 1]))
    if fill_median:
        flat = u8.reshape(u8.shape[0], -1)
        med = np.partition(flat, flat.shape[1] // 2, axis=1)[:, flat.shape[1] // 2].astype(np.float64)
        out = np.where(outside[None], med[:, None, None], out)
    return np.floor(out + 0.5).clip(0, 255).astype(np.uint8)


def variants() -> dict[str, list]:
    """name -> the extra readings of an unsure cell: ("shift", dy, dx), ("warp",
    degrees, scale), "warpm" (the same, the uncovered part the median) or "src"
    (the same on the cut's own pixels, then resized as step 5 does)."""
    sh = [("shift", dy, dx) for dy, dx in SHIFTS8]
    out = {"none": [], "shifts8 (shipped)": sh}
    for a in (8, 15, 25):
        out[f"shifts8 + rot ±{a}"] = sh + [("warp", a, 1.0), ("warp", -a, 1.0)]
    out["shifts8 + rot ±10,±20"] = sh + [("warp", a, 1.0) for a in (10, -10, 20, -20)]
    for z in (0.9, 1.1):
        out[f"shifts8 + zoom {z}"] = sh + [("warp", 0.0, z)]
    out["shifts8 + zoom 0.9,1.1"] = sh + [("warp", 0.0, 0.9), ("warp", 0.0, 1.1)]
    out["rot ±15 only"] = [("warp", 15, 1.0), ("warp", -15, 1.0)]
    out["rot ±15 only, median fill"] = [("warpm", 15, 1.0), ("warpm", -15, 1.0)]
    out["rot ±8 only, median fill"] = [("warpm", 8, 1.0), ("warpm", -8, 1.0)]
    out["rot ±15 only, source res"] = [("src", 15, 1.0), ("src", -15, 1.0)]
    out["shifts8 + rot ±8, median fill"] = sh + [("warpm", 8, 1.0), ("warpm", -8, 1.0)]
    out["shifts8 + rot ±15, source res"] = sh + [("src", 15, 1.0), ("src", -15, 1.0)]
    out["shifts8 + zoom 0.9,1.1, median"] = sh + [("warpm", 0.0, 0.9), ("warpm", 0.0, 1.1)]
    return out


def apply(u8: np.ndarray, t, cell: np.ndarray) -> np.ndarray:
    """Transform t of a cell: its [3, S, S] bytes u8, cut from `cell` ([h, w, 3])."""
    if t[0] == "shift":
        return shifted(u8, t[1], t[2])
    if t[0] == "src":  # the cut's own pixels, made square, turned, then resized as step 5 does
        side = max(cell.shape[:2])
        sq = cells.cell_u8(cell, side)
        return cells.cell_u8(np.transpose(warp(sq, t[1], t[2], True), (1, 2, 0)), u8.shape[-1])
    return warp(u8, t[1], t[2], t[0] == "warpm")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--val-dir", required=True)
    ap.add_argument("--model-dir", default=os.path.join(HERE, "..", "model-cells"))
    ap.add_argument("--only", default="", help="variant names separated by ; (default all)")
    a = ap.parse_args()
    import onnxruntime as ort  # here, so the tests import the transforms without it
    from alphabet_prior_probe import with_prior
    with open(os.path.join(a.model_dir, "model.json")) as f:
        spec = json.load(f)
    s, below, charset = spec["cell_size"], spec.get("tta_below", 1.0), spec["charset"]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(os.path.join(a.model_dir, "cells.onnx"), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name

    def read(batch: np.ndarray) -> np.ndarray:
        x = cells.normalize(cells.features(batch))
        return renormalised(np.concatenate([sess.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))]))

    table = variants()
    if a.only:
        table = {k: table[k] for k in a.only.split(";")}
    d = os.path.join(a.val_dir, "multicolor")
    labels = read_labels(d)
    exact = {k: 0 for k in table}
    folded = {k: 0 for k in table}
    runs = {k: 0 for k in table}
    for fname, truth in labels:
        rgb = cells.rgb_array(Image.open(os.path.join(d, fname)))
        cut = cells.split(rgb)
        if cut is None:
            continue
        u8s = np.stack([cells.cell_u8(c, s) for c in cut])
        base = read(u8s)
        unsure = np.exp(base).max(-1) < below
        extra = {}  # transform -> log-probs of the unsure cells
        for k, ts in table.items():
            rows = []
            for i in range(len(u8s)):
                lp = [base[i]]
                if unsure[i]:
                    for t in ts:
                        key = (i, t)
                        if key not in extra:
                            extra[key] = read(apply(u8s[i], t, cut[i])[None])[0]
                        lp.append(extra[key])
                runs[k] += len(lp)
                rows.append(renormalised(np.mean(lp, axis=0)))
            probs = []
            for r in rows:
                p = np.exp(r[:len(charset)])
                probs.append(p / p.sum())
            text = with_prior(probs, charset)
            exact[k] += text == truth
            folded[k] += text.lower() == truth.lower()
    n = len(labels)
    print(f"{d}: {n} strips; cells read again below {below}")
    for k in table:
        print(f"{k:28s} exact {exact[k]:4d} ({100 * exact[k] / n:5.1f}%)  case-insensitive {folded[k]:4d}"
              f"  readings {runs[k]}")


if __name__ == "__main__":
    main()
