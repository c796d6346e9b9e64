"""The fit loop: the whole data set on the device as uint8, batches by index, no DataLoader.

``fit`` returns a History; printing is left to callbacks.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from digits.data.augment import random_affine
from digits.data.dataset import DigitSet
from digits.models.registry import create_model
from digits.train.callbacks import Callback
from digits.train.config import TrainConfig
from digits.train.device import resolve_device
from digits.train.history import History
from digits.train.optim import build_optimizer
from digits.train.schedule import build_scheduler


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


def train_one_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, data: TensorSet,
                    batch_size: int, order: torch.Tensor,
                    callbacks: Sequence[Callback] = (), epoch: int = 0,
                    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
                    augment: float = 0.0) -> tuple[float, float]:
    """One pass over ``data`` in ``order``; returns (mean loss, accuracy) over the examples.

    ``scheduler`` is stepped after every batch; ``augment`` > 0 jitters each batch."""
    model.train()
    loss_sum = torch.zeros((), device=data.x.device)
    correct = torch.zeros((), device=data.x.device, dtype=torch.int64)
    for step, start in enumerate(range(0, len(order), batch_size), start=1):
        idx = order[start:start + batch_size]
        x, y = data.x[idx], data.y[idx]
        if augment > 0:
            x = random_affine(x, augment)
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        # Accumulate on the device: a .item() here would sync every step.
        loss_sum += loss.detach() * len(idx)
        correct += (logits.detach().argmax(1) == y).sum()
        for cb in callbacks:
            cb.on_batch_end(epoch, step)
    n = len(order)
    return loss_sum.item() / n, correct.item() / n


@torch.no_grad()
def evaluate(model: nn.Module, data: TensorSet, batch_size: int = 2048) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of ``model`` on ``data``."""
    model.eval()
    loss_sum, correct = 0.0, 0
    for start in range(0, len(data), batch_size):
        x, y = data.x[start:start + batch_size], data.y[start:start + batch_size]
        logits = model(x)
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        correct += int((logits.argmax(1) == y).sum())
    return loss_sum / max(len(data), 1), correct / max(len(data), 1)


def fit(model: nn.Module, train: DigitSet, config: TrainConfig, val: DigitSet | None = None,
        callbacks: Sequence[Callback] = (), device: torch.device | None = None) -> History:
    """Train ``model`` in place for ``config.epochs``; return the per-epoch history.

    Shuffling draws from a generator seeded with ``config.seed``, so on the CPU the same
    seed gives the same history, bit for bit (apart from the seconds column).
    """
    device = device or resolve_device(config.device)
    model.to(device)
    data = TensorSet.from_digits(train, device)
    val_data = TensorSet.from_digits(val, device) if val is not None and len(val) else None
    optimizer = build_optimizer(config.optimizer, model.parameters(), config.lr, **config.optimizer_args)
    generator = torch.Generator().manual_seed(config.seed)
    steps = math.ceil(len(data) / config.batch_size)
    scheduler = build_scheduler(config.schedule, optimizer, steps * config.epochs)
    for cb in callbacks:
        cb.on_train_begin(config.epochs, steps)
    history = History()
    for epoch in range(1, config.epochs + 1):
        for cb in callbacks:
            cb.on_epoch_begin(epoch)
        started = time.perf_counter()
        order = (torch.randperm(len(data), generator=generator) if config.shuffle
                 else torch.arange(len(data))).to(device)
        loss, acc = train_one_epoch(model, optimizer, data, config.batch_size, order, callbacks, epoch,
                                    scheduler, config.augment)
        seconds = time.perf_counter() - started
        val_loss, val_acc = evaluate(model, val_data) if val_data is not None else (math.nan, math.nan)
        row = {"epoch": epoch, "loss": loss, "accuracy": acc, "val_loss": val_loss,
               "val_accuracy": val_acc, "lr": optimizer.param_groups[0]["lr"], "seconds": seconds}
        history.append(row)
        if any([cb.on_epoch_end(epoch, history.rows[-1]) for cb in callbacks]):
            break
    for cb in callbacks:
        cb.on_train_end(history)
    return history


def train_model(config: TrainConfig, train: DigitSet, val: DigitSet | None = None,
                callbacks: Sequence[Callback] = ()) -> tuple[nn.Module, History]:
    """Seed, build ``config.model`` and fit it: the one call behind ``digits train``."""
    seed_everything(config.seed)
    model = create_model(config.model, **config.model_args)
    history = fit(model, train, config, val, callbacks)
    return model, history
