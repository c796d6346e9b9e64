"""Helpers the test modules import by name (conftest.py holds only fixtures: a module named
``conftest`` is ambiguous once tests/serve has one of its own)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


def train_fixture_run(factory: pytest.TempPathFactory, epochs: int = 1) -> Path:
    """A tutorial-mlp run trained ``epochs`` on the fixture, in a folder of its own (for module fixtures)."""
    from digits.cli import main

    folder = factory.mktemp("trained")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DIGITS_CACHE", str(folder / "cache"))
        assert main(["train", "--train", str(FIXTURES / "train.csv"), "--epochs", str(epochs), "--no-report",
                     "--quiet", "--out", str(folder / "run")]) == 0
    return folder / "run"


def train_ensemble_on_fixture(factory: pytest.TempPathFactory, *flags: str) -> Path:
    """A tutorial-mlp ensemble of 2, one epoch each, trained on the fixture by `digits train`
    (``flags`` added), in a folder of its own (for module fixtures)."""
    from digits.cli import main

    folder = factory.mktemp("ensemble")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DIGITS_CACHE", str(folder / "cache"))
        assert main(["train", "--train", str(FIXTURES / "train.csv"), "--epochs", "1", "--ensemble", "2",
                     "--no-report", "--quiet", "--out", str(folder / "run"), *flags]) == 0
    return folder / "run"


def with_stderr_on_a_terminal(*args: str, timeout: float = 120) -> tuple[int, str, str]:
    """Run ``digits ARGS`` with stderr on a pseudo-terminal (as a person sees it) and stdout on a
    pipe (as `> log` does); return (status, stdout, what the terminal showed)."""
    import os
    import pty

    leader, follower = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "140"}
    proc = subprocess.Popen([sys.executable, "-m", "digits.cli", *args], stdout=subprocess.PIPE,
                            stderr=follower, text=True, env=env)
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    out = proc.stdout.read()
    os.close(leader)
    return proc.wait(timeout=timeout), out, shown.decode("utf-8", "replace")
