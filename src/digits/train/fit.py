"""The training loop: the whole data set on the device as uint8, batches by index, no DataLoader.

``fit`` keeps the loop (order, learning rates, evaluation, history, callbacks, checkpoints,
early stopping, resume) and hands the optimizer steps of each epoch, and the scoring of the
held-out rows after it, to a step engine (``digits.train.engines``): the first of ``ENGINES``
that says it handles the models and the settings. ``fit`` returns a History; printing is left
to callbacks. Optional per-epoch checkpoints let ``fit(..., resume=True)`` continue a killed run
to the same weights, bit for bit on CPU.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from digits.data.dataset import DigitSet
from digits.data.normalise import normalise_set
from digits.data.tensors import TensorSet
from digits.errors import DigitsError
from digits.hardware import choose_precision, hardware
from digits.models.registry import create_model
from digits.train.callbacks import Callback, StepProgress
from digits.train.checkpoint import load_checkpoint, save_checkpoint
from digits.train.config import TrainConfig
from digits.train.device import resolve_device
from digits.train.engines import AutogradEngine, EngineUnavailable, evaluate  # noqa: F401 (evaluate: the loop's API)
from digits.train.fast_mlp import FusedMlpEngine, mlp_layers
from digits.train.graphed import GraphedEngine
from digits.train.history import COLUMNS, History
from digits.train.schedule import StepRates

# Tried in order; the general engine last, since it handles everything.
ENGINES = (GraphedEngine, FusedMlpEngine, AutogradEngine)


def seed_everything(seed: int) -> None:
    """Seed every generator that model initialisation and training draw from."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def choose_engine(models: Sequence[nn.Module], config: TrainConfig, device: torch.device) -> list[type]:
    """The engines that say they handle ``models`` with ``config`` on ``device``, the first preferred."""
    return [engine for engine in ENGINES if engine.supports(models, config, device)]


def _build_engine(models: Sequence[nn.Module], data: TensorSet, config: TrainConfig, device: torch.device):
    for engine in choose_engine(models, config, device):  # the first that builds: a graph may not capture
        try:
            return engine(models, data, config)
        except EngineUnavailable as exc:
            warnings.warn(str(exc), stacklevel=3)
    raise AssertionError("the general engine handles everything")


class BestTracker:
    """Tracks the monitored metric for early stopping and restoring the best weights."""

    def __init__(self, monitor: str, patience: int) -> None:
        self.monitor, self.patience = monitor, patience
        self.sign = 1.0 if monitor == "val_accuracy" else -1.0
        self.best, self.best_epoch, self.bad_epochs = -math.inf, 0, 0
        self.state: dict[str, torch.Tensor] | None = None

    def update(self, epoch: int, row: dict[str, float], model: nn.Module, keep_weights: bool) -> bool:
        """Record ``row``; return True when patience has run out."""
        value = self.sign * row[self.monitor]
        if value > self.best:
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
            if keep_weights:
                self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            self.bad_epochs += 1
        return bool(self.patience) and self.bad_epochs >= self.patience

    def to_dict(self) -> dict[str, float]:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs}

    def load(self, values: dict[str, float], state: dict[str, torch.Tensor] | None) -> None:
        self.best, self.best_epoch = float(values["best"]), int(values["best_epoch"])
        self.bad_epochs, self.state = int(values["bad_epochs"]), state


def fit(model: nn.Module, train: DigitSet | TensorSet, config: TrainConfig, val: DigitSet | None = None,
        callbacks: Sequence[Callback] = (), device: torch.device | None = None,
        checkpoint_dir: str | os.PathLike[str] | None = None, resume: bool = False) -> History:
    """Train ``model`` in place for ``config.epochs``; return the per-epoch history.

    Shuffling draws from a generator seeded with ``config.seed``, so on the CPU the same
    seed gives the same history, bit for bit (apart from the seconds column). With
    ``checkpoint_dir`` the full state is saved after every epoch; ``resume`` continues
    from the last one.
    """
    return fit_side_by_side([model], train, config, val, callbacks, device, checkpoint_dir, resume)[0]


