"""MNIST-style preprocessing: what the model sees for drawings, photos and MNIST digits."""

from __future__ import annotations

import time

import numpy as np
import pytest
from pictures import STROKES, draw_strokes, encode, paper_photo, png_bomb
from PIL import Image

from digits.errors import InputError
from digits.serve.preprocess import Limits, decode_image, pixels_from_json, prepare_digit


def _mass_centre(image: np.ndarray) -> tuple[float, float]:
    rows, cols = np.indices(image.shape)
    total = image.sum()
    return float((rows * image).sum() / total), float((cols * image).sum() / total)


def test_mnist_digits_come_through_nearly_unchanged(fixture_test):
    images, _ = fixture_test
    for digit in images[:100]:
        prepared = prepare_digit(digit)
        assert prepared.found
        assert np.abs(prepared.image.astype(int) - digit.astype(int)).max() <= 2


def test_dark_ink_on_light_paper_is_inverted_cropped_and_centred(fixture_test):
    digit = fixture_test[0][3]
    photo = np.asarray(paper_photo(digit), np.float32)
    prepared = prepare_digit(photo)
    assert prepared.found
    image = prepared.image.astype(np.float32)
    assert image[0].max() == 0 and image[:, 0].max() == 0  # black background, light ink
    ink = np.argwhere(image > 0)
    assert max(np.ptp(ink[:, 0]), np.ptp(ink[:, 1])) + 1 in (20, 21)  # fits the 20x20 box
    row, col = _mass_centre(image)
    assert abs(row - 14) <= 0.5 and abs(col - 14) <= 0.5
    assert np.corrcoef(image.ravel(), digit.ravel().astype(np.float32))[0, 1] > 0.9


def test_aspect_ratio_is_kept_for_a_thin_one():
    one = np.asarray(draw_strokes(STROKES[1]), np.float32)
    image = prepare_digit(one).image
    ink = np.argwhere(image > 64)
    height, width = np.ptp(ink[:, 0]) + 1, np.ptp(ink[:, 1]) + 1
    assert height >= 19 and width <= 6


def test_grey_paper_with_noise_reads_like_white_paper(fixture_test):
    digit = fixture_test[0][7]
    rng = np.random.default_rng(0)
    photo = np.asarray(paper_photo(digit), np.float32) * 0.55 + 90 + rng.normal(0, 6, (318, 318))
    clean = prepare_digit(np.asarray(paper_photo(digit), np.float32)).image.astype(np.float32)
    noisy = prepare_digit(np.clip(photo, 0, 255)).image.astype(np.float32)
    assert np.corrcoef(clean.ravel(), noisy.ravel())[0, 1] > 0.9


@pytest.mark.parametrize("picture", [
    np.full((280, 280), 255.0),                                    # an empty white canvas
    np.zeros((28, 28)),                                            # an empty MNIST field
    np.asarray(draw_strokes([[(100, 100)]]), np.float32),          # one tap: a dot
    np.clip(np.random.default_rng(1).normal(200, 4, (200, 200)), 0, 255),  # blank paper, sensor noise
], ids=["white-canvas", "black-field", "single-dot", "noisy-paper"])
def test_blank_or_near_blank_pictures_have_no_digit(picture):
    prepared = prepare_digit(picture)
    assert not prepared.found
    assert not prepared.image.any()


def test_transparent_canvas_export_counts_as_white_paper():
    strokes = draw_strokes(STROKES[7])
    rgba = Image.new("RGBA", strokes.size, (0, 0, 0, 0))
    rgba.putalpha(Image.eval(strokes, lambda v: 255 - v))  # black ink where drawn, transparent elsewhere
    gray = decode_image(encode(rgba))
    assert gray[0, 0] == 255 and gray.min() < 10
    assert prepare_digit(gray).image.any()


def test_jpeg_photos_decode_to_grayscale(fixture_test):
    gray = decode_image(encode(paper_photo(fixture_test[0][0]).convert("RGB"), "JPEG", quality=85))
    assert gray.ndim == 2 and gray.shape == (318, 318)


def test_a_decompression_bomb_is_refused_from_its_header_alone():
    bomb = png_bomb(20_000)
    assert len(bomb) < 1_000_000  # small on the wire...
    started = time.perf_counter()
    with pytest.raises(InputError) as caught:
        decode_image(bomb)  # ...400 million pixels if decoded
    assert caught.value.status == 413
    assert time.perf_counter() - started < 0.5


def test_images_over_the_configured_size_are_refused():
    with pytest.raises(InputError, match="3000x3000 pixels is over the limit") as caught:
        decode_image(encode(Image.new("L", (3000, 3000), 255)), Limits(max_pixels=4_000_000))
    assert caught.value.status == 413


@pytest.mark.parametrize(("data", "status", "message"), [
    (b"", 422, "empty image"),
    (b"hello, not an image", 415, "not a PNG or JPEG"),
    (None, 415, "not a PNG or JPEG"),  # a GIF: a real image, but not a format we accept
    ("truncated", 422, "broken image"),
], ids=["empty", "text", "gif", "truncated-png"])
def test_unreadable_images_are_refused_with_a_reason(data, status, message):
    if data is None:
        data = encode(Image.new("L", (28, 28)), "GIF")
    elif data == "truncated":
        data = encode(draw_strokes(STROKES[0]))[:400]
    with pytest.raises(InputError, match=message) as caught:
        decode_image(data)
    assert caught.value.status == status


def test_json_pixels_may_be_rows_or_flat():
    rows = [[(r * 28 + c) % 256 for c in range(28)] for r in range(28)]
    flat = [v for row in rows for v in row]
    assert np.array_equal(pixels_from_json(rows), pixels_from_json(flat))
    assert pixels_from_json(flat).shape == (28, 28)


@pytest.mark.parametrize(("values", "message"), [
    ({"a": 1}, "expected a list"),
    ([0] * 783, "got a list of 783"),
    ([[0] * 28] * 27 + [[0] * 27], r"pixels\[27\]: expected 28 values, got 27"),
    ([0] * 783 + [256], r"value \[783\] = 256 is outside 0-255"),
    ([[0] * 28] * 27 + [[0] * 27 + [-1]], r"value \[27\]\[27\] = -1 is outside 0-255"),
    ([0] * 783 + [float("nan")], "outside 0-255"),
    ([0] * 783 + ["7"], "is '7', not a number"),
    ([0] * 783 + [True], "is True, not a number"),
], ids=["object", "783-values", "short-row", "over-255", "negative", "nan", "string", "bool"])
def test_bad_json_pixels_are_refused_naming_the_place(values, message):
    with pytest.raises(InputError, match=message):
        pixels_from_json(values)
