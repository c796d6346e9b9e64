"""Choosing the device (CUDA, then Apple MPS, then CPU, unless told) and the settings that
follow from its hardware."""

from __future__ import annotations

import warnings

import torch

from digits.errors import DigitsError, DigitsWarning
from digits.hardware import Hardware, choose_precision, emulation_warning, hardware
from digits.models.registry import create_model
from digits.train.config import TrainConfig
from digits.train.fast_mlp import mlp_layers


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
        raise DigitsError("--device cuda: no CUDA GPU is available here")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise DigitsError("--device mps: Apple MPS is not available here")
    return device


def resolve_config(config: TrainConfig, hw: Hardware | torch.device) -> TrainConfig:
    """``config`` as it will run on ``hw`` (a device, or its ``Hardware`` facts): its number
    format decided by the hardware rule.

    An explicit format the device only emulates is kept, with one ``DigitsWarning``.
    """
    hw = hw if isinstance(hw, Hardware) else hardware(hw)
    message = emulation_warning(config.precision, hw)
    if message:
        # stacklevel 1: one place of origin, so a config resolved twice in a process warns once
        warnings.warn(message.removeprefix("warning: "), DigitsWarning, stacklevel=1)
    overhead_bound = False
    if config.precision == "auto" and hw.kind == "cpu":
        with torch.device("meta"):  # the architecture only: no memory, no random draws
            overhead_bound = mlp_layers(create_model(config.model, **config.model_args)) is not None
    return config.replace(precision=choose_precision(config.precision, hw, overhead_bound))
