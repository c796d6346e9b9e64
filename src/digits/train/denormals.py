"""Denormal floats flushed to zero, on every thread that computes.

RMSprop's running average of a pixel that stays blank decays by rho each step and spends
hundreds of steps as a denormal float (below 1.2e-38), where every multiply and square root
takes a slow microcode path: the batched grid's optimizer step became several times slower
by its third epoch (benchmarks/RESULTS.md). Flushing them to zero changes no weight
(sqrt(v) < 1.1e-19 is lost next to eps = 1e-7 either way), and TensorFlow's CPU threads do
the same.

``torch.set_flush_denormal`` sets the flag of the calling thread only. OpenMP's worker threads,
started by the process's first parallel operation, keep the flag they were born with (a new
thread inherits its creator's: pthread_create copies the floating-point environment). So the
flag must be on before that first operation for every thread to flush.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def flushed_denormals() -> Iterator[None]:
    """Run the block with denormals flushed on this thread, then restore the flag (probed:
    torch has no getter). Enough for single-threaded work; see ``flush_denormals_from_now_on``."""
    flushing_before = torch.tensor([1e-39]).mul_(1.0).item() == 0.0
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(flushing_before)


def flush_denormals_from_now_on() -> None:
    """Flush denormals on this thread and on every thread started from now on. Called by the
    CLI before its first tensor operation, OpenMP's workers are among them; a library caller
    that wants the same does it at the top of its program."""
    torch.set_flush_denormal(True)
