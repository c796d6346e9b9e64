"""The 15 corruptions of MNIST-C (Mu & Gilmer 2019, "MNIST-C: A Robustness Benchmark for Computer
Vision"), for the robustness benchmark and nothing else.

Re-implemented from the paper and the definitions in the authors' public code
(github.com/google-research/mnist-c, ``corruptions.py``) with numpy and scipy, so neither
scikit-image, OpenCV nor ImageMagick (``wand``) is needed. Where that code reached for one of
those, the comment says how the numpy version follows it. MNIST-C applies each corruption at
one severity, the default of its function (``published`` below); those with five levels accept
``severity=1..5`` too, for a sweep.

Every function takes light-on-dark digits, uint8 (N, 28, 28), and a seeded
``numpy.random.Generator``, and returns uint8 (N, 28, 28): the same seed gives the same images.
The published code draws its random numbers image by image from NumPy's global state; here each
call draws them for the whole batch from ``rng``, so the images differ from MNIST-C's files while
following the same distribution.

MNIST-C's protocol: these corruptions are never used in training, or a figure on them would say
nothing about the shifts users bring. Nothing under ``src/digits`` imports this module
(``tests/test_robustness.py`` checks it).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

SIDE = 28
CENTRE = 13.5  # the point MNIST-C's affine corruptions keep fixed (the middle of 28 pixels)

Images = np.ndarray  # uint8 (N, 28, 28), light ink on black


# --- helpers -------------------------------------------------------------------------------------

def _unit(images: Images) -> np.ndarray:
    """uint8 (N, 28, 28) -> float64 in [0, 1], checked."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (SIDE, SIDE):
        raise ValueError(f"expected uint8 digits (N, 28, 28), got {images.dtype} {images.shape}")
    return images.astype(np.float64) / 255.0


def _to_uint8(unit: np.ndarray) -> Images:
    """[0, 1] floats -> uint8 0-255, rounded (MNIST-C's files hold uint8 too)."""
    return np.rint(np.clip(unit, 0.0, 1.0) * 255.0).astype(np.uint8)


def _blur(x: np.ndarray, sigma: float | tuple[float, float], mode: str = "nearest") -> np.ndarray:
    """scikit-image's ``filters.gaussian`` on each image of a batch: scipy's Gaussian filter
    with its defaults there (mode ``nearest``, truncated at 4 sigma); ``sigma`` per (row, column)."""
    rows, cols = sigma if isinstance(sigma, tuple) else (sigma, sigma)
    return ndimage.gaussian_filter(x, sigma=(0.0, rows, cols), mode=mode, truncate=4.0)


