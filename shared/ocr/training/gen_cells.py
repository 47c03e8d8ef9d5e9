"""Training data for the glyph-cell classifier (see cells.py).

  python gen_cells.py [--size 32] [--strips 30000] [--others 10000] [--workers 2]
  python gen_cells.py --size 48 --seed 2000 --name train2 --no-check ...   # more draws, another file

Glyph cells come from multicolor strips (gen.style_multicolor: its text, and
calc expressions as the calc style draws them), cut by cells.split; a strip
whose cell count differs from its label is skipped and counted. "Not a glyph"
cells come from the other styles, cut the same way (with the count forced to
round(w/h) clamped to 3..8 when the image is not a strip), so that the
classifier also decides which images are strips. Every image passes through
gen.roundtrip (JPEG/GIF) like the main training data.

Writes data/cells<S>/train.npz (x uint8 [n, 3, S, S], y int16 [n]) from seed
1000 and data/cells<S>/check.npz (the same, plus per-strip labels) from seed
7777 for the in-training check. `--seed` and `--name` write other draws to
another file (attempt 20: seed 2000 as train2.npz), which train_cells.py
--data reads beside train.npz.
"""
from __future__ import annotations

import argparse
import os
import random
from multiprocessing import Pool

import numpy as np

import cells
import gen

HERE = os.path.dirname(os.path.abspath(__file__))
OTHERS = ["captcha-default", "captcha-fonts", "pillow", "calc", "phrase"]
CLASS = {c: i for i, c in enumerate(cells.CELL_CHARSET)}


def strip(seed: int, i: int, size: int):
    """One multicolor strip: (cells uint8 [n,3,S,S], label) or None if the cut fails."""
    rng = random.Random(f"{seed}:cells:{i}")
    text = gen.calc_text(rng) if rng.random() < 0.1 else None
    img, text = gen.style_multicolor(rng, text)
    img = gen.roundtrip(rng, img)
    cs = cells.split(cells.rgb_array(img))
    if cs is None or len(cs) != len(text):
        return None
    return np.stack([cells.cell_u8(c, size) for c in cs]), text


def other(seed: int, i: int, size: int):
    """Cells of a non-strip style: uint8 [n,3,S,S]."""
    style = OTHERS[i % len(OTHERS)]
    img, _ = gen.make_sample(style, seed, 10_000_000 + i)
    rgb = cells.rgb_array(img)
    cs = cells.split(rgb)
    if cs is None:
        h, w = rgb.shape[:2]
        cs = cells.split(rgb, n=min(cells.MAX_CELLS, max(cells.MIN_CELLS, round(w / max(1, h)))))
    if cs is None:
        return None
    return np.stack([cells.cell_u8(c, size) for c in cs])


def job(args):
    kind, seed, lo, hi, size = args
    xs, ys, labels, skipped = [], [], [], 0
    for i in range(lo, hi):
        if kind == "strip":
            r = strip(seed, i, size)
            if r is None:
                skipped += 1
                continue
            x, text = r
            xs.append(x)
            ys.extend(CLASS[c] for c in text)
            labels.append(text)
        else:
            x = other(seed, i, size)
            if x is None:
                skipped += 1
                continue
            xs.append(x)
            ys.extend([cells.NOT_A_GLYPH] * len(x))
    return kind, xs, ys, labels, skipped


def build(seed, n_strips, n_others, workers, chunk=500, size=cells.CELL):
    jobs = [("strip", seed, lo, min(n_strips, lo + chunk), size) for lo in range(0, n_strips, chunk)]
    jobs += [("other", seed, lo, min(n_others, lo + chunk), size) for lo in range(0, n_others, chunk)]
    xs, ys, counts, labels, skipped = [], [], [], [], {"strip": 0, "other": 0}
    with Pool(workers) as pool:
        for kind, x, y, lab, sk in pool.imap(job, jobs):
            xs += x
            ys += y
            skipped[kind] += sk
            if kind == "strip":
                labels += lab
                counts += [len(t) for t in lab]
            print(f"{kind} +{len(x)} (skipped {sk})", flush=True)
    x = np.concatenate(xs)
    y = np.asarray(ys, dtype=np.int16)
    print(f"seed {seed}: {len(labels)} strips, {len(x)} cells, skipped {skipped}", flush=True)
    return x, y, np.asarray(counts, dtype=np.int16), np.asarray(labels)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--strips", type=int, default=30000)
    ap.add_argument("--others", type=int, default=10000)
    ap.add_argument("--check-strips", type=int, default=600)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--size", type=int, default=cells.CELL, help="S: cells are stored SxS")
    ap.add_argument("--seed", type=int, default=1000, help="seed of the training draws")
    ap.add_argument("--name", default="train", help="file name of the training draws (data/cells<S>/<name>.npz)")
    ap.add_argument("--no-check", action="store_true", help="do not (re)write check.npz")
    a = ap.parse_args()
    if a.seed in (7777, 424242):
        raise SystemExit("seeds 7777 (check) and 424242 (validation) are not training seeds")
    out = os.path.join(HERE, "data", f"cells{a.size}")
    os.makedirs(out, exist_ok=True)
    sets = [] if a.no_check else [("check", 7777, a.check_strips, a.check_strips // 3)]
    for name, seed, ns, no in sets + [(a.name, a.seed, a.strips, a.others)]:
        x, y, counts, labels = build(seed, ns, no, a.workers, size=a.size)
        # the strips' cells come first, in order: counts and labels index them
        np.savez(os.path.join(out, f"{name}.npz"), x=x, y=y, counts=counts, labels=labels)


if __name__ == "__main__":
    main()
