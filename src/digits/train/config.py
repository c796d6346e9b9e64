"""Training configuration: one frozen dataclass, saved whole into each run's config.json."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from digits.errors import DigitsError


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run, with the tutorial's settings as defaults."""

    model: str = "tutorial-mlp"
    model_args: dict[str, Any] = field(default_factory=dict)
    epochs: int = 25
    batch_size: int = 64          # examples per optimizer step
    optimizer: str = "rmsprop"
    lr: float = 1e-3              # per step, not scaled with batch size
    optimizer_args: dict[str, Any] = field(default_factory=dict)  # e.g. {"rho": 0.9}
    schedule: str = "constant"    # constant | cosine | onecycle, stepped per batch
    augment: float = 0.0          # random affine jitter strength, 0 (off) to 1
    val_split: float = 0.05       # last fraction of rows, before shuffling (Keras)
    shuffle: bool = True          # reshuffle the training rows every epoch
    seed: int = 0
    device: str = "auto"          # auto | cpu | cuda | cuda:N | mps

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise DigitsError(f"--epochs must be >= 0, got {self.epochs}")
        if self.batch_size < 1:
            raise DigitsError(f"--batch-size must be >= 1, got {self.batch_size}")
        if not 0.0 <= self.val_split < 1.0:
            raise DigitsError(f"--val-split must be in [0, 1), got {self.val_split}")
        if self.lr <= 0:
            raise DigitsError(f"--lr must be > 0, got {self.lr}")
        if not 0.0 <= self.augment <= 1.0:
            raise DigitsError(f"augment must be in [0, 1], got {self.augment}")

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` applied; ``None`` values keep the current setting."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a dict (config.json or a preset), rejecting unknown keys by name."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise DigitsError(f"unknown training setting(s): {', '.join(unknown)}; "
                              f"known: {', '.join(sorted(known))}")
        return cls(**values)
