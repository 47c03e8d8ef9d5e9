"""How much of a style's validation set can be read at all? Twin renders bound it.

  python ambiguity.py [--styles captcha-default,captcha-fonts,pillow] [--n 400] [--threshold 10]

For every committed validation sample (same seed and index as make_validation.py)
and every character that has a look-alike (its other case, 0/O/o, 1/l/I, 5/S, 2/Z,
8/B, 9/g/q, 6/b), the sample is rendered again with the same random draws and only
that character swapped. When the two renders differ in at most --threshold pixels
(by more than 30% of the image's ink-to-background contrast, in the 48x160
model input), nothing in the image tells
the two apart: the position is ambiguous.

A reader who knows the text distribution (gen.rand_text: length, and the four
alphabet modes) can do no better than pick the most likely of the strings that
render the same, so a sample's best possible exact score is
max P(t') / sum P(t') over those strings. The mean over samples is an upper
bound on exact accuracy for any model (the bound is loose where a swap also
moves later glyphs, e.g. proportional fonts, since such twins never count as
ambiguous). Case-insensitive: the same with case-folded strings merged.
"""
from __future__ import annotations

import argparse
import itertools
import os
import random
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gen  # noqa: E402
from make_validation import SEED  # noqa: E402
from preprocess import InputSpec, preprocess_u8  # noqa: E402

LOOKALIKES = ["0Oo", "1lI", "5Ss", "2Zz", "8B", "9gq", "6b"]
DIGITS = "0123456789"
UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
LOWER = "abcdefghijklmnopqrstuvwxyz"
# gen.rand_text: (probability, alphabet)
MODES = [(0.15, DIGITS), (0.15, DIGITS + UPPER), (0.10, LOWER + DIGITS), (0.60, gen.ALNUM)]


def twins(c: str) -> list[str]:
    out = set()
    if c.isalpha():
        out.add(c.swapcase())
    for group in LOOKALIKES:
        if c in group:
            out.update(group)
    out.discard(c)
    return sorted(out)


def p_text(t: str) -> float:
    """Probability of t under gen.rand_text for its length (the length is seen in the image)."""
    return sum(p * (all(ch in a for ch in t) and 1.0 / len(a) ** len(t)) for p, a in MODES)


class _BoxOf:
    """A Draw whose text box is measured for another character."""

    def __init__(self, draw, ch):
        self.draw, self.ch = draw, ch

    def multiline_textbbox(self, xy, _text, **kw):
        return self.draw.multiline_textbbox(xy, self.ch, **kw)


def render(style: str, index: int, swap: tuple[int, str] | None, same_box: bool = False):
    """The validation sample `index` of `style` (no encoding), with text[pos] replaced by ch if swap is given.

    same_box (ImageCaptcha styles): the swapped glyph is stretched into the box the original one
    would get, so the layout is the same and only the glyph's shape differs."""
    orig = gen.rand_text
    orig_draw = gen.capimg.ImageCaptcha._draw_character
    seen = [0]
    original = [None]

    def draw_character(ic, c, draw, color):
        if c != " ":
            k = seen[0]
            seen[0] += 1
            if same_box and swap is not None and k == swap[0]:
                draw = _BoxOf(draw, original[0])
        return orig_draw(ic, c, draw, color)

    def patched(rng, lo=3, hi=8, alphabet=gen.ALNUM):
        t = orig(rng, lo, hi, alphabet)
        if swap is not None:
            pos, ch = swap
            original[0] = t[pos]
            t = t[:pos] + ch + t[pos + 1:]
        return t

    gen.rand_text = patched
    gen.capimg.ImageCaptcha._draw_character = draw_character
    try:
        img, text = gen.make_sample(style, SEED, index, encode=False)
    finally:
        gen.rand_text = orig
        gen.capimg.ImageCaptcha._draw_character = orig_draw
    # the committed bounds were measured in the "fit" input without the crop (attempt 3)
    return preprocess_u8(img, InputSpec()).astype(np.int16), text


def sample_bound(style: str, index: int, threshold: int, same_box: bool = False):
    x, text = render(style, index, None)
    # "differs": by more than 30% of the image's contrast (ink vs background, 1st-99th percentile),
    # so that faint text does not make every twin look the same
    lo, hi = np.percentile(x, [1, 99])
    level = max(8.0, 0.3 * float(hi - lo))
    options = []
    for pos, c in enumerate(text):
        same = [c]
        for t in twins(c):
            y, swapped = render(style, index, (pos, t), same_box)
            if swapped[pos] != t:  # this sample's text does not come from gen.rand_text: nothing to swap
                break
            if int((np.abs(x - y) > level).sum()) <= threshold:
                same.append(t)
        options.append(same)
    cands = ["".join(p) for p in itertools.product(*options)]
    probs = {t: p_text(t) for t in cands}
    total = sum(probs.values())
    exact = max(probs.values()) / total
    folded: dict[str, float] = {}
    for t, p in probs.items():
        folded[t.lower()] = folded.get(t.lower(), 0.0) + p
    return text, exact, max(folded.values()) / total, sum(len(o) > 1 for o in options), set(cands), options


