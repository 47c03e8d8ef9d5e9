"""The alphabet priors of MODEL.md's attempt 22, from the generators' own draws.

  python alphabet_prior.py             # print both priors as model.json entries
  python alphabet_prior.py --check     # exit 1 unless every model.json that has
                                       # the key holds exactly these
  python alphabet_prior.py --write main|cells

The main model's prior is gen.rand_text's: its single-alphabet modes
(gen.TEXT_MODES) and the rest drawn from all 62 characters. The cell reader's
is gen.multicolor_text's: rand_text's modes scaled by MULTICOLOR_RAND_TEXT, plus
MULTICOLOR_LIBRARY_ALPHABET (the same characters as rand_text's digits + upper
mode, so its share joins that one). The Rust decode (src/ctc.rs,
AlphabetPrior) reads the list from model.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gen  # noqa: E402

MODEL_JSON = {
    "main": os.path.normpath(os.path.join(HERE, "..", "model", "model.json")),
    "cells": os.path.normpath(os.path.join(HERE, "..", "model-cells", "model.json")),
}


def text_shares() -> list[tuple[str, float]]:
    """(alphabet, share) of each rand_text mode, the mixed one (gen.ALNUM) last."""
    out, prev = [], 0.0
    for bound, alphabet in gen.TEXT_MODES:
        out.append((alphabet, bound - prev))
        prev = bound
    return out + [(gen.ALNUM, 1.0 - prev)]


def entries(shares: list[tuple[str, float]]) -> list[dict]:
    return [{"alphabet": a, "share": round(s, 6)} for a, s in shares]


def main_prior() -> list[dict]:
    return entries(text_shares())


def cells_prior() -> list[dict]:
    shares = [(a, s * gen.MULTICOLOR_RAND_TEXT) for a, s in text_shares()]
    library = set(gen.MULTICOLOR_LIBRARY_ALPHABET)
    rest = 1.0 - gen.MULTICOLOR_RAND_TEXT
    for i, (a, s) in enumerate(shares):
        if set(a) == library:
            shares[i] = (a, s + rest)
            break
    else:
        shares.append((gen.MULTICOLOR_LIBRARY_ALPHABET, rest))
    return entries(shares)


PRIORS = {"main": main_prior, "cells": cells_prior}


def check() -> list[str]:
    """The model.json files whose alphabet_prior differs from the generators'."""
    bad = []
    for which, path in MODEL_JSON.items():
        with open(path) as f:
            spec = json.load(f)
        if "alphabet_prior" in spec and spec["alphabet_prior"] != PRIORS[which]():
            bad.append(path)
    return bad


def write(which: str):
    path = MODEL_JSON[which]
    with open(path) as f:
        spec = json.load(f)
    spec["alphabet_prior"] = PRIORS[which]()
    with open(path, "w") as f:
        json.dump(spec, f, indent=1)
        f.write("\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--write", choices=sorted(PRIORS))
    a = ap.parse_args()
    if a.check:
        bad = check()
        for path in bad:
            print(f"{path}: alphabet_prior differs from the generators'", file=sys.stderr)
        sys.exit(1 if bad else 0)
    if a.write:
        write(a.write)
        return
    print(json.dumps({k: f() for k, f in PRIORS.items()}, indent=1))


if __name__ == "__main__":
    main()
