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
shape (`SAME_SHAPE`) differ only in stroke weight and width.
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


# Letters whose lower and upper case are one shape, scaled (the stretch to the
# font box then leaves stroke weight and width as the only cues).
SAME_SHAPE = set("cosuvwxz")


def case_slips(label: str, answer: str) -> list[tuple[str, str]]:
    """The (label, answer) character pairs of a reading wrong in case only; [] otherwise."""
    if answer == label or answer.lower() != label.lower():
        return []
    return [(l, a) for l, a in zip(label, answer) if l != a]


def fonts_of(seed: int, index: int):
    """The label and the font paths of captcha-fonts image `index` of a set made with `seed`."""
    seen = {}
    real = gen.gen_imagecaptcha

    def spy(rng, text, fonts=None, **kw):
        seen["fonts"] = fonts
        return real(rng, text, fonts=fonts, **kw)

    gen.gen_imagecaptcha = spy
    try:
        rng = random.Random(f"{seed}:captcha-fonts:{index}")
        _, text = gen.style_captcha_fonts(rng)
    finally:
        gen.gen_imagecaptcha = real
    return text, seen["fonts"]


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    by_nfonts, by_len = collections.defaultdict(lambda: [0, 0]), collections.defaultdict(lambda: [0, 0, 0])
    by_font = collections.defaultdict(lambda: [0, 0, 0])  # images, errors, case-insensitive errors
    slips = collections.Counter()  # (label char, answer char) of the readings wrong in case only
    case_only = 0
    for arg in sys.argv[1:]:
        seed, sep, readings = arg.partition(":")
        if not sep or not seed.isdigit():
            sys.exit(f"{arg}: expected SEED:READINGS.tsv")
        with open(readings) as f:
            rows = [r for r in csv.DictReader(f, delimiter="\t") if r["style"] == "captcha-fonts"]
        for r in rows:
            text, fonts = fonts_of(int(seed), int(r["file"].split(".")[0]))
            if text != r["label"]:
                sys.exit(f"{arg}: {r['file']}: drawn again as {text!r}, labelled {r['label']!r}: wrong seed?")
            exact = r["exact"] == "1"
            ci = r["answer"].lower() == r["label"].lower()
            found = case_slips(r["label"], r["answer"])
            case_only += bool(found)
            slips.update(found)
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
    same = sum(k for (l, _), k in slips.items() if l.lower() in SAME_SHAPE)
    print(f"case only: {case_only} readings, {sum(slips.values())} letters, "
          f"{same} of them in {''.join(sorted(SAME_SHAPE))}")
    print("  " + ", ".join(f"{l}->{a} {k}" for (l, a), k in slips.most_common()))


if __name__ == "__main__":
    main()
