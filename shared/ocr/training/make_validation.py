"""Write the committed validation sets to shared/ocr/validation/<style>/ (+ labels.tsv).

  python make_validation.py [--scale 1.0]
  python make_validation.py --seed 616161 --out /tmp/tune --styles multicolor --n 600   # a held-out tuning set

Seed 424242 (training uses 1000, the in-training check 7777). Files are saved as
PNG / JPEG / GIF (mixed) straight from the generator (no extra re-encoding).
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gen  # noqa: E402

VAL_DIR = os.path.normpath(os.path.join(HERE, "..", "validation"))
SEED = 424242
COUNTS = {"captcha-default": 400, "captcha-fonts": 400, "multicolor": 300, "pillow": 400, "calc": 300, "phrase": 100}
# format mix per style: (png, jpeg, gif) probabilities
FORMATS = {"captcha-default": (0.55, 0.45, 0.0), "multicolor": (0.6, 0.25, 0.15)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=SEED, help="another seed makes a held-out set (not the committed one)")
    ap.add_argument("--out", default=VAL_DIR)
    ap.add_argument("--styles", default=",".join(COUNTS))
    ap.add_argument("--n", type=int, default=0, help="images per style (default: COUNTS x --scale)")
    a = ap.parse_args()
    if (a.seed == SEED) != (os.path.abspath(a.out) == VAL_DIR):
        ap.error("the committed sets use seed 424242 in ../validation, and nothing else does")
    for style in a.styles.split(","):
        n = a.n or max(1, int(COUNTS[style] * a.scale))
        d = os.path.join(a.out, style)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        rows = []
        for i in range(n):
            img, text = gen.make_sample(style, a.seed, i, encode=False)
            r = random.Random(f"fmt:{a.seed}:{style}:{i}").random()
            p_png, p_jpg, _ = FORMATS.get(style, (0.45, 0.4, 0.15))
            if r < p_png:
                name = f"{i:04d}.png"
                img.save(os.path.join(d, name), optimize=True)
            elif r < p_png + p_jpg:
                name = f"{i:04d}.jpg"
                img.convert("RGB").save(os.path.join(d, name), quality=85)
            else:
                name = f"{i:04d}.gif"
                img.convert("RGB").save(os.path.join(d, name))
            rows.append(f"{name}\t{text}\n")
        with open(os.path.join(d, "labels.tsv"), "w") as f:
            f.writelines(rows)
        print(style, n)


if __name__ == "__main__":
    main()
