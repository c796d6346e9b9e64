"""MNIST's preprocessing for any picture of one digit: the 28x28 image the model expects.

MNIST's digits were made this way (LeCun et al.): the ink's bounding box scaled to fit
20x20 keeping the aspect ratio, anti-aliased, then placed in a 28x28 field so that the
centre of mass sits at the centre. A canvas drawing, a phone photo or a scan goes through
the same steps (``digits.data.normalise``, shared with CSV rows and API pixels), so the model
sees what it was trained on. The page, the API and ``digits predict-image`` all call
:func:`prepare_digit`; nothing here imports torch.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from digits.data.normalise import MIN_CONTRAST, SIZE, mnist_form
from digits.errors import InputError

WORK_SIDE = 1024     # large pictures are first reduced to this side: plenty for a 20x20 result
FORMATS = ("PNG", "JPEG")
MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")  # the first bytes of every PNG and JPEG file


@dataclass(frozen=True)
class Limits:
    """What one request may hold; anything bigger is refused before it is read or decoded."""

    max_body_bytes: int = 10 * 2**20   # whole request body
    max_pixels: int = 25_000_000       # width x height of one image, checked before decoding
    max_side: int = 10_000             # longest side of one image, pixels
    max_batch: int = 256               # images in one request


@dataclass(frozen=True)
class PreparedDigit:
    """The model's input for one picture: ``image`` uint8 (28, 28), light ink on black.

    ``found`` is False for a blank or near-blank picture; ``image`` is then all zeros and
    no prediction should be made from it.
    """

    image: np.ndarray
    found: bool


def decode_image(data: bytes, limits: Limits = Limits()) -> np.ndarray:
    """Decode a PNG or JPEG into grayscale float32 (H, W), 0-255, as it looks (no inversion).

    The size is checked from the header before any pixel is decoded, so a decompression
    bomb costs nothing. Transparent areas count as white paper.
    """
    if len(data) > limits.max_body_bytes:
        raise InputError(f"image of {len(data):,} bytes is over the limit of {limits.max_body_bytes:,}", 413)
    if not data:
        raise InputError("empty image: send the bytes of a PNG or JPEG file")
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as img:  # reads the header only
            _check_size(img.size, limits)
            if img.format == "JPEG":
                img.draft("L", (WORK_SIDE, WORK_SIDE))  # JPEG can decode at 1/2..1/8 scale: fast
            gray = _to_gray(ImageOps.exif_transpose(img))
    except Image.DecompressionBombError as exc:
        raise InputError(f"image too large to decode: {exc}", 413) from None
    except UnidentifiedImageError:
        if data.startswith(MAGIC):  # it says PNG or JPEG, but its header does not parse
            raise InputError("broken image: a PNG or JPEG signature but an unreadable header") from None
        raise InputError("not a PNG or JPEG image (unrecognised or unsupported format)", 415) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"broken image: cannot decode it ({exc})") from None
    gray.thumbnail((WORK_SIDE, WORK_SIDE), Image.Resampling.LANCZOS)
    return np.asarray(gray, dtype=np.float32)


def _check_size(size: tuple[int, int], limits: Limits) -> None:
    width, height = size
    if width * height > limits.max_pixels or max(width, height) > limits.max_side:
        raise InputError(f"image of {width}x{height} pixels is over the limit of {limits.max_pixels:,} "
                         f"pixels and {limits.max_side} per side", 413)
    if width < 1 or height < 1:
        raise InputError(f"image of {width}x{height} pixels has no pixels")


def _to_gray(img: Image.Image) -> Image.Image:
    # Canvas exports and many scans are transparent where nothing was drawn: paper is white.
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(paper, rgba).convert("L")
    if img.mode.startswith("I;16") or img.mode == "I":
        return img.point(lambda v: v / 256).convert("L")  # 16-bit scans
    return img.convert("L")


def pixels_from_json(values: Any, where: str = "pixels") -> np.ndarray:
    """Check a JSON pixel array (28 rows of 28 or a flat 784) of numbers 0-255; float32 (28, 28).

    Every message names the offending position, so a client can fix its request.
    """
    if not isinstance(values, list):
        raise InputError(f"{where}: expected a list of 28 rows of 28 numbers or a flat list of 784, "
                         f"got {type(values).__name__}")
    if len(values) == SIZE * SIZE:
        flat = values
    elif len(values) == SIZE and all(isinstance(row, list) for row in values):
        for r, row in enumerate(values):
            if len(row) != SIZE:
                raise InputError(f"{where}[{r}]: expected 28 values, got {len(row)}")
        flat = [v for row in values for v in row]
    else:
        raise InputError(f"{where}: expected 28 rows of 28 numbers or a flat list of 784, "
                         f"got a list of {len(values)}")
    for i, value in enumerate(flat):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(f"{where}: value {_position(values, i)} is {value!r}, not a number")
        if not 0 <= value <= 255:  # also false for NaN
            raise InputError(f"{where}: value {_position(values, i)} = {value!r} is outside 0-255")
    return np.asarray(flat, dtype=np.float32).reshape(SIZE, SIZE)


def _position(values: list[Any], index: int) -> str:
    return f"[{index}]" if len(values) == SIZE * SIZE else f"[{index // SIZE}][{index % SIZE}]"


def prepare_digit(gray: np.ndarray) -> PreparedDigit:
    """MNIST's steps on a grayscale picture (H, W) of one digit, values 0-255.

    Dark ink on light paper (the border is mostly light) is inverted to light on dark; the rest
    is :func:`digits.data.normalise.mnist_form`, the one normalisation CSV rows and API pixels
    go through too: background and noise taken away, the robust ink box fitted to 20x20,
    centred by mass.
    """
    gray = np.asarray(gray, dtype=np.float32)
    if gray.ndim != 2 or gray.size == 0:
        raise InputError(f"expected one grayscale image (H, W), got shape {gray.shape}")
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    if float(np.median(border)) > 127.5:  # dark on light, like paper: MNIST is light on dark
        gray, border = 255.0 - gray, 255.0 - border
    if not _stands_out_of_its_border(gray, border):
        return PreparedDigit(np.zeros((SIZE, SIZE), np.uint8), False)
    result = mnist_form(gray[None])
    return PreparedDigit(result.images[0], bool(result.found[0]))


def _stands_out_of_its_border(gray: np.ndarray, border: np.ndarray) -> bool:
    """Whether some ink rises above the picture's border by MIN_CONTRAST once the border's own
    spread (paper grain, sensor noise) is allowed for: a picture of noise is as busy at its border
    as inside, and holds nothing to read. Measured on the ink's side of the background (the
    90th percentile ignores ink that touches the border); three times it is about 4 sigma of
    Gaussian noise. ``border``: the picture's outermost pixels, as ``gray`` holds them."""
    background = float(np.median(border))
    noise = 3.0 * float(np.percentile(np.maximum(border - background, 0.0), 90))
    return float(gray.max()) - background - noise >= MIN_CONTRAST
