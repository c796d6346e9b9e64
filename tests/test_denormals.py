"""Denormal floats are flushed where training asks for it, and the flag is put back after."""

from __future__ import annotations

import threading

import torch

from digits.train.denormals import flushed_denormals


def _flushes() -> bool:
    return torch.tensor([1e-39]).mul_(1.0).item() == 0.0


def test_the_block_flushes_denormals_and_the_flag_is_restored_after() -> None:
    before = _flushes()
    with flushed_denormals():
        assert _flushes()
        assert torch.tensor([1e-30]).mul_(1e-9).item() == 0.0  # an underflow lands on zero
    assert _flushes() == before


def test_a_thread_started_while_flushing_flushes_too() -> None:
    # Why the CLI sets the flag before any tensor work: threads (OpenMP's workers among
    # them) keep the flag of the thread that started them.
    seen = {}
    with flushed_denormals():
        worker = threading.Thread(target=lambda: seen.setdefault("flushes", _flushes()))
        worker.start()
    worker.join()
    assert seen["flushes"]
