"""Counts the instructions of each image's model step under callgrind.

  python callgrind_cost.py [--limit N] [--label NAME] [--json OUT] -- [ocr-bench args...]

Runs the release `ocr-bench --cost-pass` (build it first: `cargo build
--release -p captcha-ocr --bin ocr-bench`) under `valgrind --tool=callgrind`,
collecting only inside `model_step` and dumping the count after each call, so
every image gets its own instruction count. Unlike a wall-clock time, the
count does not move with the load of the machine. Prints, per style and over
all images, the median, mean and p95 instructions per image (in millions), and
writes every image's count with `--json`. Standard library only.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", "..", ".."))
BENCH = os.path.join(ROOT, "target", "release", "ocr-bench")


def dump_total(path: str) -> int:
    """The event total of one callgrind dump (its `totals:` line)."""
    with open(path) as f:
        for line in f:
            if line.startswith(("totals:", "summary:")):
                return int(line.split()[1])
    raise ValueError(f"{path}: no totals line")


def p95(values):
    v = sorted(values)
    return v[min(len(v) - 1, max(0, int(round(0.95 * len(v))) - 1))]


def summary(values):
    return {"n": len(values), "median": statistics.median(values), "mean": statistics.fmean(values),
            "p95": p95(values)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--label", default="", help="a name for this configuration in the output")
    ap.add_argument("--json", help="write every image's count here")
    ap.add_argument("--bench", default=BENCH, help="the ocr-bench binary")
    ap.add_argument("bench_args", nargs="*", help="passed to ocr-bench (after --)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="callgrind-") as tmp:
        cmd = ["valgrind", "--tool=callgrind", "--collect-atstart=no", "--toggle-collect=ocr_bench::model_step",
               "--dump-after=ocr_bench::model_step", f"--callgrind-out-file={tmp}/cg.out", a.bench, "--cost-pass",
               *a.bench_args]
        run = subprocess.run(cmd, capture_output=True, text=True)
        if run.returncode != 0:
            sys.exit(f"callgrind run failed ({run.returncode}):\n{run.stderr[-3000:]}")
        rows = [line.split("\t") for line in run.stdout.splitlines() if line]
        # Dumps are numbered in call order (cg.out.1, cg.out.2, ...); the final
        # one, at exit, holds what ran outside model_step (nothing collected).
        dumps = sorted(glob.glob(f"{tmp}/cg.out.*"), key=lambda p: int(p.rsplit(".", 1)[1]))
        counts = [dump_total(p) for p in dumps[:len(rows)]]
        if len(counts) != len(rows):
            sys.exit(f"{len(rows)} images but {len(dumps)} dumps")
    by_style: dict[str, list[int]] = {}
    images = []
    for (i, style, cells), n in zip(rows, counts):
        by_style.setdefault(style, []).append(n)
        images.append({"index": int(i), "style": style, "cells": cells == "1", "instructions": n})
    strips = [im["instructions"] for im in images if im["cells"]]
    result = {"label": a.label, "bench_args": a.bench_args, "all": summary(counts),
              "styles": {s: summary(v) for s, v in by_style.items()},
              "read_as_cells": summary(strips) if strips else None, "images": images}
    print(f"## {a.label or 'ocr-bench --cost-pass'} {' '.join(a.bench_args)}")
    print("| images | n | median M | mean M | p95 M |")
    print("|---|---:|---:|---:|---:|")
    lines = [("all", result["all"])] + sorted(result["styles"].items())
    if strips:
        lines.append(("read as cells", result["read_as_cells"]))
    for name, s in lines:
        print(f"| {name} | {s['n']} | {s['median'] / 1e6:.3f} | {s['mean'] / 1e6:.3f} | {s['p95'] / 1e6:.3f} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
