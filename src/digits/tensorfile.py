"""Safetensors files written atomically and byte-for-byte reproducibly.

``safetensors`` serialises the ``__metadata__`` table from a Rust HashMap, whose order is
randomised per process: two saves of identical weights gave different bytes, and so a
different served ``model_version``. We let the library serialise, then write its header
again with the metadata keys sorted; the format allows this (the header is plain JSON,
padded with spaces, and tensor offsets count from its end).
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import torch
from safetensors.torch import save

from digits.atomic import write_bytes

_HEADER_SIZE = struct.Struct("<Q")  # the little-endian u64 that starts every safetensors file


def tensor_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    """The safetensors file of ``tensors`` (contiguous CPU tensors), metadata keys sorted."""
    raw = save(tensors, metadata=metadata)
    if not metadata:
        return raw  # tensors are already written in a fixed order; only metadata varies
    (size,) = _HEADER_SIZE.unpack_from(raw)
    header = json.loads(raw[8:8 + size])
    header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)  # the library aligns the data to 8 bytes; keep that
    return _HEADER_SIZE.pack(len(text)) + text + raw[8 + size:]


def write_tensors(path: str | os.PathLike[str], tensors: dict[str, torch.Tensor],
                  metadata: dict[str, str] | None = None) -> Path:
    """Write ``tensors`` to ``path`` as safetensors, atomically and reproducibly.

    Going through bytes (not ``save_file``) also makes a full disk an ``OSError`` that
    :mod:`digits.atomic` names, rather than a ``SafetensorError`` with no file name.
    """
    return write_bytes(path, tensor_bytes(tensors, metadata))
