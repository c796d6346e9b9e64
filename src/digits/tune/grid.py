"""The tutorial notebook's grid search, reproduced: hidden units x RMSprop learning rate,
3-fold stratified cross-validation (scikit-learn's ``GridSearchCV(cv=3)`` folds), 15
epochs of batch 64, then a refit of the best cell on all rows.

Every fit of the grid runs at once through :mod:`digits.tune.batched_mlp`, and every fit
keeps its per-epoch history (training loss and accuracy, and the held-out fold's).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from digits.data.dataset import DigitSet
from digits.errors import DigitsError, did_you_mean
from digits.hardware import use_threads
from digits.models.layers import Classifier
from digits.models.registry import create_model
from digits.train.history import History
from digits.tune.batched_mlp import MlpStack, Stream, resolve_precision, train_stack


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

    @property
    def fits(self) -> int:
        return len(self.hidden) * len(self.lrs) * self.folds


# The notebook: 5 x 3 cells, cv=3, 45 fits in 16.9 minutes, best 256 units at lr 0.002.
GRIDS = {
    "tutorial": GridSpec("tutorial", (32, 64, 128, 256, 512), (0.001, 0.002, 0.003)),
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


def run_grid(spec: GridSpec, data: DigitSet, seed: int = 0,
             on_epoch: Callable[[int, float], None] | None = None) -> list[CellResult]:
    """Cross-validate every cell of ``spec`` on ``data``; cells in (hidden, lr) order."""
    labels = data.require_labels()
    if len(data) < spec.folds * 10:
        raise DigitsError(f"{data.origin}: {len(data)} rows are too few for {spec.folds}-fold cross-validation")
    folds = stratified_folds(labels, spec.folds)
    streams = [Stream(torch.from_numpy(tr), torch.from_numpy(va)) for tr, va in folds]
    pairs = list(itertools.product(range(spec.folds), spec.lrs))  # one group per (fold, lr)
    torch.manual_seed(seed)
    models = [[create_model("tutorial-mlp", hidden=h) for h in spec.hidden] for _ in pairs]
    lrs, precision = [lr for _, lr in pairs], resolve_precision(spec.precision)
    parts = balanced_parts(spec.hidden, torch.get_num_threads())
    stacks = [MlpStack.from_models([[row[i] for i in part] for row in models], lrs, precision)
              for part in parts]
    images, targets = torch.from_numpy(data.images), torch.from_numpy(labels.astype(np.int64))

    def train(k: int) -> list[list[History]]:
        return train_stack(stacks[k], images, targets, streams, [f for f, _ in pairs], spec.epochs,
                           spec.batch_size, seed, on_epoch if k == 0 else None)

    # One stack per core, each on one thread: the cores no longer meet at a barrier after every
    # small operation, and each thread's Python overhead overlaps the other's arithmetic.
    with use_threads(1), ThreadPoolExecutor(len(stacks)) as pool:
        results = list(pool.map(train, range(len(stacks))))
    histories = [[None] * len(spec.hidden) for _ in pairs]
    for part, result in zip(parts, results):
        for gi in range(len(pairs)):
            for j, mi in enumerate(part):
                histories[gi][mi] = result[gi][j]
    cells = []
    for (mi, hidden), lr in itertools.product(enumerate(spec.hidden), spec.lrs):
        groups = [gi for gi, (_, glr) in enumerate(pairs) if glr == lr]  # fold order
        hist = tuple(histories[gi][mi] for gi in groups)
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


def refit(cell: CellResult, spec: GridSpec, data: DigitSet, seed: int = 0,
          on_epoch: Callable[[int, float], None] | None = None) -> tuple[Classifier, History]:
    """Train the cell's model on every row (GridSearchCV's ``refit=True``)."""
    labels = data.require_labels()
    torch.manual_seed(seed)
    stack = MlpStack.from_models([[create_model("tutorial-mlp", hidden=cell.hidden)]], [cell.lr],
                                 resolve_precision(spec.precision))
    stream = Stream(torch.arange(len(data)))
    histories = train_stack(stack, torch.from_numpy(data.images), torch.from_numpy(labels.astype(np.int64)),
                            [stream], [0], spec.epochs, spec.batch_size, seed, on_epoch)
    return stack.to_model(0, 0), histories[0][0]