def _warp(x: np.ndarray, matrices: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """scikit-image's ``transform.warp(x, inverse_map=affine)`` for a batch: each output pixel
    (column, row) samples the input at ``matrix @ (column, row) + shift``, bilinearly, zero
    outside the image (skimage's ``constant`` mode interpolates towards the zero beyond the
    edge, which is scipy's ``grid-constant``). ``matrices`` (N, 2, 2), ``shifts`` (N, 2)."""
    count = len(x)
    rows, cols = np.mgrid[0:SIDE, 0:SIDE].astype(np.float64)
    src_col = (matrices[:, 0, 0, None, None] * cols + matrices[:, 0, 1, None, None] * rows
               + shifts[:, 0, None, None])
    src_row = (matrices[:, 1, 0, None, None] * cols + matrices[:, 1, 1, None, None] * rows
               + shifts[:, 1, None, None])
    # The image index is a coordinate too: a whole number, so it is read exactly, never blended.
    index = np.broadcast_to(np.arange(count, dtype=np.float64)[:, None, None], src_row.shape)
    return ndimage.map_coordinates(x, [index, src_row, src_col], order=1, mode="grid-constant", cval=0.0)


def _about_centre(matrices: np.ndarray) -> np.ndarray:
    """The shift that keeps the image centre (13.5, 13.5) in place under ``matrices``, as
    MNIST-C computes it: ``13.5 * (1 - a1 - a2)`` per row of the matrix."""
    return CENTRE * (1.0 - matrices.sum(axis=2))


def _random_signs(rng: np.random.Generator, shape: int | tuple[int, ...]) -> np.ndarray:
    """-1 or +1 with equal chance: MNIST-C flips the direction of shear, rotation and shift."""
    return rng.choice(np.array([-1.0, 1.0]), size=shape)


def _line(c0: np.ndarray, r0: np.ndarray, c1: np.ndarray, r1: np.ndarray) -> np.ndarray:
    """MNIST-C's ``line_from_points`` for a batch: a soft line of about 2.3 pixels from
    (c0, r0) towards (c1, r1), intensity ``log(1 - d / 2.3) + 1`` at distance d, nothing left of
    column floor(c0) or from column ceil(c1) on; a vertical line (c1 == c0) draws nothing."""
    c0, r0, c1, r1 = (np.asarray(v, np.float64).reshape(-1, 1, 1) for v in (c0, r0, c1, r1))
    cols = np.arange(SIDE, dtype=np.float64).reshape(1, 1, SIDE)
    rows = np.arange(SIDE, dtype=np.float64).reshape(1, SIDE, 1)
    vertical = c1 == c0
    slope = np.where(vertical, 0.0, (r1 - r0) / np.where(vertical, 1.0, c1 - c0))
    distance = np.clip(np.abs(rows - (slope * (cols - c0) + r0)), 0.0, 2.3 - 1e-10)
    ink = np.clip(np.log(1.0 - distance / 2.3) + 1.0, 0.0, 1.0)
    inside = (cols >= np.floor(c0)) & (cols < np.ceil(c1))
    return np.where(inside & ~vertical, ink, 0.0)


# --- noise ---------------------------------------------------------------------------------------

SHOT_NOISE = (60, 25, 12, 5, 3)  # photons per unit of intensity: fewer is noisier


def shot_noise(images: Images, rng: np.random.Generator, severity: int = 5) -> Images:
    """Poisson noise: each pixel a photon count of mean ``x * c``, divided by ``c``."""
    c = SHOT_NOISE[severity - 1]
    return _to_uint8(rng.poisson(_unit(images) * c) / c)


IMPULSE_NOISE = (0.03, 0.06, 0.09, 0.17, 0.27)  # fraction of pixels replaced


def impulse_noise(images: Images, rng: np.random.Generator, severity: int = 4) -> Images:
    """Salt and pepper (scikit-image's ``random_noise(mode="s&p")``): a fraction of the pixels,
    chosen at random, set to white or black with equal chance."""
    x = _unit(images)
    flipped = rng.random(x.shape) < IMPULSE_NOISE[severity - 1]
    salted = rng.random(x.shape) < 0.5
    x[flipped & salted] = 1.0
    x[flipped & ~salted] = 0.0
    return _to_uint8(x)


# --- blur ----------------------------------------------------------------------------------------

GLASS_BLUR = ((0.7, 1, 2), (0.9, 2, 1), (1.0, 2, 3), (1.1, 3, 2), (1.5, 4, 2))  # sigma, reach, passes


def glass_blur(images: Images, rng: np.random.Generator, severity: int = 1) -> Images:
    """Blur, shuffle each pixel with a random neighbour (as frosted glass does), blur again.

    As MNIST-C computes it: scikit-image's ``gaussian(..., multichannel=True)`` on a 2-D image
    takes the columns for colour channels, so both blurs run down the rows only; the first
    result is truncated to uint8 before the shuffle. The shuffle visits rows and columns from
    the bottom right, in order, each pixel swapped with half a chance with one at most ``reach``
    away: one visit at a time, as swaps depend on earlier ones, but all images at once."""
    sigma, reach, passes = GLASS_BLUR[severity - 1]
    x = (_blur(_unit(images), (sigma, 0.0)) * 255.0).astype(np.uint8)
    count = len(x)
    for _ in range(passes):
        for h in range(SIDE - reach, reach, -1):
            for w in range(SIDE - reach, reach, -1):
                chosen = np.flatnonzero(rng.random(count) < 0.5)
                dx, dy = rng.integers(-reach, reach, size=(2, len(chosen)))  # randint: reach excluded
                here = x[chosen, h, w].copy()
                x[chosen, h, w] = x[chosen, h + dy, w + dx]
                x[chosen, h + dy, w + dx] = here
    return _to_uint8(_blur(x / 255.0, (sigma, 0.0)))


MOTION_BLUR = ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15))  # ImageMagick radius, sigma


