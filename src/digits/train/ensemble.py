"""Ensembles: N members with different seeds (and, optionally, bagged splits) in one run directory.

``run_dir/members/NN/`` is a complete run directory per member; ``run_dir/ensemble.json`` lists
them. ``digits predict`` averages the members' probabilities. On a GPU several members train
at once in worker processes, since one small CNN leaves the GPU mostly idle.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from digits.data.dataset import DigitSet
from digits.data.identity import data_record
from digits.jsonfile import METRICS, read_json, write_json
from digits.runs import environment
from digits.train.callbacks import Callback
from digits.train.config import TrainConfig
from digits.train.device import resolve_config, resolve_device
from digits.train.run import train_run


@dataclass(frozen=True)
class EnsembleSpec:
    """How to build the ensemble around one training config."""

    config: TrainConfig
    members: int = 1
    bagging: float = 0.0   # random fraction held out per member; 0 = the Keras-style last split
    tta: bool = False
    workers: int = 1


def bagged_rows(rows: int, bagging: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted row numbers (trained on, held out) of one bagged member: a seeded random hold-out."""
    order = np.random.default_rng(seed).permutation(rows)
    cut = int(round(rows * (1 - bagging)))
    return np.sort(order[:cut]), np.sort(order[cut:])


def held_out_rows(rows: int, bagging: float, seed: int, val_split: float) -> np.ndarray:
    """Sorted row numbers one member validates on: its bagged hold-out, or the last rows."""
    if bagging:
        return bagged_rows(rows, bagging, seed)[1]
    return np.arange(int(rows * (1.0 - val_split)), rows)  # as DigitSet.split_last cuts


def member_split(data: DigitSet, bagging: float, seed: int, val_split: float) -> tuple[DigitSet, DigitSet]:
    """(train, validation) for one member: a seeded random hold-out, or the last rows."""
    if not bagging:
        return data.split_last(val_split)
    trained, held_out = bagged_rows(len(data), bagging, seed)
    return data.subset(trained), data.subset(held_out, f"{data.origin} (held out)")


def _train_member(config: TrainConfig, data: DigitSet, bagging: float, member_dir: Path,
                  callbacks: Sequence[Callback], source: str,
                  identity: dict[str, Any] | None = None) -> dict[str, Any]:
    resume = (member_dir / "checkpoint" / "state.json").is_file()
    if (member_dir / "model.safetensors").is_file() and not resume:
        return read_json(member_dir / "metrics.json", METRICS)  # finished before a crash: keep it
    train, val = member_split(data, bagging, config.seed, config.val_split)
    return train_run(config, train, member_dir, callbacks, source, val=val, resume=resume,
                     data_identity=identity).metrics


def train_ensemble(spec: EnsembleSpec, data: DigitSet, run_dir: str | os.PathLike[str],
                   callbacks: Sequence[Callback] = (), data_source: str | None = None,
                   log: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    """Train every member into ``run_dir/members/NN`` and write ensemble.json and metrics.json.

    Re-running on the same ``run_dir`` resumes: finished members are kept, interrupted ones
    continue from their last checkpoint.
    """
    run_dir = Path(run_dir)
    source = data_source or data.origin
    device = resolve_device(spec.config.device)
    spec = dataclasses.replace(spec, config=resolve_config(spec.config, device))
    identity = data_record(source, data)  # of the whole file: each member trains on a part of it
    configs = [spec.config.replace(seed=spec.config.seed + i) for i in range(spec.members)]
    dirs = [run_dir / "members" / f"{i + 1:02d}" for i in range(spec.members)]
    write_json(run_dir / "ensemble.json", {
        "members": [str(d.relative_to(run_dir)) for d in dirs], "tta": spec.tta, "bagging": spec.bagging,
        "train": spec.config.to_dict(), "environment": environment(device)})
    if spec.workers > 1 and spec.members > 1:
        # spawn: CUDA cannot be used in forked children.
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(min(spec.workers, spec.members), mp_context=ctx) as pool:
            futures = [pool.submit(_train_member, c, data, spec.bagging, d, (), source, identity)
                       for c, d in zip(configs, dirs)]
            results = []
            for i, future in enumerate(futures, start=1):
                results.append(future.result())
                log(f"member {i}/{spec.members}: {_summary(results[-1])}")
    else:
        results = []
        for i, (c, d) in enumerate(zip(configs, dirs), start=1):
            log(f"member {i}/{spec.members} (seed {c.seed})")
            results.append(_train_member(c, data, spec.bagging, d, callbacks, source, identity))
            log(f"member {i}/{spec.members}: {_summary(results[-1])}")
    metrics = {"model": spec.config.model, "members": spec.members, "bagging": spec.bagging,
               "member_metrics": results,
               "train_seconds": round(sum(r.get("train_seconds", 0.0) for r in results), 3)}
    val_accs = [r["best_val_accuracy"] for r in results if r.get("best_val_accuracy") is not None]
    if val_accs:
        metrics["mean_member_val_accuracy"] = float(np.mean(val_accs))
    write_json(run_dir / "metrics.json", metrics)
    from digits.predict.verdict import calibrate_ensemble  # on the rows the members held out

    calibrate_ensemble(run_dir, data, [held_out_rows(len(data), spec.bagging, c.seed, c.val_split)
                                       for c in configs])
    return metrics


def _summary(metrics: dict[str, Any]) -> str:
    final = metrics.get("final", {})
    if final.get("val_accuracy") is not None:
        return f"val_accuracy {final['val_accuracy']:.4f}, {metrics.get('train_seconds', 0):.1f} s"
    return f"accuracy {final.get('accuracy') or 0:.4f}, {metrics.get('train_seconds', 0):.1f} s"
