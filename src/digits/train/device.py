"""Choosing the device: CUDA, then Apple MPS, then CPU, unless told."""

from __future__ import annotations

import torch

from digits.errors import DigitsError


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks cuda, mps or cpu; anything else must be available here."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DigitsError(f"--device: unknown device {name!r}; expected auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DigitsError(f"--device {name}: no CUDA GPU is available here")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise DigitsError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                          f"numbered from 0")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise DigitsError("--device mps: Apple MPS is not available here")
    return device
