"""Which trained models a run directory holds: its one model, or the members of an ensemble.

Read from the run's files alone (no torch), so that ``digits predict``, the report, the ONNX
server and ``digits export`` agree on what a run holds and refuse the same unfinished ones: a
run still training, or an ensemble whose members are trained by several jobs
(``digits train --members START:END``) and are not all there yet.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from digits.data.normalise import check_normalisation
from digits.errors import RunError
from digits.jsonfile import ENSEMBLE, TRAIN, Optional, read_json

ENSEMBLE_FILE = "ensemble.json"
RunKind = Literal["single", "ensemble"]


@dataclass(frozen=True)
class RunModels:
    """The model folders of a finished run: ``(run_dir,)`` for one model, else the members."""

    run_dir: Path
    kind: RunKind
    model_dirs: tuple[Path, ...]
    tta: bool = False  # what the ensemble recorded: predict with test-time augmentation


def run_models(run_dir: str | os.PathLike[str]) -> RunModels:
    """The models of ``run_dir``, or a RunError saying why it cannot predict yet: no such
    folder, a damaged ensemble.json, a training still going, or ensemble members missing
    (named, with the ``--members`` range that trains them)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"{run_dir}: no such run directory")
    if not (run_dir / ENSEMBLE_FILE).is_file():
        check_finished(run_dir)
        return RunModels(run_dir, "single", (run_dir,))
    spec = read_json(run_dir / ENSEMBLE_FILE, ENSEMBLE)
    names = spec["members"]
    require_members(run_dir, names)
    return RunModels(run_dir, "ensemble", tuple(run_dir / name for name in names), bool(spec.get("tta")))


def recorded_normalisation(model_dir: str | os.PathLike[str]) -> str:
    """The input normalisation a model trained under (its config.json's ``train.normalise``), so
    every reader applies it too; "none" for a run that records none (older runs)."""
    config = Path(model_dir) / "config.json"
    recorded = read_json(config, {"train": Optional(TRAIN)}) if config.is_file() else {}
    return check_normalisation((recorded.get("train") or {}).get("normalise") or "none",
                               f"{config}: train.normalise")


def member_finished(member_dir: str | os.PathLike[str]) -> bool:
    """Whether an ensemble member is trained: its metrics.json, written last, is there and no
    checkpoint says it stopped before the end."""
    member_dir = Path(member_dir)
    stopped = (member_dir / "checkpoint" / "state.json").is_file()
    return (member_dir / "metrics.json").is_file() and not stopped


def missing_members(run_dir: str | os.PathLike[str], names: Sequence[str]) -> list[int]:
    """Indexes (0-based, as ``--members`` counts) of the members of ``names`` not trained yet."""
    return [i for i, name in enumerate(names) if not member_finished(Path(run_dir) / name)]


def require_members(run_dir: str | os.PathLike[str], names: Sequence[str]) -> None:
    """RunError naming the members of the ensemble in ``run_dir`` that are not trained yet."""
    missing = missing_members(run_dir, names)
    if not missing:
        return
    ranges = " and ".join(f"--members {a}:{b}" for a, b in index_ranges(missing))
    raise RunError(f"{run_dir}: {len(missing)} of {len(names)} ensemble members not trained yet: "
                   f"{', '.join(names[i] for i in missing)}; train them with `digits train ... {ranges} "
                   f"--out {run_dir}` or `digits train --resume {run_dir}`")


def index_ranges(indexes: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted indexes as half-open runs: [0, 1, 2, 5] -> [(0, 3), (5, 6)]."""
    runs: list[tuple[int, int]] = []
    for i in sorted(indexes):
        if runs and runs[-1][1] == i:
            runs[-1] = (runs[-1][0], i + 1)
        else:
            runs.append((i, i + 1))
    return runs


def unfinished_run(run_dir: str | os.PathLike[str]) -> bool:
    """Whether ``run_dir`` holds a training that stopped before the end (a checkpoint; a run
    stopped before its first checkpoint, with its config.json but no model; an ensemble
    without its final metrics): ``digits train --resume`` continues it."""
    run_dir = Path(run_dir)
    if (run_dir / "checkpoint" / "state.json").is_file():
        return True
    if (run_dir / ENSEMBLE_FILE).is_file():
        return not (run_dir / "metrics.json").is_file()
    return (run_dir / "config.json").is_file() and not (run_dir / "metrics.json").is_file()


def check_finished(run_dir: str | os.PathLike[str]) -> None:
    """RunError when ``run_dir`` has no final model yet because its training is still going
    or was interrupted (``model.json: missing`` would not say what to do)."""
    run_dir = Path(run_dir)
    if unfinished_run(run_dir) and not (run_dir / "model.json").is_file():
        raise RunError(f"{run_dir}: still training or interrupted (no model yet); "
                       f"resume with digits train --resume {run_dir}")
