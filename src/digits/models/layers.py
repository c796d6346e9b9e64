"""Layers shared by every model."""

from __future__ import annotations

import torch
from torch import nn


class Classifier(nn.Module):
    """Pixels 0-255 in, logits out: scaling and normalisation live inside the model, so
    every caller (training, prediction, the web app, ONNX) feeds raw pixels the same way."""

    def __init__(self, net: nn.Module, mean: float = 0.0, std: float = 1.0) -> None:
        super().__init__()
        self.net = net
        self.mean = mean
        self.std = std
        # Fold /255 and (x - mean) / std into one multiply-add.
        self.register_buffer("scale", torch.tensor(1.0 / (255.0 * std)), persistent=False)
        self.register_buffer("shift", torch.tensor(-mean / std), persistent=False)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = pixels.reshape(-1, 1, 28, 28).to(self.scale.dtype)  # (N, 1, 28, 28)
        return self.net(x * self.scale + self.shift)  # (N, 10) logits


def keras_dense_init(module: nn.Module) -> None:
    """Keras' defaults for Dense layers: Glorot-uniform weights, zero biases."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        nn.init.zeros_(module.bias)


class Dropout(nn.Dropout):
    """``nn.Dropout`` whose mask is drawn from 16-bit slices of 64-bit random words on the CPU.

    Written by hand because the CPU's ``bernoulli_`` draws one random number per element, and
    that draw was a tenth of kaggle-cnn's whole training step on 2 cores (benchmarks/speed.py,
    ``--only step``); four elements per 64-bit word draw the same mask far faster. The chance
    of dropping is ``p`` rounded to 1/65,536, and the kept values are scaled by the inverse of
    the chance kept, so the expectation stays exact. Elsewhere (CUDA, where ``bernoulli_`` is
    fast and CUDA graphs capture it; in place; strided views) it is ``nn.Dropout`` itself, and
    it has no weights, so a run saved with either loads into the other."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (not self.training or self.inplace or x.device.type != "cpu" or not 0.0 < self.p < 1.0
                or not _dense(x)):
            return super().forward(x)
        dropped = round(self.p * 65536)
        if dropped in (0, 65536):
            return super().forward(x)
        n = x.numel()
        words = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-2**63, None)  # all 64 bits random
        draws = words.view(torch.int16)[:n].as_strided(x.size(), x.stride())       # x's own layout
        keep = (draws >= dropped - 32768).to(x.dtype).mul_(65536 / (65536 - dropped))
        return x * keep


def _dense(x: torch.Tensor) -> bool:
    """Whether ``x`` is laid out densely, in an order a mask can take over by its strides."""
    return x.is_contiguous() or (x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last))
