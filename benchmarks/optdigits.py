"""UCI optdigits (scikit-learn's bundled ``load_digits``: 1,797 digits by other writers than
MNIST's) put into MNIST form through the app's own preprocessing.

Each digit there is an 8x8 grid of ink counts 0-16: the 32x32 bitmap of a scanned form, each
4x4 block counted. It is rendered back at that scale as a picture a user could send (dark ink
on white paper, two blocks of paper around it, each block 4x4 pixels, bilinear between
blocks), and goes through ``digits.serve.preprocess.prepare_digit``, the step the page, the
API and ``digits predict-image`` run on every picture: MNIST's 20x20 box, centred by mass.
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image

from digits.serve.preprocess import SIZE, prepare_digit

INK_LEVELS = 16   # load_digits counts ink pixels in 4x4 blocks: 0-16
BLOCK = 4         # pixels per block, as in the 32x32 bitmaps the counts were made from
MARGIN = 2        # blocks of blank paper around the grid, so the border reads as paper


def render_optdigit(counts: np.ndarray) -> np.ndarray:
    """One 8x8 grid of ink counts as a grey picture, float32 (48, 48): dark ink on white paper."""
    ink = np.pad(np.asarray(counts, np.float32) / INK_LEVELS, MARGIN)
    paper = 255.0 * (1.0 - ink)
    side = ink.shape[0] * BLOCK
    picture = Image.fromarray(paper, mode="F").resize((side, side), Image.Resampling.BILINEAR)
    return np.clip(np.asarray(picture, np.float32), 0.0, 255.0)


def load_optdigits() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images uint8 (1797, 28, 28) as the model reads them, labels int64 (1797,), found bool
    (1797,)): ``found`` is False where the preprocessing saw no digit (its image is then blank)."""
    return tuple(a.copy() for a in _prepared_optdigits())  # type: ignore[return-value]


@functools.lru_cache(maxsize=1)
def _prepared_optdigits() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # Made once a process: the same 1,797 pictures whatever the seed, and the slow part.
    from sklearn.datasets import load_digits  # a benchmark-only dependency (the ``tune`` extra)

    bunch = load_digits()
    prepared = [prepare_digit(render_optdigit(grid)) for grid in bunch.images]
    images = np.stack([p.image for p in prepared]).astype(np.uint8) if prepared else np.zeros((0, SIZE, SIZE),
                                                                                               np.uint8)
    found = np.array([p.found for p in prepared], bool)
    return images, bunch.target.astype(np.int64), found
