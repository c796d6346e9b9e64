"""Hooks into the fit loop. The loop computes; callbacks show progress or stop early."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from digits.train.history import History

PROGRESS_UPDATES = 50  # on_batch_end calls per epoch at most: a bar redraws a few times a second anyway


class Callback:
    """Base class: override the hooks you need. ``on_epoch_end`` returns True to stop."""

    def on_train_begin(self, epochs: int, steps_per_epoch: int) -> None:
        """Called once, before the first epoch."""

    def on_epoch_begin(self, epoch: int) -> None:
        """Called before each epoch (1-based)."""

    def on_batch_end(self, epoch: int, step: int) -> None:
        """Called after each optimizer step (1-based within the epoch)."""

    def on_epoch_end(self, epoch: int, row: dict[str, float]) -> bool | None:
        """Called with the epoch's history row; return True to stop training."""
        return None

    def on_train_end(self, history: History) -> None:
        """Called once, after the last epoch."""


class StepProgress:
    """The one progress hook of every step engine (``digits.train.engines``): the loop hands
    one to the engine each epoch, the engine calls it with the optimizer steps done so far, and it hands every ``stride``-th count (and the last) to the callbacks that listen
    (``on_batch_end``), at most ``PROGRESS_UPDATES`` times an epoch.

    The count is the host's: nothing here reads a tensor, so the device is never synchronised
    for a bar. With no listener a call is one attribute test.
    """

    def __init__(self, callbacks: Sequence[Callback], epoch: int, steps: int) -> None:
        self.listeners = [cb for cb in callbacks
                          if getattr(type(cb), "on_batch_end", None) is not Callback.on_batch_end]
        self.epoch, self.steps = epoch, steps
        self.stride = max(1, steps // PROGRESS_UPDATES)
        self.next = self.stride  # counts may jump (the graph trainer reports a block of steps at once)

    def __call__(self, step: int) -> None:
        if self.listeners and (step >= self.next or step == self.steps):
            self.next = step + self.stride
            for cb in self.listeners:
                cb.on_batch_end(self.epoch, step)


class StepCounter(Callback):
    """Hands one fit's optimizer steps, as they are done, to ``add``: fits trained at once (a grid's)
    then advance one shared bar."""

    def __init__(self, add: Callable[[int], None]) -> None:
        self.add, self.done = add, 0

    def on_epoch_begin(self, epoch: int) -> None:
        self.done = 0

    def on_batch_end(self, epoch: int, step: int) -> None:
        self.add(step - self.done)
        self.done = step
