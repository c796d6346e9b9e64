"""The in-memory form of every data set: uint8 images (N, 28, 28) and optional labels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from digits.errors import DataError


@dataclass(frozen=True)
class DigitSet:
    """Digits as they come from a file: ``images`` uint8 (N, 28, 28); ``labels`` int64 (N,) or None.

    ``origin`` names where they came from, for messages. Test files have no labels.
    """

    images: np.ndarray
    labels: np.ndarray | None
    origin: str

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 3 or self.images.shape[1:] != (28, 28):
            raise DataError(f"{self.origin}: images must be uint8 (N, 28, 28), got "
                            f"{self.images.dtype} {self.images.shape}")
        if self.labels is not None and self.labels.shape != (len(self.images),):
            raise DataError(f"{self.origin}: {len(self.images)} images but labels of shape {self.labels.shape}")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def labelled(self) -> bool:
        """Whether the set carries labels (a train file) or not (a test file)."""
        return self.labels is not None

    def require_labels(self) -> np.ndarray:
        """The labels, or a DataError saying that this file has none."""
        if self.labels is None:
            raise DataError(f"{self.origin}: has no labels (a test file?); a train file is needed here")
        return self.labels

    def subset(self, index: np.ndarray | slice, origin: str | None = None) -> DigitSet:
        """The rows at ``index``, as a new set."""
        labels = None if self.labels is None else self.labels[index]
        return DigitSet(self.images[index], labels, origin or self.origin)

    def split_last(self, fraction: float) -> tuple[DigitSet, DigitSet]:
        """Split off the last ``fraction`` of rows, before any shuffling, as Keras'
        ``validation_split`` does. Returns (train, validation)."""
        if not 0.0 <= fraction < 1.0:
            raise DataError(f"validation split must be in [0, 1), got {fraction}")
        # Keras: split_at = int(n * (1 - validation_split)).
        split_at = int(len(self) * (1.0 - fraction))
        return (self.subset(slice(0, split_at), self.origin),
                self.subset(slice(split_at, None), f"{self.origin} (last {fraction:g})"))
