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
from digits.jsonfile import ListOf, Optional, Spec, read_json
from digits.tensorfile import write_tensors
from digits.weightsfile import check_weights_file

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
                    best_state: dict[str, torch.Tensor] | None, extra: dict[str, Any],
                    engine_state: dict[str, Any] | None = None) -> Path:
    """Write the complete training state after ``epoch``; return the state file. ``engine_state``
    is the step engine's own (its ``state_dict()``): tensors go with the others, the rest into
    state.json."""
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
    engine_plain = {}
    for k, v in (engine_state or {}).items():
        if isinstance(v, torch.Tensor):
            tensors[f"engine.{k}"] = v
        else:
            engine_plain[k] = v
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    name = f"epoch-{epoch:04d}.safetensors"
    write_tensors(folder / name, tensors)
    state = {"epoch": epoch, "tensors": name, "optimizer": optim_plain, "engine": engine_plain,
             "scheduler": scheduler.state_dict() if scheduler is not None else None, **extra}
    path = write_text(folder / STATE_FILE, json.dumps(state, default=_json_default) + "\n")
    for old in folder.glob("epoch-*.safetensors"):
        if old.name != name:
            old.unlink(missing_ok=True)
    return path


# What state.json holds (see save_checkpoint); checked before any of it is used.
STATE: dict[str, Spec] = {
    "epoch": int, "tensors": str, "optimizer": {"param_groups": ListOf(dict, at_least=1), "state": dict},
    "scheduler": (dict, type(None)), "engine": Optional(dict), "history": ListOf(dict), "stopped": bool,
    "tracker": {"best": (float, str), "best_epoch": int, "bad_epochs": int}}


def load_checkpoint(folder: str | os.PathLike[str], *, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, scheduler: Any,
                    shuffle_rng: torch.Generator) -> tuple[dict[str, Any], dict[str, torch.Tensor] | None]:
    """Restore everything ``save_checkpoint`` wrote; return (state, best weights or None). The
    engine's own state is ``state["engine"]``, for its ``load_state_dict`` (empty from a checkpoint
    written before engines kept any).

    A damaged checkpoint (state.json of the wrong shape, a tensor file that is missing, the
    wrong size or for another model) is a RunError naming the file."""
    folder = Path(folder)
    state_file = folder / STATE_FILE
    if not state_file.is_file():
        raise RunError(f"{folder}: no checkpoint to resume from")
    state = read_json(state_file, STATE)
    if Path(state["tensors"]).name != state["tensors"]:
        raise RunError(f"{state_file}: field 'tensors' should name a file in {folder}, "
                       f"found {state['tensors']!r}")
    tensor_file = folder / state["tensors"]
    # Model, best weights, up to three optimizer moments each (Adam with amsgrad), RNG states.
    check_weights_file(tensor_file, 6 * sum(t.numel() * t.element_size() for t in model.state_dict().values())
                       + (1 << 20))
    try:
        tensors = load_file(str(tensor_file))
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        optimizer.load_state_dict(_join_optimizer(tensors, state["optimizer"]))
        if scheduler is not None and state.get("scheduler") is not None:
            scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(tensors["rng.cpu"])
        shuffle_rng.set_state(tensors["rng.shuffle"])
    except SafetensorError as exc:
        raise RunError(f"{tensor_file}: damaged checkpoint ({exc})") from None
    except (KeyError, ValueError, TypeError, RuntimeError, AttributeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise RunError(f"{folder}: damaged checkpoint, it does not fit this run ({first})") from None
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")} or None
    state["engine"] = {**(state.get("engine") or {}),
                       **{k[7:]: v for k, v in tensors.items() if k.startswith("engine.")}}
    return state, best


def _json_default(value: Any) -> Any:
    if torch.is_tensor(value):
        return value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, float) and math.isinf(value):
        return str(value)
    return repr(value)
