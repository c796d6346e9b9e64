"""Shared fixtures for the serving tests: one small trained run and the fixture's test digits."""

from __future__ import annotations

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
def run_dir(tmp_path_factory: pytest.TempPathFactory, fixture_train: DigitSet) -> Path:
    """A real run directory: an MLP trained on the 2,000 fixture digits with outlier exposure
    (a few seconds, once the outlier pictures are cached), and calibrated on its 200 validation
    rows, as every run ``digits.run_training`` makes."""
    import torch

    import digits

    path = tmp_path_factory.mktemp("run")
    config = digits.TrainConfig(model="mlp", model_args={"hidden": [256]}, epochs=20, batch_size=32,
                                optimizer="adam", lr=1e-3, val_split=0.1, seed=0, device="cpu",
                                outlier_exposure=0.5)  # as a robust preset trains: letters and scribbles doubted
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # this small model trains 5-10x faster on one thread on a busy machine
    try:
        digits.run_training(config, fixture_train, path)
    finally:
        torch.set_num_threads(threads)
    return path


@pytest.fixture(scope="session")
def onnx_run_dir(run_dir: Path) -> Path:
    from digits.serve.export import export_onnx

    export_onnx(run_dir)
    return run_dir
