"""Turning a prediction request's body into grayscale pictures, whatever form it takes.

POST /api/predict accepts a PNG or JPEG as the body, one or more files in a multipart
form, or JSON: ``{"pixels": P}`` for one digit, ``{"images": [P, ...]}`` for a batch,
where P is 28 rows of 28 numbers or a flat list of 784, each 0-255.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from digits.errors import InputError
from digits.serve.preprocess import Limits, decode_image, pixels_from_json

IMAGE_TYPES = ("image/png", "image/jpeg")
ACCEPTED = "image/png, image/jpeg, multipart/form-data (field 'file') or application/json"


@dataclass(frozen=True)
class Pictures:
    """The pictures of one request; ``batch`` says whether to answer with a list."""

    pictures: list[np.ndarray]
    batch: bool


def media_type(content_type: str | None) -> str:
    """The bare media type of a Content-Type header, or a 415 naming what is accepted."""
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind == "image/jpg":
        kind = "image/jpeg"  # a common misspelling that browsers and tools still send
    if kind not in (*IMAGE_TYPES, "multipart/form-data", "application/json"):
        shown = f"Content-Type {kind!r}" if kind else "no Content-Type"
        raise InputError(f"{shown} is not accepted; send {ACCEPTED}", 415)
    return kind


def pictures_from_json(body: bytes, limits: Limits) -> Pictures:
    """``{"pixels": P}`` or ``{"images": [P, ...]}``; every error names the bad field."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise InputError(f"body is not valid JSON ({exc})") from None
    if not isinstance(data, dict) or (("pixels" in data) == ("images" in data)):
        raise InputError('expected a JSON object with "pixels" (one digit) or "images" (a list of digits)')
    if "pixels" in data:
        return Pictures([pixels_from_json(data["pixels"])], batch=False)
    images = data["images"]
    if not isinstance(images, list) or not images:
        raise InputError('"images" must be a non-empty list of pixel arrays')
    _check_batch(len(images), limits)
    return Pictures([pixels_from_json(p, f"images[{i}]") for i, p in enumerate(images)], batch=True)


def pictures_from_files(files: list[tuple[str, bytes]], limits: Limits) -> Pictures:
    """Uploaded (filename, bytes) pairs; one file is answered alone, several as a batch."""
    if not files:
        raise InputError("the form holds no file; send the image in a field named 'file'")
    _check_batch(len(files), limits)
    pictures = []
    for name, data in files:
        try:
            pictures.append(decode_image(data, limits))
        except InputError as exc:
            raise InputError(f"{name}: {exc}", exc.status) from None
    return Pictures(pictures, batch=len(files) > 1)


def _check_batch(count: int, limits: Limits) -> None:
    if count > limits.max_batch:
        raise InputError(f"{count} images in one request; the limit is {limits.max_batch}", 413)


def form_files(form: Any) -> list[tuple[str, bytes]]:
    """The (filename, bytes) of every file field of a parsed form, in order."""
    files = []
    for _key, value in form.multi_items():
        if hasattr(value, "filename") and hasattr(value, "file"):
            value.file.seek(0)
            files.append((value.filename or "upload", value.file.read()))
    return files
