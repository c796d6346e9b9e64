"""Per-epoch checkpoints that survive SIGKILL, with nothing loaded through pickle.

A checkpoint is ``checkpoint/epoch-NNNN.safetensors`` (every tensor: model, optimizer state,
random-number-generator states, best weights) plus ``checkpoint/state.json`` (epoch,
history, scheduler and optimizer settings) which names the tensor file. The tensor file is
renamed into place first, then state.json: a kill at any moment leaves the previous
complete checkpoint or the new one, never a mix.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from digits.atomic import write_text
from digits.errors import RunError
from digits.tensorfile import write_tensors

STATE_FILE = "state.json"


def _split_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors, plain = {}, {"param_groups": state["param_groups"], "state": {}}
    for index, values in state["state"].items():
        plain["state"][str(index)] = {}
        for key, value in values.items():
            if torch.is_tensor(value):
                tensors[f"optim.{index}.{key}"] = value
            else:
                plain["state"][str(index)][key] = value
    return tensors, plain


def _join_optimizer(tensors: dict[str, torch.Tensor], plain: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(i): dict(v) for i, v in plain["state"].items()}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in plain["param_groups"]]
    return {"state": state, "param_groups": groups}


def save_checkpoint(folder: str | os.PathLike[str], epoch: int, *, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, scheduler: Any, shuffle_rng: torch.Generator,
                    best_state: dict[str, torch.Tensor] | None, extra: dict[str, Any]) -> Path:
    """Write the complete training state after ``epoch``; return the state file."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    optim_tensors, optim_plain = _split_optimizer(optimizer.state_dict())
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update(optim_tensors)
    tensors["rng.cpu"] = torch.get_rng_state()
    tensors["rng.shuffle"] = shuffle_rng.get_state()
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    for k, v in (best_state or {}).items():
        tensors[f"best.{k}"] = v
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    name = f"epoch-{epoch:04d}.safetensors"
    write_tensors(folder / name, tensors)
    state = {"epoch": epoch, "tensors": name, "optimizer": optim_plain,
             "scheduler": scheduler.state_dict() if scheduler is not None else None, **extra}
    path = write_text(folder / STATE_FILE, json.dumps(state, default=_json_default) + "\n")
    for old in folder.glob("epoch-*.safetensors"):
        if old.name != name:
            old.unlink(missing_ok=True)
    return path


def load_checkpoint(folder: str | os.PathLike[str], *, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, scheduler: Any,
                    shuffle_rng: torch.Generator) -> tuple[dict[str, Any], dict[str, torch.Tensor] | None]:
    """Restore everything ``save_checkpoint`` wrote; return (state, best weights or None)."""
    folder = Path(folder)
    try:
        state = json.loads((folder / STATE_FILE).read_text("utf-8"))
        tensors = load_file(str(folder / state["tensors"]))
    except FileNotFoundError:
        raise RunError(f"{folder}: no checkpoint to resume from") from None
    except (ValueError, KeyError, SafetensorError) as exc:
        raise RunError(f"{folder}: damaged checkpoint ({exc})") from None
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    optimizer.load_state_dict(_join_optimizer(tensors, state["optimizer"]))
    if scheduler is not None and state.get("scheduler") is not None:
        scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(tensors["rng.cpu"])
    shuffle_rng.set_state(tensors["rng.shuffle"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")} or None
    return state, best


def _json_default(value: Any) -> Any:
    if torch.is_tensor(value):
        return value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, float) and math.isinf(value):
        return str(value)
    return repr(value)
