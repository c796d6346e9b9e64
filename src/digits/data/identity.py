"""Which digits a file holds, told from its content: a hash of its rows, a fingerprint of its images.

A local score is only honest when the answer key's test rows were never trained on. Paths and
seeds cannot tell (files get copied and renamed), so identity is computed from the pixels: each
image's 784 bytes hashed (BLAKE2b, 8 bytes) gives a fingerprint in which a row shared between
two files shows up whatever its position; a hash over all the rows in order names the file's
content as a whole (for ``prepare.json`` and a run's ``config.json``).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from digits.atomic import atomic_path
from digits.data.dataset import DigitSet
from digits.errors import DataError, DigitsError
from digits.jsonfile import read_json

IMAGE_HASH_BYTES = 8  # 2**64 values: a chance collision among 70,000 digits is about 1 in 10**10
PREPARE_FILE = "prepare.json"


def image_hashes(images: np.ndarray) -> np.ndarray:
    """BLAKE2b (8 bytes) of each image's 784 uint8 pixels, as uint64 (N,), in row order."""
    flat = np.ascontiguousarray(images, dtype=np.uint8).reshape(len(images), -1)
    digests = b"".join(hashlib.blake2b(row.tobytes(), digest_size=IMAGE_HASH_BYTES).digest() for row in flat)
    return np.frombuffer(digests, dtype="<u8").copy()


def rows_hash(data: DigitSet) -> str:
    """A hash of the rows in order, labels included: equal for two files holding the same rows."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(np.ascontiguousarray(data.images, dtype=np.uint8).tobytes())
    if data.labels is not None:
        digest.update(np.asarray(data.labels, dtype="<i8").tobytes())
    return digest.hexdigest()


def write_fingerprint(path: str | os.PathLike[str], images: np.ndarray) -> Path:
    """Store the sorted image hashes of ``images`` as a small ``.npy`` file (8 bytes a row)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, np.sort(image_hashes(images)), allow_pickle=False)
    return Path(path)


def read_fingerprint(path: str | os.PathLike[str]) -> np.ndarray:
    """The sorted image hashes written by :func:`write_fingerprint`."""
    try:
        hashes = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a fingerprint of training rows ({exc})") from None
    if hashes.dtype != np.dtype("<u8") or hashes.ndim != 1:
        raise DataError(f"{path}: expected sorted uint64 image hashes, got {hashes.dtype} {hashes.shape}")
    return hashes


def shared_rows(fingerprint: np.ndarray, images: np.ndarray) -> int:
    """How many of ``images`` have a hash in the sorted ``fingerprint``."""
    return int(np.isin(image_hashes(images), fingerprint, assume_unique=False).sum())


def data_record(source: str | os.PathLike[str], data: DigitSet) -> dict[str, Any]:
    """What a run records about its training file: path, rows, row hash, and the
    ``digits data prepare`` split it is (seed and folder), when ``prepare.json`` beside it
    records this very row hash."""
    record: dict[str, Any] = {"source": str(source), "rows": len(data), "rows_hash": rows_hash(data)}
    split = _prepared_split(Path(source), record["rows_hash"])
    if split is not None:
        record["split"] = split
    return record


def _prepared_split(source: Path, train_hash: str) -> dict[str, Any] | None:
    info_path = source.parent / PREPARE_FILE
    if not info_path.is_file():
        return None
    try:
        info = read_json(info_path)
    except DigitsError:  # a broken manifest only means: no split to name
        return None
    if info.get("train_hash") != train_hash:
        return None  # a train.csv that is not the one prepare wrote: its seed says nothing
    return {"seed": info.get("seed"), "folder": str(source.parent.resolve())}


def describe_training_data(record: dict[str, Any]) -> str:
    """A run's ``config.json`` ``data`` record in words: which split it trained on."""
    split = record.get("split")
    where = record.get("source", "an unknown file")
    if split and split.get("seed") is not None:
        return f"the seed-{split['seed']} split ({where})"
    return str(where)