def fit_side_by_side(models: Sequence[nn.Module], train: DigitSet | TensorSet, config: TrainConfig,
                     val: DigitSet | None = None, callbacks: Sequence[Callback] = (),
                     device: torch.device | None = None, checkpoint_dir: str | os.PathLike[str] | None = None,
                     resume: bool = False) -> list[History]:
    """``fit`` for several models at once, on the same batches with the same settings (a grid's
    widths): one history each. Callbacks see the mean of their rows. Checkpoints and early
    stopping are for one model."""
    device = device or resolve_device(config.device)
    overhead_bound = all(mlp_layers(m) is not None for m in models)
    config = config.on_device(device.type).replace(
        precision=choose_precision(config.precision, hardware(device), overhead_bound))
    if len(models) > 1 and (checkpoint_dir is not None or config.early_stopping):
        raise ValueError("models trained side by side keep no checkpoints and do not stop early")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels
    for model in models:
        model.to(device)
        if config.channels_last:
            model.to(memory_format=torch.channels_last)
    # With config.normalise the rows are normalised once, before any augmentation, here for every
    # way into the loop (digits train, the grid, DigitClassifier), as the Predictor normalises what it reads.
    train, val = _normalised(train, config.normalise), (None if val is None else _normalised(val, config.normalise))
    data = TensorSet.from_digits(train, device)
    val_data = TensorSet.from_digits(val, device) if val is not None and len(val) else None
    if config.early_stopping and val_data is None:
        raise ValueError("early stopping needs a validation set")
    engine = _build_engine(models, data, config, device)
    if resume and not engine.checkpoints:
        raise DigitsError("runs with CUDA graphs keep no checkpoints to resume from")
    checkpoint_dir = checkpoint_dir if engine.checkpoints else None
    mode = "max" if config.monitor == "val_accuracy" else "min"
    rates = StepRates(config, engine.steps, mode)
    generator = torch.Generator().manual_seed(config.seed)
    tracker = BestTracker(config.monitor, config.early_stopping)
    keep_best = bool(config.early_stopping and config.restore_best)
    histories, first_epoch, stopped = [History() for _ in models], 1, False
    if resume and checkpoint_dir is not None:
        state, best = load_checkpoint(checkpoint_dir, model=models[0], optimizer=engine.optimizers[0],
                                      scheduler=rates, shuffle_rng=generator)
        engine.load_state_dict(state["engine"])
        histories = [History([dict(r) for r in state["history"]])]
        tracker.load(state["tracker"], best)
        first_epoch, stopped = state["epoch"] + 1, state["stopped"]
    for cb in callbacks:
        cb.on_train_begin(config.epochs, engine.steps)
    for epoch in range(first_epoch, config.epochs + 1):
        if stopped:
            break
        for cb in callbacks:
            cb.on_epoch_begin(epoch)
        started = time.perf_counter()
        order = (torch.randperm(len(data), generator=generator) if config.shuffle
                 else torch.arange(len(data))).to(device)
        lrs, momenta = rates.next_epoch()
        results = engine.run_epoch(order, (lrs, momenta), StepProgress(callbacks, epoch, engine.steps))
        seconds = time.perf_counter() - started
        held_out = engine.evaluate(val_data) if val_data is not None else [(math.nan, math.nan)] * len(models)
        for history, (loss, acc), (val_loss, val_acc) in zip(histories, results, held_out):
            history.append({"epoch": epoch, "loss": loss, "accuracy": acc, "val_loss": val_loss,
                            "val_accuracy": val_acc, "lr": lrs[-1], "seconds": seconds})
        row = {c: float(np.mean([h.rows[-1][c] for h in histories])) for c in COLUMNS}
        rates.end_epoch(row["val_accuracy"] if mode == "max" else row["val_loss"])
        if val_data is not None:
            stopped = tracker.update(epoch, row, models[0], keep_best)
        stopped = any([cb.on_epoch_end(epoch, row) for cb in callbacks]) or stopped
        if checkpoint_dir is not None:
            save_checkpoint(checkpoint_dir, epoch, model=models[0], optimizer=engine.optimizers[0], scheduler=rates,
                            shuffle_rng=generator, best_state=tracker.state,
                            extra={"history": histories[0].rows, "tracker": tracker.to_dict(), "stopped": stopped},
                            engine_state=engine.state_dict())
    if keep_best and tracker.state is not None:
        models[0].load_state_dict(tracker.state)
    for cb in callbacks:
        cb.on_train_end(histories[0])
    return histories


def _normalised(data: DigitSet | TensorSet, how: str) -> DigitSet | TensorSet:
    if how == "none":
        return data
    if isinstance(data, TensorSet):
        raise DigitsError(f"normalise = {how!r} needs the images (a DigitSet), not tensors already made")
    return normalise_set(data, how)


def train_model(config: TrainConfig, train: DigitSet, val: DigitSet | None = None,
                callbacks: Sequence[Callback] = (), checkpoint_dir: str | os.PathLike[str] | None = None,
                resume: bool = False) -> tuple[nn.Module, History]:
    """Seed, build ``config.model`` and fit it: the one call behind ``digits train``."""
    seed_everything(config.seed)
    model = create_model(config.model, **config.model_args)
    history = fit(model, train, config, val, callbacks, checkpoint_dir=checkpoint_dir, resume=resume)
    return model, history


def checkpoint_folder(run_dir: str | os.PathLike[str]) -> Path:
    """Where a run directory keeps its checkpoints."""
    return Path(run_dir) / "checkpoint"
