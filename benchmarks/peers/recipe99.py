"""Peer: the published 99%-in-one-epoch recipe, in plain PyTorch.

Conv 24 5x5 + ReLU + max-pool 2, Conv 32 3x3 + ReLU + max-pool 2, FC 256 + ReLU, FC 10;
Adam lr 0.01 betas (0.7, 0.9) under a one-cycle schedule (PyTorch's OneCycleLR defaults
around max_lr 0.01); batch 256; one epoch over MNIST's 60,000 training digits, evaluated on
its 10,000 test digits. Pixels are normalised with MNIST's mean and std and held in memory
as one float tensor before the clock starts; the timed part is the training loop alone.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
BATCH = 256
LR, BETAS = 0.01, (0.7, 0.9)


def build_net() -> nn.Sequential:
    """(N, 1, 28, 28) normalised pixels -> 10 logits."""
    return nn.Sequential(
        nn.Conv2d(1, 24, 5), nn.ReLU(), nn.MaxPool2d(2),    # (24, 12, 12)
        nn.Conv2d(24, 32, 3), nn.ReLU(), nn.MaxPool2d(2),   # (32, 5, 5)
        nn.Flatten(), nn.Linear(32 * 5 * 5, 256), nn.ReLU(), nn.Linear(256, 10))


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, 28, 28) -> normalised float (N, 1, 28, 28)."""
    x = torch.from_numpy(images).float().div_(255).unsqueeze(1)
    return (x - MNIST_MEAN) / MNIST_STD


def train_one_epoch(x: torch.Tensor, y: torch.Tensor, seed: int = 0) -> tuple[nn.Module, float]:
    """One epoch of the recipe; returns the model and the training wall time in seconds."""
    torch.manual_seed(seed)
    model = build_net()
    steps = (len(x) + BATCH - 1) // BATCH
    optimizer = torch.optim.Adam(model.parameters(), lr=LR, betas=BETAS)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=LR, total_steps=steps)
    started = time.perf_counter()
    order = torch.randperm(len(x))
    for start in range(0, len(x), BATCH):
        idx = order[start:start + BATCH]
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x[idx]), y[idx]).backward()
        optimizer.step()
        schedule.step()
    return model, time.perf_counter() - started


@torch.inference_mode()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Test accuracy on normalised images."""
    model.eval()
    correct = sum(int((model(x[i:i + 2048]).argmax(1) == y[i:i + 2048]).sum()) for i in range(0, len(x), 2048))
    return correct / len(x)
