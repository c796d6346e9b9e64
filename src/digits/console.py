"""Terminal output for the CLI: progress bars (epochs, predictions, downloads) and the epoch table.

Results go to ``console`` (stdout). Progress goes to ``progress_console`` (stderr), so that
``digits train ... > log`` keeps a clean log while the terminal still shows the bar, and
``--quiet`` and ``--json`` silence it (``digits.output.output_mode``).
"""

from __future__ import annotations

import math
import sys
import time
from typing import TYPE_CHECKING, Any

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
progress_console = Console(stderr=True, highlight=False, width=line_width(sys.stderr))
LOG_EVERY = 30.0  # seconds between progress lines when stderr is a log, not a terminal
REFRESHES = 4     # bar redraws a second on a terminal


class WorkBar:
    """Progress of one long piece of work on stderr: done / total, rate and time left.

    On a terminal rich redraws the bar ``REFRESHES`` times a second from its own thread, so
    ``update`` only stores a number. On a log (CI, ``2> file``), one line every ``LOG_EVERY``
    seconds instead, so short work prints nothing and long work is never silent for long.
    Nothing at all when the progress console is quiet (``--quiet``, ``--json``).
    """

    def __init__(self, description: str, total: int, unit: str = "steps", out: Console | None = None) -> None:
        self.out = out or progress_console
        self.description, self.total, self.unit = description, total, unit
        self.progress: Progress | None = None
        self.task: Any = None
        self.started = self.logged = time.perf_counter()

    def __enter__(self) -> WorkBar:
        if self.out.is_terminal and not self.out.quiet:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.progress = Progress(TextColumn(self.description), BarColumn(), MofNCompleteColumn(),
                                     TextColumn(f"{{task.fields[rate]}} {self.unit}/s"), TimeElapsedColumn(),
                                     TextColumn("left"), TimeRemainingColumn(), console=self.out,
                                     transient=True, refresh_per_second=REFRESHES)
            self.progress.start()
            self.task = self.progress.add_task(self.description, total=self.total, rate="-")
        return self

    def update(self, done: int) -> None:
        """``done`` of ``total`` are finished."""
        now = time.perf_counter()
        rate = done / max(now - self.started, 1e-9)
        if self.progress is not None:
            self.progress.update(self.task, completed=done, rate=f"{rate:,.1f}")
        elif not self.out.quiet and now - self.logged >= LOG_EVERY and done < self.total:
            self.logged = now
            left = (self.total - done) / rate if rate > 0 else math.inf
            self.out.print(f"  {self.description}: {done:,}/{self.total:,} {self.unit} ({done / self.total:.0%}), "
                           f"{rate:,.1f} {self.unit}/s, about {_duration(left)} left", soft_wrap=True)

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def _fmt(value: float, digits: int = 4) -> str:
    return "     -" if math.isnan(value) else f"{value:.{digits}f}"


class EpochProgress(Callback):
    """A bar inside each epoch (steps, rate, time left; on stderr, see ``WorkBar``), then one
    table row per epoch on stdout (as Keras prints)."""

    def __init__(self, out: Console = console, progress_out: Console | None = None) -> None:
        self.out, self.progress_out = out, progress_out
        self.bar: WorkBar | None = None
        self.epochs = 0
        self.steps = 0

    def on_train_begin(self, epochs: int, steps_per_epoch: int) -> None:
        self.epochs, self.steps = epochs, steps_per_epoch
        self.out.print(f"{'epoch':>7} {'loss':>7} {'acc':>7} {'val_loss':>9} {'val_acc':>8} {'lr':>9} {'sec':>6}")

    def on_epoch_begin(self, epoch: int) -> None:
        self.bar = WorkBar(f"epoch {epoch}/{self.epochs}", self.steps, "steps", self.progress_out).__enter__()

    def on_batch_end(self, epoch: int, step: int) -> None:
        if self.bar is not None:
            self.bar.update(step)

    def on_epoch_end(self, epoch: int, row: dict[str, float]) -> None:
        if self.bar is not None:
            self.bar.__exit__()
            self.bar = None
        self.out.print(f"{epoch:>3}/{self.epochs:<3} {_fmt(row['loss'])} {_fmt(row['accuracy'])} "
                       f"{_fmt(row['val_loss']):>9} {_fmt(row['val_accuracy']):>8} "
                       f"{row['lr']:>9.2e} {row['seconds']:>6.2f}")

    def on_train_end(self, history: object) -> None:
        if self.bar is not None:  # an epoch that raised: take the bar down
            self.bar.__exit__()
            self.bar = None


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
