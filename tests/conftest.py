"""Shared fixtures: the committed real-digit fixture, an isolated cache, a CLI runner."""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # test modules import helpers, postgres_server and browser from here

from helpers import FIXTURES

# Tests never reach the network: no mirrors, and a cache of their own.
os.environ["DIGITS_MNIST_MIRRORS"] = ""


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("DIGITS_CACHE", str(cache))
    return cache


@pytest.fixture(scope="session")
def _outlier_pictures_drawn_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("outlier-pictures")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DIGITS_CACHE", str(folder))
        from digits.data.outliers import outlier_pictures

        outlier_pictures(seed=0)
    return folder


@pytest.fixture
def outlier_pictures_cached(isolated_cache: Path, _outlier_pictures_drawn_once: Path) -> Path:
    """The test's cache already holds outlier exposure's pictures for seed 0, as after a first run
    with it: drawing them takes 5-10 s, once a session instead of once a test."""
    for made in _outlier_pictures_drawn_once.glob("outliers-*.npy"):
        shutil.copy(made, isolated_cache / made.name)
    return isolated_cache


@pytest.fixture
def kaggle_dir(tmp_path: Path) -> Path:
    """A Kaggle-format folder of real digits: train.csv (2,000), test.csv (500), solution.csv."""
    folder = tmp_path / "data"
    folder.mkdir()
    for name in ("train.csv", "test.csv", "solution.csv"):
        shutil.copy(FIXTURES / name, folder / name)
    return folder


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):
    """Run ``digits ARGS...`` in-process and return exit code, stdout and stderr."""
    from digits.cli import main

    def run(*args: str) -> CliResult:
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse usage errors
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run
