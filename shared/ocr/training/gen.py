"""Seeded synthetic CAPTCHA generators.

Every sample is a pure function of (style, seed, index): make_sample(style, rng)
with rng = random.Random(f"{seed}:{style}:{index}") returns (PIL image, label).

Styles:
  captcha-default  `captcha` ImageCaptcha, its default font (DroidSansMono), 160x60
  captcha-fonts    ImageCaptcha with Debian fonts, widths 100-300, heights 40-100
  multicolor       multicolorcaptcha glyph cells (multicolour, rotated), our own text
  pillow           own Pillow styles: noise, lines, sine warp, colours, rotation, spacing
  calc             arithmetic like 12+7=?, 8*3=, 45-17=? (label = drawn text)
  phrase           two words separated by a space
"""
from __future__ import annotations

import glob
import io
import math
import os
import random
import re

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

import captcha.image as capimg
import multicolorcaptcha._generator as mcg
from multicolorcaptcha import CaptchaGenerator

ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
STYLES = ["captcha-default", "captcha-fonts", "multicolor", "pillow", "calc", "phrase"]

# Debian font packages used (see setup.sh); fonts are discovered under these dirs.
FONT_DIRS = ["/usr/share/fonts/truetype", "/usr/share/fonts/opentype"]
_EXCLUDE = re.compile(r"(Symbol|D050000L|Dingbat|Math|Tamil|\[wght\]|Hairline|Thin|ExtraLight|Z003|texgyre.*math)", re.I)

WORDS = """able acid aged also area army away baby back ball band bank base bath bear beat been beer bell belt best bird
blow blue boat body bomb bond bone book boom born boss both bowl bulk burn bush busy cake call calm came camp card care
case cash cast cell chat chip city club coal coat code cold come cook cool cope copy core cost crew crop dark data date
dawn days dead deal dean dear debt deep deny desk dial diet disc disk does done door dose down draw drew drop drug dual
duke dust duty each earn ease east easy edge else even ever evil exit face fact fail fair fall farm fast fate fear feed
feel feet fell felt file fill film find fine fire firm fish five flat flow food foot ford form fort four free from fuel
full fund gain game gate gave gear gift girl give glad goal goes gold golf gone good gray grew grey grow gulf hair half
hall hand hang hard harm hate have head hear heat held hell help here hero high hill hire hold hole holy home hope host
hour huge hung hunt hurt idea inch into iron item jack jane jean john join jump jury just keen keep kent kept kick kill
kind king knee knew know lack lady laid lake land lane last late lead left less life lift like line link list live load
loan lock long look lord lose loss lost love luck made mail main make male many mark mass matt meal mean meat meet menu
mere mike mile milk mill mind mine miss mode mood moon more most move much must name navy near neck need news next nice
nick nine none nose note okay once only open oral over pace pack page paid pain pair palm park part pass past path peak
pick pink pipe plan play plot plug plus poll pool poor port post pull pure push race rail rain rank rare rate read real
rear rely rent rest rice rich ride ring rise risk road rock role roll roof room root rose rule rush safe said sake sale
salt same sand save seat seed seek seem seen self sell send sent ship shop shot show shut sick side sign site size skin
slip slow snow soft soil sold sole some song soon sort soul spot star stay step stop such suit sure take tale talk tall
tank tape task team tech tell tend term test text than that them then they thin this thus till time tiny told toll tone
tony took tool tour town tree trip true tune turn twin type unit upon used user vast very vice view vote wage wait wake
walk wall want ward warm wash wave ways weak wear week well went were west what when whom wide wife wild will wind wine
wing wire wise wish with wood word wore work yard yeah year your zero zone art bad big box boy car cat cup cut day dog
dry ear eat egg end eye fan far few fit fly fox fun gas get got gun guy hat hot ice ink jam jet job joy key kid lab law
lay leg let lie lip log low mad man map max mix mom net new nor not now nut odd off oil old one our out owl own pay pen
pet pie pig pin pot put raw red rid row run sad saw say sea see set sew she sky son sun tax tea ten tie tip toe top toy
try two use van war way web wet who why win yes yet you zoo apple brave cloud dance eagle fresh grape happy ivory jolly
lemon magic noble ocean piano quiet river solar tiger ultra vivid water xenon young zebra""".split()


