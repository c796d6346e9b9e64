"""Settings files in TOML (presets, search spaces): shipped ones by name, any other by path."""

from __future__ import annotations

import os

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from digits.errors import DigitsError, did_you_mean


def shipped_names(folder: Traversable) -> list[str]:
    """Names of the ``.toml`` files shipped in ``folder``, sorted."""
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def read_named_toml(name_or_path: str | os.PathLike[str], folder: Traversable, kind: str,
                    error: type[DigitsError] = DigitsError) -> tuple[str, dict[str, Any]]:
    """(label, contents) of a file path (``*.toml``) or of the shipped ``folder/<name>.toml``.

    ``kind`` names the thing in messages ("preset", "space"); ``error`` is the error raised.
    """
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.is_file():
        if not path.is_file():
            raise error(f"{kind} {path}: no such file")
        text, label = path.read_text("utf-8"), str(path)
    else:
        resource = folder / f"{name_or_path}.toml"
        if not resource.is_file():
            known = shipped_names(folder)
            raise error(f"unknown {kind} {str(name_or_path)!r}{did_you_mean(str(name_or_path), known)}; "
                        f"known {kind}s: {', '.join(known)}")
        text, label = resource.read_text("utf-8"), str(name_or_path)
    try:
        return label, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{kind} {label}: not valid TOML ({exc})") from None
