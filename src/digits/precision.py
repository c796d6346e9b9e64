"""Number formats: autocast and gradient scaling for the format a run resolved to.

Which format a run uses is decided by ``digits.hardware.choose_precision``; this module only
applies it.
"""

from __future__ import annotations

import contextlib

import torch

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 or fp16 autocast when asked for, else nothing (fp32)."""
    if precision in _DTYPES:
        return torch.autocast(device_type=device.type, dtype=_DTYPES[precision])
    return contextlib.nullcontext()


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler | None:
    """A gradient scaler for fp16 training (its small range underflows gradients), else None."""
    if precision != "fp16":
        return None
    return torch.amp.GradScaler(device.type)
