"""Pictures of digits for the serving tests: canvas strokes, paper photos, a PNG bomb; and where the
real-digit fixture lies."""

from __future__ import annotations

import functools
import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

FIXTURES = Path(__file__).parent.parent / "fixtures"

# Hand-drawn digits as the page's canvas receives them: polylines in a 280x280 canvas.
STROKES: dict[int, list[list[tuple[float, float]]]] = {
    0: [[(140 + 55 * np.sin(t), 140 - 90 * np.cos(t)) for t in np.linspace(0, 2 * np.pi, 40)]],
    1: [[(135, 45), (140, 140), (142, 235)]],
    7: [[(80, 55), (200, 55), (150, 140), (115, 235)]],
    4: [[(170, 45), (80, 165), (205, 165)], [(165, 90), (165, 240)]],
}
LINE_WIDTH = 18  # as the page draws



def draw_strokes(strokes: list[list[tuple[float, float]]], size: int = 280,
                 width: int = LINE_WIDTH) -> Image.Image:
    """Black strokes with round ends on white, as the page's canvas draws them."""
    img = Image.new("L", (size, size), 255)
    pen = ImageDraw.Draw(img)
    for stroke in strokes:
        pen.line(stroke, fill=0, width=width, joint="curve")
        for x, y in (stroke[0], stroke[-1]):
            pen.ellipse((x - width / 2, y - width / 2, x + width / 2, y + width / 2), fill=0)
    return img


@functools.cache
def png_bomb(side: int = 20_000) -> bytes:
    """A valid all-black PNG of side x side pixels (400 million by default) in about 400 KB,
    made row by row so the test never holds the decoded image either."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    packer = zlib.compressobj(9)
    row = bytes(side + 1)  # filter byte + one 8-bit grey pixel per column
    idat = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)  # 8-bit greyscale, no interlace
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def encode(img: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **options)
    return out.getvalue()


def paper_photo(digit: np.ndarray, scale: int = 6, offset: tuple[int, int] = (40, 90)) -> Image.Image:
    """An MNIST digit as dark ink on light paper, bigger and off-centre, like a photo or scan."""
    big = Image.fromarray(255 - digit).resize((28 * scale, 28 * scale), Image.Resampling.BILINEAR)
    sheet = Image.new("L", (28 * scale + 150, 28 * scale + 150), 255)
    sheet.paste(big, offset)
    return sheet
