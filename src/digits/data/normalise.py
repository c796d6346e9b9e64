"""One input normalisation for every path: any grayscale picture of one digit, light ink on a
dark background, put into MNIST's canonical form (or, with ``"ink"``, only its light and
contrast taken away: :func:`ink_only`).

MNIST's digits were made this way (LeCun et al.): the ink's bounding box scaled to fit 20x20
keeping the aspect ratio, anti-aliased, then placed in a 28x28 field so that the centre of mass
sits at the centre. :func:`mnist_form` does the same to a batch, after taking away what is not
ink: the background (a grey opening, so uneven light, fog and grey paper go, not only a level
read off the border), the noise floor, and the contrast (stretched so the ink peaks at 255).
The box is found robustly: only the connected pieces of ink that carry a good share of the mass
count, so spatter, noise pixels and the dots of a dotted line do not stretch it.

The app's pictures (``digits.serve.preprocess.prepare_digit``), CSV rows and API pixels all go
through :func:`mnist_form`: training applies it to the rows once when a run's ``normalise`` is
``"mnist"``, and the Predictor and the ONNX runtime apply it to what they read. NumPy only: no
torch, no scipy, so the ONNX server can run it. Whole batches at once (70,000 rows in seconds).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from digits.data.dataset import DigitSet
from digits.errors import DataError

Normalisation = Literal["none", "mnist", "ink"]
NORMALISATIONS: tuple[str, ...] = get_args(Normalisation)

SIZE = 28            # side of the model's input, pixels
BOX = 20             # side of the box the ink is scaled to fit, as in MNIST
PAD = (SIZE - BOX) // 2  # where the fitted box starts, before it is centred by mass
FRINGE = 2           # the box grows by up to this many output pixels to take in faint ink (MNIST's box
# holds all its ink, the faint edge of the strokes and their tails included)
CENTRE = 14.0        # MNIST's centre of mass, in row/column index units (measured: 13.996 / 14.006)
OPENING = 9 / 28     # side of the opening that finds the background, as a fraction of the picture's
# shorter side: wider than any stroke (6% of MNIST's digits hold a 7x7 square of ink, none a 9x9)
INK_LEVEL = 0.3      # a pixel is ink for the box at this fraction of the peak: above grey spatter (0.25),
# and MNIST's own box barely moves (longer side 20 on 99.8% of 20,000 rows at 0.25, as at 0)
KEEP = 0.1           # a connected piece of ink counts for the box with this share of the largest's mass
NOISE_FLOOR = 2.0    # times the median residual: the level of background noise taken away
MIN_CONTRAST = 40.0  # ink must differ from the background by this much (0-255) to count
MIN_EXTENT = 0.08    # ink spanning less than this fraction of the picture is a speck, not a digit
COARSE_SIDE = 56     # larger pictures find their pieces of ink on a grid this coarse: fast, and the same
CHUNK = 2048         # pictures processed at once: bounded memory for any batch


@dataclass(frozen=True)
class Normalised:
    """``images`` uint8 (N, 28, 28) in MNIST's form; ``found`` bool (N,), False where there was
    no ink worth reading (that image is then all zeros)."""

    images: np.ndarray
    found: np.ndarray


def check_normalisation(name: object, where: str = "normalise") -> Normalisation:
    """``name`` itself when it is a known normalisation, else a one-line DataError naming ``where``."""
    if name not in NORMALISATIONS:
        raise DataError(f"{where}: expected one of {', '.join(NORMALISATIONS)}, got {name!r}")
    return name  # type: ignore[return-value]


def normalise(images: np.ndarray, how: str = "mnist") -> np.ndarray:
    """``images`` (N, 28, 28) pixels 0-255 as the model reads them under normalisation ``how``:
    ``"none"`` leaves them as they are; ``"mnist"`` puts each into MNIST's form
    (:func:`mnist_form`); ``"ink"`` takes away only what is not ink (:func:`ink_only`) and
    leaves the digit where it is and as large as it is. A row with no ink worth reading is
    kept as it was. uint8 (N, 28, 28)."""
    check_normalisation(how)
    images = np.asarray(images)
    if how == "none":
        return images
    result = mnist_form(images) if how == "mnist" else ink_only(images)
    kept = np.rint(np.clip(images.reshape(result.images.shape), 0, 255)).astype(np.uint8)
    return np.where(result.found[:, None, None], result.images, kept)


# How a model trained under each normalisation reads a picture: in every form listed, its
# probabilities averaged over them. MNIST's form fits the ink's box, which anything joined to the
# digit widens (a line drawn through it, the outline of hollow strokes), and the digit shrinks; the
# picture as it stands (``ink``: light and contrast taken away, nothing moved) keeps the digit's
# size and place, which is MNIST's already for a 28x28 row, and a model trained with geometric
# augmentation reads it. Where one form misleads, the other's surer answer carries the average.
READINGS: dict[str, tuple[Normalisation, ...]] = {"none": ("none",), "mnist": ("mnist", "ink"), "ink": ("ink",)}


def readings(images: np.ndarray, how: str = "mnist") -> np.ndarray:
    """``images`` (N, 28, 28) pixels 0-255 in each form a model trained under normalisation
    ``how`` reads them (``READINGS[how]``, each by :func:`normalise`), stacked (N, V, 28, 28):
    uint8, or the input's own type for ``"none"``."""
    check_normalisation(how)
    images = np.asarray(images)
    return np.stack([normalise(images, form) for form in READINGS[how]], axis=1)


