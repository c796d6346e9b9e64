"""The 2017 tutorial, end to end: look at the data, train with validation, choose the
epoch count, retrain on everything, predict the test set and score the submission.

Each step is announced through ``say`` (the CLI prints it); the work itself is done by the
same library calls that ``digits train``, ``predict`` and ``score`` use.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from digits.data.kaggle import load_kaggle_csv
from digits.data.submission import score_submission, write_submission
from digits.jsonfile import read_json, write_json
from digits.predict.predictor import Predictor
from digits.predict.scores import check_not_trained_on, record_score
from digits.report.plots import draw_learning_curves, plot_digit_grid
from digits.train.callbacks import Callback
from digits.train.config import TrainConfig
from digits.train.run import train_run

TUTORIAL = TrainConfig(model="tutorial-mlp", epochs=25, batch_size=64, optimizer="rmsprop", lr=1e-3,
                       val_split=0.05)


@dataclass(frozen=True)
class TutorialResult:
    """Where everything went, the epoch count chosen and the local leaderboard score."""

    run_dir: Path
    epochs: int
    score: float | None


def choose_epochs(val_losses: Sequence[float]) -> int:
    """The 1-based epoch with the lowest validation loss: after it the model overfits."""
    return min(range(len(val_losses)), key=lambda i: val_losses[i]) + 1


def run_tutorial(data_dir: str | os.PathLike[str], run_dir: str | os.PathLike[str],
                 config: TrainConfig = TUTORIAL, say: Callable[[str], None] = print,
                 callbacks: Sequence[Callback] = ()) -> TutorialResult:
    """Run every step of the tutorial on the Kaggle folder ``data_dir`` into ``run_dir``."""
    data_dir, run_dir = Path(data_dir), Path(run_dir)
    train = load_kaggle_csv(data_dir / "train.csv", kind="train")
    test = load_kaggle_csv(data_dir / "test.csv", kind="test")
    say(f"[1/6] data: {len(train)} training digits, {len(test)} test digits from {data_dir}")
    grid = plot_digit_grid(train.images[:40], train.labels[:40], run_dir / "samples.png",
                           title="The first 40 training digits")
    say(f"      sample digits with labels: {grid}")

    say(f"[2/6] training {config.model} for {config.epochs} epochs, batch {config.batch_size}, "
        f"the last {config.val_split:.0%} of rows held out for validation")
    explore = train_run(config, train, run_dir / "validation", callbacks, str(data_dir / "train.csv"))
    draw_learning_curves(explore.run_dir)
    say(f"      history: {explore.run_dir / 'history.csv'}  curves: {explore.run_dir / 'curves.png'}")

    epochs = choose_epochs(explore.history.column("val_loss"))
    best = explore.history.rows[epochs - 1]
    say(f"[3/6] epochs chosen: {epochs}, where validation loss is lowest ({best['val_loss']:.4f}, "
        f"validation accuracy {best['val_accuracy']:.4f}); after it validation loss rises while "
        "training loss keeps falling: overfitting")

    say(f"[4/6] retraining on all {len(train)} rows for {epochs} epochs")
    final = train_run(config.replace(epochs=epochs, val_split=0.0), train, run_dir, callbacks,
                      str(data_dir / "train.csv"))
    draw_learning_curves(run_dir)

    labels = Predictor.open(run_dir, next(final.model.parameters()).device).predict(test.images)
    submission = write_submission(run_dir / "submission.csv", labels)
    say(f"[5/6] predictions for {len(test)} test digits: {submission}")
    score = _score_if_possible(submission, data_dir, say)
    metrics = read_json(run_dir / "metrics.json")
    metrics.update({"chosen_epochs": epochs, "chosen_by": "lowest validation loss", "score": score})
    write_json(run_dir / "metrics.json", metrics)
    return TutorialResult(run_dir, epochs, score)


def _score_if_possible(submission: Path, data_dir: Path, say: Callable[[str], None]) -> float | None:
    solution = data_dir / "solution.csv"
    if not solution.is_file():
        say("[6/6] no solution.csv beside the data (Kaggle's own files): upload submission.csv to Kaggle to score it")
        return None
    warning = check_not_trained_on(submission, solution, test=data_dir / "test.csv")
    if warning:
        say(f"      {warning}")
    score = score_submission(submission, solution)
    record_score(submission, solution, score, test=data_dir / "test.csv")
    say(f"[6/6] score: {score:.5f}, against {solution} as Kaggle scores it (local leaderboard)")
    return score

