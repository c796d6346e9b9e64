"""Helpers the test modules import by name (conftest.py holds only fixtures: a module named
``conftest`` is ambiguous once tests/serve has one of its own)."""

from __future__ import annotations

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
