"""Trains and exports the glyph-cell classifier (see cells.py, gen_cells.py).

  python train_cells.py [--minutes 30] [--size 48] [--width 16,32,64,64,96] [--shift 3] [--out ../model-cells]
  python train_cells.py --arch deep --width 32,32,64,128 --bf16 ...   # attempt 18's deeper net
  python train_cells.py --data train,train2 --init runs/init.pt --freeze-bn ...   # attempt 20: v5 on more draws

Input [B, 3, S, S] (one cell, colour), output [B, len(CELL_CHARSET) + 1]
log-probabilities, the last class "not a glyph cell". Small on purpose: a
strip of 8 cells costs 8 runs of ~6 M multiply-adds. Prints, at every check,
the cell accuracy, the "not a glyph" recall and the exact-strip accuracy on
data/cells<S>/check.npz (seed 7777).
"""
from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import cells
from model import FreezableBN, cbr, export_checked

HERE = os.path.dirname(os.path.abspath(__file__))
NUM_CLASSES = len(cells.CELL_CHARSET) + 1


class CellNet(FreezableBN):
    """arch "v2" (cells v1 and v2): five convs, width (c1..c5), the first at full size.
    arch "deep" (attempt 18): six convs, width (c1..c4), the first with stride 2 so
    the full-size layer costs little, two convs at each of S/2, S/4 and S/8 -- the
    depth a rotated glyph crossed by lines needs, for about 1.6x v2's multiply-adds
    at (32, 32, 64, 128)."""

    def __init__(self, s: int = cells.CELL, width=(16, 32, 64, 64, 96), arch: str = "v2"):
        super().__init__()
        self.width = tuple(width)
        self.size = s
        self.arch = arch
        if arch == "v2":
            c1, c2, c3, c4, c5 = width
            self.features = nn.Sequential(
                cbr(3, c1), nn.MaxPool2d(2, 2),          # S/2
                cbr(c1, c2), nn.MaxPool2d(2, 2),         # S/4
                cbr(c2, c3), cbr(c3, c4), nn.MaxPool2d(2, 2),  # S/8
                cbr(c4, c5),
            )
            out = c5
        elif arch == "deep":
            c1, c2, c3, c4 = width
            self.features = nn.Sequential(
                cbr(3, c1, 3, 2, 1), cbr(c1, c2), nn.MaxPool2d(2, 2),  # S/2, then S/4
                cbr(c2, c3), cbr(c3, c3), nn.MaxPool2d(2, 2),          # S/8
                cbr(c3, c4), cbr(c4, c4),
            )
            out = c4
        else:
            raise ValueError(f"unknown arch {arch!r}")
        self.drop = nn.Dropout(0.2)
        self.cls = nn.Linear(out * (s // 8) ** 2, NUM_CLASSES)

    def forward(self, x):
        x = self.features(x).flatten(1)
        return F.log_softmax(self.cls(self.drop(x)), dim=1)


def load(name, size=cells.CELL):
    d = np.load(os.path.join(HERE, "data", f"cells{size}", f"{name}.npz"))
    return d["x"], d["y"].astype(np.int64), d["counts"], d["labels"]


class Draws:
    """Several training files (data/cells<S>/<name>.npz) read as one set, without
    concatenating them: two sets of ~1M cells are 6 GB each."""

    def __init__(self, names, size):
        self.parts = [load(n, size)[:2] for n in names]
        self.ends = np.cumsum([len(x) for x, _ in self.parts])

    def __len__(self):
        return int(self.ends[-1])

    def take(self, idx: np.ndarray):
        """Cells and labels at sorted global indices."""
        xs, ys, lo = [], [], 0
        for (x, y), hi in zip(self.parts, self.ends):
            j = idx[(idx >= lo) & (idx < hi)] - lo
            if len(j):
                xs.append(x[j])
                ys.append(y[j])
            lo = hi
        return np.concatenate(xs), np.concatenate(ys)


def to_float(xb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(cells.normalize(cells.features(xb)))


def shift(xb: np.ndarray, rng: np.random.Generator, k: int) -> np.ndarray:
    """Training augmentation: each cell [3, S, S] moved by up to k pixels each way,
    the uncovered border filled by repeating the edge (the cell colour). The cut
    of a real strip is off by a few pixels whenever the library's cells are not
    exactly w/n wide or the band is a row off."""
    if k <= 0:
        return xb
    s = xb.shape[-1]
    padded = np.pad(xb, ((0, 0), (0, 0), (k, k), (k, k)), mode="edge")
    dy, dx = rng.integers(0, 2 * k + 1, size=(2, len(xb)))
    return np.stack([padded[i, :, dy[i]:dy[i] + s, dx[i]:dx[i] + s] for i in range(len(xb))])


def evaluate(model, x, y, counts, bs=1024):
    model.eval()
    pred = []
    with torch.no_grad():
        for i in range(0, len(x), bs):
            pred.append(model(to_float(x[i:i + bs])).argmax(1).numpy())
    model.train()
    return evaluate_preds(np.concatenate(pred), y, counts)


def evaluate_preds(pred, y, counts):
    """Cell accuracy, exact strips and "not a glyph" recall of predicted classes."""
    ok = pred == y
    n_strip = int(counts.sum())
    ends = np.cumsum(counts)
    starts = ends - counts
    exact = np.mean([ok[a:b].all() for a, b in zip(starts, ends)])
    neg = y == cells.NOT_A_GLYPH
    return {"cell": float(ok[:n_strip].mean()), "strip_exact": float(exact),
            "not_a_glyph_recall": float(ok[neg].mean()) if neg.any() else float("nan")}


def export(model, out_dir, version):
    m = CellNet(model.size, model.width, model.arch)
    m.load_state_dict(model.state_dict())
    s = model.size
    cfg = {"cell_size": s, "features": "abs-median", "charset": cells.CELL_CHARSET, "not_a_glyph": cells.NOT_A_GLYPH,
           "min_cells": cells.MIN_CELLS, "max_cells": cells.MAX_CELLS, "dark": cells.DARK,
           "dark_share": cells.DARK_SHARE, "square_tolerance": cells.SQUARE_TOLERANCE,
           "mean": 0.5, "std": 0.5, "version": version}
    export_checked(m, torch.randn(1, 3, s, s), out_dir, "cells.onnx", cfg)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--bs", type=int, default=256)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--eval-every", type=int, default=1000)
    ap.add_argument("--run-dir", default=os.path.join(HERE, "runs-cells"))
    ap.add_argument("--out", default=os.path.join(HERE, "..", "model-cells"))
    ap.add_argument("--version", default="cells-conv-48-v2")
    ap.add_argument("--size", type=int, default=cells.CELL, help="S (data/cells<S>/)")
    ap.add_argument("--width", default="16,32,64,64,96", help="channels of the conv stages (five for v2, four for deep)")
    ap.add_argument("--arch", default="v2", choices=("v2", "deep"), help="see CellNet")
    ap.add_argument("--bf16", action="store_true",
                    help="forward pass under bfloat16 autocast (weights, optimiser and loss stay float32)")
    ap.add_argument("--init", help="start from this state dict (same --size and --width)")
    ap.add_argument("--freeze-bn", action="store_true",
                    help="keep BatchNorm statistics fixed (fine-tuning a checkpoint made by onnx_to_pt.py --cells)")
    ap.add_argument("--data", default="train", help="training files in data/cells<S>/, comma-separated")
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--shift", type=int, default=3, help="augmentation: move cells by up to this many pixels")
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    x = Draws(a.data.split(","), a.size)
    cx, cy, ccounts, _ = load("check", a.size)
    print(f"train cells {len(x)} ({a.data}), check cells {len(cx)} ({len(ccounts)} strips)", flush=True)
    model = CellNet(a.size, tuple(int(c) for c in a.width.split(",")), a.arch)
    if a.init:
        model.load_state_dict(torch.load(a.init))
        print(f"from {a.init}: " + " ".join(f"{k}={v:.4f}" for k, v in evaluate(model, cx, cy, ccounts).items()),
              flush=True)
    print("params", sum(p.numel() for p in model.parameters()), flush=True)
    model.freeze_bn = a.freeze_bn
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=1e-4)
    budget = a.minutes * 60
    t0 = time.time()
    os.makedirs(a.run_dir, exist_ok=True)
    best, step, order, pos = -1.0, 0, rng.permutation(len(x)), 0
    while True:
        frac = (time.time() - t0) / budget
        if frac >= 1:
            break
        lr = a.lr * min(1.0, (step + 1) / a.warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))
        for g in opt.param_groups:
            g["lr"] = lr
        if pos + a.bs > len(order):
            order, pos = rng.permutation(len(x)), 0
        idx = np.sort(order[pos:pos + a.bs])
        pos += a.bs
        xu, yu = x.take(idx)
        xb = to_float(shift(xu, rng, a.shift))
        yb = torch.from_numpy(yu)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
            lp = model(xb)
        loss = F.nll_loss(lp.float(), yb)  # noqa: the model returns log-probabilities
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % 100 == 0:
            print(f"step {step} loss {loss.item():.4f} lr {lr:.2e} t {time.time() - t0:.0f}s", flush=True)
        if step % a.eval_every == 0:
            r = evaluate(model, cx, cy, ccounts)
            print(f"check step {step}: " + " ".join(f"{k}={v:.4f}" for k, v in r.items()), flush=True)
            if r["strip_exact"] > best:
                best = r["strip_exact"]
                torch.save(model.state_dict(), os.path.join(a.run_dir, "best.pt"))
    r = evaluate(model, cx, cy, ccounts)
    print(f"final step {step}: " + " ".join(f"{k}={v:.4f}" for k, v in r.items()), flush=True)
    if r["strip_exact"] >= best:
        torch.save(model.state_dict(), os.path.join(a.run_dir, "best.pt"))
    model.load_state_dict(torch.load(os.path.join(a.run_dir, "best.pt")))
    export(model, a.out, a.version)


if __name__ == "__main__":
    main()
