"""Calibration: the temperature, the expected calibration error, the unsure threshold, and
calibration.json in a run directory."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import FIXTURES, train_ensemble_on_fixture, train_fixture_run

from digits.errors import DataError, RunError
from digits.predict.calibration import (
    CALIBRATION_FILE,
    NO_DIGIT_RATE,
    Calibration,
    expected_calibration_error,
    fit_calibration,
    fit_temperature,
    load_calibration,
    reliability_bins,
    save_calibration,
    temper,
    top_two,
    unmix,
    unsure_threshold,
)
from digits.predict.verdict import decide


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _calibrated_set(rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and labels drawn from those very probabilities: calibrated by construction."""
    rng = np.random.default_rng(seed)
    proba = _softmax(rng.normal(0, 3, (rows, 10)))
    labels = (rng.random((rows, 1)) > proba.cumsum(axis=1)).sum(axis=1)  # one draw per row from its own p
    return proba, np.minimum(labels, 9)


def test_the_fitted_temperature_recovers_the_one_that_made_the_logits_overconfident():
    proba, labels = _calibrated_set(8_000)
    overconfident = temper(proba, 1 / 2.5)  # logits multiplied by 2.5
    assert fit_temperature(overconfident, labels) == pytest.approx(2.5, rel=0.05)
    underconfident = temper(proba, 1 / 0.6)
    assert fit_temperature(underconfident, labels) == pytest.approx(0.6, rel=0.05)


def test_a_perfectly_calibrated_set_has_an_ece_near_zero_and_an_overconfident_one_does_not():
    proba, labels = _calibrated_set(20_000, seed=1)
    assert expected_calibration_error(proba, labels) < 0.01
    assert expected_calibration_error(temper(proba, 0.4), labels) > 0.05


def test_ece_is_the_count_weighted_gap_between_accuracy_and_confidence_of_15_bins():
    # 4 rows at 0.95 of which 3 right (gap 0.2), 1 row at 0.55 right (gap 0.45)
    proba = np.full((5, 10), 0.0)
    proba[:4, 0], proba[:4, 1] = 0.95, 0.05
    proba[4, 0], proba[4, 1] = 0.55, 0.45
    labels = np.array([0, 0, 0, 1, 0])
    bins = reliability_bins(proba, labels)
    assert len(bins) == 15 and sum(b.count for b in bins) == 5
    assert expected_calibration_error(proba, labels) == pytest.approx(4 / 5 * 0.2 + 1 / 5 * 0.45)


def test_the_unsure_threshold_flags_about_the_asked_share_of_rows_and_never_more():
    proba, _ = _calibrated_set(5_000, seed=2)
    for rate in (0.01, 0.008, 0.05):
        below = unsure_threshold(proba, rate)
        flagged = np.mean(proba.max(axis=1) < below)
        assert rate - 0.001 <= flagged <= rate


def test_fit_calibration_lowers_the_nll_and_ece_of_a_miscalibrated_set():
    proba, labels = _calibrated_set(3_000, seed=3)
    fitted = fit_calibration(temper(proba, 0.3), labels)
    assert fitted.temperature == pytest.approx(1 / 0.3, rel=0.1)
    assert fitted.measured["ece"] < fitted.measured["ece_before"]
    assert fitted.measured["nll"] < fitted.measured["nll_before"]
    assert fitted.measured["rows"] == 3_000


def test_no_digit_is_said_when_the_two_likeliest_digits_hold_less_than_validation_digits_ever_do():
    proba, labels = _calibrated_set(3_000, seed=4)
    assert fit_calibration(proba, labels).no_digit_below is None  # a model never taught to spread its doubt
    fitted = fit_calibration(proba, labels, no_digit=True)
    two = top_two(fitted.apply(proba))
    assert NO_DIGIT_RATE - 0.001 <= np.mean(two < fitted.no_digit_below) <= NO_DIGIT_RATE
    assert fitted.no_digit_below > fitted.unsure_below  # an answer under it is unsure already
    fitted = Calibration(1.0, unsure_below=0.6, source="validation", no_digit_below=0.8)  # a real run's size
    image = np.full((3, 28, 28), 255, np.uint8)  # ink: only the probabilities decide here
    four_or_nine = np.full(10, 0.02 / 8)
    four_or_nine[[4, 9]] = 0.49
    spread = np.full(10, 0.1)  # no digit stands out: what outlier exposure teaches for a letter
    sure = np.eye(10)[7] * 0.99 + 0.001
    verdicts = [d.verdict for d in decide(np.stack([four_or_nine, spread, sure]), image, fitted)]
    assert verdicts == ["unsure", "not a digit", "answered"]
    older = Calibration(fitted.temperature, fitted.unsure_below, "validation")  # a calibration.json from before
    assert [d.verdict for d in decide(spread[None], image[:1], older)] == ["unsure"]


def test_too_few_rows_to_fit_on_is_a_one_line_data_error():
    proba, labels = _calibrated_set(50)
    with pytest.raises(DataError, match="50 validation rows: calibration needs at least 100"):
        fit_calibration(proba, labels)


