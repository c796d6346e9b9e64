"""Pictures that are no digit at all, seeded, drawn as a user would and put through the app's
preprocessing: letters in Debian's fonts, scribbles of crossed lines, noise, blank and
near-blank canvases. ``benchmarks/calibration.py`` measures how many get "not a digit" or
"unsure".

The letters drawn as digits are drawn (O o, I l, S s, Z z: ``digits.data.outliers.DIGIT_SHAPED``)
are not among them: an O is a 0 to any reader that sees it alone. ``digit_shaped`` draws them
apart, and calibration.py says how many are read as the digit they look like.

These generators are test ones: nothing in training or in choosing a threshold may use them.

    python benchmarks/nondigits.py --show out.png   # a picture of a few of each
"""

from __future__ import annotations

import argparse
import glob
import string
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from digits.data.outliers import DIGIT_SHAPED, FIT_FONTS  # outlier exposure's fonts: never tested on
from digits.serve.preprocess import prepare_digit

CANVAS = 280                          # the page's canvas
LINE_WIDTH = 18                       # the page's pen
FONT_FOLDERS = ("/usr/share/fonts", "/usr/local/share/fonts")
KINDS = ("letters", "scribbles", "noise", "blank")


def test_fonts() -> list[str]:
    """Every TrueType/OpenType font Debian ships here except outlier exposure's (Liberation)."""
    found = []
    for folder in FONT_FOLDERS:
        found += glob.glob(f"{folder}/**/*.ttf", recursive=True) + glob.glob(f"{folder}/**/*.otf", recursive=True)
    return sorted(f for f in found if FIT_FONTS not in Path(f).name and "Math" not in Path(f).name)


def _prepared(img: Image.Image) -> tuple[np.ndarray, bool]:
    digit = prepare_digit(np.asarray(img, np.float32))
    return digit.image, digit.found


def letters(rng: np.random.Generator, fonts: list[str] | None = None,
            chars: str = "".join(c for c in string.ascii_letters if c not in DIGIT_SHAPED)) -> list[Image.Image]:
    """Each of ``chars`` (a-z and A-Z but those drawn as digits) in each test font, black on
    white, at a seeded size."""
    out = []
    for font in fonts if fonts is not None else test_fonts():
        for char in chars:
            img = Image.new("L", (CANVAS, CANVAS), 255)
            ImageDraw.Draw(img).text((CANVAS / 2, CANVAS / 2), char, fill=0, anchor="mm",
                                     font=ImageFont.truetype(font, int(rng.integers(140, 220))))
            out.append(img)
    return out


def scribbles(rng: np.random.Generator, count: int = 300) -> list[Image.Image]:
    """Three to seven straight lines, each drawn on its own across the canvas with the page's pen."""
    out = []
    for _ in range(count):
        img = Image.new("L", (CANVAS, CANVAS), 255)
        pen = ImageDraw.Draw(img)
        for _ in range(rng.integers(3, 8)):
            pen.line([tuple(rng.uniform(20, 260, 2)), tuple(rng.uniform(20, 260, 2))], fill=0, width=LINE_WIDTH)
        out.append(img)
    return out


def noise(rng: np.random.Generator, count: int = 100) -> list[Image.Image]:
    """Uniform noise, Gaussian noise on grey paper, and salt-and-pepper on white, in turn."""
    out = []
    for i in range(count):
        if i % 3 == 0:
            pixels = rng.uniform(0, 255, (CANVAS, CANVAS))
        elif i % 3 == 1:
            pixels = rng.normal(160, 60, (CANVAS, CANVAS))
        else:
            pixels = np.where(rng.random((CANVAS, CANVAS)) < rng.uniform(0.02, 0.2), 0.0, 255.0)
        out.append(Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)))
    return out


def blank(rng: np.random.Generator, count: int = 50) -> list[Image.Image]:
    """White canvases, some with a dot or a short tick of the pen on them."""
    out = []
    for i in range(count):
        img = Image.new("L", (CANVAS, CANVAS), 255)
        x, y = rng.uniform(40, 240, 2)
        if i % 3 == 1:  # a tap: a dot of the pen's width
            ImageDraw.Draw(img).ellipse((x - 9, y - 9, x + 9, y + 9), fill=0)
        elif i % 3 == 2:  # a tick, under a tenth of the canvas
            ImageDraw.Draw(img).line([(x, y), (x + rng.uniform(-12, 12), y + rng.uniform(-12, 12))], fill=0,
                                     width=LINE_WIDTH // 3)
        out.append(img)
    return out


def nondigits(seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per kind: the 28x28 model inputs, uint8 (N, 28, 28), and whether preprocessing found ink
    worth reading (False: blank or near-blank)."""
    rng = np.random.default_rng(seed)
    out = {}
    for kind, make in zip(KINDS, (letters, scribbles, noise, blank)):
        prepared = [_prepared(img) for img in make(rng)]
        out[kind] = (np.stack([p[0] for p in prepared]), np.array([p[1] for p in prepared]))
    return out


def digit_shaped(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The letters drawn as digits (``DIGIT_SHAPED``) in each test font, as the model reads them,
    uint8 (N, 28, 28), and the digit each one looks like (N,)."""
    chars = "".join(DIGIT_SHAPED)
    pictures = [_prepared(img)[0] for img in letters(np.random.default_rng([seed, 1]), chars=chars)]
    return np.stack(pictures), np.array([DIGIT_SHAPED[c] for c in chars] * (len(pictures) // len(chars)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the non-digit test pictures")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--show", metavar="PNG", help="write a picture of 10 of each kind")
    args = parser.parse_args(argv)
    sets = nondigits(args.seed)
    for kind, (images, found) in sets.items():
        print(f"{kind}: {len(images)} pictures, {int(found.sum())} with ink worth reading")
    if args.show:
        rows = [np.concatenate(list(images[np.linspace(0, len(images) - 1, 10).astype(int)]), axis=1)
                for images, _ in sets.values()]
        Image.fromarray(np.concatenate(rows)).resize((280 * 2, 28 * 2 * len(rows))).save(args.show)
    return 0


if __name__ == "__main__":
    sys.exit(main())