def motion_blur(images: Images, rng: np.random.Generator, severity: int = 1) -> Images:
    """A blur along one direction, at a random angle in [-45, 45] degrees.

    MNIST-C calls ImageMagick's ``MotionBlurImage(radius, sigma, angle)``, which this follows:
    a one-sided Gaussian kernel of ``2 * radius + 1`` taps, ``exp(-i**2 / (2 sigma**2))``
    normalised, tap i reading the pixel ``i`` steps along the angle (offsets rounded as
    ImageMagick rounds them, ``ceil(v - 0.5)``), pixels beyond the edge repeating the edge
    (its default virtual-pixel method); the result quantised to 8 bits as its PNG was."""
    radius, sigma = MOTION_BLUR[severity - 1]
    taps = np.arange(2 * radius + 1, dtype=np.float64)
    kernel = np.exp(-taps**2 / (2.0 * sigma**2))
    kernel /= kernel.sum()
    angle = np.radians(rng.uniform(-45.0, 45.0, size=len(images)))
    step_cols = np.ceil(taps[None, :] * np.cos(angle)[:, None] - 0.5).astype(np.int64)  # (N, taps)
    step_rows = np.ceil(taps[None, :] * np.sin(angle)[:, None] - 0.5).astype(np.int64)
    x = _unit(images) * 255.0
    rows, cols = np.mgrid[0:SIDE, 0:SIDE]
    index = np.arange(len(images))[:, None, None]
    out = np.zeros_like(x)
    for i, weight in enumerate(kernel):
        r = np.clip(rows[None] + step_rows[:, i, None, None], 0, SIDE - 1)
        c = np.clip(cols[None] + step_cols[:, i, None, None], 0, SIDE - 1)
        out += weight * x[index, r, c]
    return np.rint(np.clip(out, 0, 255)).astype(np.uint8)


# --- affine --------------------------------------------------------------------------------------

SHEAR = (0.2, 0.4, 0.6, 0.8, 1.0)       # shear angle, radians
ROTATE = (0.2, 0.4, 0.6, 0.8, 1.0)      # rotation, radians
SCALE = (1 / 0.9, 1 / 0.8, 1 / 0.7, 1 / 0.6, 1 / 0.5)  # inverse-map scale: the digit shrinks by 1/c
TRANSLATE = (1, 2, 3, 4, 5)             # pixels along each axis


def _centred_warp(images: Images, matrices: np.ndarray) -> Images:
    return _to_uint8(_warp(_unit(images), matrices, _about_centre(matrices)))


def shear(images: Images, rng: np.random.Generator, severity: int = 2) -> Images:
    """A horizontal shear about the centre, to the left or the right at random: scikit-image's
    ``AffineTransform(shear=c)`` as an inverse map, ``[[1, -sin c], [0, cos c]]``."""
    c = SHEAR[severity - 1] * _random_signs(rng, len(images))
    zero, one = np.zeros_like(c), np.ones_like(c)
    matrices = np.stack([np.stack([one, -np.sin(c)], 1), np.stack([zero, np.cos(c)], 1)], 1)
    return _centred_warp(images, matrices)


