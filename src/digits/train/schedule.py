"""Learning-rate schedules by name, stepped per optimizer step or per epoch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.optim import lr_scheduler

from digits.errors import DigitsError


@dataclass
class Schedule:
    """A torch scheduler and when to step it: after every ``"step"`` or every ``"epoch"``."""

    scheduler: Any
    interval: str

    def after_step(self) -> None:
        if self.interval == "step":
            self.scheduler.step()

    def after_epoch(self, metric: float) -> None:
        if self.interval == "epoch":
            self.scheduler.step()
        elif self.interval == "metric":
            self.scheduler.step(metric)


def build_schedule(name: str, optimizer: torch.optim.Optimizer, epochs: int, steps_per_epoch: int,
                   mode: str = "max", **args: Any) -> Schedule | None:
    """Schedule ``name``: constant, step, exponential, cosine, onecycle or plateau.

    ``step``: lr x gamma every ``step_size`` epochs; ``exponential``: lr x gamma^epoch
    (the Kaggle record notebook's 0.95); ``cosine`` and ``onecycle`` run per step over the
    whole run; ``plateau`` cuts lr by ``factor`` when the monitored metric stalls.
    """
    total = max(epochs * steps_per_epoch, 1)
    try:
        if name == "constant":
            return None
        if name == "step":
            return Schedule(lr_scheduler.StepLR(optimizer, step_size=args.get("step_size", 10),
                                                gamma=args.get("gamma", 0.1)), "epoch")
        if name == "exponential":
            return Schedule(lr_scheduler.ExponentialLR(optimizer, gamma=args.get("gamma", 0.95)), "epoch")
        if name == "cosine":
            return Schedule(lr_scheduler.CosineAnnealingLR(optimizer, T_max=total,
                                                           eta_min=args.get("eta_min", 0.0)), "step")
        if name == "onecycle":
            if total < 2:
                return None  # one step has no cycle: train it at the given rate
            max_lr = [g["lr"] for g in optimizer.param_groups]
            # torch divides by the warm-up's length in steps, pct_start * total - 1: keep it above 0
            # so that tiny runs (a few batches) work too; long runs are unaffected.
            args = {**args, "pct_start": max(args.get("pct_start", 0.3), 1.5 / total)}
            return Schedule(lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=total, **args), "step")
        if name == "plateau":
            return Schedule(lr_scheduler.ReduceLROnPlateau(optimizer, mode=mode, factor=args.get("factor", 0.5),
                                                           patience=args.get("patience", 2)), "metric")
    except TypeError as exc:
        raise DigitsError(f"schedule {name!r}: {exc}") from None
    raise DigitsError(f"unknown schedule {name!r}; known: constant, step, exponential, cosine, onecycle, plateau")
