"""Augmentation on the device, a whole batch at a time: random rotation, zoom, shift and
elastic distortion, as Keras' ImageDataGenerator draws them, and generic changes of how a digit
is written and seen: stroke width, blur, contrast and background level, noise, erased lines,
Random Erasing.
No per-sample Python. These are generic on purpose: the robustness benchmark's corruptions
(benchmarks/corruptions.py) are never used in training."""

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


GEOMETRIC = ("rotation", "zoom", "shift", "elastic")
PHOTOMETRIC = ("stroke", "blur", "contrast", "noise", "erase", "erasing")
CHANCE = "photometric"  # the share of images the photometric changes are drawn for at all (default 1)


def augment_batch(pixels: torch.Tensor, **settings: float) -> torch.Tensor:
    """uint8 or float pixels (B, 28, 28) -> float (B, 1, 28, 28) with ``settings`` (a run's
    ``augment``) drawn for each image: the geometric ones (:func:`random_affine`), then the
    photometric ones (:func:`random_photometric`), the latter for a ``photometric`` share of
    the images only (default all): the rest are seen as written, so that the network still
    learns clean digits as well as it would without them."""
    x = random_affine(pixels, **{k: v for k, v in settings.items() if k in GEOMETRIC})
    changed = random_photometric(x, **{k: v for k, v in settings.items() if k in PHOTOMETRIC})
    chance = settings.get(CHANCE, 1.0)
    if chance >= 1.0 or changed is x:
        return changed
    # Drawn for every image and kept for the picked ones: the shapes stay the batch's, as a
    # captured CUDA graph needs, and the photometric changes cost little beside the step.
    pick = torch.rand(x.shape[0], 1, 1, 1, device=x.device) < chance
    return torch.where(pick, changed, x)


def random_photometric(x: torch.Tensor, stroke: float = 0.0, blur: float = 0.0, contrast: float = 0.0,
                       noise: float = 0.0, erase: float = 0.0, erasing: float = 0.0) -> torch.Tensor:
    """Float pixels (B, 1, 28, 28), 0-255 -> the same shape, each image drawn on its own:

    ``stroke``: the chance of a stroke one pixel wider or thinner (3x3 max/min-pool), either
    way at even odds; ``blur``: Gaussian blur of sigma U[0, blur] pixels; ``contrast``: ink
    scaled by U[1 - c, 1] and a background level U[0, c] * 255 added (clipped); ``noise``:
    Gaussian noise of sigma U[0, noise] * 255; ``erase``: the chance of a random line of one or
    two pixels set to black or white across the image; ``erasing``: the chance of Random Erasing
    (:func:`_random_erasing`). 0 = off.
    """
    b, dev = x.shape[0], x.device
    if stroke:
        pick = torch.rand(b, 1, 1, 1, device=dev)
        wider = F.max_pool2d(x, 3, stride=1, padding=1)
        thinner = -F.max_pool2d(-x, 3, stride=1, padding=1)
        x = torch.where(pick < stroke / 2, wider, torch.where(pick < stroke, thinner, x))
    if blur:
        x = _random_blur(x, blur)
    if contrast:
        scale = 1 - torch.rand(b, 1, 1, 1, device=dev) * contrast
        level = torch.rand(b, 1, 1, 1, device=dev) * contrast * 255
        x = (x * scale + level).clamp(0, 255)
    if erase:
        x = _random_lines(x, erase)
    if erasing:
        x = _random_erasing(x, erasing)
    if noise:
        sigma = torch.rand(b, 1, 1, 1, device=dev) * noise * 255
        x = (x + torch.randn_like(x) * sigma).clamp(0, 255)
    return x


def _random_blur(x: torch.Tensor, most: float, radius: int = 3) -> torch.Tensor:
    """Each image blurred by its own sigma in [0, most]: one separable convolution whose kernel
    differs per image (the batch folded into channels, a grouped convolution)."""
    b, dev = x.shape[0], x.device
    sigma = (torch.rand(b, 1, device=dev) * most).clamp_min(1e-3)
    t = torch.arange(-radius, radius + 1, device=dev, dtype=x.dtype)[None, :]
    kernel = torch.exp(-t**2 / (2 * sigma**2))
    kernel = kernel / kernel.sum(dim=1, keepdim=True)                   # (B, 7)
    y = x.reshape(1, b, 28, 28)
    y = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode="replicate"), kernel.view(b, 1, 1, -1), groups=b)
    y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode="replicate"), kernel.view(b, 1, -1, 1), groups=b)
    return y.reshape(b, 1, 28, 28)


def _random_lines(x: torch.Tensor, chance: float) -> torch.Tensor:
    """With probability ``chance`` per image, a straight line (random angle and offset, one or
    two pixels thick) painted black or white: occlusion and stray marks."""
    b, dev = x.shape[0], x.device
    coords = torch.arange(28, device=dev, dtype=x.dtype) - 13.5
    rows, cols = coords.view(1, 28, 1), coords.view(1, 1, 28)
    angle = torch.rand(b, 1, 1, device=dev) * math.pi
    offset = (torch.rand(b, 1, 1, device=dev) * 2 - 1) * 10
    width = 0.5 + torch.rand(b, 1, 1, device=dev)
    distance = (rows * torch.cos(angle) + cols * torch.sin(angle) - offset).abs()
    on = (distance < width) & (torch.rand(b, 1, 1, device=dev) < chance)
    value = (torch.rand(b, 1, 1, device=dev) < 0.5).to(x.dtype) * 255
    return torch.where(on.unsqueeze(1), value.unsqueeze(1), x)


def _random_erasing(x: torch.Tensor, chance: float, areas: tuple[float, float] = (0.02, 0.4),
                    aspect: float = 3.3) -> torch.Tensor:
    """Random Erasing (Zhong et al. 2017), with its published defaults: with probability
    ``chance`` per image, a rectangle of ``areas`` of the image (aspect ratio log-uniform in
    [1/aspect, aspect]) filled with uniform random pixels: a digit partly hidden or scribbled over."""
    b, dev = x.shape[0], x.device
    area = (areas[0] + torch.rand(b, device=dev) * (areas[1] - areas[0])) * 28 * 28
    ratio = torch.exp((torch.rand(b, device=dev) * 2 - 1) * math.log(aspect))
    h, w = (area * ratio).sqrt().clamp(1, 28), (area / ratio).sqrt().clamp(1, 28)
    top, left = torch.rand(b, device=dev) * (28 - h), torch.rand(b, device=dev) * (28 - w)
    coords = torch.arange(28, device=dev, dtype=x.dtype)
    rows = (coords[None, :] >= top[:, None]) & (coords[None, :] < (top + h)[:, None])    # (B, 28)
    cols = (coords[None, :] >= left[:, None]) & (coords[None, :] < (left + w)[:, None])
    on = rows[:, :, None] & cols[:, None, :] & (torch.rand(b, 1, 1, device=dev) < chance)
    return torch.where(on.unsqueeze(1), torch.rand_like(x) * 255, x)


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
