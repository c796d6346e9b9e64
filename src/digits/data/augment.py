"""Random affine jitter of digit batches on the device: small rotations, zooms and shifts."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# At strength 1 (the largest a digit stays readable): these limits, drawn uniformly.
MAX_DEGREES = 15.0
MAX_ZOOM = 0.15     # scale in [1 - z, 1 + z]
MAX_SHIFT = 3.0     # pixels


def random_affine(pixels: torch.Tensor, strength: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Jitter (N, 28, 28) pixels 0-255 (any dtype); returns float32 pixels 0-255, same shape.

    ``strength`` in [0, 1] scales every limit; 0 returns the pixels unchanged (as float).
    """
    x = pixels.reshape(-1, 1, 28, 28).to(torch.float32)
    if strength <= 0:
        return x.reshape(pixels.shape[0], 28, 28)
    n, device = x.shape[0], x.device

    def uniform(limit: float) -> torch.Tensor:
        return ((torch.rand(n, generator=generator) * 2 - 1) * limit * strength).to(device)

    angle = uniform(math.radians(MAX_DEGREES))
    zoom = 1.0 + uniform(MAX_ZOOM)
    shift = uniform(MAX_SHIFT * 2 / 28), uniform(MAX_SHIFT * 2 / 28)  # in [-1, 1] grid units
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos, -sin, shift[0]], 1), torch.stack([sin, cos, shift[1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False).reshape(n, 28, 28)