def normalise_set(data: DigitSet, how: str = "mnist") -> DigitSet:
    """``data`` with its images normalised by ``how`` (:func:`normalise`), labels kept."""
    if how == "none":
        return data
    return DigitSet(normalise(data.images, how), data.labels, data.origin)


def mnist_form(pictures: np.ndarray) -> Normalised:
    """A batch of grayscale pictures (N, H, W), light ink on a dark background, values 0-255,
    in MNIST's form: background, noise floor and contrast taken away, the robust ink box scaled
    to fit 20x20 (aspect kept, anti-aliased), centred by mass in a 28x28 field."""
    return _in_chunks(pictures, _mnist_form, (SIZE, SIZE))


def _in_chunks(pictures: np.ndarray, form: Callable[[np.ndarray], Normalised],
               side: tuple[int, ...] | None) -> Normalised:
    """``form`` applied CHUNK pictures at a time (bounded memory); ``side``: the shape of its
    output pictures, None for the input's."""
    pictures = np.asarray(pictures, np.float32)
    if pictures.ndim != 3 or min(pictures.shape[1:], default=0) < 1:
        raise DataError(f"expected grayscale pictures (N, H, W), got shape {pictures.shape}")
    parts = [form(pictures[start:start + CHUNK]) for start in range(0, len(pictures), CHUNK)]
    if not parts:
        return Normalised(np.zeros((0,) + (side or pictures.shape[1:]), np.uint8), np.zeros(0, bool))
    return Normalised(np.concatenate([p.images for p in parts]), np.concatenate([p.found for p in parts]))


def _mnist_form(x: np.ndarray) -> Normalised:
    ink, contrast = ink_of(x)
    kept = _kept_ink(ink)
    box, extent = _box(kept)
    box = _with_faint_edges(ink, kept, box)
    side = max(x.shape[1:])
    found = contrast & (extent >= max(3, MIN_EXTENT * side))
    fitted = _fit(ink, box)
    peak = fitted[:, PAD:PAD + BOX, PAD:PAD + BOX].max(axis=(1, 2), keepdims=True)
    # Thin strokes scaled down turn grey; MNIST's strokes peak at full white.
    fitted = fitted * (255.0 / np.where(peak > 0, peak, 1.0))
    placed = _place_by_mass(fitted, box)
    images = np.where(found[:, None, None], np.rint(np.clip(placed, 0.0, 255.0)), 0).astype(np.uint8)
    return Normalised(images, found)