def rotate(images: Images, rng: np.random.Generator, severity: int = 2) -> Images:
    """A rotation about the centre by ``c`` radians, either way at random."""
    c = ROTATE[severity - 1] * _random_signs(rng, len(images))
    matrices = np.stack([np.stack([np.cos(c), -np.sin(c)], 1), np.stack([np.sin(c), np.cos(c)], 1)], 1)
    return _centred_warp(images, matrices)


def scale(images: Images, rng: np.random.Generator, severity: int = 3) -> Images:
    """The digit shrunk about the centre (to 0.7 of its size at MNIST-C's severity). ``rng`` is
    unused: MNIST-C's scale has no randomness."""
    matrices = np.broadcast_to(np.eye(2) * SCALE[severity - 1], (len(images), 2, 2)).copy()
    return _centred_warp(images, matrices)


def translate(images: Images, rng: np.random.Generator, severity: int = 3) -> Images:
    """A shift by ``c`` pixels along both axes, each direction chosen at random."""
    shifts = TRANSLATE[severity - 1] * _random_signs(rng, (len(images), 2))
    matrices = np.broadcast_to(np.eye(2), (len(images), 2, 2)).copy()
    return _to_uint8(_warp(_unit(images), matrices, shifts))


# --- intensity -----------------------------------------------------------------------------------

BRIGHTNESS = (0.1, 0.2, 0.3, 0.4, 0.5)  # added to HSV value


def brightness(images: Images, rng: np.random.Generator, severity: int = 5) -> Images:
    """Every pixel brighter by ``c``. MNIST-C goes grey -> RGB -> HSV, adds ``c`` to the value
    (clipped to 1), and back to grey; for a grey pixel the value is the grey level itself and
    the saturation is 0, and skimage's ``rgb2gray`` weights sum to 1, so that round trip is
    ``min(x + c, 1)``. ``rng`` is unused."""
    return _to_uint8(_unit(images) + BRIGHTNESS[severity - 1])


def stripe(images: Images, rng: np.random.Generator) -> Images:
    """The seven columns at each side inverted (black to white). ``rng`` is unused."""
    _unit(images)
    out = images.copy()
    out[:, :, :7] = 255 - out[:, :, :7]
    out[:, :, 21:] = 255 - out[:, :, 21:]
    return out


FOG = ((1.5, 2.0), (2.0, 2.0), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4))  # strength, roughness decay
FOG_CHUNK = 64  # plasma maps made at once: 64 x 256 x 256 floats is 32 MiB


def _plasma(rng: np.random.Generator, count: int, decay: float, size: int = 256) -> np.ndarray:
    """(count, size, size) diamond-square height maps in [0, 1], as MNIST-C's ``plasma_fractal``
    makes them (after FLHerne/mapgen): the first corner 0, each new point the mean of its
    corners plus noise ``wibble * U(-wibble, wibble)``, wibble starting at 100 and divided by
    ``decay`` at each halving of the step; wrapping at the edges."""
    maps = np.empty((count, size, size))
    maps[:, 0, 0] = 0.0
    step, wibble = size, 100.0

    def wibbled_mean(total: np.ndarray) -> np.ndarray:
        return total / 4 + wibble * rng.uniform(-wibble, wibble, total.shape)

    while step >= 2:
        half = step // 2
        corners = maps[:, 0::step, 0::step]
        squares = corners + np.roll(corners, -1, axis=1)
        squares = squares + np.roll(squares, -1, axis=2)
        maps[:, half::step, half::step] = wibbled_mean(squares)
        centres, corners = maps[:, half::step, half::step], maps[:, 0::step, 0::step]
        across = centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=2)
        maps[:, 0::step, half::step] = wibbled_mean(across)
        down = centres + np.roll(centres, 1, axis=2) + corners + np.roll(corners, -1, axis=1)
        maps[:, half::step, 0::step] = wibbled_mean(down)
        step //= 2
        wibble /= decay
    maps -= maps.min(axis=(1, 2), keepdims=True)
    return maps / maps.max(axis=(1, 2), keepdims=True)


