"""What the hardware a run is on can do: the one place every hardware-dependent choice asks.

A CPU is described by its ISA level (AMX, AVX-512 with or without BF16, AVX2, Arm SVE/NEON)
and core count, a CUDA GPU by its compute capability, Apple's MPS by what it supports. From
that follow the number format (``choose_precision``), and the preset tables that apply
(``Hardware.bf16_class``). The answer is read once per device and recorded in each run's
``config.json``; benchmarks print ``Hardware.describe()`` beside their figures.

The rules are pure functions of the facts (``describe_cpu``, ``describe_cuda``,
``choose_precision``), so tests give the facts of any machine as parameters.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, get_args

Precision = Literal["fp32", "bf16", "fp16"]
PrecisionChoice = Literal["auto", "fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = get_args(PrecisionChoice)

# CPU ISA levels, lowest first. Where oneDNN (convolutions, matmuls) is held below the CPU's own
# level (ONEDNN_MAX_CPU_ISA), the lower level is what the arithmetic really runs on.
CPU_LEVELS = ("baseline", "avx2", "avx512", "avx512-bf16", "amx")
ARM_LEVELS = ("neon", "sve")
NATIVE_BF16_CPU = {"avx512-bf16", "amx"}
# oneDNN's ISA names (ONEDNN_MAX_CPU_ISA) mapped onto ours.
_ONEDNN_CAP = {"sse41": "baseline", "avx": "baseline", "avx2": "avx2", "avx2_vnni": "avx2",
               "avx2_vnni_2": "avx2", "avx512_core": "avx512", "avx512_core_vnni": "avx512",
               "avx512_core_bf16": "avx512-bf16", "avx10_1_512": "avx512-bf16",
               "avx512_core_fp16": "avx512-bf16", "avx10_1_512_amx": "amx", "avx512_core_amx": "amx",
               "avx10_1_512_amx_fp16": "amx", "avx512_core_amx_fp16": "amx", "all": "amx"}
# ATen's own kernels (ATEN_CPU_CAPABILITY) cap at these.
_ATEN_CAP = {"default": "baseline", "avx2": "avx2", "avx512": "avx512"}
# CUDA GPUs without bf16 whose fp16 is fast (tensor cores or 2x-rate fp16): P100 (6.0),
# V100 (7.0), Xavier (7.2), T4 and RTX 20xx (7.5). Consumer Pascal (6.1) runs fp16 at 1/64 rate.
_FAST_FP16 = {(6, 0), (7, 0), (7, 2), (7, 5)}


@dataclass(frozen=True)
class Hardware:
    """The facts about one device that choices depend on."""

    kind: Literal["cpu", "cuda", "mps"]
    name: str                 # the CPU's model name or the GPU's
    isa: str                  # cpu: one of CPU_LEVELS or ARM_LEVELS; cuda: "sm_75"...; mps: "metal"
    cores: int                # CPU cores (threads torch may use); GPUs: their CPU host's
    native_bf16: bool         # bf16 arithmetic in hardware (elsewhere it is emulated, several times slower)
    fast_fp16: bool = False   # fp16 at least as fast as fp32 with a gradient scaler (pre-Ampere CUDA)
    capability: tuple[int, int] | None = None  # CUDA compute capability
    limited_by: str = ""      # an environment variable that holds the ISA below the CPU's own

    @property
    def bf16_class(self) -> Literal["native-bf16", "emulated-bf16"]:
        """Which of a preset's per-hardware tables applies (``[cpu.native-bf16]``...)."""
        return "native-bf16" if self.native_bf16 else "emulated-bf16"

    def describe(self) -> str:
        """One line for benchmark output: ``AMD EPYC, AVX2 (no native bf16), 2 cores``."""
        if self.kind == "cuda":
            cc = ".".join(map(str, self.capability or ()))
            return f"{self.name}, CUDA compute capability {cc}, {self.precision_note()}"
        if self.kind == "mps":
            return f"Apple GPU (MPS) on {self.name}, {self.precision_note()}"
        held = f", held by {self.limited_by}" if self.limited_by else ""
        return f"{self.name}, {self.isa.upper()}{held} ({self.precision_note()}), {self.cores} cores"

    def precision_note(self) -> str:
        if self.native_bf16:
            return "native bf16"
        return "fast fp16, no bf16" if self.fast_fp16 else "no native bf16"

    def to_dict(self) -> dict[str, object]:
        """JSON-ready, for config.json."""
        values = asdict(self)
        values["capability"] = list(self.capability) if self.capability else None
        return values


def cpu_isa(flags: set[str], machine: str = "x86_64") -> str:
    """The ISA level of a CPU from its /proc/cpuinfo flags (x86) or features (Arm)."""
    if machine.lower() in ("aarch64", "arm64"):
        return "sve" if "sve" in flags else "neon"
    if {"amx_bf16", "amx_tile"} <= flags:
        return "amx"
    if "avx512_bf16" in flags:
        return "avx512-bf16"
    if "avx512f" in flags:
        return "avx512"
    if "avx2" in flags and "fma" in flags:
        return "avx2"
    return "baseline"


