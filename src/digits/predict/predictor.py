"""Predictions from a trained model: probabilities and labels for many images at once."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from digits.train.fast_mlp import is_small_mlp, use_threads


@torch.inference_mode()
def predict_proba(model: nn.Module, images: np.ndarray, batch_size: int = 4096,
                  device: torch.device | str | None = None) -> np.ndarray:
    """Class probabilities (N, 10) for uint8 images (N, 28, 28)."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.eval()
    pixels = torch.from_numpy(np.ascontiguousarray(images))
    out = []
    # A small MLP runs best on one thread (several cost more to wake than they save).
    with use_threads(1 if device.type == "cpu" and is_small_mlp(model) else torch.get_num_threads()):
        for start in range(0, len(pixels), batch_size):
            batch = pixels[start:start + batch_size].to(device)
            out.append(torch.softmax(model(batch).float(), dim=1).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 10), np.float32)


def predict_labels(model: nn.Module, images: np.ndarray, **kwargs: object) -> np.ndarray:
    """The most probable digit for each image, int64 (N,)."""
    return predict_proba(model, images, **kwargs).argmax(axis=1).astype(np.int64)
