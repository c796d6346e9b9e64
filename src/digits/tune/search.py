"""Running an Optuna search: samplers and pruners by name, one worker's loop, N local worker
processes on one study, and a watcher that reports progress from the storage itself (so it
sees the trials of workers on other machines too)."""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from digits.errors import DigitsError, TuneError
from digits.tune.storage import worker_name

SAMPLERS = ("tpe", "random")
PRUNERS = ("median", "hyperband", "none")


@dataclass(frozen=True)
class WorkerSettings:
    """Everything a worker process needs (picklable: it crosses the process boundary)."""

    storage: str
    study: str
    space: str
    train_csv: str
    trials: int               # finished trials (complete or pruned) the study should reach
    seed: int = 0
    sampler: str = "tpe"
    pruner: str = "median"
    device: str = "auto"
    threads: int | None = None
    heartbeat: int = 10
    timeout: float | None = None  # seconds, per worker


def make_sampler(name: str, seed: int) -> Any:
    import optuna

    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=5)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise TuneError(f"unknown sampler {name!r}; known: {', '.join(SAMPLERS)}")


def make_pruner(name: str) -> Any:
    import optuna

    if name == "median":  # prune below the median of earlier trials at the same epoch
        return optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=0)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, reduction_factor=3)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise TuneError(f"unknown pruner {name!r}; known: {', '.join(PRUNERS)}")


def finished_states() -> tuple[Any, ...]:
    import optuna

    return (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


class _OneLine(logging.Filter):
    """One line per failed trial: Optuna's record without its traceback (the message names the
    error, and the study keeps it as user attribute ``error``), and without the second record
    Optuna adds for the same failure ("Trial N failed with value None.")."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return not record.getMessage().endswith("failed with value None.")


def quiet_optuna() -> None:
    """Optuna's warnings only, each on one line (a failed trial: its message, no traceback)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for handler in logging.getLogger("optuna").handlers:
        if not any(isinstance(f, _OneLine) for f in handler.filters):
            handler.addFilter(_OneLine())


def open_study(settings: WorkerSettings, worker: int = 0) -> Any:
    """Create the study or join it (``load_if_exists``), with this worker's sampler."""
    import optuna

    from digits.tune.storage import open_storage

    quiet_optuna()
    storage = open_storage(settings.storage, heartbeat=settings.heartbeat)
    for attempt in range(5):
        try:
            return optuna.create_study(storage=storage, study_name=settings.study, direction="maximize",
                                       sampler=make_sampler(settings.sampler, settings.seed * 1000 + worker),
                                       pruner=make_pruner(settings.pruner), load_if_exists=True)
        except optuna.exceptions.DuplicatedStudyError:
            time.sleep(0.2 * (attempt + 1))  # two workers created it at once: join the winner's
    raise TuneError(f"study {settings.study}: cannot create or join it")


def run_worker(settings: WorkerSettings, worker: int = 0) -> list[int]:
    """One worker: trial after trial until the study has ``settings.trials`` finished
    trials (counting every worker's), or the timeout. Returns the numbers of the trials it ran."""
    import optuna
    import torch

    from digits.data.kaggle import load_kaggle_csv
    from digits.tune.objective import make_objective
    from digits.tune.space import load_space

    quiet_optuna()
    if settings.threads:  # None: torch's default, one per core
        torch.set_num_threads(settings.threads)
    space = load_space(settings.space)
    data = load_kaggle_csv(settings.train_csv, kind="train")
    study = open_study(settings, worker)
    if len(study.get_trials(deepcopy=False, states=finished_states())) >= settings.trials:
        return []
    ran: list[int] = []
    failures = _StopAfterFailures()
    enough = optuna.study.MaxTrialsCallback(settings.trials, states=finished_states())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=optuna.exceptions.ExperimentalWarning)
        study.optimize(make_objective(space, data, settings.device), timeout=settings.timeout,
                       callbacks=[enough, failures, lambda s, t: ran.append(t.number)], catch=(DigitsError,),
                       gc_after_trial=False)
    if failures.stopped:
        raise TuneError(f"study {settings.study}: {failures.limit} trials in a row failed; the last: "
                        f"{failures.last_error}")
    return ran