class SeededSecrets:
    """Stands in for the `secrets` module inside captcha.image, so it is seedable."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    def randbelow(self, n):
        return self.rng.randrange(n)

    def randbits(self, k):
        return self.rng.getrandbits(k)

    def choice(self, seq):
        return self.rng.choice(seq)


_FONT_CACHE: dict = {}
_IC_FONTS: dict = {}  # ImageCaptcha's loaded font lists, by (fonts, sizes)
_IC_FACES = 0
_IC_MAX_FACES = 2000
_FONTS: list | None = None


def list_fonts() -> list[str]:
    """Latin fonts from the installed Debian packages that have glyphs for all of ALNUM+-*=?."""
    global _FONTS
    if _FONTS is not None:
        return _FONTS
    paths = set()
    for d in FONT_DIRS:
        for ext in ("ttf", "otf", "TTF", "OTF"):
            paths.update(glob.glob(os.path.join(d, "**", "*." + ext), recursive=True))
    good = []
    for p in sorted(paths):
        if _EXCLUDE.search(p) or "captcha" in p:
            continue
        try:
            f = ImageFont.truetype(p, 32)
            # reject fonts that map letters to the same (notdef) glyph
            masks = set()
            ok = True
            for ch in ALNUM + "+-*=?":
                bb = f.getbbox(ch)
                if bb[2] - bb[0] <= 0 or bb[3] - bb[1] <= 0:
                    ok = False
                    break
                masks.add(bytes(f.getmask(ch)))
            if ok and len(masks) >= 60:
                good.append(p)
        except Exception:
            continue
    _FONTS = good
    return good


def font(path: str, size: int) -> ImageFont.FreeTypeFont:
    key = (path, size)
    f = _FONT_CACHE.get(key)
    if f is None:
        if len(_FONT_CACHE) > 4000:
            _FONT_CACHE.clear()
        f = ImageFont.truetype(path, size)
        _FONT_CACHE[key] = f
    return f


# rand_text's single-alphabet modes, as (cumulative share bound, alphabet): a
# draw under 0.15 is digits only, under 0.30 digits + upper, under 0.40 lower +
# digits; the rest use the caller's alphabet (ALNUM). Alphabet order matters:
# rng.choice indexes it.
TEXT_MODES = (
    (0.15, "0123456789"),
    (0.30, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"),
    (0.40, "abcdefghijklmnopqrstuvwxyz0123456789"),
)


def rand_text(rng: random.Random, lo=3, hi=8, alphabet=ALNUM) -> str:
    n = rng.randint(lo, hi)
    mode = rng.random()
    for bound, mode_alphabet in TEXT_MODES:
        if mode < bound:
            alphabet = mode_alphabet
            break
    return "".join(rng.choice(alphabet) for _ in range(n))


def calc_text(rng: random.Random) -> str:
    op = rng.choice("+-*+-")
    a = rng.randint(0, 99) if rng.random() < 0.6 else rng.randint(0, 9)
    b = rng.randint(0, 99) if rng.random() < 0.4 else rng.randint(0, 9)
    if op == "-" and a < b and rng.random() < 0.8:
        a, b = b, a
    if op == "*":
        a, b = rng.randint(0, 12), rng.randint(0, 12)
    tail = rng.choice(["=?", "=?", "=", "", "=?"])
    return f"{a}{op}{b}{tail}"


def phrase_text(rng: random.Random) -> str:
    w1, w2 = rng.choice(WORDS), rng.choice(WORDS)
    m = rng.random()
    if m < 0.2:
        w1, w2 = w1.capitalize(), w2
    elif m < 0.3:
        w1, w2 = w1.upper(), w2.upper()
    elif m < 0.4:
        w1, w2 = w1.capitalize(), w2.capitalize()
    return f"{w1} {w2}"


# ---------------------------------------------------------------- captcha lib
def gen_imagecaptcha(rng: random.Random, text: str, fonts=None, width=160, height=60, font_sizes=None):
    capimg.secrets = SeededSecrets(rng)
    ic = capimg.ImageCaptcha(width=width, height=height, fonts=fonts, font_sizes=font_sizes)
    key = (tuple(fonts or ()), tuple(font_sizes or ()))
    cached = _IC_FONTS.get(key)
    if cached is None:
        # Bounded by loaded faces: captcha-fonts draws a new font set per
        # image, and each set of faces holds ~0.9 MB of font data in memory.
        global _IC_FACES
        if _IC_FACES > _IC_MAX_FACES:
            _IC_FONTS.clear()
            _IC_FACES = 0
        cached = ic.truefonts
        _IC_FONTS[key] = cached
        _IC_FACES += len(cached)
    ic._truefonts = cached
    return ic.generate_image(text)


def style_captcha_default(rng):
    text = rand_text(rng, 3, 8)
    return gen_imagecaptcha(rng, text), text


def style_captcha_fonts(rng):
    text = rand_text(rng, 3, 8)
    fonts = list_fonts()
    nf = rng.choice([1, 1, 2, 3])
    fs = [rng.choice(fonts) for _ in range(nf)]
    h = rng.randint(40, 100)
    # width roughly proportional to text length, within 100-300
    w = int(min(300, max(100, h * len(text) * rng.uniform(0.45, 0.9))))
    base = int(h * rng.uniform(0.6, 0.85))
    sizes = tuple(sorted({max(10, int(base * k)) for k in (0.85, 1.0, 1.1)}))
    return gen_imagecaptcha(rng, text, fonts=fs, width=w, height=h, font_sizes=sizes), text


# --------------------------------------------------------- multicolorcaptcha
_MC = {}
# A strip's text: rand_text this often, else four characters of the library's
# own `ascii` alphabet (its other modes, digits and ABCDEF0-9, are subsets).
MULTICOLOR_RAND_TEXT = 0.6
MULTICOLOR_LIBRARY_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def multicolor_text(rng: random.Random) -> str:
    if rng.random() < MULTICOLOR_RAND_TEXT:
        return rand_text(rng, 3, 8)
    return "".join(rng.choice(MULTICOLOR_LIBRARY_ALPHABET) for _ in range(4))


def style_multicolor(rng, text=None):
    mcg.randint = rng.randint
    mcg.choice = rng.choice
    size_num = 0 if rng.random() < 0.75 else 1
    g = _MC.get(size_num)
    if g is None:
        g = _MC[size_num] = CaptchaGenerator(size_num)
    if text is None:
        text = multicolor_text(rng)
    cell = g.one_char_image_size
    multicolor = rng.random() < 0.7
    level = rng.randint(0, 3) if rng.random() < 0.8 else rng.randint(0, 5)
    bg = g.gen_rand_color()
    ims = []
    for ch in text:
        if multicolor:
            bg = g.gen_rand_color()
        ims.append(g.gen_captcha_char_image(ch, cell, 2, bg)["image"])
    image = g.images_join_horizontal(ims)
    for _ in range(mcg.DIFFICULT_LEVELS_VALUES[level][0]):
        g.add_rand_horizontal_line_to_image(image, rng.randint(1, 5))
    for _ in range(mcg.DIFFICULT_LEVELS_VALUES[level][1] * len(text) // 4):
        g.add_rand_circle_to_image(image, int(0.05 * cell[0]), int(0.15 * cell[1]))
    if rng.random() < 0.5:  # the library's default margin: black bands above/below (height 9/16 of 4 cells)
        H = g.captcha_size[1]
        new = Image.new("RGBA", (image.width, H), (0, 0, 0, 255))
        new.paste(image, (0, int(H / 2 - image.height / 2)))
        image = new
    return image, text


# -------------------------------------------------------------- pillow styles
def rand_color(rng, lo, hi):
    return tuple(rng.randint(lo, hi) for _ in range(3))


def make_background(rng, w, h, dark_text: bool):
    lo, hi = (170, 255) if dark_text else (0, 90)
    kind = rng.random()
    c1 = rand_color(rng, lo, hi)
    if kind < 0.45:
        return Image.new("RGB", (w, h), c1)
    if kind < 0.75:  # gradient
        c2 = rand_color(rng, lo, hi)
        t = np.linspace(0, 1, w if rng.random() < 0.7 else h, dtype=np.float32)
        a = np.array(c1, np.float32)[None, :] * (1 - t[:, None]) + np.array(c2, np.float32)[None, :] * t[:, None]
        if len(t) == w:
            arr = np.broadcast_to(a[None, :, :], (h, w, 3))
        else:
            arr = np.broadcast_to(a[:, None, :], (h, w, 3))
        return Image.fromarray(arr.astype(np.uint8).copy(), "RGB")
    # noisy / speckled texture
    base = np.array(c1, np.float32)[None, None, :]
    amp = rng.uniform(10, 45)
    small = np.random.default_rng(rng.getrandbits(32)).normal(0, amp, (max(1, h // rng.randint(1, 6)), max(1, w // rng.randint(1, 6)), 3))
    noise = np.asarray(Image.fromarray(np.clip(small + 128, 0, 255).astype(np.uint8)).resize((w, h), Image.BILINEAR), np.float32) - 128
    arr = np.clip(base + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def render_text(rng, text, fpath, size, color, rot=0.0, spacing=0.0, word_gap=0.6):
    """Draw text glyph by glyph on an RGBA canvas with per-glyph rotation/offsets."""
    f = font(fpath, size)
    glyphs = []
    for ch in text:
        if ch == " ":
            glyphs.append(None)
            continue
        bb = f.getbbox(ch)
        gw, gh = bb[2] - bb[0] + 4, bb[3] - bb[1] + 4
        im = Image.new("RGBA", (max(1, gw), max(1, gh)), (0, 0, 0, 0))
        c = color if not callable(color) else color()
        ImageDraw.Draw(im).text((2 - bb[0], 2 - bb[1]), ch, font=f, fill=c + (255,))
        a = rng.uniform(-rot, rot)
        if a:
            im = im.rotate(a, Image.BILINEAR, expand=True)
        glyphs.append((im, bb))
    asc, desc = f.getmetrics()
    H = int((asc + desc) * 1.6) + 8
    space_w = int(size * word_gap)
    W = sum((g[0].width if g else space_w) for g in glyphs) + int(abs(spacing) * size * len(text)) + 16
    canvas = Image.new("RGBA", (W, H), (0, 0, 0, 0))
    x = 4
    base_y = int((H - (asc + desc)) / 2)
    for g in glyphs:
        if g is None:
            x += space_w
            continue
        im, bb = g
        dy = int(rng.uniform(-0.08, 0.08) * size)
        y = base_y + bb[1] - 2 + dy - (im.height - (bb[3] - bb[1] + 4)) // 2
        canvas.alpha_composite(im, (max(0, x), max(0, min(H - im.height, y))))
        x += im.width + int(spacing * size * rng.uniform(0.5, 1.0)) - 2
    bbox = canvas.getbbox() or (0, 0, W, H)
    return canvas.crop(bbox)


def sine_warp(rng, img: Image.Image) -> Image.Image:
    w, h = img.size
    arr = np.asarray(img)
    amp = rng.uniform(1, max(1.5, h * 0.08))
    period = rng.uniform(0.5, 2.0) * w
    phase = rng.uniform(0, 2 * math.pi)
    shifts = (amp * np.sin(2 * math.pi * np.arange(w) / period + phase)).astype(int)
    out = np.zeros_like(arr)
    for x in range(w):
        out[:, x] = np.roll(arr[:, x], shifts[x], axis=0)
    return Image.fromarray(out, img.mode)


def draw_noise(rng, img: Image.Image, color, amount: float):
    d = ImageDraw.Draw(img)
    w, h = img.size
    for _ in range(int(rng.randint(0, 4) * amount)):
        pts = [(rng.randint(0, w), rng.randint(0, h)) for _ in range(rng.randint(2, 4))]
        c = color if rng.random() < 0.5 else rand_color(rng, 0, 255)
        d.line(pts, fill=c, width=rng.randint(1, max(1, h // 25)))
    for _ in range(int(rng.randint(0, 4) * amount)):
        x0, y0 = rng.randint(-w // 2, w), rng.randint(-h // 2, h)
        d.arc([x0, y0, x0 + rng.randint(10, w), y0 + rng.randint(10, h)], rng.randint(0, 360), rng.randint(0, 360),
              fill=color if rng.random() < 0.5 else rand_color(rng, 0, 255), width=rng.randint(1, 3))
    for _ in range(int(rng.randint(0, 120) * amount)):
        x, y = rng.randint(0, w), rng.randint(0, h)
        r = rng.choice([0, 0, 1, 1, 2])
        d.ellipse([x - r, y - r, x + r, y + r], fill=color if rng.random() < 0.4 else rand_color(rng, 0, 255))


def pillow_image(rng, text, phrase=False):
    fonts = list_fonts()
    fp = rng.choice(fonts)
    dark = rng.random() < 0.8
    size = rng.randint(20, 60)
    lo, hi = (0, 120) if dark else (170, 255)
    multic = rng.random() < 0.25
    col = rand_color(rng, lo, hi)
    color = (lambda: rand_color(rng, lo, hi)) if multic else col
    rot = rng.choice([0, 5, 10, 20, 30]) if not phrase else rng.choice([0, 3, 8])
    spacing = rng.uniform(-0.12, 0.35) if not phrase else rng.uniform(-0.05, 0.12)
    txt = render_text(rng, text, fp, size, color, rot, spacing, word_gap=rng.uniform(0.5, 0.9))
    if rng.random() < 0.25:
        txt = sine_warp(rng, txt)
    if rng.random() < 0.15:  # global shear
        sh = rng.uniform(-0.3, 0.3)
        txt = txt.transform((txt.width + int(abs(sh) * txt.height), txt.height), Image.AFFINE,
                            (1, sh, -sh * txt.height if sh > 0 else 0, 0, 1, 0), Image.BILINEAR)
    # canvas: widths 60-400, text fits with margins
    mx = rng.randint(2, max(3, txt.width // 6))
    my = rng.randint(2, max(3, txt.height // 3))
    W, H = txt.width + 2 * mx, txt.height + 2 * my
    sc = 1.0
    if W > 400:
        sc = 400 / W
    elif W < 60:
        sc = 60 / W
    if sc != 1.0:
        txt = txt.resize((max(1, int(txt.width * sc)), max(1, int(txt.height * sc))), Image.BILINEAR)
        mx, my = int(mx * sc), int(my * sc)
        W, H = txt.width + 2 * mx, txt.height + 2 * my
    bg = make_background(rng, W, H, dark)
    amount = rng.choice([0, 0.5, 1, 1, 2])
    if rng.random() < 0.5:
        draw_noise(rng, bg, col, amount * 0.7)
    bg.paste(txt, (mx + rng.randint(-mx // 2, mx // 2 + 1) if mx > 2 else mx, my), txt)
    if rng.random() < 0.6:
        draw_noise(rng, bg, col, amount * 0.5)
    if rng.random() < 0.2:
        bg = bg.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    return bg


def style_pillow(rng):
    text = rand_text(rng, 3, 8)
    return pillow_image(rng, text), text


def style_calc(rng):
    text = calc_text(rng)
    r = rng.random()
    if r < 0.6:
        return pillow_image(rng, text), text
    if r < 0.85:
        fonts = [rng.choice(list_fonts())] if rng.random() < 0.7 else None
        h = rng.randint(40, 80)
        w = int(min(300, max(100, h * len(text) * rng.uniform(0.5, 0.8))))
        base = int(h * rng.uniform(0.6, 0.8))
        sizes = (base, int(base * 1.1))
        return gen_imagecaptcha(rng, text, fonts=fonts, width=w, height=h, font_sizes=sizes), text
    return style_multicolor(rng, text)[0], text


def style_phrase(rng):
    text = phrase_text(rng)
    return pillow_image(rng, text, phrase=True), text


GENERATORS = {
    "captcha-default": style_captcha_default,
    "captcha-fonts": style_captcha_fonts,
    "multicolor": style_multicolor,
    "pillow": style_pillow,
    "calc": style_calc,
    "phrase": style_phrase,
}


def roundtrip(rng, img: Image.Image) -> Image.Image:
    """Sometimes pass through JPEG/GIF encoding, as served captchas often are."""
    r = rng.random()
    if r < 0.2:
        b = io.BytesIO()
        img.convert("RGB").save(b, "JPEG", quality=rng.randint(45, 95))
        return Image.open(io.BytesIO(b.getvalue()))
    if r < 0.28:
        b = io.BytesIO()
        img.convert("RGB").save(b, "GIF")
        return Image.open(io.BytesIO(b.getvalue()))
    return img


def make_sample(style: str, seed: int, index: int, encode: bool = True):
    rng = random.Random(f"{seed}:{style}:{index}")
    img, text = GENERATORS[style](rng)
    if encode:
        img = roundtrip(rng, img)
    return img, text
