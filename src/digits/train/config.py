"""Training configuration: one frozen dataclass, saved whole into each run's config.json."""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass, field
from typing import Any

from digits.data.normalise import NORMALISATIONS
from digits.errors import DigitsError
from digits.hardware import PRECISIONS

# Every augmentation digits.train.augment draws, each by its strength (named here so a config is checked
# without torch).
AUGMENTATIONS = ("rotation", "zoom", "shift", "elastic", "noise", "blur", "contrast", "stroke", "erase", "erasing",
                 "photometric")


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
    weight_decay: float = 0.0     # L2 (decoupled for adamw)
    schedule: str = "constant"    # constant | step | exponential | cosine | onecycle | plateau
    schedule_args: dict[str, Any] = field(default_factory=dict)  # e.g. {"gamma": 0.95}
    label_smoothing: float = 0.0
    augment: dict[str, float] = field(default_factory=dict)  # AUGMENTATIONS; digits.train.augment
    normalise: str = "none"       # none, mnist (MNIST's form), ink (background and contrast only)
    outlier_exposure: float = 0.0  # weight of the loss teaching doubt on letters and scribbles (digits.data.outliers)
    early_stopping: int = 0       # patience in epochs; 0 = off
    monitor: str = "val_accuracy"  # metric for early stopping, plateau and best weights
    restore_best: bool = True     # with early stopping: end with the best epoch's weights
    val_split: float = 0.05       # last fraction of rows, before shuffling (Keras)
    shuffle: bool = True          # reshuffle the training rows every epoch
    seed: int = 0
    device: str = "auto"          # auto | cpu | cuda | cuda:N | mps
    precision: str = "auto"       # auto | fp32 | bf16 | fp16 (autocast); auto: digits.hardware.choose_precision
    compile: bool = False         # torch.compile the model
    channels_last: bool = False   # NHWC memory layout for convolutions
    cuda_graphs: bool = False     # on CUDA: replay captured optimizer steps (drops the last partial batch)

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise DigitsError(f"--epochs must be >= 1, got {self.epochs} (0 would write an untrained model)")
        if self.batch_size < 1:
            raise DigitsError(f"--batch-size must be >= 1, got {self.batch_size}")
        if not 0.0 <= self.val_split < 1.0:
            raise DigitsError(f"--val-split must be in [0, 1), got {self.val_split}")
        if self.lr <= 0:
            raise DigitsError(f"--lr must be > 0, got {self.lr}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise DigitsError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if not 0.0 <= self.outlier_exposure <= 10.0:
            raise DigitsError(f"outlier_exposure must be in [0, 10], got {self.outlier_exposure}")
        if self.precision not in PRECISIONS:
            raise DigitsError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.monitor not in ("val_accuracy", "val_loss"):
            raise DigitsError(f"monitor must be val_accuracy or val_loss, got {self.monitor!r}")
        unknown = sorted(set(self.augment) - set(AUGMENTATIONS))
        if unknown:
            raise DigitsError(f"unknown augmentation {', '.join(unknown)}; known: {', '.join(AUGMENTATIONS)}")
        share = self.augment.get("photometric", 1.0)
        if not (isinstance(share, (int, float)) and 0.0 <= share <= 1.0):
            raise DigitsError(f"augment photometric is the share of digits the photometric changes reach: "
                              f"expected a number in [0, 1], got {share!r}")
        if self.normalise not in NORMALISATIONS:
            raise DigitsError(f"normalise must be one of {', '.join(NORMALISATIONS)}, got {self.normalise!r}")
        if self.early_stopping and self.val_split == 0:
            raise DigitsError("early stopping needs a validation split (--val-split > 0)")

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` applied; ``None`` values keep the current setting."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def with_settings(self, settings: dict[str, Any], origin: str = "") -> TrainConfig:
        """A copy with ``settings`` on top, checked as :meth:`from_dict` checks a file's: their
        ``augment`` and ``model_args`` entries are added to these, every other setting replaces
        its own (an ensemble member's variant: ``{"augment": {"erasing": 0.5}}``)."""
        values = self.to_dict()
        for key, value in settings.items():
            merged = key in ("augment", "model_args") and isinstance(value, dict)
            values[key] = values[key] | value if merged else value
        return TrainConfig.from_dict(values, origin)

    def on_device(self, kind: str) -> TrainConfig:
        """The settings as they take effect on a device of ``kind`` ("cpu", "cuda", "mps"):
        CUDA graphs only on CUDA, so that a run records what it really did."""
        return self if kind == "cuda" else dataclasses.replace(self, cuda_graphs=False)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], origin: str = "") -> TrainConfig:
        """Build from a dict (config.json or a preset), rejecting unknown keys by name and
        values of the wrong JSON type; ``origin`` (the file and field) starts each message."""
        where = f"{origin}: " if origin else ""
        if not isinstance(values, dict):
            raise DigitsError(f"{where}expected an object of training settings")
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise DigitsError(f"{where}unknown training setting(s): {', '.join(unknown)}; "
                              f"known: {', '.join(sorted(known))}")
        for name, value in values.items():
            expected = _setting_type(known[name])
            if not _is_a(value, expected):
                raise DigitsError(f"{where}setting '{name}' should be {_TYPE_NAMES[expected]}, "
                                  f"found {value!r}"[:200])
        try:
            return cls(**values)
        except DigitsError as exc:
            raise DigitsError(f"{where}{exc}") from None


_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
               dict: "an object"}


def _setting_type(field: dataclasses.Field) -> type:
    # Every setting's type is the type of its default (the dataclass's annotations are strings).
    default = field.default_factory() if field.default is dataclasses.MISSING else field.default
    return type(default)


def _is_a(value: Any, expected: type) -> bool:
    if expected in (int, float) and isinstance(value, bool):
        return False  # JSON true is not a number, though Python's bool is an int
    if expected is float:
        return isinstance(value, numbers.Real)
    if expected is int:
        return isinstance(value, numbers.Integral)
    return isinstance(value, expected)
