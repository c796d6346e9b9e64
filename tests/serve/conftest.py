"""Shared fixtures for the serving tests: one small trained run and the fixture's test digits."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from pictures import FIXTURES

from digits.data.dataset import DigitSet
from digits.data.kaggle import load_kaggle_csv


@pytest.fixture(scope="session")
def fixture_train() -> DigitSet:
    return load_kaggle_csv(FIXTURES / "train.csv", kind="train")


@pytest.fixture(scope="session")
def fixture_test() -> tuple[np.ndarray, np.ndarray]:
    """The fixture's test digits (uint8 (500, 28, 28)) and their labels from solution.csv."""
    images = load_kaggle_csv(FIXTURES / "test.csv", kind="test").images
    labels = np.loadtxt(FIXTURES / "solution.csv", delimiter=",", skiprows=1, usecols=1, dtype=np.int64)
    return images, labels


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run directory: an MLP trained with outlier exposure on the 2,000 fixture digits and
    calibrated on its 200 validation rows, as ``tests/fixtures/make_serve_run.py`` made it. A copy,
    so that tests may add to it (an ONNX export); committed, so that every CPU reads the same
    weights (that script says why)."""
    path = tmp_path_factory.mktemp("run") / "serve-run"
    shutil.copytree(FIXTURES / "serve-run", path)
    return path


@pytest.fixture(scope="session")
def onnx_run_dir(run_dir: Path) -> Path:
    from digits.serve.export import export_onnx

    export_onnx(run_dir)
    return run_dir
