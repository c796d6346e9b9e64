"""Search spaces as TOML files: fixed training settings plus parameters to sample.

```toml
description = "what this space explores"
[fixed]                      # TrainConfig fields every trial shares
model = "cnn-small"
val_split = 0.1
[params]                     # "field" or "model_args.NAME" -> a distribution
lr = { type = "float", low = 1e-4, high = 3e-3, log = true }
"model_args.c1" = { type = "int", low = 8, high = 32, step = 8 }
optimizer = { type = "categorical", choices = ["adam", "rmsprop"] }
"model_args.dropout" = { type = "float", low = 0.0, high = 0.5, when = { model = "cnn-small" } }
```
A parameter with ``when`` is sampled only if the settings chosen so far match it
(conditional spaces: arguments that belong to one architecture).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from digits.errors import DigitsError, TuneError
from digits.tomlfiles import read_named_toml, shipped_names
from digits.train.augment import augment_settings
from digits.train.config import TrainConfig

KINDS = ("int", "float", "categorical")


@dataclass(frozen=True)
class Param:
    """One searched setting: ``name`` is a TrainConfig field or ``model_args.ARG``."""

    name: str
    kind: str
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()
    when: dict[str, Any] = field(default_factory=dict)

    def suggest(self, trial: Any) -> Any:
        """Ask the Optuna trial for a value of this parameter."""
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        if self.kind == "float":
            return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)
        if any(isinstance(c, (list, dict)) for c in self.choices):
            # Optuna's choices are scalars: lists (layer widths) travel as their JSON text.
            return json.loads(trial.suggest_categorical(self.name, [json.dumps(c) for c in self.choices]))
        return trial.suggest_categorical(self.name, list(self.choices))


@dataclass(frozen=True)
class SearchSpace:
    """Fixed settings and searched parameters; ``suggest`` turns a trial into a TrainConfig."""

    name: str
    description: str
    fixed: dict[str, Any]
    params: tuple[Param, ...]

    def suggest(self, trial: Any) -> TrainConfig:
        values: dict[str, Any] = {k: (dict(v) if isinstance(v, dict) else v) for k, v in self.fixed.items()}
        values.setdefault("model_args", {})
        for param in self.params:
            if all(_lookup(values, k) == v for k, v in param.when.items()):
                _assign(values, param.name, param.suggest(trial))
        if isinstance(values.get("augment"), (int, float)):  # a searched strength: one knob for all three
            values["augment"] = augment_settings(float(values["augment"]))
        return TrainConfig.from_dict(values)


def _lookup(values: dict[str, Any], name: str) -> Any:
    head, _, tail = name.partition(".")
    return values.get(head, {}).get(tail) if tail else values.get(head)


def _assign(values: dict[str, Any], name: str, value: Any) -> None:
    head, _, tail = name.partition(".")
    if tail:
        values.setdefault(head, {})[tail] = value
    else:
        values[head] = value


def list_spaces() -> list[str]:
    """Names of the spaces shipped with digits."""
    return shipped_names(resources.files("digits") / "tune" / "spaces")


def load_space(name_or_path: str | os.PathLike[str]) -> SearchSpace:
    """A shipped space by name, or a space file by path; a TuneError says what is wrong."""
    label, raw = read_named_toml(name_or_path, resources.files("digits") / "tune" / "spaces", "space", TuneError)
    return _parse_space(Path(label).stem, raw)


def _parse_space(name: str, raw: dict[str, Any]) -> SearchSpace:
    unknown = sorted(set(raw) - {"description", "fixed", "params"})
    if unknown:
        raise TuneError(f"space {name}: unknown section(s) {', '.join(unknown)}; expected description, fixed, params")
    fixed = dict(raw.get("fixed", {}))
    fixed.setdefault("val_split", 0.1)
    params = tuple(_parse_param(name, key, spec) for key, spec in raw.get("params", {}).items())
    if not params:
        raise TuneError(f"space {name}: [params] is empty; nothing to search")
    space = SearchSpace(name, str(raw.get("description", "")), fixed, params)
    try:
        config = TrainConfig.from_dict({**fixed, "model_args": dict(fixed.get("model_args", {}))})
    except (DigitsError, TypeError) as exc:
        raise TuneError(f"space {name}: [fixed]: {exc}") from None
    if config.val_split <= 0:
        raise TuneError(f"space {name}: val_split must be > 0: trials are judged on held-out rows")
    return space


def _parse_param(space: str, key: str, spec: Any) -> Param:
    head = key.partition(".")[0]
    known = set(TrainConfig.__dataclass_fields__)
    if head not in known or (head in ("model_args", "optimizer_args") and "." not in key):
        raise TuneError(f"space {space}: parameter {key!r} is not a training setting "
                        f"(known: {', '.join(sorted(known))}, or model_args.NAME)")
    if not isinstance(spec, dict) or spec.get("type") not in KINDS:
        raise TuneError(f"space {space}: parameter {key!r} needs type = one of {', '.join(KINDS)}")
    extra = sorted(set(spec) - {"type", "low", "high", "step", "log", "choices", "when"})
    if extra:
        raise TuneError(f"space {space}: parameter {key!r}: unknown key(s) {', '.join(extra)}")
    if spec["type"] == "categorical":
        if not spec.get("choices"):
            raise TuneError(f"space {space}: parameter {key!r}: categorical needs choices = [...]")
    elif not ("low" in spec and "high" in spec and spec["low"] <= spec["high"]):
        raise TuneError(f"space {space}: parameter {key!r}: needs low <= high")
    return Param(key, spec["type"], spec.get("low"), spec.get("high"), spec.get("step"), bool(spec.get("log", False)),
                 tuple(spec.get("choices", ())), dict(spec.get("when", {})))
