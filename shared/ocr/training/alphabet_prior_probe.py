"""Probe (attempt 21): would a prior over the text's alphabet fix the main model's case errors?

  python alphabet_prior_probe.py [--model-dir ../model] captcha-fonts captcha-default pillow phrase

Reads each committed validation image with the main model (onnxruntime),
takes the greedy CTC path, and for each emitted character the class
probabilities at its surest frame. Then it picks, for the whole string, the
alphabet with the highest posterior under gen.rand_text's modes
(gen.TEXT_MODES: digits 0.15, digits + upper 0.15, lower + digits 0.10, the
other 0.60 mixed), scoring each mode as P(mode) * prod_i p_i(c_i) *
(62 / |alphabet|), with c_i the mode's best character at position i (a uniform
prior over the 62 characters in training, a uniform one over the mode's
alphabet in the text). Strings with a non-alphanumeric character are left as
read. Prints greedy and prior-decoded exact accuracy. Nothing here is tuned:
the shares are rand_text's.
"""
from __future__ import annotations

import argparse
import os

import numpy as np
import onnxruntime as ort
from PIL import Image

from evaluate import MODEL_DIR, VAL_DIR, ctc_greedy, read_labels
from gen import ALNUM, TEXT_MODES
from preprocess import InputSpec, load_config, preprocess


def modes() -> list[tuple[str, float]]:
    """(alphabet, share) of each rand_text mode, the mixed one (ALNUM) last."""
    out, prev = [], 0.0
    for bound, alphabet in TEXT_MODES:
        out.append((alphabet, bound - prev))
        prev = bound
    return out + [(ALNUM, 1.0 - prev)]


def position_probs(logp: np.ndarray) -> list[np.ndarray]:
    """The greedy path's emitted characters: for each, the non-blank class
    probabilities (renormalised) at its frame least likely to be blank."""
    best = logp.argmax(-1)
    runs, prev = [], 0
    for t, b in enumerate(best):
        if b != 0 and b != prev:
            runs.append([t])
        elif b != 0:
            runs[-1].append(t)
        prev = b
    out = []
    for frames in runs:
        t = min(frames, key=lambda f: logp[f, 0])
        p = np.exp(logp[t, 1:])
        out.append(p / p.sum())
    return out


def with_prior(probs: list[np.ndarray], charset: str) -> str:
    best, best_score = "", -np.inf
    for alphabet, share in modes():
        idx = [charset.index(c) for c in alphabet]
        text = "".join(alphabet[int(np.argmax(p[idx]))] for p in probs)
        score = np.log(share) + sum(np.log(p[idx].max() + 1e-12) + np.log(len(ALNUM) / len(alphabet))
                                    for p in probs)
        if score > best_score:
            best, best_score = text, score
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", default=MODEL_DIR)
    ap.add_argument("styles", nargs="+")
    a = ap.parse_args()
    cfg = load_config(a.model_dir)
    charset, spec = cfg["charset"], InputSpec.from_config(cfg)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(os.path.join(a.model_dir, "captcha.onnx"), so)
    name_in = sess.get_inputs()[0].name
    for style in a.styles:
        rows = read_labels(os.path.join(VAL_DIR, style))
        greedy_ok = prior_ok = changed = 0
        for name, label in rows:
            x = preprocess(Image.open(os.path.join(VAL_DIR, style, name)), spec)[None, None]
            logp = sess.run(None, {name_in: x})[0][0]
            greedy = ctc_greedy(logp, charset)
            read = with_prior(position_probs(logp), charset) if greedy.isalnum() else greedy
            greedy_ok += greedy == label
            prior_ok += read == label
            changed += read != greedy
        n = len(rows)
        print(f"{style} {n} greedy {100 * greedy_ok / n:.1f} alphabet-prior {100 * prior_ok / n:.1f} "
              f"changed {changed}", flush=True)


if __name__ == "__main__":
    main()
