"""JSON files of a run (config, metrics, model card, ensemble, checkpoint state): read with a
one-line error, checked against a small schema, written atomically. No torch here, so light
commands (``digits score``, the ONNX server) can use it.

Every reader of a run file states the fields it uses as a schema (``read_json(path, SCHEMA)``),
so a damaged file is refused here, in one place, with the file, the field and what was
expected, instead of failing later as a KeyError or TypeError deep in the caller.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from digits.atomic import write_text
from digits.errors import RunError
from digits.limits import MAX_JSON_BYTES, MAX_JSON_DEPTH


@dataclass(frozen=True)
class Optional:
    """A field that may be absent; when present it must match ``spec`` (null only where
    ``spec`` admits ``type(None)``)."""

    spec: Spec


@dataclass(frozen=True)
class ListOf:
    """A JSON list of at least ``at_least`` items, each matching ``item``."""

    item: Spec
    at_least: int = 0


Spec = Union[type, tuple[type, ...], ListOf, Optional, Mapping[str, "Spec"]]
"""A field's expected shape: a JSON type (``str``, ``int``, ``float`` for any number,
``bool``, ``dict``, ``list``, ``type(None)``), a tuple of them, a :class:`ListOf`, an
:class:`Optional`, or a mapping of field names (a nested object with those fields)."""

_NAMES = {dict: "an object", list: "a list", str: "a string", int: "an integer", float: "a number",
          bool: "true or false", type(None): "null"}


def read_json(path: str | os.PathLike[str], schema: Mapping[str, Spec] | None = None) -> dict[str, Any]:
    """The JSON object in ``path``, checked against ``schema`` when one is given.

    RunError naming the file (and the field) when it is missing, not a regular file, too
    large, nested too deep, not JSON, not an object, or not what ``schema`` says.
    """
    path = Path(path)
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise RunError(f"{path}: not a regular file; expected a JSON file")
        if info.st_size > MAX_JSON_BYTES:
            raise RunError(f"{path}: {info.st_size:,} bytes, more than the {MAX_JSON_BYTES:,} a run file "
                           "may hold")
        text = path.read_text("utf-8")
    except FileNotFoundError:
        raise RunError(f"{path}: missing") from None
    except (OSError, ValueError) as exc:
        raise RunError(f"{path}: cannot be read ({exc})") from None
    if _nesting_depth(text) > MAX_JSON_DEPTH:
        raise RunError(f"{path}: nested more than {MAX_JSON_DEPTH} levels deep; not a run file")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise RunError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise RunError(f"{path}: expected a JSON object, found {describe(data)}")
    if schema is not None:
        check_schema(data, schema, path)
    return data


def check_schema(data: Mapping[str, Any], schema: Mapping[str, Spec], origin: str | os.PathLike[str],
                 prefix: str = "") -> None:
    """Raise RunError naming ``origin`` and the dotted field when ``data`` does not fit ``schema``."""
    for key, spec in schema.items():
        name = f"{prefix}{key}"
        if isinstance(spec, Optional):
            if key not in data:
                continue
            spec = spec.spec
        elif key not in data:
            raise RunError(f"{origin}: missing field '{name}' (expected {_expected(spec)})")
        _check_value(data[key], spec, origin, name)


def _check_value(value: Any, spec: Spec, origin: str | os.PathLike[str], name: str) -> None:
    if isinstance(spec, Optional):
        spec = spec.spec
    if not _fits(value, spec):
        raise RunError(f"{origin}: field '{name}' should be {_expected(spec)}, found {describe(value)}")
    if isinstance(spec, Mapping):
        check_schema(value, spec, origin, f"{name}.")
    elif isinstance(spec, ListOf):
        for i, item in enumerate(value):
            _check_value(item, spec.item, origin, f"{name}[{i}]")


def _fits(value: Any, spec: Spec) -> bool:
    if isinstance(spec, Mapping):
        return isinstance(value, dict)
    if isinstance(spec, ListOf):
        return isinstance(value, list) and len(value) >= spec.at_least
    if isinstance(spec, Optional):
        return _fits(value, spec.spec)
    kinds = spec if isinstance(spec, tuple) else (spec,)
    if isinstance(value, bool):  # JSON true is not a number, though Python's bool is an int
        return bool in kinds
    if isinstance(value, int) and float in kinds:
        return True
    return isinstance(value, kinds)


def _expected(spec: Spec) -> str:
    if isinstance(spec, Mapping):
        return "an object"
    if isinstance(spec, Optional):
        return _expected(spec.spec)
    if isinstance(spec, ListOf):
        items = f"{_expected(spec.item).split(' ', 1)[1]}s"
        if spec.at_least > 1:
            return f"a list of at least {spec.at_least} {items}"
        return f"a {'non-empty ' if spec.at_least else ''}list of {items}"
    kinds = spec if isinstance(spec, tuple) else (spec,)
    return " or ".join(_NAMES.get(k, k.__name__) for k in kinds)


def describe(value: Any) -> str:
    """What a JSON value is, for a message: 'a string', 'an empty list', 'the integer 3'..."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return f"the number {value!r}"[:60]
    if isinstance(value, (list, dict, str)) and not value:
        return f"an empty {_NAMES[type(value)].split(' ', 1)[1]}"
    return _NAMES.get(type(value), type(value).__name__)


