"""What a person reads after a study: a table of trials (printed and trials.csv), the grid's
table, and two pictures (optimization history, parameter importance) in the study folder."""

from __future__ import annotations

import csv
import io
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

from rich.table import Table

from digits.atomic import atomic_path, write_text
from digits.train.history import COLUMNS


def grid_table(cells: Sequence[object], lrs: Sequence[float]) -> Table:
    """Hidden units down, learning rates across, ``mean +- std`` of the fold accuracies."""
    table = Table("hidden units", *[f"lr {lr:g}" for lr in lrs], box=None, pad_edge=False)
    best = max(cells, key=lambda c: c.mean)
    for hidden in dict.fromkeys(c.hidden for c in cells):
        row = []
        for lr in lrs:
            cell = next(c for c in cells if c.hidden == hidden and c.lr == lr)
            text = f"{cell.mean:.4f} ± {cell.std:.4f}"
            row.append(f"[bold]{text}[/bold]" if cell is best else text)
        table.add_row(str(hidden), *row)
    return table


def write_cv_results(path: str | os.PathLike[str], cells: Sequence[object]) -> Path:
    """One row per cell, like GridSearchCV's cv_results_: params, per-split scores, mean, std, rank."""
    folds = len(cells[0].fold_scores)
    ranks = {id(c): r for r, c in enumerate(sorted(cells, key=lambda c: -c.mean), start=1)}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["param_hidden", "param_lr", *[f"split{i}_test_score" for i in range(folds)],
                     "mean_test_score", "std_test_score", "rank_test_score"])
    for c in cells:
        writer.writerow([c.hidden, c.lr, *[f"{s:.6f}" for s in c.fold_scores], f"{c.mean:.6f}",
                         f"{c.std:.6f}", ranks[id(c)]])
    return write_text(path, out.getvalue())


def write_grid_histories(path: str | os.PathLike[str], cells: Sequence[object]) -> Path:
    """Every fit's per-epoch history in one long table: hidden, lr, fold, then history columns."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["param_hidden", "param_lr", "fold", *COLUMNS])  # param_ as in GridSearchCV
    for c in cells:
        for fold, history in enumerate(c.histories):
            for row in history.rows:
                writer.writerow([c.hidden, c.lr, fold, *[int(row[k]) if k == "epoch" else f"{row[k]:.6g}"
                                                         for k in COLUMNS]])
    return write_text(path, out.getvalue())


def trials_table(study: object, limit: int = 30) -> Table:
    """The study's trials, best first: number, state, value, seconds, parameters."""
    import optuna

    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    others = [t for t in trials if t.state != optuna.trial.TrialState.COMPLETE]
    ordered = sorted(done, key=lambda t: -t.value) + sorted(others, key=lambda t: t.number)
    table = Table("#", "state", "value", "sec", "parameters", box=None, pad_edge=False)
    for t in ordered[:limit]:
        seconds = t.duration.total_seconds() if t.duration else math.nan
        value = f"{t.value:.4f}" if t.value is not None else "-"
        table.add_row(str(t.number), t.state.name.lower(), value, f"{seconds:.1f}", _params_text(t.params))
    if len(ordered) > limit:
        table.add_row("…", f"{len(ordered) - limit} more in trials.csv", "", "", "")
    return table


def trial_records(study: object) -> list[dict[str, object]]:
    """Every trial as plain data, in number order: number, state, value, seconds, params."""
    return [{"number": t.number, "state": t.state.name.lower(),
             "value": None if t.value is None or math.isnan(t.value) else t.value,
             "seconds": round(t.duration.total_seconds(), 3) if t.duration else None,
             "params": dict(t.params)}
            for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)]


def _params_text(params: dict[str, object]) -> str:
    return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def write_trials_csv(path: str | os.PathLike[str], study: object) -> Path:
    """Every trial: number, state, value, seconds, retried_from, then one column per parameter."""
    trials = study.get_trials(deepcopy=False)
    names = sorted({k for t in trials for k in t.params})
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["number", "state", "value", "seconds", "retried_from", *names])
    for t in trials:
        seconds = f"{t.duration.total_seconds():.3f}" if t.duration else ""
        writer.writerow([t.number, t.state.name, "" if t.value is None else f"{t.value:.6f}", seconds,
                         t.system_attrs.get("failed_trial", ""), *[t.params.get(n, "") for n in names]])
    return write_text(path, out.getvalue())


def save_study_plots(study: object, folder: str | os.PathLike[str]) -> list[Path]:
    """optimization_history.png and param_importances.png (the latter needs two finished
    trials that differ); returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as ovm

    folder = Path(folder)
    written = []
    done = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    plots = [("optimization_history.png", ovm.plot_optimization_history)]
    if len(done) >= 2 and any(len({repr(t.params.get(k)) for t in done}) > 1 for k in done[0].params):
        plots.append(("param_importances.png", ovm.plot_param_importances))
    for name, plot in plots:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
            ax = plot(study)
        fig = ax.figure
        fig.set_size_inches(8, 5)
        with atomic_path(folder / name) as tmp:
            fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
        plt.close(fig)
        written.append(folder / name)
    return written