def fog(images: Images, rng: np.random.Generator, severity: int = 5) -> Images:
    """A cloud of plasma noise added, then the whole rescaled so the digit's brightest pixel
    keeps its share: ``(x + c * plasma) * max / (max + c)``. The cloud is the top-left 28x28
    of a 256x256 map, as MNIST-C takes it."""
    strength, decay = FOG[severity - 1]
    x = _unit(images)
    plasma = np.concatenate([_plasma(rng, min(FOG_CHUNK, len(x) - start), decay)[:, :SIDE, :SIDE]
                             for start in range(0, len(x), FOG_CHUNK)]) if len(x) else np.zeros_like(x)
    peak = x.max(axis=(1, 2), keepdims=True)
    return _to_uint8((x + strength * plasma) * peak / (peak + strength))


SPATTER = ((0.65, 0.3, 4, 0.69, 0.6), (0.65, 0.3, 3, 0.68, 0.6), (0.65, 0.3, 2, 0.68, 0.5),
           (0.65, 0.3, 1, 0.65, 1.5), (0.67, 0.4, 1, 0.65, 1.5))  # mean, std, blur, threshold, mask blur


def spatter(images: Images, rng: np.random.Generator, severity: int = 4) -> Images:
    """Blots of mud (grey 63/255) over the digit: Gaussian noise blurred and thresholded into
    blots, whose mask is blurred again and kept where it is at least 0.8."""
    mean, std, sigma, threshold, mask_sigma = SPATTER[severity - 1]
    x = _unit(images)
    liquid = _blur(rng.normal(mean, std, size=x.shape), sigma)
    mask = _blur((liquid > threshold).astype(np.float64), mask_sigma)
    mask[mask < 0.8] = 0.0
    return _to_uint8(x * (1.0 - mask) + 63 / 255 * mask)


# --- occlusion -----------------------------------------------------------------------------------

