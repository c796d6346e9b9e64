"""A grid search as a study: cross-validate every cell, record each cell as an Optuna trial
(so grids and searches share storage, tables and pictures), write the files, refit the
best cell on all rows and predict the test set."""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.table import Table

from digits.console import WorkBar
from digits.data.dataset import DigitSet
from digits.tune.grid import CellResult, GridSpec, best_cell, run_grid


class GridBar:
    """The grid's optimizer steps on one bar with rate and time left (``digits.console.WorkBar``,
    as ``digits train``'s epochs: stderr, a periodic line in a log, quiet under --quiet and
    --json), then the refit's. Every fit advances it, from whichever thread trains it."""

    def __init__(self) -> None:
        self.bar: WorkBar | None = None
        self.done = 0
        self.lock = threading.Lock()

    def __enter__(self) -> GridBar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__()

    def begin(self, stage: str, steps: int) -> None:
        self.__exit__()
        self.bar, self.done = WorkBar(stage, steps, "steps").__enter__(), 0

    def advance(self, steps: int) -> None:
        with self.lock:
            self.done += steps
            self.bar.update(self.done)


@dataclass(frozen=True)
class GridStudyResult:
    """The cells, the best one, the printed table, every file written (labelled), the
    refit's score (None without an answer key) and the study the cells were recorded in."""

    cells: list[CellResult]
    best: CellResult
    table: Table
    files: dict[str, Path]
    score: float | None
    study: Any


def run_grid_study(spec: GridSpec, data: DigitSet, test: DigitSet | None, folder: Path, study_name: str,
                   storage_url: str | None, seed: int, progress: GridBar) -> GridStudyResult:
    """Everything ``digits tune --grid`` does after parsing; files go into ``folder``."""
    from digits.tune.report import grid_table, write_cv_results, write_grid_histories

    cells = run_grid(spec, data, seed, progress)
    best = best_cell(cells)
    files = {"cv_results": write_cv_results(folder / "cv_results.csv", cells),
             "histories": write_grid_histories(folder / "histories.csv", cells)}
    refit_files, score = _refit(folder / "refit", best, spec, data, test, seed, progress)
    study, study_files = _record_study(cells, spec, folder, study_name, storage_url)
    files |= refit_files | study_files
    return GridStudyResult(cells, best, grid_table(cells, spec.lrs), files, score, study)


def _refit(run_dir: Path, best: CellResult, spec: GridSpec, data: DigitSet, test: DigitSet | None, seed: int,
           progress: GridBar) -> tuple[dict[str, Path], float | None]:
    """Train the best cell on every row (GridSearchCV's ``refit=True``) into a run directory, write
    the cell as a preset, and score the refit when the test set has an answer key beside it."""
    from digits.data.submission import score_submission, write_submission
    from digits.jsonfile import write_json
    from digits.output import run_files
    from digits.predict.predictor import Predictor
    from digits.predict.scores import check_not_trained_on
    from digits.presets import write_preset
    from digits.report.plots import draw_learning_curves
    from digits.train.callbacks import StepCounter
    from digits.train.run import train_run

    progress.begin(f"refit {best.hidden} units, lr {best.lr:g}", spec.epochs * -(-len(data) // spec.batch_size))
    run = train_run(spec.config(best.lr, seed, best.hidden, on_cpu=True), data, run_dir, [StepCounter(progress.advance)])
    draw_learning_curves(run_dir)
    preset = write_preset(run_dir.parent / "best.toml", spec.config(best.lr, seed, best.hidden),
                          f"grid {spec.name}: best cell, CV accuracy {best.mean:.6f} ± {best.std:.4f}",
                          f"about {best.mean:.4f} on held-out rows ({spec.folds}-fold cross-validation)")
    score = None
    if test is not None:
        labels = Predictor.from_model(run.model, "tutorial-mlp").predict(test.images)
        submission = write_submission(run_dir / "submission.csv", labels)
        solution = Path(test.origin).parent / "solution.csv"
        if solution.is_file():
            check_not_trained_on(submission, solution, test=test.origin)
            score = score_submission(submission, solution)
            write_json(run_dir / "metrics.json", run.metrics | {"score": score, "cv_mean": best.mean, "cv_std": best.std})
    files = {"best_preset": preset} | {f"refit_{label}": path for label, path in run_files(run_dir).items()}
    return files, score


def _record_study(cells: list[CellResult], spec: GridSpec, folder: Path, study_name: str,
                  storage_url: str | None) -> tuple[Any, dict[str, Path]]:
    """One COMPLETE trial per cell (value: mean CV accuracy), then the table and pictures."""
    import optuna

    from digits.tune.report import save_study_plots, write_trials_csv
    from digits.tune.storage import open_storage, sqlite_url

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(storage_url or sqlite_url(folder / "study.db"))
    study = optuna.create_study(storage=storage, study_name=study_name, direction="maximize")
    dist = {"hidden": optuna.distributions.CategoricalDistribution(list(spec.hidden)),
            "lr": optuna.distributions.CategoricalDistribution(list(spec.lrs))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study.add_trials([optuna.trial.create_trial(
            params={"hidden": c.hidden, "lr": c.lr}, distributions=dist, value=c.mean,
            user_attrs={"fold_scores": list(c.fold_scores), "std": c.std,
                        "histories": [h.rows for h in c.histories]}) for c in cells])
    files = {"trials": write_trials_csv(folder / "trials.csv", study)}
    files.update({p.stem: p for p in save_study_plots(study, folder)})
    return study, files
