"""One training run from a config to a complete run directory."""

from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from digits.data.dataset import DigitSet
from digits.data.identity import data_record, write_fingerprint
from digits.jsonfile import write_json
from digits.runs import environment, save_model
from digits.train.callbacks import Callback
from digits.train.config import TrainConfig
from digits.train.device import resolve_config, resolve_device
from digits.train.fit import checkpoint_folder, train_model
from digits.train.history import History

TRAINING_ROWS = "training_rows.npy"  # sorted 8-byte hashes of every image trained or validated on


@dataclass(frozen=True)
class RunResult:
    """What a run produced; the same facts are in its directory."""

    run_dir: Path
    model: nn.Module
    history: History
    metrics: dict[str, Any]


def train_run(config: TrainConfig, data: DigitSet, run_dir: str | os.PathLike[str],
              callbacks: Sequence[Callback] = (), data_source: str | None = None, *,
              val: DigitSet | None = None, resume: bool = False,
              data_identity: dict[str, Any] | None = None) -> RunResult:
    """Train and write the run directory.

    Validation is the last ``config.val_split`` of ``data`` (Keras-style) unless ``val`` is
    given, in which case ``data`` is all training rows. Checkpoints are written after every
    epoch; ``resume`` continues from the last one; they are removed once the run is complete.

    ``config.json`` records which rows the run saw: the training file's path, row hash and
    prepared split (``data_identity``, from :func:`~digits.data.identity.data_record`; computed
    from ``data`` when not given), and ``TRAINING_ROWS`` holds the image hashes of every row
    trained or validated on, so that ``digits score`` can refuse an answer key made of them.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(config.device)
    config = resolve_config(config, device)  # config.json records what this hardware runs
    train = data
    if val is None:
        train, val = data.split_last(config.val_split)
    if not resume:
        identity = data_identity or data_record(data_source or data.origin, data)
        write_fingerprint(run_dir / TRAINING_ROWS, np.concatenate([train.images, val.images]))
        write_json(run_dir / "config.json", {
            "train": config.to_dict(),
            "data": {**identity, "train_rows": len(train), "val_rows": len(val), "fingerprint": TRAINING_ROWS},
            "environment": environment(device)})
    started = time.perf_counter()
    model, history = train_model(config, train, val if len(val) else None, callbacks,
                                 checkpoint_dir=checkpoint_folder(run_dir), resume=resume)
    seconds = time.perf_counter() - started
    history.save(run_dir / "history.csv")
    card = save_model(run_dir, model, config.model, dict(config.model_args))
    last = history.rows[-1] if len(history) else {}
    metrics = {"model": config.model, "parameters": card.parameters, "epochs": len(history),
               "train_seconds": round(seconds, 3),
               "final": {k: _clean(last.get(k)) for k in ("loss", "accuracy", "val_loss", "val_accuracy")}}
    if len(val) and len(history):
        metrics["best_val_loss_epoch"] = history.best_epoch("val_loss")
        metrics["best_val_accuracy"] = max(history.column("val_accuracy"))
        metrics["best_val_accuracy_epoch"] = history.best_epoch("val_accuracy", "max")
    write_json(run_dir / "metrics.json", metrics)
    shutil.rmtree(checkpoint_folder(run_dir), ignore_errors=True)
    return RunResult(run_dir, model, history, metrics)


def no_held_out_note(config: dict[str, Any], final: dict[str, Any]) -> str:
    """Why a run that kept no validation rows has no held-out score, and what its training
    accuracy is not: under label smoothing and while the weights still moved, it says little
    about the test set."""
    accuracy = final.get("accuracy")
    what = f"training accuracy {accuracy:.4f}" if accuracy is not None else "training accuracy"
    smoothing = float(config.get("label_smoothing") or 0.0)
    if smoothing:
        what += f" (under label smoothing {smoothing:g})"
    return (f"no held-out score: no validation rows (val_split {float(config.get('val_split') or 0):g}); "
            f"{what} is not a test score")


def _clean(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else round(value, 6)
