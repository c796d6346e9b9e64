"""Peer: the tutorial's MLP as a plain PyTorch user writes it (DataLoader, autograd, torch.optim).

Same mathematics as the tutorial: 784 -> Linear 32 + ReLU -> Linear 10, Glorot-uniform
weights and zero biases, RMSprop with Keras' settings (alpha = rho 0.9, eps 1e-7, lr 1e-3),
softmax cross-entropy, batch 64, reshuffled every epoch, pixels / 255 prepared up front.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def build_mlp() -> nn.Sequential:
    """The tutorial's network with Keras' Dense initialisation."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))
    for layer in (model[1], model[3]):
        nn.init.xavier_uniform_(layer.weight)
        nn.init.zeros_(layer.bias)
    return model


def train_plain_mlp(images: np.ndarray, labels: np.ndarray, seed: int = 0,
                    epochs: int = 10) -> tuple[nn.Module, float]:
    """Train on uint8 ``images`` (N, 28, 28); returns the model and the training wall time."""
    torch.manual_seed(seed)
    x = torch.from_numpy(images.reshape(len(images), 784)).float() / 255
    dataset = TensorDataset(x, torch.from_numpy(labels.astype(np.int64)))
    loader = DataLoader(dataset, batch_size=64, shuffle=True)
    model = build_mlp()
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-3, alpha=0.9, eps=1e-7)
    started = time.perf_counter()
    for _ in range(epochs):
        for xb, yb in loader:
            optimizer.zero_grad()
            F.cross_entropy(model(xb), yb).backward()
            optimizer.step()
    return model, time.perf_counter() - started


@torch.inference_mode()
def accuracy(model: nn.Module, images: np.ndarray, labels: np.ndarray) -> float:
    """Test accuracy of ``model`` on uint8 images."""
    x = torch.from_numpy(images.reshape(len(images), 784)).float() / 255
    return float((model(x).argmax(1).numpy() == labels).mean())
