"""Hooks into the fit loop. The loop computes; callbacks show progress or stop early."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from digits.train.history import History


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
