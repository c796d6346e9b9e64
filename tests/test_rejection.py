"""Not a digit, fitted per run: the rejector a training writes (rejector.safetensors), what it
rejects and keeps, its file, and a run without one."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import FIXTURES, train_fixture_run

from digits.data.kaggle import load_kaggle_csv
from digits.data.submission import read_submission
from digits.errors import DataError, DigitsError
from digits.predict.predictor import Predictor
from digits.predict.rejection import REJECT_RATE, REJECTOR_FILE, fit_rejector, load_rejector, save_rejector
from digits.predict.verdict import decide


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_fixture_run(tmp_path_factory, epochs=3)


@pytest.fixture(scope="module")
def fixture_test() -> tuple[np.ndarray, np.ndarray]:
    return load_kaggle_csv(FIXTURES / "test.csv", kind="test").images, read_submission(FIXTURES / "solution.csv")


def far_pictures(digits: np.ndarray, seed: int = 0) -> np.ndarray:
    """Pictures no training digit resembles: the test digits in negative (a white page with a
    dark digit, as a photo that was never preprocessed), and uniform noise."""
    rng = np.random.default_rng(seed)
    return np.concatenate([255 - digits[:100], rng.integers(0, 256, (100, 28, 28), dtype=np.uint8)])


def test_a_trained_run_holds_a_rejector_fitted_on_its_own_rows(trained):
    rejector = load_rejector(trained)
    assert rejector is not None and (trained / REJECTOR_FILE).is_file()
    # The fixture's 2,000 rows, 5% held out: 1,900 fitted on, 100 choose the threshold.
    assert rejector.measured["train_rows"] == 1900 and rejector.measured["val_rows"] == 100
    assert rejector.measured["rejected_rate"] <= REJECT_RATE + 1e-9
    assert rejector.means.shape == (10, 32)  # tutorial-mlp: 32 penultimate features


def test_the_rejector_rejects_pictures_far_from_the_training_rows_and_keeps_clean_digits(trained, fixture_test):
    predictor = Predictor.open(trained)
    images, labels = fixture_test
    proba, distance = predictor.predict_with_distance(images)
    assert np.array_equal(proba, predictor.predict_proba(images))  # the same pass, the same answer
    kept = ~predictor.rejector.rejects(distance)
    assert kept.mean() >= 0.97  # held-out test digits are digits
    far = far_pictures(images)
    far_proba, far_distance = predictor.predict_with_distance(far)
    assert predictor.rejector.rejects(far_distance).mean() >= 0.9
    decisions = decide(far_proba, far, predictor.calibration, distance=far_distance, rejector=predictor.rejector)
    caught = [d for d in decisions if d.verdict == "not a digit"]
    assert len(caught) >= 180 and all(d.label is None and d.candidates == () for d in caught)


def test_a_run_without_a_rejector_file_answers_as_before(trained, fixture_test, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    (run / REJECTOR_FILE).unlink()
    predictor = Predictor.open(run)
    assert predictor.rejector is None
    images = far_pictures(fixture_test[0])
    proba, distance = predictor.predict_with_distance(images)
    assert distance is None and np.array_equal(proba, predictor.predict_proba(images))
    verdicts = [d.verdict for d in decide(proba, images, predictor.calibration, distance=distance)]
    # Only blank pictures are not digits then; the rest are answered or unsure, as before.
    assert "not a digit" not in verdicts


def test_a_rejector_survives_its_file_and_a_damaged_one_is_refused_in_one_line(trained, fixture_test, tmp_path):
    rejector = load_rejector(trained)
    features = Predictor.open(trained).features(fixture_test[0][:50])
    save_rejector(tmp_path, rejector)
    again = load_rejector(tmp_path)
    assert again.threshold == rejector.threshold and again.measured == rejector.measured
    assert np.allclose(again.distance(features), rejector.distance(features), rtol=1e-5)
    (tmp_path / REJECTOR_FILE).write_bytes((tmp_path / REJECTOR_FILE).read_bytes()[:-7])
    with pytest.raises(DigitsError) as raised:
        load_rejector(tmp_path)
    assert str(tmp_path / REJECTOR_FILE) in str(raised.value) and "\n" not in str(raised.value)


def gaussian_digits(rng: np.random.Generator, spread: float):
    """Ten digits' features as unit Gaussians (8 features) around centres ``spread`` apart:
    the centres, 5,000 training rows with their labels, and 1,000 validation rows."""
    centres = rng.normal(0, spread, (10, 8))
    labels = rng.integers(0, 10, 5000)
    train = centres[labels] + rng.normal(0, 1, (5000, 8))
    return centres, labels, train, centres[labels[:1000]] + rng.normal(0, 1, (1000, 8))


def test_the_threshold_rejects_the_chosen_share_of_validation_rows_and_far_points():
    centres, labels, train, val = gaussian_digits(np.random.default_rng(0), 5.0)
    rejector = fit_rejector(train, labels, val, rate=0.01)
    assert np.mean(rejector.rejects(rejector.distance(val))) == pytest.approx(0.01, abs=0.002)
    far = centres[:5] + 12.0  # twelve standard deviations off every digit's mean in each direction
    assert rejector.rejects(rejector.distance(far)).all()
    with pytest.raises(DataError, match="every digit"):
        fit_rejector(train[labels < 9], labels[labels < 9], val)


def test_pictures_between_the_digits_are_rejected_by_the_relative_distance_the_plain_one_misses_them():
    # Features of no one digit but near all of them (a letter, a scribble: the digits' common centre)
    # lie as close to the nearest digit's mean as a sloppy digit does; the background Gaussian's
    # term says they lie where every digit's features are typical, and no one digit's are.
    rng = np.random.default_rng(0)
    centres, labels, train, val = gaussian_digits(rng, 3.0)
    between = centres.mean(axis=0) + rng.normal(0, 1, (200, 8))
    relative = fit_rejector(train, labels, val, rate=0.01)
    plain = dataclasses.replace(relative, background_mean=None, background_whiten=None)
    plain = dataclasses.replace(plain, threshold=float(np.sort(plain.distance(val))[::-1][10]))  # 1% too
    assert np.mean(plain.rejects(plain.distance(val))) == pytest.approx(0.01, abs=0.002)
    assert relative.rejects(relative.distance(between)).mean() >= 0.75
    assert plain.rejects(plain.distance(between)).mean() <= 0.6


def test_a_rejector_written_before_the_background_gaussian_measures_the_plain_distance(trained, fixture_test, tmp_path):
    rejector = load_rejector(trained)
    features = Predictor.open(trained).features(fixture_test[0][:50])
    older = dataclasses.replace(rejector, background_mean=None, background_whiten=None)
    save_rejector(tmp_path, older)
    again = load_rejector(tmp_path)
    assert again.background_mean is None and again.background_whiten is None
    nearest = rejector.distance(features) + (((features - rejector.background_mean) @ rejector.background_whiten) ** 2).sum(1)
    assert np.allclose(again.distance(features), nearest, rtol=1e-4, atol=1e-3)
    assert (again.distance(features) >= 0).all()
