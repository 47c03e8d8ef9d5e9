"""Tests of the training side that need no torch: the text the generators
draw, the committed validation labels, the alphabet priors, and the wider
canvas of the preprocessing (step 3b).

  python -m unittest test_generators      # from shared/ocr/training (run by ./test.sh)

Needs numpy, pillow, captcha and multicolorcaptcha (requirements-gen.txt), and
renders no image: every check here but the last class is on the generators'
text draws.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import random
import sys
import unittest

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import alphabet_prior  # noqa: E402
import ambiguity  # noqa: E402
import font_errors  # noqa: E402
import gen  # noqa: E402
import make_validation  # noqa: E402
import preprocess  # noqa: E402
import cell_tta_probe  # noqa: E402
import joint_probe  # noqa: E402
import second_opinion  # noqa: E402


class FixedMode(random.Random):
    """A generator whose `random()` (rand_text's mode draw) is always `mode`."""

    def __init__(self, mode: float):
        super().__init__(7)
        self.mode = mode

    def random(self):
        return self.mode

    # Defined so that choice() and randint() keep drawing from the real bits
    # (random.Random falls back to random() for them when only it is overridden).
    def getrandbits(self, k):
        return super().getrandbits(k)


def validation_text(style: str, index: int) -> str:
    """The text make_validation's sample `index` of `style` draws, before any pixel."""
    rng = random.Random(f"{make_validation.SEED}:{style}:{index}")
    if style in ("captcha-default", "captcha-fonts", "pillow"):
        return gen.rand_text(rng, 3, 8)
    if style == "multicolor":
        rng.random()  # the size draw comes first
        return gen.multicolor_text(rng)
    if style == "calc":
        return gen.calc_text(rng)
    if style == "phrase":
        return gen.phrase_text(rng)
    raise ValueError(style)


class TextDraws(unittest.TestCase):
    def test_rand_text_draws_each_mode_from_its_alphabet(self):
        for (bound, alphabet), mode in zip(gen.TEXT_MODES, (0.0, 0.2, 0.35)):
            self.assertLess(mode, bound)
            rng = FixedMode(mode)
            for _ in range(50):
                text = gen.rand_text(rng, 3, 8)
                self.assertTrue(3 <= len(text) <= 8, text)
                self.assertTrue(set(text) <= set(alphabet), (alphabet, text))
        rng = FixedMode(0.99)
        drawn = set("".join(gen.rand_text(rng, 8, 8) for _ in range(400)))
        self.assertEqual(drawn, set(gen.ALNUM))

    def test_the_committed_validation_labels_are_the_generators_draws(self):
        val = os.path.normpath(os.path.join(HERE, "..", "validation"))
        for style, count in make_validation.COUNTS.items():
            with open(os.path.join(val, style, "labels.tsv")) as f:
                labels = [line.rstrip("\n").split("\t")[1] for line in f if line.strip()]
            self.assertEqual(len(labels), count, style)
            drawn = [validation_text(style, i) for i in range(count)]
            self.assertEqual(drawn, labels, style)


class FontErrors(unittest.TestCase):
    """font_errors.py recovers each captcha-fonts image's fonts from its seed."""

    def run_on(self, seed, rows):
        with tempfile.NamedTemporaryFile("w", suffix=".tsv", delete=False) as f:
            f.write("style\tfile\tlabel\tanswer\texact\tby\treadings\tmodel_ms\n")
            f.writelines("\t".join(r) + "\n" for r in rows)
        out = io.StringIO()
        old_argv = sys.argv
        try:
            sys.argv = ["font_errors.py", f"{seed}:{f.name}"]
            with contextlib.redirect_stdout(out):
                font_errors.main()
        finally:
            sys.argv = old_argv
            os.unlink(f.name)
        return out.getvalue()

    def test_the_committed_set_is_counted_by_its_fonts_and_lengths(self):
        val = os.path.normpath(os.path.join(HERE, "..", "validation", "captcha-fonts"))
        with open(os.path.join(val, "labels.tsv")) as f:
            labelled = [line.rstrip("\n").split("\t") for line in f if line.strip()][:4]
        # two read right, two wrong (the second only in case)
        answers = [labelled[0][1], labelled[1][1], labelled[2][1].swapcase(), "?"]
        rows = [["captcha-fonts", name, label, a, str(int(a == label)), "line", "1", "1.0"]
                for (name, label), a in zip(labelled, answers)]
        rows.append(["pillow", "0000.png", "x", "x", "1", "line", "1", "1.0"])  # other styles are skipped
        text = self.run_on(make_validation.SEED, rows)
        fonts = [font_errors.fonts_of(make_validation.SEED, int(name.split(".")[0]))[1] for name, _ in labelled]
        by_n = {}
        for fs, a, (_, label) in zip(fonts, answers, labelled):
            n, ok = by_n.get(len(fs), (0, 0))
            by_n[len(fs)] = (n + 1, ok + (a == label))
        want = {k: f"{ok}/{n} = {ok / n:.2f}" for k, (n, ok) in sorted(by_n.items())}
        self.assertIn(f"by number of fonts: {want}", text)
        self.assertIn(f"{len({os.path.basename(p) for fs in fonts for p in fs})} fonts, worst first:", text)
        slips = font_errors.case_slips(labelled[2][1], answers[2])
        same = sum(l.lower() in font_errors.SAME_SHAPE for l, _ in slips)
        marks = font_errors.marked(make_validation.SEED)[("captcha-fonts", labelled[2][0])]
        at_marks = int(all(a in marks[i] for i, (l, a) in enumerate(zip(labelled[2][1], answers[2])) if l != a))
        self.assertIn(f"captcha-fonts: 4 read, 2 wrong, case only: 1 readings ({at_marks} slipped only at marked "
                      f"positions), {len(slips)} letters, {same} of them in cosuvwxz", text)
        self.assertIn("pillow: 1 read, 0 wrong, case only: 0 readings", text)
        self.assertIn("wrong in case only, by height:", text)

    def test_the_committed_marks_are_read_back_and_other_sets_have_none(self):
        self.assertEqual(ambiguity.options_of("X[zZ]b[0Oo]"), [["X"], ["z", "Z"], ["b"], ["0", "O", "o"]])
        self.assertEqual(ambiguity.pattern(ambiguity.options_of("Ak[Vv]u")), "Ak[Vv]u")
        marks = font_errors.marked(make_validation.SEED)
        self.assertEqual(len([k for k in marks if k[0] == "captcha-fonts"]), 400)
        self.assertEqual(font_errors.marked(make_validation.SEED + 1), {})

    def test_case_slips_are_the_letters_that_differ_only_in_case(self):
        self.assertEqual(font_errors.case_slips("aXc9", "axC9"), [("X", "x"), ("c", "C")])
        self.assertEqual(font_errors.case_slips("aXc9", "aXc9"), [])   # right
        self.assertEqual(font_errors.case_slips("aXc9", "axc8"), [])   # wrong beyond case
        self.assertEqual(font_errors.case_slips("aXc9", "aXc"), [])    # wrong length

    def test_a_wrong_seed_is_refused(self):
        val = os.path.normpath(os.path.join(HERE, "..", "validation", "captcha-fonts"))
        with open(os.path.join(val, "labels.tsv")) as f:
            name, label = f.readline().rstrip("\n").split("\t")
        with self.assertRaises(SystemExit) as e:
            self.run_on(make_validation.SEED + 1, [["captcha-fonts", name, label, label, "1", "line", "1", "1.0"]])
        self.assertIn("wrong seed", str(e.exception))


class AlphabetPriors(unittest.TestCase):
    def test_each_model_json_holds_its_generators_prior(self):
        for which, prior in alphabet_prior.PRIORS.items():
            with open(alphabet_prior.MODEL_JSON[which]) as f:
                spec = json.load(f)
            self.assertEqual(spec["alphabet_prior"], prior(), which)
        self.assertEqual(alphabet_prior.check(), [])

    def test_each_prior_sums_to_one_over_distinct_alphabets(self):
        for name, prior in alphabet_prior.PRIORS.items():
            entries = prior()
            self.assertAlmostEqual(sum(e["share"] for e in entries), 1.0, places=6, msg=name)
            sets = [frozenset(e["alphabet"]) for e in entries]
            self.assertEqual(len(sets), len(set(sets)), name)
            for e in entries:
                self.assertEqual(len(set(e["alphabet"])), len(e["alphabet"]), e)

    def test_the_cells_prior_is_what_multicolor_text_draws(self):
        # GIVEN 20,000 strip texts THEN the share with no lower-case letter is
        # what the prior says: its digits and digits + upper alphabets, plus
        # the strings of the other two that happen to draw no lower-case letter
        rng = random.Random(2212)
        texts = [gen.multicolor_text(rng) for _ in range(20000)]
        observed = sum(not any(c.islower() for c in t) for t in texts) / len(texts)
        lengths = range(3, 9)
        expected = 0.0
        for e in alphabet_prior.cells_prior():
            a = e["alphabet"]
            no_lower = sum(1 for c in a if not c.islower()) / len(a)
            if no_lower == 1.0:
                expected += e["share"]
            else:
                # only rand_text draws from these: lengths 3-8, uniform
                expected += e["share"] * sum(no_lower ** n for n in lengths) / len(lengths)
        self.assertAlmostEqual(observed, expected, delta=0.012)


class WideCanvas(unittest.TestCase):
    """Step 3b (model.json "max_width"): the same numbers as the Rust crate's
    `a_wide_image_gets_a_wider_canvas_up_to_max_width`, and the golden file's
    wide entries are what preprocess.py computes now."""

    def test_canvas_widths_match_the_rust_unit_test(self):
        spec = preprocess.InputSpec(32, 160, max_w=200, w_step=8)
        self.assertEqual(spec.widths(), [160, 168, 176, 184, 192, 200])
        for w, want in [(100, 160), (200, 160), (220, 176), (221, 184), (250, 200), (400, 200)]:
            self.assertEqual(spec.canvas_w(40, w), want, f"{w}x40")
        self.assertEqual(preprocess.InputSpec(32, 160).widths(), [160])

    def test_bad_max_widths_are_refused_as_the_rust_load_does(self):
        for kwargs in ({"max_w": 150}, {"max_w": 200, "w_step": 6}, {"max_w": 204}, {"max_w": 400, "w_step": 4},
                       {"max_w": 200, "resize": "fill-height"}):
            with self.assertRaises(ValueError, msg=str(kwargs)):
                preprocess.InputSpec(48, 160, **kwargs)

    def test_the_golden_wide_entries_are_current(self):
        import numpy as np
        from PIL import Image
        ocr = os.path.join(HERE, "..")
        with open(os.path.join(ocr, "model", "preprocess_golden.json")) as f:
            golden = json.load(f)
        spec = preprocess.InputSpec(golden["input_height"], golden["input_width"], golden["mean"], golden["std"], "fit",
                                    None, "ink-columns", golden["wide_max_width"], golden["wide_width_step"])
        widths = set()
        for e in golden["images_wide"]:
            x = preprocess.preprocess(Image.open(os.path.join(ocr, e["file"])), spec)
            self.assertEqual(x.shape, (spec.h, e["canvas_width"]), e["file"])
            self.assertAlmostEqual(float(x.astype(np.float64).sum()), e["sum"], places=2, msg=e["file"])
            widths.add(e["canvas_width"])
        self.assertGreaterEqual(len(widths), 3, widths)



class SecondOpinion(unittest.TestCase):
    """second_opinion.py's choices between two readers' log-probabilities
    (attempt 34), on hand-made [T, C] matrices over a three-letter charset."""

    CS = "abc"

    def logp(self, path, sure):
        """[T, 4] log-probabilities whose argmax is `path` (0 = blank, i = CS[i-1]),
        each step's top class at probability `sure[t]`, the rest shared."""
        m = np.full((len(path), 4), 0.0)
        for t, (c, p) in enumerate(zip(path, sure)):
            m[t, :] = (1 - p) / 3
            m[t, c] = p
        return np.log(m)

    def test_the_surer_reader_is_asked_only_where_a_is_unsure(self):
        a = self.logp([1, 0, 2], [0.9, 0.9, 0.4])  # "ab", least sure step 0.4
        b = self.logp([1, 0, 3], [0.9, 0.9, 0.8])  # "ac", surer
        r = second_opinion.choose(a, b, self.CS, 0.6)
        self.assertEqual((r["a"], r["b"], r["surer"], r["surer_unsure"]), ("ab", "ac", "ac", "ac"))
        self.assertAlmostEqual(r["conf_a"], 0.4)
        r = second_opinion.choose(a, b, self.CS, 0.3)  # A is not under 0.3: its reading stands
        self.assertEqual((r["surer"], r["surer_unsure"], r["mean_unsure"]), ("ac", "ab", "ab"))

    def test_the_mean_reading_weighs_both_models_per_step(self):
        a = self.logp([1, 0, 2], [0.9, 0.9, 0.45])  # step 2: b at 0.45, c at 0.1833
        b = self.logp([1, 0, 3], [0.9, 0.9, 0.55])  # step 2: c at 0.55, b at 0.15
        r = second_opinion.choose(a, b, self.CS, 0.6)
        # mean of logs: b -> (log .45 + log .15)/2 = -1.348, c -> (log .1833 + log .55)/2 = -1.147
        self.assertEqual(r["mean_unsure"], "ac")
        m = second_opinion.mean_logp(a, b)
        np.testing.assert_allclose(np.exp(m).sum(-1), 1.0, rtol=1e-9)
        self.assertIsNone(second_opinion.mean_logp(a, b[:2]))

    def test_either_counts_when_one_reading_is_right(self):
        a = self.logp([1, 0, 2], [0.9, 0.9, 0.4])
        b = self.logp([1, 0, 3], [0.9, 0.9, 0.8])
        r = second_opinion.choose(a, b, self.CS, 0.6)
        s = second_opinion.score(r, "ab")
        self.assertEqual((s["a"], s["b"], s["either"], s["surer"]), ((True, True), (False, False), (True, True),
                                                                      (False, False)))
        self.assertEqual(second_opinion.score(r, "AC")["b"], (False, True))

    def test_ctc_loglik_is_a_distribution_over_every_text(self):
        import itertools
        rng = np.random.default_rng(0)
        x = rng.normal(size=(4, 4))
        lp = x - np.log(np.exp(x).sum(-1, keepdims=True))
        total = np.exp(lp[:, 0].sum())  # the empty text: every step blank
        for n in range(1, 5):
            for t in itertools.product(self.CS, repeat=n):
                total += np.exp(second_opinion.ctc_loglik(lp, "".join(t), self.CS))
        self.assertAlmostEqual(total, 1.0, places=9)
        self.assertEqual(second_opinion.ctc_loglik(lp, "ad", self.CS), -np.inf)  # d is not in the charset
        self.assertEqual(second_opinion.ctc_loglik(lp, "aaaaa", self.CS), -np.inf)  # longer than 4 steps allow

    def test_joint_picks_the_reading_both_models_find_likelier(self):
        a_step = [0.1 / 3, 0.9, 0.1 / 3, 0.1 / 3]  # "a" at 0.9
        blank_step = [0.9, 0.1 / 3, 0.1 / 3, 0.1 / 3]  # the blank at 0.9
        a = np.log([a_step, blank_step, [0.11, 0.11, 0.40, 0.38]])
        b = np.log([a_step, blank_step, [0.09, 0.09, 0.40, 0.42]])
        r = second_opinion.choose(a, b, self.CS, 0.6)
        # Greedy: A "ab" (0.40), B "ac" (0.42, the surer). Together b: .40 x .40 = .160 beats c: .38 x .42 = .1596.
        self.assertEqual((r["a"], r["b"], r["surer"]), ("ab", "ac", "ac"))
        self.assertEqual((r["joint"], r["joint_unsure"]), ("ab", "ab"))
        r = second_opinion.choose(b, a, self.CS, 0.6)  # the same pair the other way round
        self.assertEqual((r["surer"], r["joint"]), ("ac", "ab"))


class JointProbe(unittest.TestCase):
    """joint_probe.py's emulation of the engine's re-read (attempt 35)."""

    def test_shifted_moves_the_canvas_and_repeats_the_edge(self):
        c = np.arange(12, dtype=np.float32).reshape(3, 4)
        s = joint_probe.shifted(c, 1, -1)  # out[y, x] = in[y - 1, x + 1], clamped, as train.shift_batch
        np.testing.assert_array_equal(s, [[1, 2, 3, 3], [1, 2, 3, 3], [5, 6, 7, 7]])
        np.testing.assert_array_equal(joint_probe.shifted(c, 0, 0), c)

    def test_answer_is_the_candidate_all_readings_find_likeliest(self):
        cs = SecondOpinion.CS
        lp = SecondOpinion.logp
        one = lp(None, [1, 0, 2], [0.9, 0.9, 0.40])  # greedy "ab"
        two = lp(None, [1, 0, 3], [0.9, 0.9, 0.45])  # greedy "ac"
        three = lp(None, [1, 0, 3], [0.9, 0.9, 0.40])  # greedy "ac"
        self.assertEqual(joint_probe.answer([one], cs), "ab")
        self.assertEqual(joint_probe.answer([one, two, three], cs), "ac")
        self.assertEqual(joint_probe.answer([one, lp(None, [1, 0, 2], [0.9, 0.9, 0.9])], cs), "ab")


class CellTtaProbe(unittest.TestCase):
    """cell_tta_probe.py's transforms of a [3, S, S] cell (attempt 37)."""

    def test_shift_moves_the_cell_and_repeats_the_edge(self):
        u8 = np.arange(3 * 4 * 4, dtype=np.uint8).reshape(3, 4, 4)
        s = cell_tta_probe.shifted(u8, 1, -1)  # out[c, y, x] = in[c, y - 1, x + 1], clamped, every channel
        np.testing.assert_array_equal(s[0], [[1, 2, 3, 3], [1, 2, 3, 3], [5, 6, 7, 7], [9, 10, 11, 11]])
        np.testing.assert_array_equal(s[2], s[0] + 32)
        np.testing.assert_array_equal(cell_tta_probe.shifted(u8, 0, 0), u8)

    def test_warp_is_the_identity_at_no_turn_and_turns_a_quarter_exactly(self):
        rng = np.random.default_rng(0)
        u8 = rng.integers(0, 256, size=(3, 6, 6), dtype=np.uint8)
        np.testing.assert_array_equal(cell_tta_probe.warp(u8, 0.0, 1.0), u8)
        # 90 degrees samples in[y', x'] with x' = c - v, y' = c + u: a quarter turn of the grid
        np.testing.assert_array_equal(cell_tta_probe.warp(u8, 90.0, 1.0), np.rot90(u8, k=1, axes=(1, 2)))
        # zooming in 2x about the centre reads the middle only: a constant centre stays constant
        flat = np.full((3, 6, 6), 9, np.uint8)
        flat[:, 0, :] = 200
        self.assertTrue((cell_tta_probe.warp(flat, 0.0, 2.0)[:, 2:4, 2:4] == 9).all())

    def test_median_fill_paints_the_corners_a_turn_uncovers(self):
        u8 = np.zeros((3, 9, 9), np.uint8)
        u8[:, :, 0] = 255  # a bright left edge, which clamping would smear into the corners
        turned = cell_tta_probe.warp(u8, 45.0, 1.0, fill_median=True)
        self.assertEqual(int(turned[0, 8, 0]), 0)  # samples column -1.66, row 4
        self.assertEqual(int(cell_tta_probe.warp(u8, 45.0, 1.0)[0, 8, 0]), 255)


if __name__ == "__main__":
    unittest.main()
