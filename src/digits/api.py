"""The library's own functions: the few steps that join two layers, for the CLI, the notebook
and any script to share. ``import digits`` exports them beside the names of the layers below
(see ``digits/__init__.py``); each imports what it needs when called."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from digits.data.dataset import DigitSet
    from digits.predict.predictor import Predictor
    from digits.train.callbacks import Callback
    from digits.train.config import TrainConfig
    from digits.train.ensemble import EnsembleSpec
    from digits.train.run import RunResult


@dataclass(frozen=True)
class EnsembleResult:
    """What an ensemble run produced: its directory (``members/NN/`` each a complete run,
    ``ensemble.json``) and its ``metrics.json`` (every member's metrics, seconds in all)."""

    run_dir: Path
    metrics: dict[str, Any]


def run_training(plan: TrainConfig | EnsembleSpec, data: DigitSet, run_dir: str | os.PathLike[str],
                 callbacks: Sequence[Callback] = (), data_source: str | None = None, *,
                 resume: bool = False, log: Callable[[str], None] = lambda _m: None) -> RunResult | EnsembleResult:
    """Train ``plan`` on ``data`` into the run directory ``run_dir``.

    A ``TrainConfig``, or a plan of one member (``training_plan``), trains one model and returns
    its ``RunResult`` (model, history, metrics); a plan of several members trains an ensemble
    and returns an ``EnsembleResult``. ``data_source`` is the file the rows came from, as the
    run records it (default: ``data.origin``); ``resume`` continues one model's run from its last
    checkpoint, or an ensemble's members (finished ones are kept). A complete run is then
    calibrated on the rows it held out (its ``calibration.json``: ``digits.predict.calibrate``).
    ``log`` hears one line per ensemble member; ``callbacks`` hear every epoch (of every member,
    trained in this process).

    >>> plan = digits.training_plan(model="tutorial-mlp", epochs=10)   # doctest: +SKIP
    >>> result = digits.run_training(plan, train, "runs/mine")         # doctest: +SKIP
    """
    from digits.predict.calibrate import calibrate_run
    from digits.report.plots import draw_learning_curves
    from digits.train.config import TrainConfig
    from digits.train.ensemble import EnsembleSpec, train_ensemble
    from digits.train.run import train_run

    spec = EnsembleSpec(plan) if isinstance(plan, TrainConfig) else plan
    result: RunResult | EnsembleResult
    if spec.members > 1:
        metrics = train_ensemble(spec, data, run_dir, callbacks, data_source, log=log, resume=resume)
        result = EnsembleResult(Path(run_dir), metrics)
    else:
        result = train_run(spec.member_config(0), data, run_dir, callbacks, data_source, resume=resume)
    draw_learning_curves(run_dir)  # each model's curves.png, from the history.csv training wrote
    # A complete run is calibrated on the rows it held out (an ensemble whose members other
    # --members jobs still train: by the job that finishes it). Here, above the train layer:
    # the fit goes through the run's own Predictor, the probabilities it will answer with.
    if not result.metrics.get("missing"):
        calibrate_run(run_dir, data, spec, spec.config.device)
    return result


def open_predictor(run_dir: str | os.PathLike[str], device: str | torch.device = "auto",
                   precision: str = "auto") -> Predictor:
    """The ``Predictor`` of a finished run directory: its model, or every member of an ensemble,
    on ``device`` (auto: CUDA, then MPS, then the CPU), each model in the precision it trained
    in where the device computes it natively (``precision="auto"``), else ``fp32``/``bf16``.

    >>> labels = digits.open_predictor("runs/mine").predict(test.images)  # doctest: +SKIP
    """
    from digits.predict.predictor import Predictor
    from digits.train.device import resolve_device

    return Predictor.open(run_dir, resolve_device(device) if isinstance(device, str) else device,
                          precision=precision)
