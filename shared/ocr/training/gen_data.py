"""Pre-generate preprocessed training data (uint8 [N,H,W]) as shards under training/data/.

  python gen_data.py --per-style 40000 --workers 2
  python gen_data.py --from-per-style 80000 --per-style 160000 --workers 2   # only the samples after the first 80000-per-style
  python gen_data.py --per-style 80000 --workers 2 --resize fill-height       # shards for a fill-height model
  python gen_data.py --per-style 80000 --workers 2 --resize fill-height --max-squeeze 1.35   # ... squeezing at most 1.35x
  python gen_data.py --per-style 80000 --workers 2 --crop ink-columns           # shards for a model that crops to the text's columns
  python gen_data.py --per-style 80000 --workers 2 --crop ink-columns --max-width 200   # ... on canvases up to 200 wide
                                                                                        # (stored 200 wide, each one's width in "w")

Shard k of style s holds samples index k*SHARD .. (k+1)*SHARD-1 of seed --seed,
so the data set is fully determined by (seed, per-style count). Existing shards
are skipped, so the command can be re-run / extended.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from multiprocessing import Pool

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen  # noqa: E402
from preprocess import CROP_MODES, INPUT_H, INPUT_W, RESIZE_MODES, InputSpec, canvas_u8  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")
SHARD = 2000
TRAIN_SEED = 1000  # validation sets use other seeds (see make_validation.py)

# share of each style in the training data (per-style count is multiplied by it)
MIX = {"captcha-default": 0.9, "captcha-fonts": 1.2, "multicolor": 1.2, "pillow": 1.3, "calc": 0.7, "phrase": 0.5}


# shard directory under data/: f"{h}x{w}{SUFFIX}". Give a preprocessing change its own
# suffix so shards made with different preprocessing never mix (the border-trim
# experiment of MODEL.md used "-trim"). Each resize mode but "fit" adds its own.
SUFFIX = ""
RESIZE_SUFFIX = {"fit": "", "fill-height": "-fill"}
CROP_SUFFIX = {"none": "", "ink-columns": "-ink"}


def shard_dir(spec: InputSpec) -> str:
    cap = f"{spec.max_squeeze:g}" if spec.resize != "fit" and spec.max_squeeze is not None else ""
    wide = f"-w{spec.max_w}s{spec.w_step}" if spec.max_w is not None else ""
    return os.path.join(DATA, f"{spec.h}x{spec.w}{SUFFIX}{CROP_SUFFIX[spec.crop]}{RESIZE_SUFFIX[spec.resize]}{cap}{wide}")


def shard_path(style, k, spec: InputSpec) -> str:
    return os.path.join(shard_dir(spec), f"{style}_{k:04d}.npz")


def make_shard(args):
    style, k, seed, spec = args
    path = shard_path(style, k, spec)
    if os.path.exists(path):
        return path
    # with a max_w spec: canvases of up to max_w columns, stored max_w wide, each
    # sample's own canvas width in "w"
    xs = np.zeros((SHARD, spec.h, spec.max_w or spec.w), np.uint8)
    ws = np.zeros(SHARD, np.int32)
    labels = []
    for j in range(SHARD):
        img, text = gen.make_sample(style, seed, k * SHARD + j)
        xs[j], ws[j] = canvas_u8(img, spec, xs.shape[2])
        labels.append(text)
    tmp = path + ".tmp.npz"
    np.savez(tmp, x=xs, y=np.array(labels), **({"w": ws} if spec.max_w is not None else {}))
    os.replace(tmp, path)
    return path


def nshards(per_style, style):
    return max(1, int(round(per_style * MIX[style] / SHARD)))


def jobs(per_style, seed, spec: InputSpec, styles=None, from_per_style=0):
    out = []
    first = {s: nshards(from_per_style, s) if from_per_style else 0 for s in gen.STYLES if not styles or s in styles}
    last = {s: nshards(per_style, s) for s in first}
    # interleave styles so a partially generated set is balanced
    for k in range(max(last.values())):
        for s in first:
            if first[s] <= k < last[s]:
                out.append((s, k, seed, spec))
    return out


def generate(per_style, workers=2, seed=TRAIN_SEED, spec: InputSpec = InputSpec(), styles=None, from_per_style=0):
    os.makedirs(shard_dir(spec), exist_ok=True)
    todo = [j for j in jobs(per_style, seed, spec, styles, from_per_style)
            if not os.path.exists(shard_path(j[0], j[1], spec))]
    print(f"generating {len(todo)} shards of {SHARD}", flush=True)
    t0 = time.time()
    if workers <= 1:
        for i, j in enumerate(todo):
            make_shard(j)
            print(f"  {i + 1}/{len(todo)} {j[0]} {j[1]} {time.time() - t0:.0f}s", flush=True)
    else:
        with Pool(workers) as p:
            for i, path in enumerate(p.imap(make_shard, todo)):
                print(f"  {i + 1}/{len(todo)} {os.path.basename(path)} {time.time() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-style", type=int, default=40000)
    ap.add_argument("--from-per-style", type=int, default=0,
                    help="skip the shards a --per-style of this size would hold (fresh data for a fine-tune)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--seed", type=int, default=TRAIN_SEED)
    ap.add_argument("--height", type=int, default=INPUT_H)
    ap.add_argument("--width", type=int, default=INPUT_W)
    ap.add_argument("--styles", default="", help="comma-separated subset of styles (default all)")
    ap.add_argument("--resize", default="fit", choices=RESIZE_MODES, help="the contract's resize step (preprocess.py)")
    ap.add_argument("--max-squeeze", type=float, default=None,
                    help="fill-height: squeeze a wide image by at most this much (default: no cap)")
    ap.add_argument("--crop", default="none", choices=CROP_MODES, help="the contract's crop step (preprocess.py)")
    ap.add_argument("--max-width", type=int, default=None, help="the contract's step 3b (preprocess.py): canvases up to this wide")
    ap.add_argument("--width-step", type=int, default=8)
    a = ap.parse_args()
    spec = InputSpec(a.height, a.width, resize=a.resize, max_squeeze=a.max_squeeze, crop=a.crop, max_w=a.max_width,
                     w_step=a.width_step)
    generate(a.per_style, a.workers, a.seed, spec, [s for s in a.styles.split(",") if s] or None, a.from_per_style)
