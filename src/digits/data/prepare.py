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

from digits.atomic import atomic_path, remove_leftovers
from digits.data.dataset import DigitSet
from digits.data.identity import PREPARE_FILE, rows_hash
from digits.data.kaggle import load_kaggle_csv, write_kaggle_csv
from digits.data.mnist import DownloadHook, Mnist, load_mnist
from digits.data.submission import write_submission
from digits.errors import DataError
from digits.jsonfile import read_json, write_json

N_KAGGLE_TRAIN = 42_000
STANDARD_FILE = "mnist-standard.npz"
DONE_FILE = PREPARE_FILE  # prepare.json, written last; the Makefile's `data` target is this file
STARTED_FILE = ".prepare-started.json"  # the split being written, until prepare.json says it is done
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
                          on_bytes: DownloadHook | None = None, force: bool = False) -> PreparedData:
    """Write train.csv, test.csv, sample_submission.csv, solution.csv and the standard split,
    with ``prepare.json``: the seed and the row hashes (:func:`~digits.data.identity.rows_hash`)
    of train.csv and test.csv; solution.csv is the answer key of exactly those test rows.

    A Kaggle zip in ``user_files`` is unpacked as it is instead (no answer key exists then).
    ``log`` and ``on_bytes`` are passed to :func:`load_mnist`. A folder that already holds a
    different split is refused unless ``force``: runs trained on it would otherwise be scored
    against an answer key made of their own training rows.
    """
    out = Path(out)
    from_zip = len(user_files) == 1 and zipfile.is_zipfile(user_files[0]) and not str(user_files[0]).endswith(
        (".npz", ".whl"))
    if not force:
        _refuse_other_split(out, None if from_zip else seed)  # reads the marker _start_over removes
    _start_over(out, None if from_zip else seed)
    if from_zip:
        return _unpack_kaggle_zip(Path(user_files[0]), out, log)
    mnist = load_mnist(user_files, log=log, on_bytes=on_bytes)
    train_idx, test_idx = kaggle_split(mnist, seed)
    train = DigitSet(mnist.images[train_idx], mnist.labels[train_idx], str(out / "train.csv"))
    test = DigitSet(mnist.images[test_idx], None, str(out / "test.csv"))
    written = [
        write_kaggle_csv(out / "train.csv", train.images, train.labels),
        write_kaggle_csv(out / "test.csv", test.images, None),
        write_submission(out / "sample_submission.csv", np.zeros(len(test_idx), np.int64)),
        write_submission(out / "solution.csv", mnist.labels[test_idx]),
    ]
    x_tr, y_tr, x_te, y_te = mnist.standard_split()
    with atomic_path(out / STANDARD_FILE) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)
    written.append(out / STANDARD_FILE)
    info = {"source": mnist.source, "seed": seed, "train_rows": len(train_idx), "test_rows": len(test_idx),
            "standard_split": "first 60000 rows train, last 10000 test",
            "train_hash": rows_hash(train), "test_hash": rows_hash(test)}
    written.append(write_json(out / DONE_FILE, info))  # last: its presence means the folder is complete
    (out / STARTED_FILE).unlink(missing_ok=True)
    return PreparedData(out, tuple(written), mnist.source)


def _refuse_other_split(out: Path, seed: int | None) -> None:
    """DataError when ``out`` already holds data files of another split than ``seed`` (None:
    Kaggle's own files)."""
    present = [name for name in ("train.csv", "test.csv", "solution.csv") if (out / name).exists()]
    if not present:
        return
    info = read_json(out / PREPARE_FILE) if (out / PREPARE_FILE).is_file() else None
    started = read_json(out / STARTED_FILE) if (out / STARTED_FILE).is_file() else None
    if info is None and started is not None:  # a prepare killed half-way: its files are ours
        if started.get("seed") == seed:
            return  # the same split again: finish it
        held = "Kaggle's files" if started.get("seed") is None else f"the seed-{started['seed']} split"
        raise DataError(f"{out}: holds an unfinished prepare of {held}; rerun that, or choose another --out, "
                        "or pass --force")
    if info is not None and info.get("seed") == seed:
        return  # the same split again: the files are rewritten identical
    if info is None:
        held = f"a {present[0]} that `digits data prepare` did not write"
    elif info.get("seed") is None:
        held = "Kaggle's own files"
    else:
        held = f"the seed-{info['seed']} split"
    wanted = "Kaggle's files" if seed is None else f"the seed-{seed} split"
    raise DataError(f"{out}: already holds {held}; writing {wanted} over it would let runs trained on it "
                    "be scored on their own training rows; choose another --out, or pass --force")


def _unpack_kaggle_zip(zip_path: Path, out: Path, log: Callable[[str], None]) -> PreparedData:
    """Kaggle's own zip: validate its train and test files and write them out (no answer key)."""
    train = load_kaggle_csv(zip_path, member="train.csv", kind="train")
    test = load_kaggle_csv(zip_path, member="test.csv", kind="test")
    written = (write_kaggle_csv(out / "train.csv", train.images, train.labels),
               write_kaggle_csv(out / "test.csv", test.images, None),
               write_submission(out / "sample_submission.csv", np.zeros(len(test), np.int64)))
    (out / "solution.csv").unlink(missing_ok=True)  # a key of another split must not stay beside them
    written += (write_json(out / DONE_FILE, {"source": str(zip_path), "seed": None, "train_rows": len(train),
                                              "test_rows": len(test), "train_hash": rows_hash(train),
                                              "test_hash": rows_hash(test)}),)  # last, as above
    (out / STARTED_FILE).unlink(missing_ok=True)
    log(f"unpacked Kaggle's files from {zip_path}")
    return PreparedData(out, written, str(zip_path))


def _start_over(out: Path, seed: int | None) -> None:
    """Before writing: note which split is being written (so a rerun after a kill knows the
    files are its own), drop the completion marker (so a prepare killed half-way over a finished
    folder does not leave it looking finished) and the temporary files a killed prepare left."""
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / STARTED_FILE, {"seed": seed})
    (out / DONE_FILE).unlink(missing_ok=True)
    remove_leftovers(out, WRITTEN)


def load_standard_split(folder: str | os.PathLike[str]) -> tuple[np.ndarray, ...]:
    """The 60,000 / 10,000 standard split written by ``prepare_kaggle_folder``."""
    path = Path(folder) / STANDARD_FILE
    if not path.is_file():
        raise DataError(f"{path}: missing; run `digits data prepare --out {folder}` first")
    with np.load(path, allow_pickle=False) as z:
        return z["x_train"], z["y_train"], z["x_test"], z["y_test"]
