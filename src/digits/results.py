"""Finished work as plain data: what ``--json`` prints (``docs/json.md``, ``digits/schemas``).

Each function reads what a command wrote (a run directory, a submission) and returns a
JSON-ready dict: paths absolute, NaN as None. Light imports only, so ``digits score``
stays quick.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from digits.jsonfile import CONFIG, ENSEMBLE, METRICS, read_json
from digits.output import absolute, run_files
from digits.train.history import History


def _number(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else round(float(value), 6)


def best_epochs(history: History) -> dict[str, dict[str, float]] | None:
    """The epochs with the lowest validation loss and the highest validation accuracy, with
    their values; None without validation."""
    if not len(history) or all(math.isnan(v) for v in history.column("val_loss")):
        return None
    by_loss, by_acc = history.best_epoch("val_loss"), history.best_epoch("val_accuracy", "max")
    return {"val_loss": {"epoch": by_loss, "value": _number(history.rows[by_loss - 1]["val_loss"])},
            "val_accuracy": {"epoch": by_acc, "value": _number(history.rows[by_acc - 1]["val_accuracy"])}}


def describe_run(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """A finished run directory (one model or an ensemble) as the ``train`` object describes it."""
    run_dir = Path(run_dir)
    if (run_dir / "ensemble.json").is_file():
        return _describe_ensemble(run_dir)
    config, metrics = read_json(run_dir / "config.json", CONFIG), read_json(run_dir / "metrics.json", METRICS)
    return {"run_dir": str(run_dir.resolve()), "model": metrics["model"],
            "model_args": config["train"]["model_args"], "parameters": metrics["parameters"], "members": 1,
            "data": _data(config["data"]), "config": config["train"],
            "hardware": config.get("environment", {}).get("hardware"), "epochs": metrics["epochs"],
            "train_seconds": metrics["train_seconds"], "final": metrics["final"],
            "best": best_epochs(History.load(run_dir / "history.csv")),
            "files": absolute(run_files(run_dir)), "ensemble": None}


def _data(recorded: dict[str, Any]) -> dict[str, Any]:
    return {"source": str(recorded["source"]), "rows": recorded["rows"],
            "train_rows": recorded.get("train_rows", recorded["rows"]),
            "val_rows": recorded.get("val_rows", 0)}


def _describe_ensemble(run_dir: Path) -> dict[str, Any]:
    """The ensemble, or, while ``--members`` jobs still train some, the members that are there."""
    from digits.runmodels import missing_members

    spec = read_json(run_dir / "ensemble.json", ENSEMBLE)
    missing = missing_members(run_dir, spec["members"])
    metrics = read_json(run_dir / "metrics.json", METRICS) if not missing else {}
    members = [describe_run(run_dir / member) for i, member in enumerate(spec["members"]) if i not in missing]
    first = members[0]["data"]  # every member holds out as many rows (its own ones when bagging)
    described = {"bagging": spec["bagging"], "tta": spec["tta"],
                 "mean_member_val_accuracy": _number(metrics.get("mean_member_val_accuracy")),
                 "member_runs": members}
    if missing:
        described |= {"mean_member_val_accuracy": None,
                      "missing_members": [spec["members"][i] for i in missing]}
    return {"run_dir": str(run_dir.resolve()), "model": spec["train"]["model"],
            "model_args": spec["train"]["model_args"], "parameters": members[0]["parameters"],
            "members": len(spec["members"]),
            "data": first | {"rows": first["train_rows"] + first["val_rows"]},
            "config": spec["train"], "hardware": members[0]["hardware"],  # each member records its machine
            "epochs": max(m["epochs"] for m in members),
            "train_seconds": metrics.get("train_seconds", round(sum(m["train_seconds"] for m in members), 3)),
            "final": None, "best": None, "files": absolute(run_files(run_dir)), "ensemble": described}


def label_counts(labels: np.ndarray) -> list[int]:
    """How many of each digit, 0 to 9."""
    return [int(c) for c in np.bincount(np.asarray(labels, dtype=np.int64), minlength=10)[:10]]


def predict_result(run_dir: str | os.PathLike[str], models: Sequence[str], tta: bool,
                   test: str | os.PathLike[str], submission: str | os.PathLike[str], labels: np.ndarray,
                   seconds: float, precisions: Sequence[str]) -> dict[str, Any]:
    """The ``predict`` object."""
    return {"run_dir": str(Path(run_dir).resolve()), "models": list(models), "tta": tta,
            "precisions": list(precisions),
            "test": str(Path(test).resolve()), "submission": str(Path(submission).resolve()),
            "rows": len(labels), "seconds": round(seconds, 3), "label_counts": label_counts(labels)}


def score_result(submission: str | os.PathLike[str], solution: str | os.PathLike[str], correct: int,
                 rows: int) -> dict[str, Any]:
    """The ``score`` object."""
    return {"submission": str(Path(submission).resolve()), "solution": str(Path(solution).resolve()),
            "accuracy": correct / rows if rows else 0.0, "correct": correct, "rows": rows}


def tutorial_result(run_dir: str | os.PathLike[str], data_dir: str | os.PathLike[str],
                    seconds: float) -> dict[str, Any]:
    """The ``tutorial`` object: both of its runs, the epoch count it chose and the score."""
    run_dir = Path(run_dir)
    metrics = read_json(run_dir / "metrics.json", METRICS)
    return {"run_dir": str(run_dir.resolve()), "data": str(Path(data_dir).resolve()),
            "chosen_epochs": metrics["chosen_epochs"], "chosen_by": metrics["chosen_by"],
            "validation_run": describe_run(run_dir / "validation"), "final_run": describe_run(run_dir),
            "submission": str((run_dir / "submission.csv").resolve()), "score": metrics["score"],
            "seconds": round(seconds, 3), "files": absolute(run_files(run_dir))}
