"""The function Optuna maximises: one training run of the trial's settings, judged by the
final validation accuracy, reported every epoch so that poor trials are pruned early, with its
optimizer steps recorded in the trial as they go (the watcher's bars read them from the storage)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from digits.data.dataset import DigitSet
from digits.errors import DigitsError
from digits.train.callbacks import Callback
from digits.train.fit import train_model
from digits.tune.space import SearchSpace
from digits.tune.storage import worker_name

PROGRESS_EVERY = 1.0  # seconds between writes of a trial's step count to the storage (the watcher polls each second)


class ReportToTrial(Callback):
    """Reports each epoch's validation accuracy to the trial, keeps the history in the
    trial (user attribute ``history``) and stops a trial the pruner judges poor. The steps done
    and planned go into user attribute ``steps``, at most once every ``PROGRESS_EVERY`` seconds."""

    def __init__(self, trial: Any) -> None:
        self.trial = trial
        self.rows: list[dict[str, float]] = []
        self.steps, self.total, self.written = 0, 0, -float("inf")

    def on_train_begin(self, epochs: int, steps_per_epoch: int) -> None:
        self.steps, self.total = steps_per_epoch, epochs * steps_per_epoch

    def on_batch_end(self, epoch: int, step: int) -> None:
        now, done = time.monotonic(), (epoch - 1) * self.steps + step
        if now - self.written >= PROGRESS_EVERY or done == self.total:  # a storage write costs milliseconds
            self.written = now
            self.trial.set_user_attr("steps", [done, self.total])

    def on_epoch_end(self, epoch: int, row: dict[str, float]) -> bool | None:
        import optuna

        self.rows.append({k: round(v, 6) for k, v in row.items()})
        self.trial.set_user_attr("history", self.rows)
        self.trial.report(row["val_accuracy"], epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"epoch {epoch}: val_accuracy {row['val_accuracy']:.4f}")
        return None


def make_objective(space: SearchSpace, data: DigitSet, device: str = "auto") -> Callable[[Any], float]:
    """An objective that trains ``space.suggest(trial)`` on ``data`` (its last ``val_split``
    held out) and returns the final validation accuracy."""

    def objective(trial: Any) -> float:
        config = space.suggest(trial).replace(device=device, seed=trial.number)
        trial.set_user_attr("config", config.to_dict())
        trial.set_user_attr("worker", worker_name())
        train, val = data.split_last(config.val_split)
        report = ReportToTrial(trial)
        try:
            _, history = train_model(config, train, val, [report])
        except DigitsError as exc:
            trial.set_user_attr("error", str(exc))  # kept in the study, and shown if trials keep failing
            raise
        return history.rows[-1]["val_accuracy"]

    return objective
