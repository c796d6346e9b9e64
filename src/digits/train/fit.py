"""The fit loop: the whole data set on the device as uint8, batches by index, no DataLoader.

``fit`` returns a History; printing is left to callbacks. Optional per-epoch checkpoints
let ``fit(..., resume=True)`` continue a killed run to the same weights, bit for bit on CPU.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from digits.data.dataset import DigitSet
from digits.errors import DigitsError
from digits.hardware import choose_precision, hardware
from digits.models.registry import create_model
from digits.precision import autocast, grad_scaler
from digits.train.augment import random_affine
from digits.train.callbacks import Callback
from digits.train.checkpoint import load_checkpoint, save_checkpoint
from digits.train.config import TrainConfig
from digits.train.device import resolve_device
from digits.train.fast_mlp import FastMlpEpochs, can_fit_fast, mlp_layers
from digits.train.history import History
from digits.train.optim import build_optimizer
from digits.train.schedule import Schedule, build_schedule


@dataclass(frozen=True)
class TensorSet:
    """A labelled set on the device: ``x`` uint8 (N, 28, 28), ``y`` int64 (N,)."""

    x: torch.Tensor
    y: torch.Tensor

    @classmethod
    def from_digits(cls, data: DigitSet, device: torch.device) -> TensorSet:
        labels = data.require_labels()
        return cls(torch.from_numpy(np.ascontiguousarray(data.images)).to(device),
                   torch.from_numpy(labels.astype(np.int64)).to(device))

    def __len__(self) -> int:
        return len(self.y)


def seed_everything(seed: int) -> None:
    """Seed every generator that model initialisation and training draw from."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


@dataclass
class StepSettings:
    """What each optimizer step needs besides the model and the data."""

    batch_size: int
    label_smoothing: float = 0.0
    augment: dict[str, float] = field(default_factory=dict)
    precision: str = "fp32"
    scaler: torch.amp.GradScaler | None = None  # fp16: scales the loss so small gradients survive


