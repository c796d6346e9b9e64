"""Safetensors weights files checked from their header before anything else reads them.

A safetensors file is an 8-byte little-endian header length, a JSON header naming each
tensor's dtype, shape and byte range, then the tensor bytes: so its exact size is known
from the first few kilobytes. Checking that (and that it is a regular file, and not larger
than the model it should hold) before loading or hashing means a symlink to /dev/zero, a
FIFO or an 8 GB sparse file is refused at once instead of being read to the end. No torch
here: the ONNX server hashes the weights without it.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

from digits.errors import ModelError, RunError
from digits.limits import MAX_WEIGHTS_BYTES, MAX_WEIGHTS_HEADER_BYTES

_KINDS = {stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device", stat.S_IFIFO: "a FIFO",
          stat.S_IFSOCK: "a socket", stat.S_IFDIR: "a directory"}


def check_weights_file(path: str | os.PathLike[str],
                       max_data_bytes: int = MAX_WEIGHTS_BYTES) -> dict[str, Any]:
    """The safetensors header of ``path`` after checking, reading only the header, that the
    file is a regular file whose size is exactly what its header describes, holding at most
    ``max_data_bytes`` of tensor data. RunError or ModelError naming the file otherwise."""
    path = Path(path)
    try:
        info = path.stat()  # follows a symlink: what matters is what it points at
    except FileNotFoundError:
        raise RunError(f"{path}: missing") from None
    except OSError as exc:
        raise RunError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(info.st_mode):
        kind = _KINDS.get(stat.S_IFMT(info.st_mode), "not a regular file")
        raise ModelError(f"{path}: {kind}, not a weights file; expected a safetensors file")
    header, data_start = _read_header(path, info.st_size)
    data_bytes = max((_end_of(name, entry, path) for name, entry in header.items()
                      if name != "__metadata__"), default=0)
    if data_start + data_bytes != info.st_size:
        raise ModelError(f"{path}: {info.st_size:,} bytes, but its safetensors header describes "
                         f"{data_start + data_bytes:,}; the file is damaged")
    if data_bytes > max_data_bytes:
        raise ModelError(f"{path}: holds {data_bytes:,} bytes of tensors, more than the {max_data_bytes:,} "
                         "the model can use")
    return header


def _read_header(path: Path, size: int) -> tuple[dict[str, Any], int]:
    """The parsed JSON header and the offset where tensor data starts."""
    try:
        with open(path, "rb") as fh:
            length = int.from_bytes(fh.read(8), "little") if size >= 8 else -1
            if not 0 < length <= min(MAX_WEIGHTS_HEADER_BYTES, size - 8):
                raise ModelError(f"{path}: not a safetensors file (no valid header length in its first "
                                 "8 bytes)")
            raw = fh.read(length)
    except OSError as exc:
        raise RunError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        header = json.loads(raw)
    except (ValueError, RecursionError):
        header = None
    if not isinstance(header, dict):
        raise ModelError(f"{path}: not a safetensors file (its header is not a JSON object)")
    return header, 8 + length


def _end_of(name: str, entry: Any, path: Path) -> int:
    offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
    if not (isinstance(offsets, list) and len(offsets) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in offsets)):
        raise ModelError(f"{path}: not a safetensors file (tensor {name!r} has no valid data_offsets)")
    return offsets[1]


def weights_digest(path: str | os.PathLike[str], max_data_bytes: int = MAX_WEIGHTS_BYTES) -> str:
    """SHA-256 of a weights file, checked first by :func:`check_weights_file`, read in chunks."""
    check_weights_file(path, max_data_bytes)
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    except OSError as exc:
        raise RunError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    return digest.hexdigest()