class _StopAfterFailures:
    """Stops a worker whose trials keep failing (a space whose settings never train, say),
    which would otherwise try forever, since only finished trials count."""

    def __init__(self, limit: int = 5) -> None:
        self.limit, self.in_a_row, self.stopped, self.last_error = limit, 0, False, ""

    def __call__(self, study: Any, trial: Any) -> None:
        import optuna

        if trial.state != optuna.trial.TrialState.FAIL:
            self.in_a_row = 0
            return
        self.in_a_row += 1
        self.last_error = trial.user_attrs.get("error", "see the log above")
        if self.in_a_row >= self.limit:
            self.stopped = True
            study.stop()


TALLIES = ("stdout", "stderr", "none")


def _worker_main(settings: WorkerSettings, worker: int, tally: str = "stdout") -> None:
    from digits.train.denormals import flush_denormals_from_now_on

    flush_denormals_from_now_on()  # a fresh interpreter: before any tensor work, as the CLI does
    if tally != "stdout":
        # `digits tune --json` owns stdout: whatever a worker prints goes to stderr instead.
        os.dup2(2, 1)
        sys.stdout = sys.stderr
    try:
        ran = run_worker(settings, worker)
    except KeyboardInterrupt:
        return
    if tally != "none":
        # One line per worker: its own tally, to hold against what the storage recorded.
        print(f"worker {worker} ({worker_name()}) ran trials {ran}", flush=True)


def start_workers(settings: WorkerSettings, count: int,
                  tally: str = "stdout") -> list[multiprocessing.Process]:
    """Start ``count`` worker processes on one study; the CPU threads are shared out. Each
    prints its tally when it stops, on ``tally``: stdout, stderr (and nothing on stdout) or none."""
    if tally not in TALLIES:
        raise ValueError(f"tally must be one of {TALLIES}, got {tally!r}")
    ctx = multiprocessing.get_context("spawn")  # a clean interpreter: no forked torch threads
    threads = settings.threads or max(1, (os.cpu_count() or 1) // count)
    per_worker = dataclasses.replace(settings, threads=threads)
    procs = [ctx.Process(target=_worker_main, args=(per_worker, i, tally), name=f"digits-tune-{i}",
                         daemon=False) for i in range(count)]
    for p in procs:
        p.start()
    return procs


@dataclass(frozen=True)
class Snapshot:
    """The study as the storage has it now; ``steps`` holds (number, optimizer steps done, steps
    planned) for each running trial, as its worker records them (``ReportToTrial``)."""

    finished: int
    running: int
    failed: int
    best_value: float | None
    best_number: int | None
    best_params: dict[str, Any]
    steps: tuple[tuple[int, int, int], ...] = ()


def snapshot(study: Any) -> Snapshot:
    import optuna

    trials = study.get_trials(deepcopy=False)
    state = optuna.trial.TrialState
    done = [t for t in trials if t.state == state.COMPLETE]
    best = max(done, key=lambda t: t.value) if done else None
    running = [t for t in trials if t.state == state.RUNNING]
    return Snapshot(sum(t.state in finished_states() for t in trials), len(running),
                    sum(t.state == state.FAIL for t in trials),
                    best.value if best else None, best.number if best else None,
                    dict(best.params) if best else {},
                    tuple((t.number, *t.user_attrs.get("steps", (0, 0))) for t in running))


def watch(study: Any, until: Callable[[], bool], on_change: Callable[[Snapshot], None],
          every: float = 1.0) -> Snapshot:
    """Poll the study every ``every`` seconds, calling ``on_change`` when it changed, until
    ``until()`` is true; returns the last snapshot."""
    last = None
    while True:
        done = until()
        now = snapshot(study)
        if now != last:
            on_change(now)
            last = now
        if done:
            return now
        time.sleep(every)
