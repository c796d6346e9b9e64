"""A labelled set on the device, for training: the whole set as tensors, batches by index."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from digits.data.dataset import DigitSet


@dataclass(frozen=True)
class TensorSet:
    """``x`` (N, ...) inputs (uint8 (N, 28, 28) images, or a table's features), ``y`` int64 (N,)."""

    x: torch.Tensor
    y: torch.Tensor

    @classmethod
    def from_digits(cls, data: DigitSet | TensorSet, device: torch.device) -> TensorSet:
        """``data`` on ``device`` (a TensorSet is moved, a DigitSet converted)."""
        if isinstance(data, TensorSet):
            return cls(data.x.to(device), data.y.to(device))
        labels = data.require_labels()
        return cls(torch.from_numpy(np.ascontiguousarray(data.images)).to(device),
                   torch.from_numpy(labels.astype(np.int64)).to(device))

    def __len__(self) -> int:
        return len(self.y)
