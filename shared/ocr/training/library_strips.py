"""Strips as the multicolorcaptcha library itself draws them, for a check of
the cell reader off our own generator (MODEL.md, attempt 22).

  python library_strips.py OUT_DIR [--n 300] [--seed 515151]

Writes OUT_DIR/multicolor-library/{NNNN.png, labels.tsv}: the library's own
`gen_captcha_image` (four characters; chars_mode nums, hex and ascii in turn,
the difficulty 0-3, multicolor or not, with or without its margins, both
sizes), its randomness drawn from one seeded generator as gen.py does. Not a
committed validation set: `ocr-bench --no-anchor --val-dir OUT_DIR` reads it.
"""
from __future__ import annotations

import argparse
import os
import random

import multicolorcaptcha._generator as mcg
from multicolorcaptcha import CaptchaGenerator

MODES = ("nums", "hex", "ascii")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out_dir")
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--seed", type=int, default=515151)
    a = ap.parse_args()
    d = os.path.join(a.out_dir, "multicolor-library")
    os.makedirs(d, exist_ok=True)
    rng = random.Random(a.seed)
    mcg.randint = rng.randint
    mcg.choice = rng.choice
    generators = {size: CaptchaGenerator(size) for size in (0, 1)}
    rows = []
    for i in range(a.n):
        g = generators[0 if rng.random() < 0.75 else 1]
        c = g.gen_captcha_image(difficult_level=rng.randint(0, 3), chars_mode=MODES[i % 3],
                                multicolor=rng.random() < 0.7, margin=rng.random() < 0.5)
        name = f"{i:04d}.png"
        c.image.save(os.path.join(d, name))
        rows.append(f"{name}\t{c.characters}\n")
    with open(os.path.join(d, "labels.tsv"), "w") as f:
        f.writelines(rows)
    print(d, a.n)


if __name__ == "__main__":
    main()
