"""``digits tune``: the tutorial's grid search (``--grid``) or an Optuna search (``--space``).
Heavy imports (torch, optuna) happen inside the command."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import time
from pathlib import Path
from typing import Any

from digits.cli.args import (
    HelpFormatter,
    add_data_flags,
    add_device_flag,
    add_output_flags,
    data_path,
    positive_int,
)
from digits.errors import TuneError
from digits.output import absolute, emit_json, print_summary, wants_json


def add_commands(sub: Any) -> None:
    """Register ``digits tune`` on the main parser's sub-parsers."""
    fmt = HelpFormatter
    tune = sub.add_parser("tune", formatter_class=fmt, help="hyper-parameter search: the tutorial's grid or Optuna")
    what = tune.add_mutually_exclusive_group(required=True)
    what.add_argument("--grid", metavar="NAME", help="a grid search over the tutorial MLP (tutorial, quick)")
    what.add_argument("--space", metavar="NAME|FILE", help="an Optuna search space (arch, cnn, mlp, tiny, or a .toml file)")
    tune.add_argument("--trials", type=positive_int, default=20, metavar="N",
                      help="finished trials the study should reach, all workers and machines together")
    tune.add_argument("--workers", type=positive_int, default=1, metavar="N", help="local worker processes")
    tune.add_argument("--storage", metavar="URL",
                      help="Optuna storage shared by workers, e.g. postgresql://user@host/db "
                           "[none: a SQLite file study.db in the study folder]")
    tune.add_argument("--study", metavar="NAME", help="study name; workers started with the same "
                      "--storage and --study join one study [none: the space's name]")
    tune.add_argument("--out", metavar="DIR", help="study folder [none: studies/<study>]")
    add_data_flags(tune, "train", "folder holding train.csv (and test.csv)")
    tune.add_argument("--sampler", default="tpe", choices=["tpe", "random"])
    tune.add_argument("--pruner", default="median", choices=["median", "hyperband", "none"])
    tune.add_argument("--timeout", type=float, metavar="SECONDS", help="stop starting trials after this long")
    tune.add_argument("--heartbeat", type=positive_int, default=10, metavar="SECONDS",
                      help="a trial whose worker is silent 3x this long is failed and retried")
    tune.add_argument("--seed", type=int, default=0, metavar="N")
    tune.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                      help="grid: the first layer's matmuls in bf16 (weights and RMSprop stay fp32); "
                           "auto: bf16 where the CPU has AMX")
    add_device_flag(tune)
    add_output_flags(tune)


def tune(args: argparse.Namespace, created: list[Path]) -> int:
    """``digits tune``: a grid search (``--grid``) or an Optuna search (``--space``)."""
    # Before torch is imported: OpenMP threads that spin while waiting for each other collapse
    # when the cores are shared (workers, other jobs): 10x slower steps were measured here.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from digits.train.device import resolve_device

    resolve_device(args.device)  # here, once: not as a failure in every trial of the study
    if args.grid:
        return _run_grid(args, created)
    return _run_search(args, created)


