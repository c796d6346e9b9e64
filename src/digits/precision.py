"""Number formats: bf16 autocast, and where the hardware computes bf16 natively."""

from __future__ import annotations

import contextlib

import torch


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast when asked for (AMX on recent CPUs, tensor cores on GPUs), else nothing."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 in hardware (elsewhere it is emulated, and slower)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        from digits.runs import cpu_info

        return bool({"amx_bf16", "avx512_bf16"} & cpu_info()[1])
    return False
