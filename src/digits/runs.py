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
from digits.jsonfile import MODEL_CARD, read_json, write_json
from digits.models.layers import Classifier
from digits.models.registry import count_parameters, create_model, get_model_info
from digits.weightsfile import check_weights_file

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


def cpu_info() -> tuple[str, set[str]]:
    """The CPU's model name and instruction-set flags (from /proc/cpuinfo where there is one)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    return model, flags


def environment() -> dict[str, str]:
    """Versions and machine, recorded beside every run so it can be repeated."""
    return {"digits": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "machine": f"{cpu_info()[0]}, {platform.system()} {platform.machine()}, {os.cpu_count()} cores"}


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
    """Rebuild the model of ``run_dir`` from model.json and load its safetensors weights.

    The weights file is checked from its header (a regular file, of the size the header
    describes, no larger than this model's tensors) before it is read, and every tensor
    must be finite: RunError or ModelError naming the file otherwise."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"{run_dir}: no such run directory")
    card_file = run_dir / f"{stem}.json"
    meta = read_json(card_file, MODEL_CARD)
    name, args, norm = meta["architecture"], meta["args"], meta["normalization"]
    try:
        info = get_model_info(name)
    except ModelError as exc:
        raise ModelError(f"{card_file}: field 'architecture': {exc}") from None
    if (norm["mean"], norm["std"]) != (info.mean, info.std):
        raise ModelError(f"{card_file}: normalization {norm} does not match model {name!r}")
    try:
        model = create_model(name, **args)
    except ModelError as exc:
        raise ModelError(f"{card_file}: field 'args': {exc}") from None
    weights = run_dir / f"{stem}.safetensors"
    check_weights_file(weights, state_bytes(model))
    try:
        state = load_file(str(weights))
        model.load_state_dict(state)
    except (SafetensorError, RuntimeError, OSError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise ModelError(f"{weights}: incompatible checkpoint for {name} {args} ({first})") from None
    refuse_non_finite(state, weights)
    card = ModelCard(name, args, info.mean, info.std, meta.get("classes") or 10, count_parameters(model))
    return model.to(device).eval(), card


def state_bytes(model: torch.nn.Module) -> int:
    """Bytes of the model's parameters and buffers, as save_model writes them."""
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


def refuse_non_finite(tensors: dict[str, torch.Tensor], origin: str | os.PathLike[str]) -> None:
    """ModelError naming the first floating-point tensor that holds NaN or infinity."""
    for key, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ModelError(f"{origin}: tensor {key} holds NaN/inf; the weights are unusable")