def ink_only(pictures: np.ndarray) -> Normalised:
    """A batch of grayscale pictures (N, H, W), light ink on a dark background, values 0-255,
    with the background, the noise floor and the contrast taken away (:func:`ink_of`) and
    nothing moved or scaled.

    Why a second normalisation: fitting the ink box lets anything joined to the digit (a line
    drawn through it) widen the box and shrink the digit, where a model trained to read digits
    at any position and size (geometric augmentation) is not misled; the light, the paper and
    the contrast are what augmentation covers worst."""
    return _in_chunks(pictures, _ink_only, None)


def _ink_only(x: np.ndarray) -> Normalised:
    ink, contrast = ink_of(x)
    return Normalised(np.where(contrast[:, None, None], np.rint(ink), 0).astype(np.uint8), contrast)


# --- what is ink -----------------------------------------------------------------------------

def ink_of(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ink float32 (N, H, W) 0-255 on a zero background, contrast bool (N,): False where no ink
    stands out of the background by MIN_CONTRAST)."""
    k = _odd(OPENING * min(x.shape[1:]))
    # A grey opening (the min over a k x k square, then the max) keeps everything wider than a
    # stroke: the paper, its light and shadows, fog, a brightened background, blocks of colour
    # reaching in from the border (the edge is repeated, so half a square is enough there).
    background = _running(_running(x, k, np.minimum), k, np.maximum)
    residual = x - background
    # Most of a digit's picture is background: the median residual is the noise the opening
    # leaves (zero on MNIST's clean rows, which therefore pass through unchanged).
    floor = NOISE_FLOOR * np.median(residual.reshape(len(x), -1), axis=1)[:, None, None]
    top = residual.reshape(len(x), -1).max(axis=1)[:, None, None]
    stretch = top - floor
    contrast = (top[:, 0, 0] >= MIN_CONTRAST) & (stretch[:, 0, 0] > 0)
    ink = np.clip((residual - floor) * (255.0 / np.where(stretch > 0, stretch, 1.0)), 0.0, 255.0)
    return ink.astype(np.float32), contrast


def _odd(size: float) -> int:
    return max(1, int(round(size)) // 2 * 2 + 1)


def _running(x: np.ndarray, k: int, op) -> np.ndarray:
    """``op`` (np.minimum / np.maximum) over a k x k square centred on each pixel, the edge
    repeated beyond the border: by doubling windows, O(log k) passes per axis."""
    for axis in (1, 2):
        x = np.moveaxis(x, axis, -1)
        n, r = x.shape[-1], k // 2
        m = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(r, r)], mode="edge")
        width = 1
        while 2 * width <= k:  # m[..., i] covers the padded pixels i .. i + width - 1
            m = op(m[..., :-width], m[..., width:])
            width *= 2
        x = np.moveaxis(op(m[..., :n], m[..., k - width:k - width + n]), -1, axis)
    return x


# --- the robust box --------------------------------------------------------------------------

def _kept_ink(ink: np.ndarray) -> np.ndarray:
    """bool (N, H, W): the ink pixels of the connected pieces (8-neighbours) that carry at least
    KEEP of the largest piece's mass; specks, spatter and the dots of a line fall away. Large
    pictures find their pieces on a coarse grid and keep the ink inside them."""
    mask = ink >= INK_LEVEL * 255.0
    height, width = mask.shape[1:]
    factor = math.ceil(max(height, width) / COARSE_SIDE)
    if factor == 1:
        return _large_pieces(mask, ink)
    pad = ((0, 0), (0, -height % factor), (0, -width % factor))
    coarse_shape = (len(ink), (height + pad[1][1]) // factor, factor, (width + pad[2][1]) // factor, factor)
    coarse_mask = np.pad(mask, pad).reshape(coarse_shape).any(axis=(2, 4))
    coarse_ink = np.pad(ink * mask, pad).reshape(coarse_shape).sum(axis=(2, 4))
    kept = _large_pieces(coarse_mask, coarse_ink).repeat(factor, axis=1).repeat(factor, axis=2)
    return mask & kept[:, :height, :width]


def _large_pieces(mask: np.ndarray, mass: np.ndarray) -> np.ndarray:
    labels = _components(mask)
    count, cells = labels.shape[0], labels.shape[1] * labels.shape[2]
    flat = labels.reshape(count, cells)
    keys = (np.arange(count)[:, None] * (cells + 1) + flat).ravel()
    weights = np.where(mask, mass, 0.0).reshape(-1)
    masses = np.bincount(keys, weights=weights, minlength=count * (cells + 1)).reshape(count, cells + 1)
    masses[:, 0] = 0.0  # label 0: not ink
    keep = masses >= KEEP * masses.max(axis=1, keepdims=True)
    return np.take_along_axis(keep, flat, axis=1).reshape(mask.shape) & mask


def _components(mask: np.ndarray) -> np.ndarray:
    """int (N, H, W): each ink pixel labelled with the largest flat index (+1) of its piece, 0
    off the ink. The largest label among 8-neighbours spreads, and every label then jumps twice
    to the label of the pixel it names (pointer jumping), so long strokes settle in a few
    passes; each pass works on the pictures still changing only."""
    count, height, width = mask.shape
    dtype = np.int16 if height * width < 2**15 else np.int32  # half the memory traffic for 28x28
    index = np.arange(1, height * width + 1, dtype=dtype).reshape(1, height, width)
    labels = np.where(mask, index, 0).astype(dtype)
    active = np.arange(count)
    while len(active):
        here, on = labels[active], mask[active]
        new = np.where(on, _running_zero(here), 0).reshape(len(active), -1)
        for _ in range(2):
            new = np.maximum(new, np.take_along_axis(new, np.maximum(new - 1, 0), axis=1) * (new > 0))
        new = new.reshape(here.shape)
        changed = (new != here).any(axis=(1, 2))
        labels[active] = new
        active = active[changed]
    return labels


def _running_zero(labels: np.ndarray) -> np.ndarray:
    """The max over each pixel's 3x3 neighbourhood, nothing beyond the border."""
    p = np.pad(labels, ((0, 0), (1, 1), (1, 1)))
    rows = np.maximum(np.maximum(p[:, :-2], p[:, 1:-1]), p[:, 2:])
    return np.maximum(np.maximum(rows[:, :, :-2], rows[:, :, 1:-1]), rows[:, :, 2:])


