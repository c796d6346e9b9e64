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

from torch import nn

from digits.data.dataset import DigitSet
from digits.jsonfile import write_json
from digits.report.plots import plot_learning_curves
from digits.runs import environment, save_model
from digits.train.callbacks import Callback
from digits.train.config import TrainConfig
from digits.train.device import resolve_config, resolve_device
from digits.train.fit import checkpoint_folder, train_model
from digits.train.history import History


@dataclass(frozen=True)
class RunResult:
    """What a run produced; the same facts are in its directory."""

    run_dir: Path
    model: nn.Module
    history: History
    metrics: dict[str, Any]


def train_run(config: TrainConfig, data: DigitSet, run_dir: str | os.PathLike[str],
              callbacks: Sequence[Callback] = (), data_source: str | None = None, *,
              val: DigitSet | None = None, resume: bool = False) -> RunResult:
    """Train and write the run directory.

    Validation is the last ``config.val_split`` of ``data`` (Keras-style) unless ``val`` is
    given, in which case ``data`` is all training rows. Checkpoints are written after every
    epoch; ``resume`` continues from the last one; they are removed once the run is complete.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(config.device)
    config = resolve_config(config, device)  # config.json records the format this hardware runs
    train = data
    if val is None:
        train, val = data.split_last(config.val_split)
    if not resume:
        write_json(run_dir / "config.json", {
            "train": config.to_dict(), "data": {"source": data_source or data.origin, "rows": len(data),
                                                "train_rows": len(train), "val_rows": len(val)},
            "environment": environment(device)})
    started = time.perf_counter()
    model, history = train_model(config, train, val if len(val) else None, callbacks,
                                 checkpoint_dir=checkpoint_folder(run_dir), resume=resume)
    seconds = time.perf_counter() - started
    history.save(run_dir / "history.csv")
    plot_learning_curves(history, run_dir / "curves.png", title=config.model)
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


def _clean(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else round(value, 6)
