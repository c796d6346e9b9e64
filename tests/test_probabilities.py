"""``digits predict RUN --probabilities FILE.csv``: calibrated probabilities, labels, verdicts."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import FIXTURES, train_fixture_run

from digits.data.submission import read_submission
from digits.predict.predictor import Predictor
from digits.predict.probabilities import HEADER


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return train_fixture_run(tmp_path_factory)


def test_probabilities_csv_holds_the_calibrated_probabilities_the_label_and_the_verdict(cli, trained, tmp_path):
    out, sub = tmp_path / "proba.csv", tmp_path / "sub.csv"
    result = cli("predict", trained, "--test", FIXTURES / "test.csv", "--out", sub, "--probabilities", out)
    assert result.code == 0, result.err
    assert "probabilities" in result.out
    lines = out.read_text().splitlines()
    assert lines[0] == HEADER == "ImageId,p0,p1,p2,p3,p4,p5,p6,p7,p8,p9,label,verdict"
    assert len(lines) == 501
    rows = [line.split(",") for line in lines[1:]]
    assert [int(r[0]) for r in rows] == list(range(1, 501))
    proba = np.array([[float(v) for v in r[1:11]] for r in rows])
    assert np.allclose(proba.sum(axis=1), 1.0, atol=1e-4)
    labels = np.array([int(r[11]) for r in rows])
    assert (labels == proba.argmax(axis=1)).all() and (labels == read_submission(sub)).all()
    verdicts = [r[12] for r in rows]
    assert set(verdicts) <= {"answered", "unsure", "not a digit"}
    assert verdicts.count("answered") >= 450  # clean test digits are mostly answered
    from digits.data.kaggle import load_kaggle_csv

    expected = Predictor.open(trained).predict_proba(load_kaggle_csv(FIXTURES / "test.csv", kind="test").images)
    assert np.allclose(proba, expected, atol=2e-6)  # the calibrated ones, as the predictor gives them


def test_probabilities_onto_a_missing_folder_is_one_line_exit_2_and_writes_nothing(cli, trained, tmp_path):
    sub = tmp_path / "sub.csv"
    target = tmp_path / "file-not-folder"
    target.write_text("x")
    result = cli("predict", trained, "--test", FIXTURES / "test.csv", "--out", sub,
                 "--probabilities", target / "proba.csv")
    assert result.code == 2
    assert result.err.startswith("digits: error: ") and result.err.count("\n") == 1
    assert "proba.csv" in result.err and "Traceback" not in result.err
    assert not sub.exists()  # the submission is not written when the probabilities cannot be
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file-not-folder"]


def test_probabilities_replace_an_old_file_atomically(cli, trained, tmp_path):
    out = tmp_path / "proba.csv"
    out.write_text("old\n")
    before = out.stat().st_ino
    result = cli("predict", trained, "--test", FIXTURES / "test.csv", "--out", tmp_path / "sub.csv",
                 "--probabilities", out)
    assert result.code == 0, result.err
    assert out.read_text().startswith(HEADER) and out.stat().st_ino != before  # renamed into place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["proba.csv", "sub.csv"]
