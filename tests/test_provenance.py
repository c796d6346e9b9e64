"""A local score is a test score: runs record the rows they saw, and `digits score` refuses an
answer key made of them, whatever the files are called or where they were copied."""

from __future__ import annotations

import json
import shutil
import zipfile

import numpy as np
from helpers import FIXTURES

from digits.data.identity import rows_hash
from digits.data.kaggle import load_kaggle_csv, write_kaggle_csv
from digits.data.submission import write_submission
from digits.jsonfile import write_json


def _leaky_folder(folder, train_rows: int = 300):
    """A Kaggle folder whose test.csv (and answer key) mixes training rows into test rows."""
    folder.mkdir(exist_ok=True)
    train = load_kaggle_csv(FIXTURES / "train.csv", kind="train")
    test = load_kaggle_csv(FIXTURES / "test.csv", kind="test")
    truth = np.loadtxt(FIXTURES / "solution.csv", delimiter=",", skiprows=1, dtype=np.int64)[:, 1]
    images = np.concatenate([test.images[:200], train.images[:train_rows]])
    labels = np.concatenate([truth[:200], train.labels[:train_rows]])
    write_kaggle_csv(folder / "test.csv", images, None)
    write_submission(folder / "solution.csv", labels)
    return folder


def test_score_refuses_an_answer_key_whose_test_rows_the_run_trained_on(tmp_path, kaggle_dir, cli):
    # The trap of issue 16: train on the seed-0 split, predict and score another split's test rows.
    write_json(kaggle_dir / "prepare.json", {"seed": 0, "train_hash": rows_hash(
        load_kaggle_csv(kaggle_dir / "train.csv", kind="train"))})
    other = _leaky_folder(tmp_path / "seed1")
    run = tmp_path / "run"
    assert cli("train", "--data", kaggle_dir, "--epochs", "1", "--out", run, "--no-report", "-q").code == 0
    assert cli("predict", run, "--data", other, "-q").code == 0
    scored = cli("score", run / "submission.csv", "--solution", other / "solution.csv")
    assert scored.code == 2 and scored.out == "" and scored.err.count("\n") == 1, scored
    assert "300 of its 500 test rows" in scored.err and "the seed-0 split" in scored.err
    assert str(kaggle_dir.resolve() / "solution.csv") in scored.err, "it names the honest answer key"
    assert not (run / "score.json").exists()


def test_score_finds_training_rows_in_copied_files_without_any_seed(tmp_path, cli):
    # No prepare.json anywhere: the rows themselves give the leak away.
    shutil.copy(FIXTURES / "train.csv", tmp_path / "mine.csv")
    leaky = _leaky_folder(tmp_path, train_rows=1)
    run = tmp_path / "run"
    assert cli("train", "--train", tmp_path / "mine.csv", "--epochs", "1", "--out", run, "--no-report",
               "-q").code == 0
    assert cli("predict", run, "--test", leaky / "test.csv", "-q").code == 0
    scored = cli("score", run / "submission.csv", "--solution", leaky / "solution.csv")
    assert scored.code == 2 and "1 of its 201 test rows" in scored.err and "mine.csv" in scored.err


def test_a_run_records_the_rows_it_trained_on_and_the_prepared_split(tmp_path, kaggle_dir, cli):
    train = load_kaggle_csv(kaggle_dir / "train.csv", kind="train")
    write_json(kaggle_dir / "prepare.json", {"seed": 3, "train_hash": rows_hash(train)})
    run = tmp_path / "run"
    assert cli("train", "--data", kaggle_dir, "--epochs", "1", "--out", run, "--no-report", "-q").code == 0
    data = json.loads((run / "config.json").read_text())["data"]
    assert data["rows_hash"] == rows_hash(train) and data["split"]["seed"] == 3
    assert len(np.load(run / data["fingerprint"])) == len(train) == data["train_rows"] + data["val_rows"]


def test_an_honest_answer_key_still_scores(tmp_path, kaggle_dir, cli):
    run = tmp_path / "run"
    assert cli("train", "--data", kaggle_dir, "--epochs", "1", "--out", run, "--no-report", "-q").code == 0
    assert cli("predict", run, "--data", kaggle_dir, "-q").code == 0
    scored = cli("score", run / "submission.csv", "--solution", kaggle_dir / "solution.csv")
    assert scored.code == 0 and scored.out.startswith("score: ") and scored.err == ""


def test_prepare_never_writes_another_split_over_a_prepared_folder(tmp_path, cli):
    archive = tmp_path / "digit-recognizer.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(FIXTURES / "train.csv", "train.csv")
        zf.write(FIXTURES / "test.csv", "test.csv")
    out = tmp_path / "out"
    assert cli("data", "prepare", "--from", archive, "--out", out).code == 0
    before = (out / "train.csv").read_bytes()
    refused = cli("data", "prepare", "--out", out, "--seed", "1")
    assert refused.code == 2 and refused.err.count("\n") == 1
    assert "already holds Kaggle's own files" in refused.err and "--force" in refused.err
    assert (out / "train.csv").read_bytes() == before
    again = cli("data", "prepare", "--from", archive, "--out", out)  # the same data again is fine
    assert again.code == 0, again.err