def train_one_epoch(forward: Callable[[torch.Tensor], torch.Tensor], model: nn.Module,
                    optimizer: torch.optim.Optimizer, data: TensorSet, order: torch.Tensor,
                    settings: StepSettings, schedule: Schedule | None = None,
                    callbacks: Sequence[Callback] = (), epoch: int = 0) -> tuple[float, float, float]:
    """One pass over ``data`` in ``order``; returns (mean loss, accuracy, learning rate of the
    last step)."""
    model.train()
    device = data.x.device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    seen, lr = 0, optimizer.param_groups[0]["lr"]
    for step, start in enumerate(range(0, len(order), settings.batch_size), start=1):
        idx = order[start:start + settings.batch_size]
        if len(idx) < 2 and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
            continue  # batch norm cannot train on a single example
        x, y = data.x[idx], data.y[idx]
        if settings.augment:
            x = random_affine(x, **settings.augment)
        with autocast(device, settings.precision):
            logits = forward(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=settings.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        lr = optimizer.param_groups[0]["lr"]
        if settings.scaler is None:
            loss.backward()
            optimizer.step()
        else:  # fp16: skips the step (and lowers the scale) when a gradient overflowed
            settings.scaler.scale(loss).backward()
            settings.scaler.step(optimizer)
            settings.scaler.update()
        if schedule is not None:
            schedule.after_step()
        # Accumulate on the device: a .item() here would sync every step.
        loss_sum += loss.detach() * len(idx)
        correct += (logits.detach().argmax(1) == y).sum()
        seen += len(idx)
        for cb in callbacks:
            cb.on_batch_end(epoch, step)
    return loss_sum.item() / max(seen, 1), correct.item() / max(seen, 1), lr


@torch.no_grad()
def evaluate(model: nn.Module, data: TensorSet, batch_size: int = 2048,
             precision: str = "fp32") -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of ``model`` on ``data``."""
    model.eval()
    loss_sum, correct = 0.0, 0
    for start in range(0, len(data), batch_size):
        x, y = data.x[start:start + batch_size], data.y[start:start + batch_size]
        with autocast(x.device, precision):
            logits = model(x).float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        correct += int((logits.argmax(1) == y).sum())
    return loss_sum / max(len(data), 1), correct / max(len(data), 1)


class BestTracker:
    """Tracks the monitored metric for early stopping and restoring the best weights."""

    def __init__(self, monitor: str, patience: int) -> None:
        self.monitor, self.patience = monitor, patience
        self.sign = 1.0 if monitor == "val_accuracy" else -1.0
        self.best = -math.inf
        self.best_epoch = 0
        self.bad_epochs = 0
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


def fit(model: nn.Module, train: DigitSet, config: TrainConfig, val: DigitSet | None = None,
        callbacks: Sequence[Callback] = (), device: torch.device | None = None,
        checkpoint_dir: str | os.PathLike[str] | None = None, resume: bool = False) -> History:
    """Train ``model`` in place for ``config.epochs``; return the per-epoch history.

    Shuffling draws from a generator seeded with ``config.seed``, so on the CPU the same
    seed gives the same history, bit for bit (apart from the seconds column). With
    ``checkpoint_dir`` the full state is saved after every epoch; ``resume`` continues
    from the last one.
    """
    device = device or resolve_device(config.device)
    config = config.replace(precision=choose_precision(config.precision, hardware(device), mlp_layers(model) is not None))
    model.to(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    forward = torch.compile(model) if config.compile else model
    data = TensorSet.from_digits(train, device)
    val_data = TensorSet.from_digits(val, device) if val is not None and len(val) else None
    if config.early_stopping and val_data is None:
        raise ValueError("early stopping needs a validation set")
    graphed = None
    if config.cuda_graphs and device.type == "cuda":
        if resume:
            raise DigitsError("runs with CUDA graphs keep no checkpoints to resume from")
        graphed = _graphed_trainer(model, data, config)  # compiles forward and loss itself
        checkpoint_dir = None if graphed else checkpoint_dir
    optimizer = graphed.optimizer if graphed else build_optimizer(
        config.optimizer, model.parameters(), config.lr, weight_decay=config.weight_decay, **config.optimizer_args)
    fast = (FastMlpEpochs(model, optimizer, config.batch_size, callbacks)  # plain MLP on the CPU
            if graphed is None and can_fit_fast(model, config, callbacks, device) else None)
    steps = graphed.steps if graphed else math.ceil(len(data) / config.batch_size)
    mode = "max" if config.monitor == "val_accuracy" else "min"
    schedule = None if graphed else build_schedule(config.schedule, optimizer, config.epochs, steps, mode,
                                                   **config.schedule_args)
    generator = torch.Generator().manual_seed(config.seed)
    settings = StepSettings(config.batch_size, config.label_smoothing, dict(config.augment), config.precision,
                            grad_scaler(device, config.precision))
    tracker = BestTracker(config.monitor, config.early_stopping)
    keep_best = bool(config.early_stopping and config.restore_best)
    history, first_epoch, stopped = History(), 1, False
    if resume and checkpoint_dir is not None:
        state, best = load_checkpoint(checkpoint_dir, model=model, optimizer=optimizer,
                                      scheduler=schedule.scheduler if schedule else None,
                                      shuffle_rng=generator)
        history = History([dict(r) for r in state["history"]])
        tracker.load(state["tracker"], best)
        first_epoch, stopped = state["epoch"] + 1, state["stopped"]
    for cb in callbacks:
        cb.on_train_begin(config.epochs, steps)
    for epoch in range(first_epoch, config.epochs + 1):
        if stopped:
            break
        for cb in callbacks:
            cb.on_epoch_begin(epoch)
        started = time.perf_counter()
        if graphed is not None:
            loss, acc, lr = graphed.run_epoch(generator)
        else:
            order = (torch.randperm(len(data), generator=generator) if config.shuffle
                     else torch.arange(len(data))).to(device)
            loss, acc, lr = (fast.run_epoch(data, order, epoch) if fast is not None else
                             train_one_epoch(forward, model, optimizer, data, order, settings, schedule,
                                             callbacks, epoch))
        seconds = time.perf_counter() - started
        val_loss, val_acc = (evaluate(model, val_data, precision=config.precision) if val_data is not None
                             else (math.nan, math.nan))
        row = {"epoch": epoch, "loss": loss, "accuracy": acc, "val_loss": val_loss, "val_accuracy": val_acc,
               "lr": lr, "seconds": seconds}
        if schedule is not None:
            schedule.after_epoch(val_acc if mode == "max" else val_loss)
        history.append(row)
        if val_data is not None:
            stopped = tracker.update(epoch, history.rows[-1], model, keep_best)
        stopped = any([cb.on_epoch_end(epoch, history.rows[-1]) for cb in callbacks]) or stopped
        if checkpoint_dir is not None:
            save_checkpoint(checkpoint_dir, epoch, model=model, optimizer=optimizer,
                            scheduler=schedule.scheduler if schedule else None, shuffle_rng=generator,
                            best_state=tracker.state,
                            extra={"history": history.rows, "tracker": tracker.to_dict(), "stopped": stopped})
    if keep_best and tracker.state is not None:
        model.load_state_dict(tracker.state)
    for cb in callbacks:
        cb.on_train_end(history)
    return history


def _graphed_trainer(model: nn.Module, data: TensorSet, config: TrainConfig):
    """A CUDA-graph trainer, or None (with a warning) when this model cannot be captured."""
    import warnings

    from digits.train.graphed import GraphedTrainer

    try:
        return GraphedTrainer(model, data, config)
    except DigitsError:
        raise
    except RuntimeError as exc:  # an operation that cannot be captured: train eagerly instead
        warnings.warn(f"CUDA graph capture failed, training without graphs: {exc}", stacklevel=2)
        torch.cuda.synchronize()
        return None


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
