"""Is model B a second opinion for model A? (MODEL.md attempt 34)

  python second_opinion.py --a ../model --b DIR [--val-dir DIR] [--below 0.6] [--json]

Reads every image of a set that is not multicolor (the cell reader reads those)
with both models in onnxruntime, each with its own model.json's preprocessing,
greedy CTC decode, and each reading's confidence: the least sure step's top
probability, the number the engine compares with `tta_below`. Per style and in
all, it counts the images read exactly (case-insensitively in brackets) by:

  a             A alone
  b             B alone
  either        A or B right: the bound for any way of choosing between them
  surer         the reading of the surer model, on every image
  surer_unsure  A's reading, unless A is under --below: then the surer one's
  mean_unsure   A's reading, unless A is under --below: then the greedy reading
                of the two models' log-probabilities averaged step by step
                (only where both give the same number of steps)
  joint_unsure  A's reading, unless A is under --below: then of A's and B's
                readings the one the two models together find likeliest (the
                sum of its CTC log-likelihood under each; no step alignment
                needed, as the engine's test-time shifts combine readings)
  joint         the same on every image

No prior, no shifts: this measures how differently two graphs read, not the
engine's answer.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from evaluate import ctc_greedy  # noqa: E402

CHOICES = ("a", "b", "either", "surer", "surer_unsure", "mean_unsure", "joint_unsure", "joint")


def confidence(logp: np.ndarray) -> float:
    """The least sure step's top probability ([T, C] log-probabilities)."""
    return float(np.exp(logp.max(-1)).min())


def renormalised(z: np.ndarray) -> np.ndarray:
    """Scores along the last axis as log-probabilities (a log-softmax)."""
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def mean_logp(la: np.ndarray, lb: np.ndarray) -> np.ndarray | None:
    """The two readings' log-probabilities averaged per step and renormalised, or
    None when their step counts differ."""
    if la.shape != lb.shape:
        return None
    return renormalised((la + lb) / 2)


def ctc_loglik(logp: np.ndarray, text: str, charset: str) -> float:
    """log P(text) under a [T, C] CTC reading (class 0 the blank, class i
    charset[i-1]): the forward algorithm's sum over every alignment."""
    labels = [charset.index(ch) + 1 for ch in text if ch in charset]
    if len(labels) != len(text):
        return -np.inf
    ext = [0]
    for c in labels:
        ext += [c, 0]
    s_len, t_len = len(ext), logp.shape[0]
    alpha = np.full(s_len, -np.inf)
    alpha[0] = logp[0, 0]
    if s_len > 1:
        alpha[1] = logp[0, ext[1]]
    for t in range(1, t_len):
        prev = alpha
        alpha = np.full(s_len, -np.inf)
        for s in range(s_len):
            a = prev[s]
            if s >= 1:
                a = np.logaddexp(a, prev[s - 1])
            if s >= 2 and ext[s] != 0 and ext[s] != ext[s - 2]:
                a = np.logaddexp(a, prev[s - 2])
            alpha[s] = a + logp[t, ext[s]]
    return float(np.logaddexp(alpha[-1], alpha[-2]) if s_len > 1 else alpha[-1])


def joint(la: np.ndarray, lb: np.ndarray, ra: str, rb: str, charset: str) -> str:
    """Of the two readings, the one with the larger summed log-likelihood under both."""
    if ra == rb:
        return ra
    score = {c: ctc_loglik(la, c, charset) + ctc_loglik(lb, c, charset) for c in (ra, rb) if c}
    return max(score, key=score.get) if score else ra


def choose(la: np.ndarray, lb: np.ndarray, charset: str, below: float) -> dict:
    """Each choice's reading of one image, from A's and B's [T, C] log-probabilities.
    "either" holds both readings (it counts when one of them is right)."""
    ra, rb = ctc_greedy(la, charset), ctc_greedy(lb, charset)
    ca, cb = confidence(la), confidence(lb)
    surer = ra if ca >= cb else rb
    unsure = ca < below
    mean = None
    if unsure:
        m = mean_logp(la, lb)
        mean = ctc_greedy(m, charset) if m is not None else surer
    return {"a": ra, "b": rb, "either": (ra, rb), "surer": surer,
            "surer_unsure": surer if unsure else ra, "mean_unsure": mean if unsure else ra,
            "joint_unsure": joint(la, lb, ra, rb, charset) if unsure else ra, "joint": joint(la, lb, ra, rb, charset),
            "conf_a": ca, "conf_b": cb}


def score(readings: dict, label: str) -> dict:
    """{choice: (exact, case-insensitive)} for one image's readings."""
    out = {}
    for k in CHOICES:
        r = readings[k]
        cands = r if isinstance(r, tuple) else (r,)
        out[k] = (any(c == label for c in cands), any(c.lower() == label.lower() for c in cands))
    return out


def main():
    from PIL import Image

    from evaluate import VAL_DIR, read_labels, session, styles
    from preprocess import InputSpec, load_config, preprocess

    ap = argparse.ArgumentParser()
    ap.add_argument("--a", required=True, help="model dir (captcha.onnx + model.json): the engine's reader")
    ap.add_argument("--b", required=True, help="model dir: the second opinion")
    ap.add_argument("--val-dir", default=VAL_DIR)
    ap.add_argument("--below", type=float, default=0.6, help="A's confidence under which B is asked")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()

    models = []
    for d in (a.a, a.b):
        cfg = load_config(d)
        sess = session(os.path.join(d, "captcha.onnx"))
        models.append((cfg, InputSpec.from_config(cfg), sess, sess.get_inputs()[0].name))
    charset = models[0][0]["charset"]
    if models[1][0]["charset"] != charset:
        sys.exit("the two models' charsets differ")

    res = {}
    for s in styles(a.val_dir):
        if s == "multicolor":
            continue
        counts = {k: [0, 0] for k in CHOICES}
        n = unsure = 0
        for name, label in read_labels(os.path.join(a.val_dir, s)):
            img = Image.open(os.path.join(a.val_dir, s, name))
            img.load()
            lps = [sess.run(None, {iname: preprocess(img, spec)[None, None]})[0][0]
                   for _cfg, spec, sess, iname in models]
            r = choose(lps[0], lps[1], charset, a.below)
            for k, (e, ci) in score(r, label).items():
                counts[k][0] += e
                counts[k][1] += ci
            n += 1
            unsure += r["conf_a"] < a.below
        res[s] = {"n": n, "a_unsure": unsure, **{k: v for k, v in counts.items()}}
    total = {"n": sum(r["n"] for r in res.values()), "a_unsure": sum(r["a_unsure"] for r in res.values())}
    for k in CHOICES:
        total[k] = [sum(r[k][0] for r in res.values()), sum(r[k][1] for r in res.values())]
    res["all"] = total
    out = {"a": models[0][0].get("version"), "b": models[1][0].get("version"), "below": a.below,
           "val_dir": os.path.abspath(a.val_dir), "styles": res}
    if a.json:
        print(json.dumps(out))
        return
    print(f"A {out['a']}  B {out['b']}  below {a.below}  {out['val_dir']}")
    print(f"{'style':16s} {'n':>5s} {'A<below':>7s} " + " ".join(f"{k:>14s}" for k in CHOICES))
    for s, r in res.items():
        cells = " ".join(f"{r[k][0]:>6d} ({r[k][1]:>5d})" for k in CHOICES)
        print(f"{s:16s} {r['n']:5d} {r['a_unsure']:7d} {cells}")


if __name__ == "__main__":
    main()
