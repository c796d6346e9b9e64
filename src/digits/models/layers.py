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
