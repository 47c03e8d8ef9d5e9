"""How a cell model reads its own training draws against the check (does it
memorise or underfit?), and its accuracy per class group on the check.

  python cells_probe.py ../model-cells [--train-cells 20000] [--data train]

Runs the exported ONNX file in onnxruntime on the first --train-cells strip
cells of data/cells<S>/<data>.npz and on every cell of check.npz.
"""
from __future__ import annotations

import argparse
import json
import os

import numpy as np
import onnxruntime as ort

import cells
from train_cells import evaluate_preds, load, to_float

GROUPS = {"digit": "0123456789", "upper": "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
          "lower": "abcdefghijklmnopqrstuvwxyz", "operator": "+-*=?"}


def predict(sess, x, bs=512):
    out = []
    for i in range(0, len(x), bs):
        out.append(sess.run(None, {"input": to_float(x[i:i + bs]).numpy()})[0].argmax(1))
    return np.concatenate(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("--train-cells", type=int, default=20000)
    ap.add_argument("--data", default="train")
    a = ap.parse_args()
    with open(os.path.join(a.model_dir, "model.json")) as f:
        size = json.load(f)["cell_size"]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(os.path.join(a.model_dir, "cells.onnx"), opts, providers=["CPUExecutionProvider"])
    # the model has a fixed batch of 1 unless exported otherwise: run cell by cell then
    fixed = sess.get_inputs()[0].shape[0] == 1
    run = (lambda x: predict(sess, x, 1)) if fixed else (lambda x: predict(sess, x))

    x, y, counts, _ = load(a.data, size)
    n = min(a.train_cells, int(counts.sum()))
    train_ok = run(x[:n]) == y[:n]
    del x
    cx, cy, ccounts, _ = load("check", size)
    pred = run(cx)
    r = evaluate_preds(pred, cy, ccounts)
    print(f"{a.data} (first {n} strip cells): cell {train_ok.mean():.4f}")
    print("check: " + " ".join(f"{k}={v:.4f}" for k, v in r.items()))
    glyph = cy != cells.NOT_A_GLYPH
    chars = np.array(list(cells.CELL_CHARSET))
    truth = np.where(glyph, cy, 0)
    for name, members in GROUPS.items():
        m = glyph & np.isin(chars[truth], list(members))
        if m.any():
            print(f"check {name}: {int(m.sum())} cells, {(pred[m] == cy[m]).mean():.4f} right")
    ci = glyph & (pred != cells.NOT_A_GLYPH)
    same_ci = np.char.lower(chars[truth]) == np.char.lower(chars[np.where(ci, pred, 0)])
    print(f"check, case ignored: {(glyph & ci & same_ci).sum() / glyph.sum():.4f} of glyph cells")
    ops = glyph & np.isin(chars[truth], list(GROUPS["operator"]))
    wrong = ops & (pred != cy)
    if wrong.any():
        pairs = {}
        for t, p in zip(cy[wrong], pred[wrong]):
            k = f"{cells.CELL_CHARSET[t]}->{'none' if p == cells.NOT_A_GLYPH else cells.CELL_CHARSET[p]}"
            pairs[k] = pairs.get(k, 0) + 1
        print("check, operators misread: " + ", ".join(f"{k} {v}" for k, v in sorted(pairs.items(), key=lambda kv: -kv[1])))


if __name__ == "__main__":
    main()