def isa_limit(env: Mapping[str, str]) -> tuple[str, str] | None:
    """The ISA level that ``ONEDNN_MAX_CPU_ISA`` / ``ATEN_CPU_CAPABILITY`` hold x86 arithmetic to,
    and the setting that does it; None when neither is set."""
    onednn = env.get("ONEDNN_MAX_CPU_ISA", env.get("DNNL_MAX_CPU_ISA", "")).strip().lower()
    if onednn in _ONEDNN_CAP:
        return _ONEDNN_CAP[onednn], f"ONEDNN_MAX_CPU_ISA={onednn.upper()}"
    aten = env.get("ATEN_CPU_CAPABILITY", "").strip().lower()
    if aten in _ATEN_CAP:
        return _ATEN_CAP[aten], f"ATEN_CPU_CAPABILITY={aten}"
    return None


def describe_cpu(name: str, flags: set[str], cores: int, machine: str = "x86_64",
                 env: Mapping[str, str] | None = None) -> Hardware:
    """A CPU's facts from its model name, flags, core count and the environment's ISA limits."""
    isa, held = cpu_isa(flags, machine), ""
    limit = isa_limit(env or {}) if isa in CPU_LEVELS else None
    if limit and CPU_LEVELS.index(limit[0]) < CPU_LEVELS.index(isa):
        isa, held = limit
    # Arm: the BF16 extension (Graviton 3, Neoverse V1/N2, Apple M2+) computes bf16 dot products natively.
    native = isa in NATIVE_BF16_CPU or (isa in ARM_LEVELS and "bf16" in flags)
    return Hardware("cpu", name, isa, cores, native, limited_by=held)


def describe_cuda(name: str, capability: tuple[int, int], host_cores: int = 1) -> Hardware:
    """A CUDA GPU's facts: bf16 from Ampere (8.0) on, fast fp16 on the pre-Ampere cards that have it."""
    cc = tuple(capability)
    return Hardware("cuda", name, f"sm_{cc[0]}{cc[1]}", host_cores, native_bf16=cc >= (8, 0),
                    fast_fp16=cc in _FAST_FP16, capability=(cc[0], cc[1]))


def choose_precision(requested: str, hw: Hardware, overhead_bound: bool = False) -> Precision:
    """The number format to train or predict in: ``requested`` unless it is ``auto``.

    auto: bf16 where the device computes it natively (AMX or AVX512-BF16 CPUs, CUDA 8.0+), fp16
    with a gradient scaler on CUDA GPUs with fast fp16 but no bf16 (P100, V100, T4), else fp32
    (AVX2 CPUs, where bf16 is emulated; MPS, not measured otherwise). ``overhead_bound``: a model
    whose CPU steps cost per-call overhead rather than arithmetic (plain MLPs, which the fused fp32
    engine trains) stays in fp32 on a CPU, where casts would only add work.
    """
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {requested!r}")
    if requested != "auto":
        return requested  # type: ignore[return-value]
    if overhead_bound and hw.kind == "cpu":
        return "fp32"
    if hw.native_bf16:
        return "bf16"
    return "fp16" if hw.kind == "cuda" and hw.fast_fp16 else "fp32"


def emulation_warning(requested: str, hw: Hardware) -> str | None:
    """One line when an explicit request runs emulated here (several times slower), else None."""
    if requested == "bf16" and not hw.native_bf16:
        return (f"warning: bf16 is emulated on this {hw.kind.upper()} ({hw.describe()}) and several times "
                f"slower than fp32 here; use --precision auto (or fp32)")
    if requested == "fp16" and hw.kind == "cpu":
        return (f"warning: fp16 is emulated on this CPU ({hw.describe()}) and slower than fp32; "
                f"use --precision auto (or fp32)")
    if requested == "fp16" and hw.kind == "cuda" and not (hw.fast_fp16 or hw.native_bf16):
        return f"warning: fp16 runs at a fraction of fp32's rate on {hw.name}; use --precision auto (or fp32)"
    return None


# Parameters below which one CPU thread runs a model's steps faster than several: its matmuls
# take microseconds, less than waking (or, on a busy machine, waiting for) a second thread.
SMALL_MODEL = 200_000


@contextlib.contextmanager
def use_threads(count: int) -> Iterator[None]:
    """Run the block with ``count`` intra-op threads, then restore the previous count."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def cpu_info() -> tuple[str, set[str]]:
    """The CPU's model name and instruction-set flags (from /proc/cpuinfo where there is one)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name":
                model = value.strip()
            elif key in ("flags", "Features"):  # x86, Arm
                flags = set(value.split())
    except OSError:
        pass
    return model, flags


@functools.lru_cache(maxsize=None)
def _hardware(kind: str, index: int) -> Hardware:
    import torch

    # The cores this process may run on, not torch's thread count of the moment (a caller may
    # have set that to one for a small model).
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if kind == "cuda":
        return describe_cuda(torch.cuda.get_device_name(index), torch.cuda.get_device_capability(index), cores)
    if kind == "mps":
        return Hardware("mps", platform.machine(), "metal", cores, native_bf16=False)
    name, flags = cpu_info()
    return describe_cpu(name, flags, cores, platform.machine(), os.environ)


def hardware(device: object = "cpu") -> Hardware:
    """The facts of ``device`` (a ``torch.device`` or a name such as ``"cuda:0"``), read once."""
    text = str(device)
    kind, _, index = text.partition(":")
    if kind == "cuda" and not index:
        import torch

        index = str(torch.cuda.current_device())
    return _hardware(kind, int(index or 0))
