"""The tutorial notebook's grid search, reproduced: hidden units x RMSprop learning rate,
3-fold stratified cross-validation (scikit-learn's ``GridSearchCV(cv=3)`` folds), 15
epochs of batch 64 (128 on CPUs without native bf16), then a refit of the best cell on all rows.

Every fit goes through the training loop (``digits.train.fit``): the widths of each (fold, learning
rate) side by side, which the fused MLP engine trains as one wide network, on one core each; every
fit keeps its per-epoch history (training loss and accuracy, and the held-out fold's).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from digits.data.dataset import DigitSet
from digits.errors import DigitsError, did_you_mean
from digits.hardware import Hardware, choose_precision, hardware, use_threads
from digits.models.registry import create_model
from digits.train.callbacks import StepCounter
from digits.train.config import TrainConfig
from digits.train.fit import fit_side_by_side
from digits.train.history import History


class GridProgress(Protocol):
    """What the grid tells about its work: a stage of ``steps`` optimizer steps begins, and
    ``steps`` more are done (``digits.tune.grid_study`` shows them on a bar)."""

    def begin(self, stage: str, steps: int) -> None: ...

    def advance(self, steps: int) -> None: ...


@dataclass(frozen=True)
class GridSpec:
    """A grid over the tutorial MLP: widths x learning rates, k folds, fixed epochs and batch."""

    name: str
    hidden: tuple[int, ...]
    lrs: tuple[float, ...]
    folds: int = 3
    epochs: int = 15
    batch_size: int = 64  # examples per RMSprop step
    precision: str = "auto"  # first-layer matmuls: fp32, bf16, or auto (bf16 where the CPU has AMX)
    # Where the CPU has no native bf16 (AVX2): the first layer computes in fp32 there, and every
    # step's update streams all of its weights and their RMSprop state through memory, so fewer,
    # larger batches pay (benchmarks/RESULTS.md). None: the same batch on every CPU.
    emulated_bf16_batch_size: int | None = None

    @property
    def fits(self) -> int:
        return len(self.hidden) * len(self.lrs) * self.folds

    def on(self, hw: Hardware) -> GridSpec:
        """The grid as it trains on the CPU ``hw``: its own batch there, where it states one."""
        if hw.bf16_class == "emulated-bf16" and self.emulated_bf16_batch_size:
            return dataclasses.replace(self, batch_size=self.emulated_bf16_batch_size)
        return self

    def config(self, lr: float, seed: int, hidden: int | None = None, on_cpu: bool = False) -> TrainConfig:
        """The training settings of one fit (the refit's, with ``hidden``, as its preset gives them);
        ``on_cpu``: as the grid trains it, on the CPU in the grid's precision."""
        config = TrainConfig(model="tutorial-mlp", model_args={"hidden": hidden} if hidden else {}, lr=lr,
                             epochs=self.epochs, batch_size=self.batch_size, val_split=0.0, seed=seed)
        return config.replace(device="cpu", precision=resolve_precision(self.precision)) if on_cpu else config


def resolve_precision(precision: str) -> str:
    """``fp32`` or ``bf16`` as given; ``auto`` asks the hardware rule (bf16 where the CPU computes it
    natively, fp32 where it is emulated). The grid computes on the CPU, in fp32 or bf16 only."""
    if precision not in ("auto", "fp32", "bf16"):
        raise ValueError(f"precision must be auto, fp32 or bf16, not {precision!r}")
    return choose_precision(precision, hardware("cpu"))


# The notebook: 5 x 3 cells, cv=3, 45 fits in 16.9 minutes, best 256 units at lr 0.002.
GRIDS = {
    "tutorial": GridSpec("tutorial", (32, 64, 128, 256, 512), (0.001, 0.002, 0.003), emulated_bf16_batch_size=128),
    "quick": GridSpec("quick", (32, 128), (0.001, 0.003), folds=2, epochs=2),
}


def get_grid(name: str) -> GridSpec:
    """The named grid, or a DigitsError listing the known ones."""
    if name not in GRIDS:
        raise DigitsError(f"unknown grid {name!r}{did_you_mean(name, GRIDS)}; "
                          f"known grids: {', '.join(sorted(GRIDS))}")
    return GRIDS[name]


@dataclass(frozen=True)
class CellResult:
    """One cell of the grid: its parameters, the held-out accuracy of each fold and each
    fold's per-epoch history."""

    hidden: int
    lr: float
    fold_scores: tuple[float, ...]
    histories: tuple[History, ...]

    @property
    def mean(self) -> float:
        return float(np.mean(self.fold_scores))

    @property
    def std(self) -> float:
        return float(np.std(self.fold_scores))  # population std, as GridSearchCV's std_test_score


def stratified_folds(labels: np.ndarray, folds: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train rows, held-out rows) per fold, exactly scikit-learn's StratifiedKFold(folds),
    which GridSearchCV(cv=folds) uses for a classifier (no shuffling)."""
    from sklearn.model_selection import StratifiedKFold

    return [(a, b) for a, b in StratifiedKFold(n_splits=folds).split(np.zeros(len(labels)), labels)]


def run_grid(spec: GridSpec, data: DigitSet, seed: int = 0, progress: GridProgress | None = None) -> list[CellResult]:
    """Cross-validate every cell of ``spec`` on ``data``; cells in (hidden, lr) order."""
    labels = data.require_labels()
    if len(data) < spec.folds * 10:
        raise DigitsError(f"{data.origin}: {len(data)} rows are too few for {spec.folds}-fold cross-validation")
    folds = [(data.subset(tr), data.subset(va)) for tr, va in stratified_folds(labels, spec.folds)]
    pairs = list(itertools.product(range(spec.folds), spec.lrs))  # one group of widths per (fold, lr)
    torch.manual_seed(seed)
    models = [[create_model("tutorial-mlp", hidden=h) for h in spec.hidden] for _ in pairs]
    # One job per group and share of the widths, one core each: the cores never meet at a barrier
    # after every small operation, and each thread's Python overhead overlaps the other's arithmetic.
    parts = balanced_parts(spec.hidden, torch.get_num_threads())
    jobs = [(gi, part) for gi in range(len(pairs)) for part in parts]
    if progress is not None:
        progress.begin(f"{spec.fits} fits ({len(spec.hidden) * len(spec.lrs)} cells x {spec.folds} folds)",
                       sum(spec.epochs * math.ceil(len(folds[pairs[gi][0]][0]) / spec.batch_size) for gi, _ in jobs))

    def train(job: tuple[int, list[int]]) -> list[History]:
        (fold, lr), part = pairs[job[0]], job[1]
        (rows, held_out), config = folds[fold], spec.config(lr, seed * 1000 + fold, on_cpu=True)
        with use_threads(1):  # this thread's own setting
            return fit_side_by_side([models[job[0]][i] for i in part], rows, config, held_out,
                                    [StepCounter(progress.advance)] if progress is not None else ())

    with use_threads(1), ThreadPoolExecutor(len(parts)) as pool:
        results = list(pool.map(train, jobs))
    histories = {(gi, mi): history for (gi, part), result in zip(jobs, results) for mi, history in zip(part, result)}
    cells = []
    for (mi, hidden), lr in itertools.product(enumerate(spec.hidden), spec.lrs):
        hist = tuple(histories[gi, mi] for gi, (_, glr) in enumerate(pairs) if glr == lr)  # fold order
        cells.append(CellResult(hidden, lr, tuple(h.rows[-1]["val_accuracy"] for h in hist), hist))
    return cells


def balanced_parts(widths: Sequence[int], parts: int) -> list[list[int]]:
    """Indices of ``widths`` in at most ``parts`` groups of about equal total width (the work
    of a step grows with it): the widest first, each into the lightest group so far."""
    groups: list[list[int]] = [[] for _ in range(max(1, min(parts, len(widths))))]
    for i in sorted(range(len(widths)), key=lambda i: -widths[i]):
        min(groups, key=lambda g: sum(widths[j] for j in g)).append(i)
    return [sorted(g) for g in groups]


def best_cell(cells: list[CellResult]) -> CellResult:
    """The cell with the highest mean score; the first one on ties, as GridSearchCV ranks."""
    return max(cells, key=lambda c: c.mean)
