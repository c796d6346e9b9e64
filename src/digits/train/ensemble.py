"""Ensembles: N members with different seeds (and, optionally, bagged splits or settings of their
own, the spec's ``variants``) in one run directory.

``run_dir/members/NN/`` is a complete run directory per member; ``run_dir/ensemble.json`` lists
them. ``digits predict`` averages the members' probabilities. On a GPU several members train
at once in worker processes, since one small CNN leaves the GPU mostly idle; across machines,
jobs given disjoint ``--members`` ranges (a cluster's job array: its scheduler runs them) train
their own members into one shared run directory.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from digits.atomic import atomic_path
from digits.data.dataset import DigitSet
from digits.data.identity import data_record
from digits.errors import DigitsError, RunError
from digits.jsonfile import ENSEMBLE, METRICS, read_json, write_json
from digits.runmodels import ENSEMBLE_FILE, member_finished, missing_members
from digits.runs import claimed_members
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
    part: tuple[int, int] | None = None  # members[start:end] this job trains (--members); None: all
    # Settings of its own for each member, in turn: member i trains with variants[i % len(variants)]
    # on top of ``config`` (TrainConfig.with_settings). Members that learn under different generic
    # augmentations fail on different pictures, so their average fails on fewer.
    variants: tuple[dict[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if self.part is not None:
            start, end = self.part
            if not 0 <= start < end <= self.members:
                raise DigitsError(f"--members {start}:{end}: expected START:END with 0 <= START < END <= "
                                  f"{self.members}, the ensemble's size (members are counted from 0)")
        for i in range(min(self.members, len(self.variants))):  # a bad variant fails before any work
            self.member_config(i)

    def member_config(self, index: int) -> TrainConfig:
        """What member ``index`` (from 0) trains: the config with its variant on top, seed + index."""
        variant = self.variants[index % len(self.variants)] if self.variants else {}
        config = (self.config.with_settings(variant, f"ensemble variant {index % len(self.variants) + 1}")
                  if variant else self.config)
        return config.replace(seed=self.config.seed + index)


def bagged_rows(rows: int, bagging: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted row numbers (trained on, held out) of one bagged member: a seeded random hold-out."""
    order = np.random.default_rng(seed).permutation(rows)
    cut = int(round(rows * (1 - bagging)))
    return np.sort(order[:cut]), np.sort(order[cut:])


def member_split(data: DigitSet, bagging: float, seed: int, val_split: float) -> tuple[DigitSet, DigitSet]:
    """(train, validation) for one member: a seeded random hold-out, or the last rows."""
    if not bagging:
        return data.split_last(val_split)
    trained, held_out = bagged_rows(len(data), bagging, seed)
    return data.subset(trained), data.subset(held_out, f"{data.origin} (held out)")


def _train_member(config: TrainConfig, data: DigitSet, bagging: float, member_dir: Path,
                  callbacks: Sequence[Callback], source: str,
                  identity: dict[str, Any] | None = None) -> dict[str, Any]:
    if member_finished(member_dir):
        return read_json(member_dir / "metrics.json", METRICS)  # finished before a crash, or by another job
    resume = (member_dir / "checkpoint" / "state.json").is_file()
    train, val = member_split(data, bagging, config.seed, config.val_split)
    return train_run(config, train, member_dir, callbacks, source, val=val, resume=resume,
                     data_identity=identity).metrics


def train_ensemble(spec: EnsembleSpec, data: DigitSet, run_dir: str | os.PathLike[str],
                   callbacks: Sequence[Callback] = (), data_source: str | None = None,
                   log: Callable[[str], None] = lambda _m: None, resume: bool = False) -> dict[str, Any]:
    """Train the members ``spec.part`` names (default: all) into ``run_dir/members/NN``; write
    ensemble.json, and metrics.json once every member is there.

    Re-running on the same ``run_dir`` with ``resume`` continues: finished members are kept,
    interrupted ones continue from their last checkpoint. Jobs given disjoint ``part`` ranges
    (on other machines, sharing the folder) each train their own members into one ensemble;
    whichever finishes the last member writes metrics.json. Returns the ensemble's metrics,
    or, while members are missing, those of this job's members with ``missing`` listing the rest.
    """
    run_dir = Path(run_dir)
    source = data_source or data.origin
    device = resolve_device(spec.config.device)
    spec = dataclasses.replace(spec, config=resolve_config(spec.config, device))
    identity = data_record(source, data)  # of the whole file: each member trains on a part of it
    if not (resume and (run_dir / ENSEMBLE_FILE).is_file()):  # resuming: the file the spec was read from
        write_description_once(run_dir / ENSEMBLE_FILE, describe_ensemble(spec))
    names = read_json(run_dir / ENSEMBLE_FILE, ENSEMBLE)["members"]  # the folders, as the file names them
    mine = range(*spec.part) if spec.part else range(spec.members)
    fresh = spec.part is not None and not resume  # a new --members job: its members must all be new
    todo = [i for i in mine if fresh or not member_finished(run_dir / names[i])]
    configs = {i: spec.member_config(i) for i in todo}
    with claimed_members([run_dir / names[i] for i in todo], fresh=fresh):
        results = _train_members(spec, data, run_dir, names, configs, callbacks, source, identity, log)
    return _ensemble_metrics(spec, run_dir, names, [i for i in mine if i not in todo], results)