def _box(kept: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """((N, 4) int top, bottom, left, right (exclusive ends), extent (N,): the longer side, 0
    where there is no ink)."""
    rows, cols = kept.any(axis=2), kept.any(axis=1)

    def span(on: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        first = on.argmax(axis=1)
        last = on.shape[1] - on[:, ::-1].argmax(axis=1)
        return first, np.where(on.any(axis=1), last, first)

    top, bottom = span(rows)
    left, right = span(cols)
    box = np.stack([top, bottom, left, right], axis=1)
    return box, np.maximum(bottom - top, right - left)


def _with_faint_edges(ink: np.ndarray, kept: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The box of the kept ink and the faint ink (above zero, under INK_LEVEL) within FRINGE
    output pixels of the robust box: the robust box says where the digit is, this one where its
    ink ends, as MNIST's box does. Strong ink that was not kept (a speck, a dot) stays out."""
    top, bottom, left, right = box.T
    margin = np.ceil(FRINGE * np.maximum(np.maximum(bottom - top, right - left), 1) / BOX).astype(np.int64)
    rows, cols = np.arange(ink.shape[1]), np.arange(ink.shape[2])
    reach = margin[:, None]
    near_rows = (rows[None, :] >= top[:, None] - reach) & (rows[None, :] < bottom[:, None] + reach)
    near_cols = (cols[None, :] >= left[:, None] - reach) & (cols[None, :] < right[:, None] + reach)
    near = near_rows[:, :, None] & near_cols[:, None, :]
    wider, _ = _box((kept | ((ink > 0) & (ink < INK_LEVEL * 255.0))) & near)
    return np.where((bottom > top)[:, None], wider, box)


# --- scaled to 20x20 and centred -------------------------------------------------------------

def _fit(ink: np.ndarray, box: np.ndarray) -> np.ndarray:
    """float (N, 28, 28): each box's ink scaled so its longer side is 20, aspect kept, the box's
    corner at (PAD, PAD). One resampling matrix per axis and picture (a triangle filter as wide
    as the scale: anti-aliased), so the whole batch is two batched matrix products."""
    top, bottom, left, right = box.T
    longer = np.maximum(np.maximum(bottom - top, right - left), 1)
    scale = BOX / longer
    down = _resampling(top, bottom, scale, ink.shape[1])     # (N, 28, H)
    across = _resampling(left, right, scale, ink.shape[2])   # (N, 28, W)
    return down @ ink @ across.transpose(0, 2, 1)


def _resampling(start: np.ndarray, end: np.ndarray, scale: np.ndarray, length: int) -> np.ndarray:
    out = np.arange(SIZE, dtype=np.float64)[None, :, None]                   # output pixel o
    source = np.arange(length, dtype=np.float64)[None, None, :]              # input pixel i
    start, end, scale = (np.asarray(v, np.float64)[:, None, None] for v in (start, end, scale))
    centre = start + (out - PAD + 0.5) / scale - 0.5                         # where o samples
    support = np.maximum(1.0, 1.0 / scale)
    weights = np.maximum(0.0, 1.0 - np.abs(source - centre) / support)
    size = np.maximum(np.rint((end - start) * scale), 1)                    # output pixels of the box
    inside = (source >= start) & (source < end) & (out >= PAD) & (out < PAD + size)
    weights = np.where(inside, weights, 0.0)
    total = weights.sum(axis=2, keepdims=True)
    return (weights / np.where(total > 0, total, 1.0)).astype(np.float32)


def _place_by_mass(fitted: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Shift each fitted digit so its centre of mass sits at MNIST's centre: whole pixels, as
    MNIST did, the box kept inside the field when the mass is far off-centre."""
    top, bottom, left, right = box.T
    longer = np.maximum(np.maximum(bottom - top, right - left), 1)
    height = np.maximum(np.rint((bottom - top) * BOX / longer), 1).astype(np.int64)
    width = np.maximum(np.rint((right - left) * BOX / longer), 1).astype(np.int64)
    total = fitted.sum(axis=(1, 2))
    safe = np.where(total > 0, total, 1.0)
    index = np.arange(SIZE)
    mass_row = (fitted.sum(axis=2) * index).sum(axis=1) / safe
    mass_col = (fitted.sum(axis=1) * index).sum(axis=1) / safe
    down = np.clip(np.floor(CENTRE - mass_row + 0.5), -PAD, SIZE - PAD - height).astype(np.int64)
    across = np.clip(np.floor(CENTRE - mass_col + 0.5), -PAD, SIZE - PAD - width).astype(np.int64)
    rows = index[None, :] - down[:, None]                                    # (N, 28) source rows
    cols = index[None, :] - across[:, None]
    shifted = np.take_along_axis(fitted, np.clip(rows, 0, SIZE - 1)[:, :, None], axis=1)
    shifted = shifted * ((rows >= 0) & (rows < SIZE))[:, :, None]
    shifted = np.take_along_axis(shifted, np.clip(cols, 0, SIZE - 1)[:, None, :], axis=2)
    return shifted * ((cols >= 0) & (cols < SIZE))[:, None, :]
