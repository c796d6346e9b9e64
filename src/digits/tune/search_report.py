"""The terminal side of an Optuna search: a bar over the trials with a live best-so-far
line and a bar over the optimizer steps of each running trial (rate and time left, as
``digits train`` shows an epoch) while workers run, then the trials table, the pictures and
the best trial as a preset."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from digits.errors import TuneError
from digits.tune.search import (
    Snapshot,
    WorkerSettings,
    open_study,
    run_worker,
    start_workers,
    watch,
)
from digits.tune.space import SearchSpace


def _best_line(snap: Snapshot) -> str:
    if snap.best_value is None:
        return "best: -"
    params = " ".join(f"{k.removeprefix('model_args.')}={v:.3g}" if isinstance(v, float) else
                      f"{k.removeprefix('model_args.')}={v}" for k, v in snap.best_params.items())
    return f"best {snap.best_value:.4f} (#{snap.best_number}: {params})"


class TrialBars:
    """One bar per running trial over its steps, added when it starts, gone when it ends."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[int, Any] = {}
        self.first: dict[int, tuple[float, int]] = {}  # when each trial was first seen, at which step

    def update(self, steps: tuple[tuple[int, int, int], ...]) -> None:
        running = {number: (done, total) for number, done, total in steps}
        for number in set(self.tasks) - set(running):
            self.progress.remove_task(self.tasks.pop(number))
        now = time.monotonic()
        for number, (done, total) in sorted(running.items()):
            if number not in self.tasks:
                self.tasks[number] = self.progress.add_task(f"  trial #{number}", total=total or None, best="", rate="")
            since, start = self.first.setdefault(number, (now, done))
            rate = f"{(done - start) / (now - since):,.1f} steps/s" if now > since and done > start else ""
            self.progress.update(self.tasks[number], completed=done, total=total or None, rate=rate)


def run_search_with_progress(settings: WorkerSettings, workers: int, console: Console,
                             tally: str = "stdout") -> Any:
    """Run ``workers`` workers (in this process when 1) and show progress until they stop;
    worker processes print their tallies on ``tally`` (see ``start_workers``)."""
    study = open_study(settings)  # created here first, so workers only join it
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("left"),
                        TimeRemainingColumn(), TextColumn("{task.fields[best]}"), console=console,
                        disable=not console.is_terminal)
    task = progress.add_task("trials", total=settings.trials, best="best: -", rate="")
    bars = TrialBars(progress)
    shown = {"finished": -1}

    def on_change(snap: Snapshot) -> None:
        progress.update(task, completed=min(snap.finished, settings.trials), best=_best_line(snap))
        bars.update(snap.steps)
        if not console.is_terminal and snap.finished != shown["finished"]:
            console.print(f"  {snap.finished}/{settings.trials} trials finished, {snap.running} running, "
                          f"{snap.failed} failed; {_best_line(snap)}")
        shown["finished"] = snap.finished

    with progress:
        if workers == 1:
            # The trials run in this (main) thread, so Ctrl-C stops the trial in progress;
            # the watcher reads the storage from a thread beside it.
            stop = threading.Event()
            watcher = threading.Thread(target=watch, args=(study, stop.is_set, on_change), daemon=True)
            watcher.start()
            try:
                ran = run_worker(settings)
            finally:
                stop.set()
                watcher.join(timeout=10)
            console.print(f"this worker ran trials {ran}")
        else:
            procs = start_workers(settings, workers, tally)
            try:
                watch(study, lambda: not any(p.is_alive() for p in procs), on_change)
            finally:
                # Ctrl-C reaches the workers too (one process group); wait for them to stop.
                for p in procs:
                    p.join()
            if any(p.exitcode for p in procs):
                codes = [p.exitcode for p in procs]
                raise TuneError(f"a worker failed (exit codes {codes}); the study keeps every finished trial")
    return study


def finish_search(study: Any, space: SearchSpace, folder: Path, console: Console) -> dict[str, Path]:
    """Print the trials table; write trials.csv, the pictures and best.toml into ``folder``;
    return the files written, labelled."""
    import optuna

    from digits.presets import write_preset
    from digits.train.config import TrainConfig
    from digits.tune.report import save_study_plots, trials_table, write_trials_csv

    console.print(trials_table(study))
    files = {"trials": write_trials_csv(folder / "trials.csv", study)}
    files.update({picture.stem: picture for picture in save_study_plots(study, folder)})
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not done:
        console.print("no trial finished; nothing to write as a preset")
        return files
    best = max(done, key=lambda t: t.value)
    config = TrainConfig.from_dict(best.user_attrs["config"]).replace(val_split=0.0)
    preset = write_preset(folder / "best.toml", config,
                          f"study {study.study_name} ({space.name}): trial #{best.number}, "
                          f"validation accuracy {best.value:.4f} on the last {space.fixed['val_split']:g} of rows",
                          f"about {best.value:.4f} on held-out rows (what trial #{best.number} reached)")
    console.print(f"best trial #{best.number}: {best.value:.4f}; as a preset: {preset}")
    console.print(f"train it on every row: digits train --preset {preset}")
    return files | {"best_preset": preset}