def pattern(options: list[list[str]]) -> str:
    """`X[zZ]bF[sS]`: one character, or the look-alikes that render the same in brackets."""
    return "".join(o[0] if len(o) == 1 else "[" + "".join(sorted(o)) + "]" for o in options)


def options_of(pat: str) -> list[list[str]]:
    """`pattern`'s inverse: each position's characters, from `X[zZ]bF[sS]`."""
    out, i = [], 0
    while i < len(pat):
        if pat[i] == "[":
            j = pat.index("]", i)
            out.append(list(pat[i + 1:j]))
            i = j + 1
        else:
            out.append([pat[i]])
            i += 1
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--styles", default="captcha-default,captcha-fonts,pillow")
    ap.add_argument("--n", type=int, default=400, help="samples per style (the committed sets have 400)")
    ap.add_argument("--threshold", type=int, default=10)
    ap.add_argument("--list", action="store_true", help="print every ambiguous sample")
    ap.add_argument("--same-box", action="store_true",
                    help="ImageCaptcha styles: stretch the swapped glyph into the original's box (ignores the "
                         "box width as a cue, so the estimate is no longer a strict bound)")
    ap.add_argument("--write", action="store_true",
                    help="write validation/<style>/ambiguity.tsv (use the whole set: --n = its size)")
    ap.add_argument("--model-dir", default="",
                    help="also score this model on the committed images: exact, and exact where any of the "
                         "strings that render the same counts")
    a = ap.parse_args()
    read = None
    if a.model_dir:
        import onnxruntime as ort
        from PIL import Image

        from evaluate import VAL_DIR, ctc_greedy, read_labels
        from preprocess import load_config, preprocess
        cfg = load_config(a.model_dir)
        spec = InputSpec.from_config(cfg)  # the model's own crop and resize
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        sess = ort.InferenceSession(os.path.join(a.model_dir, "captcha.onnx"), so, providers=["CPUExecutionProvider"])

        labels: dict[str, list] = {}

        def read(style, i):
            if style not in labels:
                labels[style] = read_labels(os.path.join(VAL_DIR, style))
            name, label = labels[style][i]
            x = preprocess(Image.open(os.path.join(VAL_DIR, style, name)), spec)
            return label, ctc_greedy(sess.run(None, {"input": x[None, None]})[0][0], cfg["charset"])
    for style in a.styles.split(","):
        ex, ci, amb, got, got_amb, rows = [], [], 0, 0, 0, []
        for i in range(a.n):
            text, e, c, k, cands, options = sample_bound(style, i, a.threshold, a.same_box)
            rows.append((text, pattern(options), e))
            ex.append(e)
            ci.append(c)
            amb += k > 0
            if read is not None:
                label, pred = read(style, i)
                assert label == text, (style, i, label, text)
                got += pred == text
                got_amb += pred in cands
            if a.list and k:
                print(f"  {style} {i:04d} {text} ambiguous positions {k} bound {e:.2f}")
        line = (f"{style}: n {a.n}, samples with an ambiguous position {amb / a.n:.1%}, "
                f"exact bound {np.mean(ex):.1%}, case-insensitive bound {np.mean(ci):.1%} (threshold {a.threshold} px)")
        if read is not None:
            line += f"; model exact {got / a.n:.1%}, exact up to same-render strings {got_amb / a.n:.1%}"
        print(line, flush=True)
        if a.write:
            write_tsv(style, rows)


def write_tsv(style: str, rows):
    """validation/<style>/ambiguity.tsv: file, the pattern of strings that render the same, the sample's bound."""
    from evaluate import VAL_DIR, read_labels
    labels = read_labels(os.path.join(VAL_DIR, style))
    assert len(rows) == len(labels), (style, len(rows), len(labels))
    path = os.path.join(VAL_DIR, style, "ambiguity.tsv")
    with open(path, "w") as f:
        for (name, label), (text, pat, bound) in zip(labels, rows):
            assert label == text, (style, name, label, text)
            f.write(f"{name}\t{pat}\t{bound:.4f}\n")
    print(f"wrote {path}", flush=True)


if __name__ == "__main__":
    main()
