"""Evaluate model/captcha.onnx with onnxruntime on shared/ocr/validation/*.

  python evaluate.py [--model-dir ../model] [--errors 5] [--json] [--by-aspect]

Prints per style: n, exact (case-sensitive) and exact_ci (case-insensitive)
accuracy, plus single-thread latency (onnxruntime intra_op_num_threads=1;
preprocessing excluded from the model latency, reported separately).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from preprocess import InputSpec, load_config, preprocess  # noqa: E402

VAL_DIR = os.path.normpath(os.path.join(HERE, "..", "validation"))
MODEL_DIR = os.path.normpath(os.path.join(HERE, "..", "model"))


def read_labels(style_dir):
    rows = []
    with open(os.path.join(style_dir, "labels.tsv"), encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if line:
                name, label = line.split("\t", 1)
                rows.append((name, label))
    return rows


def styles(val_dir=VAL_DIR):
    return sorted(d for d in os.listdir(val_dir) if os.path.exists(os.path.join(val_dir, d, "labels.tsv")))


def session(path: str):
    """An onnxruntime session on one thread (onnxruntime is imported here, so
    that the helpers above load without it)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def ctc_greedy(logp: np.ndarray, charset: str, blank: int = 0) -> str:
    best = logp.argmax(-1)
    out, prev = [], blank
    for b in best:
        if b != prev and b != blank:
            out.append(charset[b - 1])
        prev = b
    return "".join(out)


def aspect_bins(width: int, height: int) -> list:
    """(name, upper bound) bins of width:height for a W x H input: the first is
    where "fit" and "fill-height" give the same input (up to W:H), then 4.5, 6."""
    canvas = width / height
    bins = [(f"<={canvas:.2f}", canvas)]
    lo = canvas
    for top in (4.5, 6.0):
        if top > lo:
            bins.append((f"{lo:.3g}-{top:g}", top))
            lo = top
    bins.append((f">{lo:.3g}", float("inf")))
    return bins


def aspect_bin(bins: list, aspect: float) -> str:
    return next(name for name, top in bins if aspect <= top + 1e-9)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", default=MODEL_DIR)
    ap.add_argument("--val-dir", default=VAL_DIR)
    ap.add_argument("--errors", type=int, default=0, help="print N errors per style")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--by-aspect", action="store_true",
                    help="also exact accuracy per style by the image's width:height (the resize modes differ above 160:48)")
    a = ap.parse_args()
    cfg = load_config(a.model_dir)
    H, W, cs = cfg["input_height"], cfg["input_width"], cfg["charset"]
    spec = InputSpec.from_config(cfg)
    bins = aspect_bins(W, H)
    sess = session(os.path.join(a.model_dir, "captcha.onnx"))
    iname = sess.get_inputs()[0].name
    res = {}
    lat, plat = [], []
    for s in styles(a.val_dir):
        rows = read_labels(os.path.join(a.val_dir, s))
        ok = okci = 0
        errs = []
        by_aspect = {}
        for name, label in rows:
            t0 = time.perf_counter()
            img = Image.open(os.path.join(a.val_dir, s, name))
            img.load()
            x = preprocess(img, spec)[None, None]
            t1 = time.perf_counter()
            lp = sess.run(None, {iname: x})[0][0]
            t2 = time.perf_counter()
            plat.append(t1 - t0)
            lat.append(t2 - t1)
            pred = ctc_greedy(lp, cs, cfg["blank"])
            ok += pred == label
            cell = by_aspect.setdefault(aspect_bin(bins, img.width / img.height), [0, 0])
            cell[0] += pred == label
            cell[1] += 1
            okci += pred.lower() == label.lower()
            if pred != label:
                errs.append((name, label, pred))
        res[s] = {"n": len(rows), "exact": round(ok / len(rows), 4), "exact_ci": round(okci / len(rows), 4)}
        if a.by_aspect:
            res[s]["exact_by_aspect"] = {
                k: [round(by_aspect[k][0] / by_aspect[k][1], 4), by_aspect[k][1]]
                for k, _ in bins if k in by_aspect}
        if a.errors and not a.json:
            for e in errs[:a.errors]:
                print(f"   {s} {e[0]}: want {e[1]!r} got {e[2]!r}")
    lat = np.array(lat) * 1000
    plat = np.array(plat) * 1000
    out = {"model_version": cfg.get("version"), "input": [H, W], "styles": res,
           "onnxruntime_ms_p50": round(float(np.percentile(lat, 50)), 3),
           "onnxruntime_ms_p95": round(float(np.percentile(lat, 95)), 3),
           "decode_preprocess_ms_p50": round(float(np.percentile(plat, 50)), 3),
           "threads": 1, "onnxruntime": __import__("onnxruntime").__version__}
    if a.json:
        print(json.dumps(out))
        return
    print(f"model {cfg.get('version')} input {H}x{W}")
    print(f"{'style':16s} {'n':>5s} {'exact':>7s} {'exact_ci':>8s}")
    for s, r in res.items():
        print(f"{s:16s} {r['n']:5d} {r['exact']*100:6.1f}% {r['exact_ci']*100:7.1f}%")
        for k, (acc, n) in r.get("exact_by_aspect", {}).items():
            print(f"   aspect {k:9s} {n:5d} {acc*100:6.1f}%")
    print(f"onnxruntime 1 thread: p50 {out['onnxruntime_ms_p50']} ms, p95 {out['onnxruntime_ms_p95']} ms "
          f"(decode+preprocess p50 {out['decode_preprocess_ms_p50']} ms)")


if __name__ == "__main__":
    main()
