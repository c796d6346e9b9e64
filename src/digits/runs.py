"""Run directories: everything one training run produced, each file written atomically.

``runs/<YYYYmmdd-HHMMSS>-<name>/`` holds config.json, history.csv, curves.png,
model.safetensors + model.json (architecture name and arguments, normalisation, class
count; never a pickle), metrics.json and, when asked, submission.csv.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from digits.errors import ModelError, RunError
from digits.hardware import cpu_info, hardware
from digits.jsonfile import MODEL_CARD, read_json, write_json
from digits.models.layers import Classifier
from digits.models.registry import count_parameters, create_model, get_model_info
from digits.runmodels import ENSEMBLE_FILE, check_finished, unfinished_run
from digits.tensorfile import write_tensors
from digits.version import __version__
from digits.weightsfile import check_weights_file

MODEL_FORMAT = 1
# The files a training writes into its run directory and its checkpoint/ folder (glob patterns):
# where a killed one may have left digits.atomic's temporary copies of them.
RUN_FILES = ("config.json", "history.csv", "curves.png", "model.safetensors", "model.json", "metrics.json",
             "calibration.json", "rejector.safetensors",
             "training_rows.npy", "ensemble.json", "state.json", "epoch-*.safetensors")


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


# Descriptors of the run directories this process has claimed; the kernel drops their locks
# when the process ends, however it ends, so a killed training leaves no lock behind.
_CLAIMS: dict[Path, int] = {}


def claim_run_dir(path: str | os.PathLike[str]) -> Path:
    """Make ``path`` this process's new run directory, or raise RunError: one step, so two
    trainings given the same ``--out`` cannot both get it.

    The folder is created if need be, then locked (``flock``, held until the process ends)
    and only then checked for emptiness: whoever holds the lock of an empty folder owns it.
    An interrupted run there is named, with how to resume it.
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDONLY)
    except (FileExistsError, NotADirectoryError):
        raise RunError(f"{path}: exists and is not a folder; choose another --out") from None
    try:
        _lock(fd, path)
        if any(path.iterdir()):
            if unfinished_run(path):
                raise RunError(f"{path}: holds an interrupted run; use --resume {path} to continue it, "
                               "or choose another --out")
            raise RunError(f"{path}: already exists and is not empty; choose another --out")
    except BaseException:
        os.close(fd)
        raise
    _CLAIMS[path] = fd
    return path


def release_run_dirs() -> None:
    """Drop every claim this process holds (at the end of a command, so that a later command
    in the same process, a notebook's say, can check the folder again)."""
    while _CLAIMS:
        os.close(_CLAIMS.popitem()[1])


def _lock(fd: int, path: Path,
          taken: str = "another training is writing into it; choose another --out") -> None:
    try:
        import fcntl
    except ImportError:  # Windows: no flock; the emptiness check alone remains
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise RunError(f"{path}: {taken}") from None


def open_shared_run_dir(path: str | os.PathLike[str]) -> Path:
    """The run directory that several ``digits train --members`` jobs write one ensemble
    into: created by whichever job comes first, and never claimed whole (each job claims only
    its own members, :func:`claimed_members`). RunError when it holds a run of one model."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise RunError(f"{path}: exists and is not a folder; choose another --out") from None
    if (path / "config.json").is_file() and not (path / ENSEMBLE_FILE).is_file():
        raise RunError(f"{path}: holds a run of one model, not an ensemble; choose another --out")
    return path


@contextlib.contextmanager
def claimed_members(member_dirs: Sequence[Path], fresh: bool) -> Iterator[None]:
    """Hold a lock on each member folder (created if need be) while this job trains them, so
    that two jobs given overlapping ``--members`` ranges cannot train one member at once.

    ``fresh``: a new job, so each folder must also be empty: a member another job trained,
    or began, is refused, not trained again.
    """
    overlap = "the --members ranges of one ensemble must not overlap"
    fds: list[int] = []
    try:
        for folder in member_dirs:
            folder.mkdir(parents=True, exist_ok=True)
            fds.append(os.open(folder, os.O_RDONLY))
            _lock(fds[-1], folder, f"another job is training this member; {overlap}")
            if fresh and any(folder.iterdir()):
                raise RunError(f"{folder}: this member is already trained or begun; {overlap} (continue an "
                               "interrupted job with `digits train --resume RUN_DIR --members START:END`)")
        yield
    finally:
        for fd in fds:
            os.close(fd)


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
    write_tensors(Path(run_dir) / f"{stem}.safetensors", state,
                  metadata={"architecture": name, "format": str(MODEL_FORMAT)})
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
    check_finished(run_dir)
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