def _study_dir(args: argparse.Namespace, study: str, created: list[Path], fresh: bool) -> Path:
    folder = Path(args.out) if args.out else Path("studies") / study
    if fresh and folder.exists() and any(folder.iterdir()):
        raise TuneError(f"{folder}: already exists and is not empty; choose another --out")
    if not folder.exists():
        created.append(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _run_grid(args: argparse.Namespace, created: list[Path]) -> int:
    from digits.console import console
    from digits.data.kaggle import load_kaggle_csv
    from digits.hardware import hardware
    from digits.tune.grid import get_grid, resolve_precision
    from digits.tune.grid_study import GridBar, run_grid_study
    from digits.tune.storage import sqlite_url

    started = time.perf_counter()
    spec = dataclasses.replace(get_grid(args.grid), precision=args.precision).on(hardware("cpu"))
    train_csv = data_path(args, "train")
    data = load_kaggle_csv(train_csv, kind="train")
    test_csv = train_csv.parent / "test.csv"
    test = load_kaggle_csv(test_csv, kind="test") if test_csv.is_file() else None
    study = args.study or f"grid-{spec.name}-{dt.datetime.now():%Y%m%d-%H%M%S}"
    folder = _study_dir(args, study, created, fresh=True)
    _use_all_cores()
    console.print(f"grid {spec.name}: hidden {list(spec.hidden)} x lr {list(spec.lrs)}, {spec.folds}-fold CV, "
                  f"{spec.epochs} epochs, batch {spec.batch_size}: {spec.fits} fits + refit, on {len(data)} rows; "
                  f"first-layer matmuls in {resolve_precision(spec.precision)}")
    with GridBar() as progress:
        result = run_grid_study(spec, data, test, folder, study, args.storage, args.seed, progress)
    created.clear()
    files = result.files | _database(args.storage, folder)
    seconds = time.perf_counter() - started
    console.print(result.table)
    best = result.best
    console.print(f"best: {best.hidden} units, lr {best.lr:g}: {best.mean:.6f} ± {best.std:.4f} "
                  f"(the notebook: 256 units, lr 0.002, 0.975048)")
    if result.score is not None:
        console.print(f"refit's score against the answer key: {result.score:.5f}")
    if not wants_json(args):
        print_summary(f"wall time {seconds:.1f} s for {spec.fits} fits + refit (the notebook: 16.9 minutes); "
                      f"study folder {folder}", files)
        return 0
    emit_json("tune", _tune_result("grid", result.study, args.storage or sqlite_url(folder / "study.db"),
                                   folder, files, seconds, "mean cross-validation accuracy",
                                   grid=_grid_section(spec, result, folder)))
    return 0


def _grid_section(spec: Any, result: Any, folder: Path) -> dict[str, Any]:
    """The grid's settings, every cell's fold scores, the refit and its score."""
    return {"name": spec.name, "hidden": list(spec.hidden), "lrs": list(spec.lrs), "folds": spec.folds,
            "epochs": spec.epochs, "batch_size": spec.batch_size,
            "cells": [{"hidden": c.hidden, "lr": c.lr, "mean": c.mean, "std": c.std,
                       "fold_scores": list(c.fold_scores)} for c in result.cells],
            "refit_dir": str((folder / "refit").resolve()), "score": result.score}


def _database(storage: str | None, folder: Path) -> dict[str, Path]:
    """The study's SQLite file, when it is the default one in the study folder."""
    return {} if storage else {"study_db": folder / "study.db"}


def _tune_result(kind: str, study: Any, storage: str, folder: Path, files: dict[str, Path], seconds: float,
                 metric: str, grid: dict[str, Any] | None = None,
                 search: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``tune`` JSON object (docs/json.md), for a grid and a search alike."""
    from collections import Counter

    from digits.tune.report import trial_records

    trials = trial_records(study)
    counts = Counter(t["state"] for t in trials)
    done = [t for t in trials if t["state"] == "complete" and t["value"] is not None]
    best = max(done, key=lambda t: t["value"]) if done else None  # the first of equals, as Optuna
    states = ("complete", "pruned", "fail", "running", "waiting")
    return {"kind": kind, "study": study.study_name, "storage": _shown(storage),
            "folder": str(folder.resolve()), "direction": "maximize", "metric": metric,
            "best": {k: best[k] for k in ("number", "value", "params")} if best else None,
            "trial_counts": {state: counts.get(state, 0) for state in states} | {"total": len(trials)},
            "trials": trials, "files": absolute(files), "wall_seconds": round(seconds, 3),
            "grid": grid, "search": search}


def _use_all_cores() -> None:
    import torch

    torch.set_num_threads(os.cpu_count() or 1)


def _run_search(args: argparse.Namespace, created: list[Path]) -> int:
    from digits.console import console
    from digits.data.kaggle import load_kaggle_csv
    from digits.tune.search import WorkerSettings
    from digits.tune.search_report import finish_search, run_search_with_progress
    from digits.tune.space import load_space
    from digits.tune.storage import sqlite_url

    started = time.perf_counter()
    space = load_space(args.space)  # a bad space fails before anything is created
    train_csv = data_path(args, "train")
    load_kaggle_csv(train_csv, kind="train")  # validate once here, not in every worker
    study = args.study or space.name
    folder = _study_dir(args, study, created, fresh=False)
    storage = args.storage or sqlite_url(folder / "study.db")
    settings = WorkerSettings(storage=storage, study=study, space=args.space, train_csv=str(train_csv.resolve()),
                              trials=args.trials, seed=args.seed, sampler=args.sampler, pruner=args.pruner,
                              device=args.device, heartbeat=args.heartbeat, timeout=args.timeout)
    console.print(f"study {study} ({space.description}); storage {_shown(storage)}; "
                  f"{args.workers} worker(s) here, until {args.trials} trials are finished")
    tally = "none" if args.quiet else "stderr" if args.json else "stdout"
    study_obj = run_search_with_progress(settings, args.workers, console, tally)
    created.clear()
    files = finish_search(study_obj, space, folder, console) | _database(args.storage, folder)
    seconds = time.perf_counter() - started
    if wants_json(args):
        search = {"space": space.name, "description": space.description, "trials_requested": args.trials,
                  "workers": args.workers, "sampler": args.sampler, "pruner": args.pruner, "seed": args.seed}
        emit_json("tune", _tune_result("search", study_obj, storage, folder, files, seconds,
                                       "final validation accuracy", search=search))
        return 0
    print_summary(f"study {study} in {seconds:.1f} s; study folder {folder}", files)
    return 0


def _shown(url: str) -> str:
    from digits.tune.storage import _redact

    return _redact(url)


COMMANDS = {"tune": tune}
