"""Presets: training settings as TOML files (``TrainConfig`` fields at the top level,
``model_args`` and ``optimizer_args`` as tables). A preset is named by a file path or by
the name of a file shipped under ``digits/presets/``."""

from __future__ import annotations

import json
import math
import os

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from digits.atomic import write_text
from digits.errors import DigitsError
from digits.train.config import TrainConfig


def load_preset(name_or_path: str | os.PathLike[str]) -> TrainConfig:
    """The TrainConfig of a preset file, or of a shipped preset by name."""
    path = Path(name_or_path)
    if path.is_file():
        text = path.read_text("utf-8")
    else:
        shipped = resources.files("digits") / "presets" / f"{name_or_path}.toml"
        if not shipped.is_file():
            raise DigitsError(f"--preset {name_or_path}: no such file and no shipped preset of that name")
        text = shipped.read_text("utf-8")
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DigitsError(f"--preset {name_or_path}: not valid TOML ({exc})") from None
    return TrainConfig.from_dict(values)


def preset_toml(config: TrainConfig, comment: str = "") -> str:
    """A TrainConfig as preset text; ``load_preset`` reads it back to the same config."""
    lines = [f"# {line}" for line in comment.splitlines()]
    tables = {}
    for key, value in config.to_dict().items():
        if isinstance(value, dict):
            tables[key] = value
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    for name, table in tables.items():
        lines += ["", f"[{name}]"] + [f"{k} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def write_preset(path: str | os.PathLike[str], config: TrainConfig, comment: str = "") -> Path:
    """Write ``config`` as a preset file, atomically."""
    return write_text(path, preset_toml(config, comment))


def _toml_value(value: Any) -> str:
    # JSON's strings, numbers, booleans and arrays are valid TOML values.
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, float) and math.isnan(value):
        raise DigitsError("a preset cannot hold NaN")
    return json.dumps(value)
