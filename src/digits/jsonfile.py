"""JSON files of a run (config, metrics, model card, ensemble): read with a one-line error,
written atomically. No torch here, so light commands (``digits score``, the ONNX server)
can use it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from digits.atomic import write_text
from digits.errors import RunError


def read_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON object in ``path``; RunError naming the file when it is missing or not one."""
    try:
        data = json.loads(Path(path).read_text("utf-8"))
    except FileNotFoundError:
        raise RunError(f"{path}: missing") from None
    except (OSError, ValueError) as exc:
        raise RunError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise RunError(f"{path}: expected a JSON object")
    return data


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Write ``data`` (any JSON value) as indented JSON, atomically."""
    return write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")
