"""Terminal output for the CLI: a progress bar per epoch and the epoch table, download bars."""

from __future__ import annotations

import math
import sys
from typing import TYPE_CHECKING

from rich.console import Console

from digits.train.callbacks import Callback

if TYPE_CHECKING:
    from rich.progress import Progress


def line_width(stream: object) -> int | None:
    """Piped output (CI logs, `| tee`) gets wide lines instead of rich's 80-column default;
    a terminal, its own width."""
    isatty = getattr(stream, "isatty", None)
    return None if isatty is not None and isatty() else 140


console = Console(highlight=False, width=line_width(sys.stdout))


def _fmt(value: float, digits: int = 4) -> str:
    return "     -" if math.isnan(value) else f"{value:.{digits}f}"


class EpochProgress(Callback):
    """A progress bar while an epoch runs, then one table row per epoch (as Keras prints)."""

    def __init__(self, out: Console = console) -> None:
        self.out = out
        self.progress: Progress | None = None
        self.task = None
        self.epochs = 0
        self.steps = 0

    def on_train_begin(self, epochs: int, steps_per_epoch: int) -> None:
        self.epochs, self.steps = epochs, steps_per_epoch
        self.out.print(f"{'epoch':>7} {'loss':>7} {'acc':>7} {'val_loss':>9} {'val_acc':>8} {'lr':>9} {'sec':>6}")

    def on_epoch_begin(self, epoch: int) -> None:
        if not self.out.is_terminal:
            return  # logs get the table rows only, not bar redraws
        # Imported here: commands that never train (predict, score) do not pay for it.
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(TextColumn(f"epoch {epoch}/{self.epochs}"), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(),
                                 console=self.out, transient=True)
        self.progress.start()
        self.task = self.progress.add_task("train", total=self.steps)

    def on_batch_end(self, epoch: int, step: int) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=step)

    def on_epoch_end(self, epoch: int, row: dict[str, float]) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
        self.out.print(f"{epoch:>3}/{self.epochs:<3} {_fmt(row['loss'])} {_fmt(row['accuracy'])} "
                       f"{_fmt(row['val_loss']):>9} {_fmt(row['val_accuracy']):>8} "
                       f"{row['lr']:>9.2e} {row['seconds']:>6.2f}")


class DownloadProgress:
    """Byte progress bars, one per file, fed by ``load_mnist``'s ``on_bytes`` hook; on a
    log (not a terminal), one line per finished file instead."""

    def __init__(self, out: Console = console) -> None:
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

        self.out = out
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                 TransferSpeedColumn(), console=out, disable=not out.is_terminal)
        self.tasks: dict[str, object] = {}
        self.finished: set[str] = set()

    def __enter__(self) -> DownloadProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def update(self, name: str, done: int, total: int | None) -> None:
        """``done`` of ``total`` bytes (None: unknown) of ``name`` have arrived."""
        if name not in self.tasks:
            self.tasks[name] = self.progress.add_task(f"downloading {name}", total=total)
        self.progress.update(self.tasks[name], completed=done, total=total)
        if total is not None and done == total and name not in self.finished:
            self.finished.add(name)
            if not self.out.is_terminal:
                self.out.print(f"  downloaded {name} ({done / 1e6:.1f} MB)")
