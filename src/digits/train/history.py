"""Per-epoch training history: one row per epoch, written as history.csv."""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from digits.atomic import write_text
from digits.errors import RunError

COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds")


@dataclass
class History:
    """Rows of ``COLUMNS``; ``val_*`` are NaN when there is no validation set."""

    rows: list[dict[str, float]] = field(default_factory=list)

    def append(self, row: dict[str, float]) -> None:
        self.rows.append({c: float(row.get(c, math.nan)) for c in COLUMNS})

    def __len__(self) -> int:
        return len(self.rows)

    def column(self, name: str) -> list[float]:
        """All values of one column, epoch order."""
        return [row[name] for row in self.rows]

    def best_epoch(self, metric: str = "val_loss", mode: str = "min") -> int:
        """The 1-based epoch with the best ``metric`` (the first one on ties)."""
        values = self.column(metric)
        if not values or all(math.isnan(v) for v in values):
            raise ValueError(f"history has no {metric} values")
        pick = min if mode == "min" else max
        best = pick((v for v in values if not math.isnan(v)))
        return values.index(best) + 1

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({k: int(v) if k == "epoch" else f"{v:.6g}" for k, v in row.items()})
        return out.getvalue()

    def save(self, path: str | os.PathLike[str]) -> Path:
        return write_text(path, self.to_csv())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> History:
        try:
            with open(path, newline="") as fh:
                return cls([{c: float(r[c]) for c in COLUMNS} for r in csv.DictReader(fh)])
        except (OSError, KeyError, ValueError) as exc:
            raise RunError(f"{path}: not a history file ({exc})") from None