def _train_members(spec: EnsembleSpec, data: DigitSet, run_dir: Path, names: list[str],
                   configs: dict[int, TrainConfig], callbacks: Sequence[Callback], source: str,
                   identity: dict[str, Any], log: Callable[[str], None]) -> dict[int, dict[str, Any]]:
    """Each member's metrics, by index: side by side in worker processes, or one after another."""
    results: dict[int, dict[str, Any]] = {}
    if spec.workers > 1 and len(configs) > 1:
        # spawn: CUDA cannot be used in forked children.
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(min(spec.workers, len(configs)), mp_context=ctx) as pool:
            futures = {i: pool.submit(_train_member, c, data, spec.bagging, run_dir / names[i], (), source,
                                      identity) for i, c in configs.items()}
            for i, future in futures.items():
                results[i] = future.result()
                log(f"member {i + 1}/{spec.members}: {_summary(results[i])}")
        return results
    for i, c in configs.items():
        log(f"member {i + 1}/{spec.members} (seed {c.seed})")
        results[i] = _train_member(c, data, spec.bagging, run_dir / names[i], callbacks, source, identity)
        log(f"member {i + 1}/{spec.members}: {_summary(results[i])}")
    return results


def _ensemble_metrics(spec: EnsembleSpec, run_dir: Path, names: list[str], kept: list[int],
                      trained: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """metrics.json of the ensemble, written when no member is missing; until then, this
    job's members' metrics and the missing members.

    Read back from every member's own metrics.json: two jobs that both see the last member
    finish write the very same file."""
    missing = missing_members(run_dir, names)
    indexes = sorted(kept + list(trained)) if missing else range(spec.members)
    results = [read_json(run_dir / names[i] / "metrics.json", METRICS) for i in indexes]
    metrics: dict[str, Any] = {"model": spec.config.model, "members": spec.members, "bagging": spec.bagging,
                               "member_metrics": results,
                               "train_seconds": round(sum(r.get("train_seconds", 0.0) for r in results), 3)}
    val_accs = [r["best_val_accuracy"] for r in results if r.get("best_val_accuracy") is not None]
    if val_accs:
        metrics["mean_member_val_accuracy"] = float(np.mean(val_accs))
    if missing:
        return metrics | {"missing": [names[i] for i in missing]}
    write_json(run_dir / "metrics.json", metrics)
    return metrics


def member_names(members: int) -> list[str]:
    """The member folders of an ensemble of ``members``, relative to its run directory."""
    return [f"members/{i + 1:02d}" for i in range(members)]


def describe_ensemble(spec: EnsembleSpec) -> dict[str, Any]:
    """ensemble.json: fully determined by the resolved settings (no machine, no time), so that
    every ``--members`` job of one ensemble writes the same file."""
    described = {"members": member_names(spec.members), "tta": spec.tta, "bagging": spec.bagging,
                 "train": spec.config.to_dict()}
    return described | ({"variants": list(spec.variants)} if spec.variants else {})


class _AlreadyWritten(Exception):
    pass


def write_description_once(path: Path, description: dict[str, Any]) -> None:
    """Write ``description`` to ``path`` unless another job did; RunError, naming the first
    setting that differs, when the file there describes another ensemble."""
    text = json.dumps(description, indent=2) + "\n"
    if not path.is_file():
        try:
            with atomic_path(path) as staged:
                staged.write_text(text, "utf-8")
                try:
                    # A hard link is an exclusive, atomic create: of two jobs racing, one makes
                    # the file and the other finds it, whole, and compares (the rename that
                    # atomic_path ends with is then a no-op: both names are the same file).
                    os.link(staged, path)
                except FileExistsError:
                    raise _AlreadyWritten from None
                except OSError:
                    pass  # no hard links on this file system: the rename (same text for the same settings)
        except _AlreadyWritten:
            pass
    difference = _first_difference(read_json(path, ENSEMBLE), json.loads(text))
    if difference:
        raise RunError(f"{path}: describes another ensemble ({difference}); every --members job of one "
                       "ensemble needs the same settings (preset, flags, --ensemble size)")


def _first_difference(there: Any, here: Any, where: str = "") -> str | None:
    if isinstance(there, dict) and isinstance(here, dict):
        # At the top, only what this job writes counts: an older ensemble.json's record of the
        # machine it began on is no setting.
        keys = here if not where else sorted(set(there) | set(here))
        for key in keys:
            found = _first_difference(there.get(key), here.get(key), f"{where}.{key}" if where else key)
            if found:
                return found
        return None
    return None if there == here else f"{where}: {json.dumps(there)} there, {json.dumps(here)} here"


def _summary(metrics: dict[str, Any]) -> str:
    final = metrics.get("final", {})
    if final.get("val_accuracy") is not None:
        return f"val_accuracy {final['val_accuracy']:.4f}, {metrics.get('train_seconds', 0):.1f} s"
    return f"accuracy {final.get('accuracy') or 0:.4f}, {metrics.get('train_seconds', 0):.1f} s"
