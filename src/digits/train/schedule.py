"""Learning-rate schedules by name, and the one place they are applied: ``StepRates`` gives
the training loop the learning rate (and one-cycle's momentum) of every step of an epoch, and
every engine sets each step's rate from that table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.optim import lr_scheduler

from digits.errors import DigitsError
from digits.train.config import TrainConfig

Rates = tuple[list[float], "list[float] | None"]  # one epoch: each step's learning rate, and momentum when cycled


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


def cycles_momentum(config: TrainConfig) -> bool:
    """Whether the schedule moves the optimizer's momentum too (one-cycle does, unless told not to)."""
    return config.schedule == "onecycle" and bool(config.schedule_args.get("cycle_momentum", True))


def set_rate(group: dict[str, Any], lr: float, momentum: float | None = None) -> None:
    """One step's rate into an optimizer's parameter group, as torch's schedulers write it (a cycled
    momentum is Adam's beta1, else the ``momentum`` setting)."""
    group["lr"] = lr
    if momentum is not None:
        if "betas" in group:
            group["betas"] = (momentum, group["betas"][1])
        else:
            group["momentum"] = momentum


class StepRates:
    """The rate of every optimizer step, an epoch at a time, for every engine alike.

    torch's scheduler runs on a probe optimizer that holds no weights, so the rates are exactly
    what it would set on the real one; an engine reads them from a table (a CUDA graph cannot
    run a scheduler's Python). ``plateau`` works too: an epoch's table is made when it begins.
    """

    def __init__(self, config: TrainConfig, steps_per_epoch: int, mode: str = "max") -> None:
        self.probe = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=config.lr)
        self.schedule = build_schedule(config.schedule, self.probe, config.epochs, steps_per_epoch, mode,
                                       **config.schedule_args)
        self.steps = steps_per_epoch
        self.cycles = self.schedule is not None and bool(getattr(self.schedule.scheduler, "cycle_momentum", False))

    def next_epoch(self) -> Rates:
        """The rates of the next epoch's steps (and their momenta when the schedule cycles it)."""
        group = self.probe.param_groups[0]
        if self.schedule is None or self.schedule.interval != "step":
            return [group["lr"]] * self.steps, None
        lrs, momenta = [], []
        for _ in range(self.steps):
            lrs.append(group["lr"])
            momenta.append(group["momentum"])
            self.probe.step()  # no gradient, so nothing moves; torch wants it before each scheduler step
            self.schedule.after_step()
        return lrs, momenta if self.cycles else None

    def end_epoch(self, metric: float) -> None:
        """After the epoch: per-epoch schedules step (``plateau`` on ``metric``)."""
        if self.schedule is not None and self.schedule.interval != "step":
            self.probe.step()
            self.schedule.after_epoch(metric)

    def state_dict(self) -> dict[str, Any] | None:
        if self.schedule is None:
            return None
        group = self.probe.param_groups[0]
        return {"scheduler": self.schedule.scheduler.state_dict(), "lr": group["lr"], "momentum": group["momentum"]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.schedule is not None:
            self.schedule.scheduler.load_state_dict(state["scheduler"])
            self.probe.param_groups[0].update(lr=state["lr"], momentum=state["momentum"])
