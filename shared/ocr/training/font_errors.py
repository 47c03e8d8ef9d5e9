"""Where does captcha-fonts go wrong: by font, by number of fonts, by text length?

  python font_errors.py SEED:READINGS.tsv [SEED:READINGS.tsv ...]

Each argument is the seed of a set made by make_validation.py and the
`ocr-bench --val-dir <that set> --readings READINGS.tsv` rows of one engine
on it. Every captcha-fonts image is drawn again with the same seed and index
(gen.style_captcha_fonts is deterministic), which recovers the fonts it was
drawn with; the label is checked against the row's. Prints the exact score by
number of fonts in the image and by text length (with case-insensitive), then
each font's error rate, worst first (an image counts once for each font in it),
then the readings wrong in case only, letter by letter: ImageCaptcha stretches
each glyph's ink to its font box, so the letters whose two cases share one
shape (`SAME_SHAPE`) differ only in stroke weight and width. Those are counted
for every style in the rows; for captcha-fonts also by image height; and, on
the committed set (whose `validation/<style>/ambiguity.tsv` marks the
positions the strict twins cannot tell apart), how many case-only readings
slipped only at marked positions.
"""
from __future__ import annotations

import collections
import csv
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gen  # noqa: E402
from ambiguity import options_of  # noqa: E402
from make_validation import SEED as COMMITTED_SEED, VAL_DIR  # noqa: E402


# Letters whose lower and upper case are one shape, scaled (the stretch to the
# font box then leaves stroke weight and width as the only cues).
SAME_SHAPE = set("cosuvwxz")


def case_slips(label: str, answer: str) -> list[tuple[str, str]]:
    """The (label, answer) character pairs of a reading wrong in case only; [] otherwise."""
    if answer == label or answer.lower() != label.lower():
        return []
    return [(l, a) for l, a in zip(label, answer) if l != a]


def fonts_of(seed: int, index: int):
    """The label, the font paths and the height of captcha-fonts image `index` of a set made with `seed`."""
    seen = {}
    real = gen.gen_imagecaptcha

    def spy(rng, text, fonts=None, **kw):
        seen["fonts"], seen["height"] = fonts, kw["height"]
        return real(rng, text, fonts=fonts, **kw)

    gen.gen_imagecaptcha = spy
    try:
        rng = random.Random(f"{seed}:captcha-fonts:{index}")
        _, text = gen.style_captcha_fonts(rng)
    finally:
        gen.gen_imagecaptcha = real
    return text, seen["fonts"], seen["height"]


def marked(seed: int) -> dict[tuple[str, str], list[list[str]]]:
    """(style, file) -> each position's look-alikes from the committed `ambiguity.tsv`
    files; empty for any other set."""
    out = {}
    if seed != COMMITTED_SEED:
        return out
    for style in sorted(os.listdir(VAL_DIR)):
        path = os.path.join(VAL_DIR, style, "ambiguity.tsv")
        if os.path.exists(path):
            with open(path) as f:
                for line in f:
                    name, pat, _ = line.rstrip("\n").split("\t")
                    out[(style, name)] = options_of(pat)
    return out


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    by_nfonts, by_len = collections.defaultdict(lambda: [0, 0]), collections.defaultdict(lambda: [0, 0, 0])
    by_font = collections.defaultdict(lambda: [0, 0, 0])  # images, errors, case-insensitive errors
    # per style: readings, errors, case-only readings, those slipped only at marked positions,
    # and the (label char, answer char) pairs slipped
    case = collections.defaultdict(lambda: [0, 0, 0, 0, collections.Counter()])
    by_height = collections.defaultdict(lambda: [0, 0])  # images with a SAME_SHAPE letter, case-only among them
    for arg in sys.argv[1:]:
        seed, sep, readings = arg.partition(":")
        if not sep or not seed.isdigit():
            sys.exit(f"{arg}: expected SEED:READINGS.tsv")
        with open(readings) as f:
            every = list(csv.DictReader(f, delimiter="\t"))
        marks = marked(int(seed))
        for r in every:
            c = case[r["style"]]
            found = case_slips(r["label"], r["answer"])
            c[0], c[1], c[2] = c[0] + 1, c[1] + (r["exact"] != "1"), c[2] + bool(found)
            opts = marks.get((r["style"], r["file"]))
            c[3] += bool(found) and opts is not None and all(
                a in opts[i] for i, (l, a) in enumerate(zip(r["label"], r["answer"])) if l != a)
            c[4].update(found)
        for r in (r for r in every if r["style"] == "captcha-fonts"):
            text, fonts, height = fonts_of(int(seed), int(r["file"].split(".")[0]))
            if text != r["label"]:
                sys.exit(f"{arg}: {r['file']}: drawn again as {text!r}, labelled {r['label']!r}: wrong seed?")
            exact = r["exact"] == "1"
            ci = r["answer"].lower() == r["label"].lower()
            if any(ch.lower() in SAME_SHAPE for ch in text):
                h = by_height[height // 20 * 20]
                h[0], h[1] = h[0] + 1, h[1] + bool(case_slips(r["label"], r["answer"]))
            by_nfonts[len(fonts)][0] += 1
            by_nfonts[len(fonts)][1] += exact
            n = by_len[len(text)]
            n[0], n[1], n[2] = n[0] + 1, n[1] + exact, n[2] + ci
            for path in set(fonts):
                s = by_font[os.path.basename(path)]
                s[0], s[1], s[2] = s[0] + 1, s[1] + (not exact), s[2] + (not ci)
    print("by number of fonts:", {k: f"{ok}/{n} = {ok / n:.2f}" for k, (n, ok) in sorted(by_nfonts.items())})
    print("by length (exact, case-insensitive):",
          {k: f"{ok}/{n} = {ok / n:.2f}, {ci / n:.2f}" for k, (n, ok, ci) in sorted(by_len.items())})
    print(f"{len(by_font)} fonts, worst first:")
    for name, (n, err, cierr) in sorted(by_font.items(), key=lambda kv: -kv[1][1] / kv[1][0]):
        print(f"  {name:45s} images {n:3d}  errors {err / n:.2f}  case-insensitive errors {cierr / n:.2f}")
    print("captcha-fonts images with one of " + "".join(sorted(SAME_SHAPE)) + ", wrong in case only, by height:",
          {f"{k}-{k + 19}": f"{c}/{n} = {c / n:.2f}" for k, (n, c) in sorted(by_height.items())})
    for style, (n, wrong, only, at_marks, slips) in sorted(case.items()):
        same = sum(k for (l, _), k in slips.items() if l.lower() in SAME_SHAPE)
        print(f"{style}: {n} read, {wrong} wrong, case only: {only} readings ({at_marks} slipped only at "
              f"marked positions), {sum(slips.values())} letters, {same} of them in {''.join(sorted(SAME_SHAPE))}")
        print("  " + ", ".join(f"{l}->{a} {k}" for (l, a), k in slips.most_common()))


if __name__ == "__main__":
    main()
