"""Augmentation on the device, a whole batch at a time: random rotation, zoom, shift and
elastic distortion, as Keras' ImageDataGenerator draws them. No per-sample Python."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# At strength 1, the largest jitter a digit stays readable under (a search space's "augment" knob).
MAX_ROTATION, MAX_ZOOM, MAX_SHIFT = 15.0, 0.15, 3 / 28


def augment_settings(strength: float) -> dict[str, float]:
    """One knob for searches and scikit-learn: ``strength`` in [0, 1] scales rotation, zoom and shift."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"augmentation strength must be in [0, 1], got {strength}")
    if strength == 0:
        return {}
    return {"rotation": MAX_ROTATION * strength, "zoom": MAX_ZOOM * strength, "shift": MAX_SHIFT * strength}


def random_affine(pixels: torch.Tensor, rotation: float = 0.0, zoom: float = 0.0, shift: float = 0.0,
                  elastic: float = 0.0) -> torch.Tensor:
    """Augment uint8 or float pixels (B, 28, 28) -> float (B, 1, 28, 28) on the same device.

    ``rotation``: degrees, uniform in [-r, r]; ``zoom``: each axis scaled by U[1 - z, 1 + z];
    ``shift``: fraction of the side, uniform in [-s, s] per axis; ``elastic``: displacement
    in pixels of a smooth random field (Simard et al. 2003), 0 = off.
    """
    x = pixels.reshape(-1, 1, 28, 28).float()
    if not (rotation or zoom or shift or elastic):
        return x
    b, dev = x.shape[0], x.device
    angle = (torch.rand(b, device=dev) * 2 - 1) * math.radians(rotation)
    scale = 1 + (torch.rand(b, 2, device=dev) * 2 - 1) * zoom            # (B, 2): x and y zoom
    offset = (torch.rand(b, 2, device=dev) * 2 - 1) * shift * 2          # grid units span [-1, 1]
    cos, sin = torch.cos(angle), torch.sin(angle)
    # The grid maps output to input coordinates, so zoom-in means dividing by the scale.
    theta = torch.stack([torch.stack([cos / scale[:, 0], -sin / scale[:, 0], offset[:, 0]], 1),
                         torch.stack([sin / scale[:, 1], cos / scale[:, 1], offset[:, 1]], 1)], 1)  # (B, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)      # (B, 28, 28, 2)
    if elastic:
        grid = grid + _elastic_field(b, elastic, dev)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _elastic_field(batch: int, alpha: float, device: torch.device, sigma: float = 4.0) -> torch.Tensor:
    """A random displacement field smoothed by a Gaussian, ``alpha`` pixels strong, in grid units."""
    noise = torch.rand(batch, 2, 28, 28, device=device) * 2 - 1
    radius = int(3 * sigma)
    t = torch.arange(-radius, radius + 1, device=device, dtype=torch.float32)
    kernel = torch.exp(-t**2 / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    smooth = F.conv2d(noise.reshape(-1, 1, 28, 28), kernel.view(1, 1, 1, -1), padding=(0, radius))
    smooth = F.conv2d(smooth, kernel.view(1, 1, -1, 1), padding=(radius, 0)).reshape(batch, 2, 28, 28)
    smooth = smooth / smooth.abs().amax(dim=(2, 3), keepdim=True).clamp_min(1e-6)
    return (smooth * alpha * 2 / 28).permute(0, 2, 3, 1)               # pixels -> grid units
