"""Run directories: everything one training run produced, each file written atomically.

``runs/<YYYYmmdd-HHMMSS>-<name>/`` holds config.json, history.csv, curves.png,
model.safetensors + model.json (architecture name and arguments, normalisation, class
count; never a pickle), metrics.json and, when asked, submission.csv.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from digits import __version__
from digits.atomic import atomic_path
from digits.errors import ModelError, RunError
from digits.hardware import cpu_info, hardware
from digits.jsonfile import read_json, write_json
from digits.models.layers import Classifier
from digits.models.registry import count_parameters, create_model, get_model_info

MODEL_FORMAT = 1


@dataclass(frozen=True)
class ModelCard:
    """What model.json records: enough for any tool to rebuild the model."""

    name: str
    args: dict[str, Any]
    mean: float
    std: float
    classes: int
    parameters: int

    def to_dict(self) -> dict[str, Any]:
        return {"format": MODEL_FORMAT, "architecture": self.name, "args": self.args,
                "normalization": {"scale": 1 / 255, "mean": self.mean, "std": self.std},
                "input": {"shape": [28, 28], "dtype": "uint8", "range": [0, 255]},
                "classes": self.classes, "parameters": self.parameters, "digits_version": __version__}


def new_run_dir(name: str, base: str | os.PathLike[str] = "runs") -> Path:
    """Create ``base/<YYYYmmdd-HHMMSS>-<name>``; a suffix keeps two runs in one second apart."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(base)
    for n in range(1000):
        path = base / (f"{stamp}-{name}" if n == 0 else f"{stamp}-{name}-{n}")
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
    raise RunError(f"{base}: cannot create a run directory for {name}")


def environment(device: torch.device | str = "cpu") -> dict[str, Any]:
    """Versions, machine and the facts of the device trained on, recorded beside every run."""
    return {"digits": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "machine": f"{cpu_info()[0]}, {platform.system()} {platform.machine()}, {os.cpu_count()} cores",
            "hardware": hardware(device).to_dict()}


def save_model(run_dir: str | os.PathLike[str], model: Classifier, name: str,
               args: dict[str, Any], stem: str = "model") -> ModelCard:
    """Write ``<stem>.safetensors`` and ``<stem>.json`` into ``run_dir``."""
    card = ModelCard(name, args, model.mean, model.std, 10, count_parameters(model))
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(Path(run_dir) / f"{stem}.safetensors") as tmp:
        save_file(state, str(tmp), metadata={"architecture": name, "format": str(MODEL_FORMAT)})
    write_json(Path(run_dir) / f"{stem}.json", card.to_dict())
    return card


def load_model(run_dir: str | os.PathLike[str], device: torch.device | str = "cpu",
               stem: str = "model") -> tuple[Classifier, ModelCard]:
    """Rebuild the model of ``run_dir`` from model.json and load its safetensors weights."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"{run_dir}: no such run directory")
    meta = read_json(run_dir / f"{stem}.json")
    try:
        name, args, norm = meta["architecture"], meta["args"], meta["normalization"]
    except KeyError as exc:
        raise ModelError(f"{run_dir / f'{stem}.json'}: missing field {exc}") from None
    info = get_model_info(name)
    if (norm.get("mean"), norm.get("std")) != (info.mean, info.std):
        raise ModelError(f"{run_dir}: normalization {norm} does not match model {name!r}")
    model = create_model(name, **args)
    weights = run_dir / f"{stem}.safetensors"
    if not weights.is_file():
        raise RunError(f"{weights}: missing")
    try:
        state = load_file(str(weights))
        model.load_state_dict(state)
    except (SafetensorError, RuntimeError, OSError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise ModelError(f"{weights}: incompatible checkpoint for {name} {args} ({first})") from None
    card = ModelCard(name, args, info.mean, info.std, meta.get("classes", 10), count_parameters(model))
    return model.to(device).eval(), card