_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")


def _nesting_depth(text: str) -> int:
    # Brackets inside strings do not nest; drop the strings, then everything but brackets.
    brackets = _NOT_BRACKETS.sub("", _STRINGS.sub("", text))
    depth = deepest = 0
    for char in brackets:
        depth += 1 if char in "[{" else -1
        if depth > deepest:
            deepest = depth
            if deepest > MAX_JSON_DEPTH:
                break  # enough to refuse; no need to walk the rest
    return deepest


# --- what each run file holds: the fields its readers use ----------------------------------

NUMBER_OR_NULL = (float, type(None))
FINAL_METRICS = {name: Optional(NUMBER_OR_NULL) for name in ("loss", "accuracy", "val_loss", "val_accuracy")}
TRAIN: dict[str, Spec] = {  # the training settings recorded in config.json and ensemble.json
    "model": Optional(str), "model_args": Optional(dict), "early_stopping": Optional(int),
    "restore_best": Optional(bool), "monitor": Optional(str), "val_split": Optional(float),
    "seed": Optional(int), "precision": Optional(str), "normalise": Optional(str)}
MODEL_CARD: dict[str, Spec] = {  # model.json
    "architecture": str, "args": dict, "normalization": {"mean": float, "std": float},
    "classes": Optional(int), "parameters": Optional(int)}
CONFIG: dict[str, Spec] = {  # config.json of one run
    "train": TRAIN, "environment": Optional(dict),
    "data": Optional({"source": Optional(str), "rows": Optional(int), "train_rows": Optional(int),
                      "val_rows": Optional(int)})}
RESUMABLE_CONFIG: dict[str, Spec] = {**CONFIG, "data": {"source": str}}  # resuming needs the data file
METRICS: dict[str, Spec] = {  # metrics.json of a run, the tutorial, an ensemble or a grid study
    "model": Optional(str), "parameters": Optional(int), "epochs": Optional(int),
    "train_seconds": Optional(float), "final": Optional(FINAL_METRICS), "chosen_epochs": Optional(int),
    "chosen_by": Optional(str), "score": Optional(NUMBER_OR_NULL), "test_accuracy": Optional(NUMBER_OR_NULL),
    "mean_member_val_accuracy": Optional(float)}
ENSEMBLE: dict[str, Spec] = {  # ensemble.json
    "members": ListOf(str, at_least=1), "tta": Optional(bool), "bagging": Optional(float), "train": TRAIN,
    "variants": Optional(ListOf(dict)), "environment": Optional(dict)}

CALIBRATION: dict[str, Spec] = {  # calibration.json (digits.predict.calibration)
    "temperature": float, "unsure_below": float, "source": str, "measured": Optional(dict),
    "no_digit_below": Optional(float), "unmix": Optional(bool)}


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Write ``data`` (any JSON value) as indented JSON, atomically."""
    return write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")
