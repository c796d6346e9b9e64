"""The machine a benchmark ran on, for its figures, and the same benchmark again with the CPU
held to AVX2.

Every figure is labelled with ``describe()``: the device's facts from ``digits.hardware`` (CPU
model, ISA level, whether it computes bf16 natively, cores), versions, threads and load. On a
CPU with native bf16 (AMX, AVX512-BF16), ``--isa both`` (the default) runs the benchmark a
second time in a child process with ``ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2
MKL_ENABLE_INSTRUCTIONS=AVX2``, the emulation of the AVX2-only CPUs most users have: figures for
both levels from one command.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
from collections.abc import Sequence

import torch

from digits.hardware import hardware

# Set before torch starts in the child: ATen picks its kernels at load, oneDNN at first use. MKL
# too: it runs torch's fp32 matmuls (every Linear layer, the MLPs' whole work) and would go on using
# AVX-512 under the other two.
AVX2_ENV = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}


def describe(device: str = "cpu") -> str:
    """One line: the hardware (ISA level and bf16 support), versions, threads, load average."""
    hw = hardware(device)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (f"{hw.describe()}; Python {platform.python_version()}, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads); load average {load}")


def add_isa_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--isa", choices=("both", "here", "avx2"), default="both",
                        help="both: here, then again held to AVX2 where this CPU computes bf16 natively; "
                             "here: only at this CPU's own level; avx2: only held to AVX2")


def held_to_avx2_needed() -> bool:
    """Whether holding this CPU to AVX2 changes anything (it has native bf16, not already held)."""
    hw = hardware("cpu")
    return hw.native_bf16 and not hw.limited_by


def run_held_to_avx2(script: str, argv: Sequence[str]) -> int:
    """Run ``script argv --isa here`` again in a child process held to AVX2; its exit status."""
    args = [a for a in argv if not a.startswith("--isa")]
    if "--isa" in argv:  # "--isa VALUE" as two words
        i = list(argv).index("--isa")
        args = list(argv[:i]) + list(argv[i + 2:])
    print(f"\n== again, held to AVX2 ({' '.join(f'{k}={v}' for k, v in AVX2_ENV.items())})", flush=True)
    return subprocess.call([sys.executable, script, *args, "--isa", "here"], env=os.environ | AVX2_ENV)


def levels_to_run(isa: str) -> tuple[bool, bool]:
    """(run here, run again held to AVX2) for an ``--isa`` choice on this machine."""
    extra = held_to_avx2_needed()
    if isa == "avx2":
        return (not extra, extra)  # an AVX2-only CPU is already the level asked for
    return (True, isa == "both" and extra)