def dotted_line(images: Images, rng: np.random.Generator) -> Images:
    """A dotted line across the whole image between random rows of its two sides: MNIST-C's
    soft line from column 0 to 27, with every other pair of columns blanked, starting with 0-1."""
    x = _unit(images)
    r0, r1 = rng.integers(0, 27, size=(2, len(x)))
    line = _line(np.zeros(len(x)), r0, np.full(len(x), 27.0), r1)
    line[:, :, (np.arange(SIDE) // 2) % 2 == 0] = 0.0  # MNIST-C's blanks: columns 0-1, 4-5, ..., 24-25
    return _to_uint8(x + line)


ZIGZAG_LENGTH, ZIGZAG_WIDTH = 2.0, 2.0  # each zig's run along the line and its height, pixels


def _zigzag_line(r0: int, drop: int) -> np.ndarray:
    """(28, 28) ink of one zigzag from column 2, row r0 to column 25, row r0 + drop, built as
    MNIST-C builds it: corners ``(2i + 1) a`` along the line alternating ``+-b`` across it, a
    last corner at the line's end, rotated to the line's slope; the segments' ink added, clipped."""
    a, b, c0, c1 = ZIGZAG_LENGTH, ZIGZAG_WIDTH, 2.0, 25.0
    theta = math.atan(drop / (c1 - c0))
    length = (c1 - c0) / math.cos(theta)
    corners = [(0.0, 0.0)]
    across = 0.0
    for i in range(int((length - a) // (2 * a)) + 1):
        across = (-1) ** i * b
        corners.append(((2 * i + 1) * a, across))
    whole = (2 * a) * (length // (2 * a))
    if length != whole:  # the published code's last corner, kept as it is
        corners.append((length, across / (2 * (length - whole))))
    along, side = np.array(corners).T
    cs = c0 + along * math.cos(theta) - side * math.sin(theta)
    rs = r0 + along * math.sin(theta) + side * math.cos(theta)
    return np.clip(_line(cs[:-1], rs[:-1], cs[1:], rs[1:]).sum(axis=0), 0.0, 1.0)


def zigzag(images: Images, rng: np.random.Generator) -> Images:
    """A zigzag line across the digit, from a random row on the left to within five rows of it
    on the right. Adding its segments one by one and clipping each time, as MNIST-C does, is
    the same as adding them all and clipping once (all ink is non-negative), so one line's
    ink is made once per (row, drop) pair and reused."""
    x = _unit(images)
    r0 = rng.integers(0, 27, size=len(x))
    drop = rng.integers(-5, 5, size=len(x))
    lines = {key: _zigzag_line(*key) for key in set(zip(r0.tolist(), drop.tolist()))}
    ink = np.stack([lines[key] for key in zip(r0.tolist(), drop.tolist())]) if len(x) else np.zeros_like(x)
    return _to_uint8(x + ink)


# --- edges ---------------------------------------------------------------------------------------

CANNY_SIGMA, CANNY_LOW, CANNY_HIGH = 1.0, 0.1, 0.2  # scikit-image's defaults for a float image


def _non_maximum(magnitude: np.ndarray, grad_rows: np.ndarray, grad_cols: np.ndarray) -> np.ndarray:
    """Canny's thinning, as scikit-image (after CellProfiler) does it: a pixel is kept when its
    gradient magnitude is at least that of the two points one step along the gradient either
    way, each interpolated between the two neighbours it falls between. Four sectors of
    direction, in scikit-image's order (a pixel on a sector boundary takes the last one's
    verdict); the one-pixel border is never an edge."""
    abs_r, abs_c = np.abs(grad_rows), np.abs(grad_cols)
    pad = np.pad(magnitude, ((0, 0), (1, 1), (1, 1)))

    def at(dr: int, dc: int) -> np.ndarray:
        return pad[:, 1 + dr:1 + dr + SIDE, 1 + dc:1 + dc + SIDE]

    same_sign = ((grad_rows >= 0) & (grad_cols >= 0)) | ((grad_rows <= 0) & (grad_cols <= 0))
    other_sign = ((grad_rows <= 0) & (grad_cols >= 0)) | ((grad_rows >= 0) & (grad_cols <= 0))
    # (sector, weight, [near, far] one way, [near, far] the other way), offsets in (row, column)
    sectors = [
        (same_sign & (abs_r >= abs_c), "c/r", ((1, 0), (1, 1)), ((-1, 0), (-1, -1))),
        (same_sign & (abs_r <= abs_c), "r/c", ((0, 1), (1, 1)), ((0, -1), (-1, -1))),
        (other_sign & (abs_r <= abs_c), "r/c", ((0, 1), (-1, 1)), ((0, -1), (1, -1))),
        (other_sign & (abs_r >= abs_c), "c/r", ((-1, 0), (-1, 1)), ((1, 0), (1, -1))),
    ]
    kept = np.zeros(magnitude.shape, bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        for sector, ratio, ahead, behind in sectors:
            w = abs_c / abs_r if ratio == "c/r" else abs_r / abs_c  # 0/0 is NaN: never a maximum
            plus = at(*ahead[1]) * w + at(*ahead[0]) * (1 - w) <= magnitude
            minus = at(*behind[1]) * w + at(*behind[0]) * (1 - w) <= magnitude
            kept[sector] = (plus & minus)[sector]
    kept[:, [0, -1], :] = False
    kept[:, :, [0, -1]] = False
    return kept


def _sobel(x: np.ndarray, axis: int) -> np.ndarray:
    """scipy's ``ndimage.sobel`` (mode ``reflect``, as scikit-image's canny calls it) along
    ``axis`` of each image: written out, since on a stack scipy's would also smooth across
    neighbouring images."""
    across = 2 if axis == 1 else 1
    derivative = ndimage.correlate1d(x, [-1.0, 0.0, 1.0], axis=axis, mode="reflect")
    return ndimage.correlate1d(derivative, [1.0, 2.0, 1.0], axis=across, mode="reflect")


def canny_edges(images: Images, rng: np.random.Generator) -> Images:
    """The digit's outline as white edges on black: scikit-image's ``feature.canny`` with its
    defaults (sigma 1, thresholds 0.1 and 0.2 of a float image), written with scipy. Smoothing
    as scikit-image does it (zero beyond the edge, divided by the smoothed all-ones mask),
    Sobel gradients, thinning (``_non_maximum``), then hysteresis: of the pixels above the low
    threshold, the 8-connected groups that hold one above the high threshold. ``rng`` is unused."""
    x = _unit(images)
    smooth = _blur(x, CANNY_SIGMA, mode="constant") / (_blur(np.ones_like(x), CANNY_SIGMA, mode="constant")
                                                       + np.finfo(float).eps)
    grad_rows, grad_cols = _sobel(smooth, 1), _sobel(smooth, 2)
    magnitude = np.hypot(grad_rows, grad_cols)
    thin = _non_maximum(magnitude, grad_rows, grad_cols)
    low, high = thin & (magnitude >= CANNY_LOW), thin & (magnitude >= CANNY_HIGH)
    within_image = np.zeros((3, 3, 3), bool)
    within_image[1] = True  # 8-connected inside one image, never across images
    groups, count = ndimage.label(low, structure=within_image)
    strong = np.zeros(count + 1, bool)
    strong[np.unique(groups[high])] = True
    strong[0] = False
    return (strong[groups] * 255).astype(np.uint8)


# --- the registry --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Corruption:
    """One MNIST-C corruption: its function and MNIST-C's severity (None: it has one form only)."""

    name: str
    function: Callable[..., Images]
    published: int | None

    @property
    def severities(self) -> tuple[int, ...]:
        """The severities it can be applied at: 1-5, or none to choose."""
        return (1, 2, 3, 4, 5) if self.published is not None else ()

    def __call__(self, images: Images, rng: np.random.Generator, severity: int | None = None) -> Images:
        """The corrupted digits, at ``severity`` (default: MNIST-C's)."""
        if self.published is None:
            if severity is not None:
                raise ValueError(f"{self.name} has one form only, no severity")
            return self.function(images, rng)
        severity = self.published if severity is None else severity
        if severity not in self.severities:
            raise ValueError(f"{self.name}: severity must be 1-5, got {severity}")
        return self.function(images, rng, severity)


# MNIST-C's 15, in the paper's order, at the severities its dataset was made with.
CORRUPTIONS: dict[str, Corruption] = {c.name: c for c in (
    Corruption("shot_noise", shot_noise, 5),
    Corruption("impulse_noise", impulse_noise, 4),
    Corruption("glass_blur", glass_blur, 1),
    Corruption("motion_blur", motion_blur, 1),
    Corruption("shear", shear, 2),
    Corruption("scale", scale, 3),
    Corruption("rotate", rotate, 2),
    Corruption("brightness", brightness, 5),
    Corruption("translate", translate, 3),
    Corruption("stripe", stripe, None),
    Corruption("fog", fog, 5),
    Corruption("spatter", spatter, 4),
    Corruption("dotted_line", dotted_line, None),
    Corruption("zigzag", zigzag, None),
    Corruption("canny_edges", canny_edges, None),
)}


def set_rng(seed: int, name: str) -> np.random.Generator:
    """A generator of its own for each test set: adding a set never changes another."""
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def corrupt_all(images: Images, seed: int = 0) -> dict[str, Images]:
    """The 15 corruptions of ``images`` at MNIST-C's severities, each drawn as robustness.py draws
    it for the same ``seed``: what calibration.py measures calibration and flagging under."""
    return {name: corruption(images, set_rng(seed, name)) for name, corruption in CORRUPTIONS.items()}
