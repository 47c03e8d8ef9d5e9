"""Anchor benchmark: ddddocr on the committed validation sets.

  python bench_ddddocr.py [--val-dir shared/ocr/validation] [--limit N]

Prints ONE JSON object on stdout:
  {"engine": "ddddocr", "version": ..., "threads": 1,
   "styles": {style: {"n", "exact", "exact_ci"}}, "overall": {...},
   "latency_ms": {"p50", "p95"}}

Single thread: ddddocr (1.6.1) creates its onnxruntime.InferenceSession without
session options, so we wrap onnxruntime.InferenceSession to pass
SessionOptions(intra_op_num_threads=1, inter_op_num_threads=1, sequential)
before ddddocr is constructed; OMP_NUM_THREADS=1 is set too. Latency is the
wall time of `classification(file_bytes)` per image (decode + preprocess +
inference), ddddocr's default model (beta=False).
Dependencies: requirements-bench.txt only (no torch).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import onnxruntime  # noqa: E402

_Orig = onnxruntime.InferenceSession


def _single_thread_session(*args, **kwargs):
    if kwargs.get("sess_options") is None and (len(args) < 2 or args[1] is None):
        so = onnxruntime.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        so.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        kwargs["sess_options"] = so
    return _Orig(*args, **kwargs)


onnxruntime.InferenceSession = _single_thread_session

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from evaluate import VAL_DIR, read_labels  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--val-dir", default=VAL_DIR)
    ap.add_argument("--limit", type=int, default=0, help="max images per style (0 = all)")
    a = ap.parse_args()
    with contextlib.redirect_stdout(io.StringIO()):  # keep stdout = one JSON object
        import ddddocr
        ocr = ddddocr.DdddOcr(show_ad=False)
    version = getattr(ddddocr, "__version__", None)
    if version is None:
        try:
            from importlib.metadata import version as _v
            version = _v("ddddocr")
        except Exception:
            version = "unknown"
    styles = sorted(d for d in os.listdir(a.val_dir) if os.path.exists(os.path.join(a.val_dir, d, "labels.tsv")))
    res, lat = {}, []
    tot = tot_ok = tot_ci = 0
    for s in styles:
        rows = read_labels(os.path.join(a.val_dir, s))
        if a.limit:
            rows = rows[:a.limit]
        ok = okci = 0
        for name, label in rows:
            with open(os.path.join(a.val_dir, s, name), "rb") as f:
                data = f.read()
            t0 = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                pred = ocr.classification(data)
            lat.append(time.perf_counter() - t0)
            pred = pred if isinstance(pred, str) else str(pred)
            ok += pred == label
            okci += pred.lower() == label.lower()
        res[s] = {"n": len(rows), "exact": round(ok / max(1, len(rows)), 4), "exact_ci": round(okci / max(1, len(rows)), 4)}
        tot += len(rows)
        tot_ok += ok
        tot_ci += okci
    lat_ms = np.array(lat) * 1000 if lat else np.zeros(1)
    out = {
        "engine": "ddddocr",
        "version": version,
        "beta": False,
        "threads": 1,
        "threads_note": "onnxruntime.InferenceSession wrapped to pass intra_op_num_threads=1, inter_op_num_threads=1; OMP_NUM_THREADS=1",
        "onnxruntime": onnxruntime.__version__,
        "styles": res,
        "overall": {"n": tot, "exact": round(tot_ok / max(1, tot), 4), "exact_ci": round(tot_ci / max(1, tot), 4)},
        "latency_ms": {"p50": round(float(np.percentile(lat_ms, 50)), 3), "p95": round(float(np.percentile(lat_ms, 95)), 3)},
    }
    sys.stdout.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
