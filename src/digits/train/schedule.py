"""Learning-rate schedules by name, stepped once per batch."""

from __future__ import annotations

import math

import torch

from digits.errors import DigitsError

SCHEDULES = ("constant", "cosine", "onecycle")


def build_scheduler(name: str, optimizer: torch.optim.Optimizer,
                    total_steps: int) -> torch.optim.lr_scheduler.LRScheduler | None:
    """``constant`` (None: the optimizer's lr throughout), ``cosine`` (from lr down to 0 over
    the run) or ``onecycle`` (warm up to lr over the first quarter, then anneal; Smith 2018)."""
    if name == "constant":
        return None
    total_steps = max(total_steps, 1)
    if name == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps)))
    if name == "onecycle":
        max_lr = [group["lr"] for group in optimizer.param_groups]
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=total_steps + 1,
                                                   pct_start=0.25, cycle_momentum=False)
    raise DigitsError(f"unknown schedule {name!r}; known: {', '.join(SCHEDULES)}")
