"""Other models' readings as the engine's re-read candidates (MODEL.md attempt 35)

  python joint_probe.py --model ../model [--extra DIR]... [--no-shifts] [--val-dir DIR] [--json]

Emulates the engine's re-read of an unsure image (`Ocr::line_readings` and
`Ocr::decode_readings`) in onnxruntime, on every image of a set that is not
multicolor (the cell reader reads those): the main model reads the image; when
its least sure step's top probability is under its model.json's `tta_below`
(`tta_below_wide` on a wider canvas), it reads the canvas again at each of
`tta_shifts` (unless --no-shifts), and each --extra model reads the image with
its own model.json's preprocessing. Every reading's greedy decode is a
candidate, and the answer is the candidate with the largest sum of CTC
log-likelihoods over all the readings, as in the engine. No alphabet prior (the
engine's decode applies one), so the counts are for comparing variants, not the
engine's own.

Prints, per style and in all, the images read exactly (case-insensitively in
brackets), how many were re-read, and the model runs per image.
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
from second_opinion import confidence, ctc_loglik  # noqa: E402


def shifted(canvas: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """The [..., H, W] canvas moved dy rows down and dx columns right, the
    uncovered border repeating the edge (the engine's `tta_shifts`, for the
    main model's canvas and the cell reader's [3, S, S] cells alike)."""
    h, w = canvas.shape[-2:]
    rows = np.clip(np.arange(h) - dy, 0, h - 1)
    cols = np.clip(np.arange(w) - dx, 0, w - 1)
    return canvas[..., rows, :][..., cols]


def answer(readings: list[np.ndarray], charset: str) -> str:
    """The candidate (each reading's greedy decode) the readings together find likeliest."""
    cands = []
    for lp in readings:
        c = ctc_greedy(lp, charset)
        if c not in cands:
            cands.append(c)
    if len(readings) == 1:
        return cands[0]
    scored = [(sum(ctc_loglik(lp, c, charset) for lp in readings), c) for c in cands if c]
    return max(scored)[1] if scored else cands[0]


def main():
    from PIL import Image

    from evaluate import VAL_DIR, read_labels, session, styles
    from preprocess import InputSpec, load_config, preprocess

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="the main model's dir (captcha.onnx + model.json)")
    ap.add_argument("--extra", action="append", default=[], help="a model dir whose reading joins an unsure image's")
    ap.add_argument("--no-shifts", action="store_true", help="no re-read at the main model's tta_shifts")
    ap.add_argument("--val-dir", default=VAL_DIR)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()

    models = []
    for d in [a.model, *a.extra]:
        cfg = load_config(d)
        sess = session(os.path.join(d, "captcha.onnx"))
        models.append((cfg, InputSpec.from_config(cfg), sess, sess.get_inputs()[0].name))
    main_cfg, main_spec, main_sess, main_in = models[0]
    charset = main_cfg["charset"]
    if any(m[0]["charset"] != charset for m in models):
        sys.exit("the models' charsets differ")
    shifts = [] if a.no_shifts else main_cfg.get("tta_shifts", [])
    below, below_wide = main_cfg.get("tta_below", 1.0), main_cfg.get("tta_below_wide")

    def run(sess, iname, canvas):
        return sess.run(None, {iname: canvas[None, None].astype(np.float32)})[0][0]

    res = {}
    for s in styles(a.val_dir):
        if s == "multicolor":
            continue
        n = exact = ci = reread = runs = 0
        for name, label in read_labels(os.path.join(a.val_dir, s)):
            img = Image.open(os.path.join(a.val_dir, s, name))
            img.load()
            canvas = preprocess(img, main_spec)
            first = run(main_sess, main_in, canvas)
            th = below_wide if (below_wide is not None and canvas.shape[1] > main_cfg["input_width"]) else below
            readings = [first]
            if confidence(first) < th and (shifts or a.extra):
                reread += 1
                readings += [run(main_sess, main_in, shifted(canvas, dy, dx)) for dy, dx in shifts]
                readings += [run(sess, iname, preprocess(img, spec)) for _c, spec, sess, iname in models[1:]]
            runs += len(readings)
            r = answer(readings, charset)
            n += 1
            exact += r == label
            ci += r.lower() == label.lower()
        res[s] = {"n": n, "exact": exact, "ci": ci, "reread": reread, "runs": runs}
    res["all"] = {k: sum(r[k] for r in res.values()) for k in ("n", "exact", "ci", "reread", "runs")}
    out = {"model": main_cfg.get("version"), "extra": [m[0].get("version") for m in models[1:]],
           "shifts": shifts, "val_dir": os.path.abspath(a.val_dir), "styles": res}
    if a.json:
        print(json.dumps(out))
        return
    print(f"model {out['model']}  extra {out['extra']}  shifts {shifts}  {out['val_dir']}")
    print(f"{'style':16s} {'n':>5s} {'exact':>6s} {'(ci)':>7s} {'re-read':>7s} {'runs/img':>8s}")
    for s, r in res.items():
        print(f"{s:16s} {r['n']:5d} {r['exact']:6d} ({r['ci']:5d}) {r['reread']:7d} {r['runs'] / r['n']:8.2f}")


if __name__ == "__main__":
    main()
