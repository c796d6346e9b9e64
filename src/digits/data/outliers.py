"""Pictures that are no digit, for outlier exposure in training (Hendrycks et al. 2019: a model
taught to be unsure on a set of outliers is unsure on other outliers too).

Letters rendered from the Liberation fonts, and pen scribbles (wandering curved strokes), put
into MNIST's form by the same normalisation the app's pictures go through. Only Liberation:
``benchmarks/nondigits.py`` tests on every other font the machine has, and never on these; its
scribbles are straight lines, these never are. Letters shaped as digits (O o for 0, I l for 1,
S s for 5, Z z for 2) are left out: a model taught to doubt them would doubt those digits too.
"""

from __future__ import annotations

import glob
import hashlib
import io
import string
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from digits.atomic import write_bytes
from digits.data.mnist import cache_dir
from digits.data.normalise import mnist_form
from digits.errors import DigitsError

FONT_FOLDERS = ("/usr/share/fonts", "/usr/local/share/fonts", "/Library/Fonts", str(Path.home() / ".fonts"))
FIT_FONTS = "Liberation"  # benchmarks/nondigits.py never tests on these
# Letters drawn as digits are drawn (the digit each one reads as): taught to doubt them, a model
# would doubt those digits too, and no reader can tell an O from a 0 without the word around it.
DIGIT_SHAPED = {"O": 0, "o": 0, "I": 1, "l": 1, "S": 5, "s": 5, "Z": 2, "z": 2}
LETTERS = "".join(c for c in string.ascii_letters if c not in DIGIT_SHAPED)
VERSION = 1  # of what the generators draw: a change makes the cached pictures again
CANVAS = 112  # a fifth of the work of the page's 280 pixels, and the same once in MNIST's form


def fit_fonts() -> list[str]:
    """The Liberation fonts on this machine, or a DigitsError saying how to get them."""
    found = sorted({f for folder in FONT_FOLDERS for kind in ("ttf", "otf")
                    for f in glob.glob(f"{folder}/**/{FIT_FONTS}*.{kind}", recursive=True)})
    if not found:
        raise DigitsError(f"outlier exposure renders letters from the {FIT_FONTS} fonts, and none is in "
                          f"{', '.join(FONT_FOLDERS[:2])}; install them (Debian/Ubuntu: apt install fonts-liberation)")
    return found


def letter_pictures(renderings: int = 4, seed: int = 0) -> np.ndarray:
    """Each letter of ``LETTERS`` in each Liberation font, ``renderings`` times at a seeded size,
    slant and stroke weight, in MNIST's form: uint8 (N, 28, 28), light on dark."""
    rng = np.random.default_rng(seed)
    canvases = []
    for font_file in fit_fonts():
        for char in LETTERS:
            for _ in range(renderings):
                img = Image.new("L", (CANVAS, CANVAS), 0)
                font = ImageFont.truetype(font_file, int(rng.integers(48, 92)))
                ImageDraw.Draw(img).text((CANVAS / 2, CANVAS / 2), char, fill=255, anchor="mm", font=font,
                                         stroke_width=int(rng.integers(0, 4)), stroke_fill=255)
                canvases.append(np.asarray(img.rotate(float(rng.uniform(-15, 15)), resample=Image.BILINEAR)))
    return _in_mnist_form(canvases)


def scribble_pictures(count: int = 2000, seed: int = 0) -> np.ndarray:
    """``count`` scribbles: two to four strokes, each a seeded random walk that turns as it goes
    (a pen wandering, never a ruler's line), in MNIST's form: uint8 (N, 28, 28), light on dark."""
    rng = np.random.default_rng(seed)
    canvases = []
    for _ in range(count):
        img = Image.new("L", (CANVAS, CANVAS), 0)
        pen = ImageDraw.Draw(img)
        for _ in range(int(rng.integers(2, 5))):
            point, heading = rng.uniform(15, CANVAS - 15, 2), rng.uniform(0, 2 * np.pi)
            points = [tuple(point)]
            for _ in range(int(rng.integers(5, 13))):
                heading += rng.normal(0, 0.9)
                point = np.clip(point + rng.uniform(8, 22) * np.array([np.cos(heading), np.sin(heading)]), 5, CANVAS - 5)
                points.append(tuple(point))
            pen.line(points, fill=255, width=int(rng.integers(4, 10)), joint="curve")
        canvases.append(np.asarray(img))
    return _in_mnist_form(canvases)


def outlier_pictures(seed: int = 0) -> np.ndarray:
    """What outlier exposure shows a model: :func:`letter_pictures` and :func:`scribble_pictures`,
    kept in the cache folder once made (drawing and normalising them is the slow part)."""
    fonts = hashlib.sha256("\n".join(Path(f).name for f in fit_fonts()).encode()).hexdigest()[:12]
    cached = cache_dir() / f"outliers-v{VERSION}-seed{seed}-{fonts}.npy"
    try:
        pictures = np.load(cached, allow_pickle=False)
        if pictures.dtype == np.uint8 and pictures.ndim == 3 and pictures.shape[1:] == (28, 28):
            return pictures
    except (OSError, ValueError):
        pass  # not made yet, or damaged: made again
    pictures = np.concatenate([letter_pictures(seed=seed), scribble_pictures(seed=seed)])
    buffer = io.BytesIO()
    np.save(buffer, pictures, allow_pickle=False)
    try:
        write_bytes(cached, buffer.getvalue())
    except OSError:
        pass  # a read-only cache: the pictures are still good, only made again next time
    return pictures


def _in_mnist_form(canvases: list[np.ndarray]) -> np.ndarray:
    pictures = mnist_form(np.stack(canvases))
    return pictures.images[pictures.found]