def test_calibration_json_round_trips_and_a_damaged_one_names_the_file_and_field(tmp_path):
    fitted = Calibration(0.42, 0.61, "validation", {"rows": 2100, "ece": 0.005}, no_digit_below=0.83)
    save_calibration(tmp_path, fitted)
    assert load_calibration(tmp_path) == fitted
    assert [p.name for p in tmp_path.iterdir()] == [CALIBRATION_FILE]  # written atomically: no temporary left
    data = json.loads((tmp_path / CALIBRATION_FILE).read_text())
    data["temperature"] = "hot"
    (tmp_path / CALIBRATION_FILE).write_text(json.dumps(data))
    with pytest.raises(RunError, match=r"calibration.json: field 'temperature' should be a number, found a str"):
        load_calibration(tmp_path)
    data["temperature"] = -1
    (tmp_path / CALIBRATION_FILE).write_text(json.dumps(data))
    with pytest.raises(RunError, match="'temperature' should be a positive number"):
        load_calibration(tmp_path)


def test_a_run_without_calibration_json_answers_at_temperature_one_and_says_so(tmp_path):
    default = load_calibration(tmp_path)
    assert default.temperature == 1.0 and not default.fitted
    proba = _softmax(np.random.default_rng(0).normal(0, 2, (4, 10)))
    assert np.allclose(default.apply(proba), proba, atol=1e-6)
    assert default.describe().startswith("not calibrated (no calibration.json")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return train_fixture_run(tmp_path_factory)


def test_training_fits_the_temperature_on_the_validation_rows_and_writes_calibration_json(trained):
    calibration = load_calibration(trained)
    config = json.loads((trained / "config.json").read_text())
    assert calibration.fitted and calibration.source == "validation"
    assert calibration.measured["rows"] == config["data"]["val_rows"] == 100
    assert 0.05 <= calibration.temperature <= 20
    assert calibration.measured["unsure_rate"] <= 0.01
    assert "fitted on 100 validation rows" in calibration.describe()


def test_the_report_shows_a_reliability_diagram_and_the_ece_of_the_calibrated_probabilities(trained):
    from digits.report import write_report

    page = write_report(trained).read_text()
    assert '<section id="calibration">' in page
    assert "Expected calibration error (15 bins) on the validation rows: " in page
    assert "fitted on these very rows" in page  # an in-sample figure is named as one
    assert (trained / "report" / "reliability.png").stat().st_size > 5_000


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory):
    return train_ensemble_on_fixture(tmp_path_factory)


def test_an_ensemble_calibrates_each_member_then_the_average_of_their_calibrated_probabilities(ensemble):
    from digits.data.kaggle import load_kaggle_csv
    from digits.predict.predictor import Predictor

    members = [load_calibration(ensemble / "members" / name) for name in ("01", "02")]
    whole = load_calibration(ensemble)
    assert all(c.fitted and c.source == "validation" and c.measured["rows"] == 100 for c in members + [whole])
    predictor = Predictor.open(ensemble)
    assert [m.calibration for m in predictor.members] == members and predictor.calibration == whole
    # The ensemble's temperature is fitted on what it answers: the average of its calibrated
    # members on the rows they held out (the last 5% of the training file), never a test row.
    train = load_kaggle_csv(FIXTURES / "train.csv", kind="train")
    held_out = train.images[1900:], train.labels[1900:]
    raw = predictor.member_proba(held_out[0], calibrated=False)
    calibrated = [c.apply(p) for c, p in zip(members, raw)]
    fitted = fit_temperature(np.mean(calibrated, axis=0), held_out[1])
    assert fitted == pytest.approx(whole.temperature, rel=1e-4)
    images = load_kaggle_csv(FIXTURES / "test.csv", kind="test").images[:50]
    raw = predictor.member_proba(images, calibrated=False)
    expected = temper(np.mean([c.apply(p) for c, p in zip(members, raw)], axis=0), whole.temperature)
    np.testing.assert_allclose(predictor.predict_proba(images), expected, atol=1e-6)


def test_unmix_takes_the_even_share_out_of_a_mixture_and_keeps_the_order_of_the_digits():
    digit = np.array([[0.70, 0.20, 0.05, 0.05, 0, 0, 0, 0, 0, 0], [0.5, 0.5, 0, 0, 0, 0, 0, 0, 0, 0]])
    spread = 0.6 * digit + 0.4 / 10  # what a digit half read as none looks like: its lead kept, spread evenly
    assert np.allclose(unmix(spread), digit)
    assert np.allclose(unmix(digit), digit)  # no class at zero share, no even share: as it was
    even = np.full((1, 10), 0.1)
    assert np.allclose(unmix(even).sum(1), 1.0) and np.isfinite(unmix(even)).all()


def test_a_spread_model_is_calibrated_after_its_even_share_is_taken_out_and_says_so_in_its_file(tmp_path):
    # Labels drawn from calibrated probabilities, which the model reports mixed with an even share
    # that grows from row to row (clean digits a little, shifted ones a lot: outlier exposure's doubt).
    proba, labels = _calibrated_set(6000)
    share = np.linspace(0.05, 0.6, len(labels))[:, None]
    spread = (1 - share) * proba + share / 10
    tempered, unmixed = fit_calibration(spread, labels), fit_calibration(spread, labels, even_share=True)
    assert unmixed.unmix and not tempered.unmix
    assert unmixed.temperature == pytest.approx(1.0, abs=0.05)  # what is left is calibrated as it is
    assert expected_calibration_error(unmixed.apply(spread), labels) < 0.5 * expected_calibration_error(
        tempered.apply(spread), labels)
    save_calibration(tmp_path, unmixed)
    assert json.loads((tmp_path / CALIBRATION_FILE).read_text())["unmix"] is True
    again = load_calibration(tmp_path)
    assert again == unmixed and np.allclose(again.apply(spread), unmixed.apply(spread))
