"""Build a Kaggle "Digit Recognizer" folder from the real MNIST, with its answer key.

Kaggle's competition is a random 42,000 / 28,000 split of MNIST's 70,000 digits. We
make the same kind of split with a seed, and keep the test labels in ``solution.csv`` so
that a submission is scored locally exactly as Kaggle scores it.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from digits.atomic import atomic_path
from digits.data.kaggle import load_kaggle_csv, write_kaggle_csv
from digits.data.mnist import DownloadHook, Mnist, load_mnist
from digits.errors import DataError
from digits.jsonfile import write_json
from digits.predict.submission import write_submission

N_KAGGLE_TRAIN = 42_000
STANDARD_FILE = "mnist-standard.npz"
DONE_FILE = "prepare.json"  # written last; the Makefile's `data` target is this file
WRITTEN = ("train.csv", "test.csv", "sample_submission.csv", "solution.csv", STANDARD_FILE, DONE_FILE)


@dataclass(frozen=True)
class PreparedData:
    """What ``prepare_kaggle_folder`` wrote."""

    folder: Path
    files: tuple[Path, ...]
    source: str


def kaggle_split(mnist: Mnist, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a seeded random 42,000 / 28,000 split of the 70,000 digits."""
    order = np.random.default_rng(seed).permutation(len(mnist.labels))
    return order[:N_KAGGLE_TRAIN], order[N_KAGGLE_TRAIN:]


def prepare_kaggle_folder(out: str | os.PathLike[str], seed: int = 0,
                          user_files: tuple[str, ...] = (),
                          log: Callable[[str], None] = lambda _m: None,
                          on_bytes: DownloadHook | None = None) -> PreparedData:
    """Write train.csv, test.csv, sample_submission.csv, solution.csv and the standard split.

    A Kaggle zip in ``user_files`` is unpacked as it is instead (no answer key exists then).
    ``log`` and ``on_bytes`` are passed to :func:`load_mnist`.
    """
    out = Path(out)
    _start_over(out)
    if len(user_files) == 1 and zipfile.is_zipfile(user_files[0]) and not str(user_files[0]).endswith(
            (".npz", ".whl")):
        return _unpack_kaggle_zip(Path(user_files[0]), out, log)
    mnist = load_mnist(user_files, log=log, on_bytes=on_bytes)
    train_idx, test_idx = kaggle_split(mnist, seed)
    written = [
        write_kaggle_csv(out / "train.csv", mnist.images[train_idx], mnist.labels[train_idx]),
        write_kaggle_csv(out / "test.csv", mnist.images[test_idx], None),
        write_submission(out / "sample_submission.csv", np.zeros(len(test_idx), np.int64)),
        write_submission(out / "solution.csv", mnist.labels[test_idx]),
    ]
    x_tr, y_tr, x_te, y_te = mnist.standard_split()
    with atomic_path(out / STANDARD_FILE) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)
    written.append(out / STANDARD_FILE)
    info = {"source": mnist.source, "seed": seed, "train_rows": len(train_idx), "test_rows": len(test_idx),
            "standard_split": "first 60000 rows train, last 10000 test"}
    written.append(write_json(out / DONE_FILE, info))  # last: its presence means the folder is complete
    return PreparedData(out, tuple(written), mnist.source)


def _unpack_kaggle_zip(zip_path: Path, out: Path, log: Callable[[str], None]) -> PreparedData:
    """Kaggle's own zip: validate its train and test files and write them out (no answer key)."""
    train = load_kaggle_csv(zip_path, member="train.csv", kind="train")
    test = load_kaggle_csv(zip_path, member="test.csv", kind="test")
    written = (write_kaggle_csv(out / "train.csv", train.images, train.labels),
               write_kaggle_csv(out / "test.csv", test.images, None),
               write_submission(out / "sample_submission.csv", np.zeros(len(test), np.int64)))
    written += (write_json(out / DONE_FILE, {"source": str(zip_path), "train_rows": len(train),
                                              "test_rows": len(test)}),)
    log(f"unpacked Kaggle's files from {zip_path}")
    return PreparedData(out, written, str(zip_path))


def _start_over(out: Path) -> None:
    """Before writing: drop the completion marker (so a prepare killed half-way over a finished
    folder does not leave it looking finished) and the temporary files a killed prepare left."""
    if not out.is_dir():
        return
    (out / DONE_FILE).unlink(missing_ok=True)
    for name in WRITTEN:
        for stale in out.glob(f".{name}.*.tmp"):  # digits.atomic's temporary names for them
            stale.unlink(missing_ok=True)


def load_standard_split(folder: str | os.PathLike[str]) -> tuple[np.ndarray, ...]:
    """The 60,000 / 10,000 standard split written by ``prepare_kaggle_folder``."""
    path = Path(folder) / STANDARD_FILE
    if not path.is_file():
        raise DataError(f"{path}: missing; run `digits data prepare --out {folder}` first")
    with np.load(path, allow_pickle=False) as z:
        return z["x_train"], z["y_train"], z["x_test"], z["y_test"]
