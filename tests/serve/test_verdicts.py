"""Answered, unsure, not a digit: on real pictures (a fixture digit, a blank canvas, noise, a
speck of ink), through the reader, the API and ``digits predict-image``."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pictures import encode, paper_photo
from PIL import Image

from digits.cli import main
from digits.predict.calibration import load_calibration
from digits.predict.predictor import predict_proba
from digits.predict.verdict import Decision, decide
from digits.runs import load_model
from digits.serve.app import create_app
from digits.serve.reader import DigitReader


@pytest.fixture(scope="module")
def reader(run_dir) -> DigitReader:
    return DigitReader.open(run_dir, "torch")


def test_decisions_say_answered_unsure_and_not_a_digit_as_a_person_would():
    assert Decision("answered", 4, 0.998, (4,)).text() == "4 (p=0.998)"
    assert Decision("unsure", 4, 0.41, (4, 9)).text() == "4 or 9? (unsure)"
    assert Decision("not a digit", None, None, ()).text() == "not a digit"


def test_a_clear_fixture_digit_is_answered_with_its_calibrated_probability(run_dir, fixture_test):
    images, labels = fixture_test
    model, _ = load_model(run_dir, "cpu")
    calibration = load_calibration(run_dir)
    proba = calibration.apply(predict_proba(model, images[:200]))
    decisions = decide(proba, images[:200], calibration)
    answered = [d for d in decisions if d.verdict == "answered"]
    assert len(answered) >= 190  # a clean digit is answered, not flagged
    first = decisions[0]
    assert first.verdict == "answered" and first.label == labels[0] and first.candidates == (labels[0],)
    assert first.confidence == pytest.approx(float(proba[0].max()), abs=1e-6)


def test_a_blank_and_a_noise_picture_are_not_digits(reader):
    rng = np.random.default_rng(0)
    blank = np.full((280, 280), 255.0)
    noise = rng.uniform(0, 255, (280, 280))
    speck = np.full((280, 280), 255.0)
    speck[100:104, 100:104] = 0  # near-blank: a speck of ink
    readings = reader.read([blank, noise, speck])
    assert [r.decision.verdict for r in readings] == ["not a digit"] * 3
    assert all(r.label is None and not r.to_dict()["digit_found"] for r in readings)


def test_the_api_answer_carries_verdict_candidates_and_calibrated_probabilities(run_dir, reader, fixture_test):
    digit, label = fixture_test[0][0], int(fixture_test[1][0])
    with TestClient(create_app(reader)) as client:
        answer = client.post("/api/predict", content=encode(paper_photo(digit)),
                             headers={"content-type": "image/png"}).json()
        raw = client.post("/api/predict?preprocess=false", json={"pixels": digit.tolist()}).json()
        blank = client.post("/api/predict", content=encode(Image.new("L", (280, 280), 255)),
                            headers={"content-type": "image/png"}).json()
        card = client.get("/api/model").json()
    assert answer["verdict"] == "answered" and answer["label"] == label and answer["candidates"] == [label]
    assert answer["confidence"] == pytest.approx(max(answer["probabilities"]), abs=1e-6)
    model, _ = load_model(run_dir, "cpu")
    calibrated = load_calibration(run_dir).apply(predict_proba(model, digit[None]))[0]
    assert np.allclose(raw["probabilities"], calibrated, atol=1e-5)
    assert blank["verdict"] == "not a digit" and blank["candidates"] == [] and blank["label"] is None
    assert card["calibration"].startswith("temperature ") and "validation rows" in card["calibration"]


def test_predict_image_prints_not_a_digit_for_a_blank_page_and_the_answer_for_a_digit(run_dir, tmp_path, capsys,
                                                                                      fixture_test):
    blank, photo = tmp_path / "blank.png", tmp_path / "photo.png"
    blank.write_bytes(encode(Image.new("L", (280, 280), 255)))
    photo.write_bytes(encode(paper_photo(fixture_test[0][0])))
    assert main(["predict-image", str(blank), str(photo), "--run", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert f"{blank}: not a digit" in out
    assert f"{photo}: {fixture_test[1][0]} (p=" in out


def test_a_digit_read_with_too_little_confidence_is_unsure_and_names_the_two_likeliest(reader, fixture_test):
    calibration = reader.calibration
    def reading(top: float) -> np.ndarray:  # 4 at ``top``, 9 a close second, the rest shared out
        proba = np.full((1, 10), (1 - 1.97 * top) / 8, np.float32)
        proba[0, 4], proba[0, 9] = top, 0.97 * top
        return proba

    just_under = calibration.unsure_below - 0.01  # the run's threshold, chosen on its validation rows
    decision = decide(reading(just_under), fixture_test[0][:1], calibration)[0]  # a real digit
    assert decision.verdict == "unsure" and decision.candidates == (4, 9) and decision.label == 4
    assert decision.text() == "4 or 9? (unsure)"
    assert decide(reading(calibration.unsure_below + 0.005), fixture_test[0][:1], calibration)[0].verdict == "answered"


LETTER_K = [[(90, 40), (90, 240)], [(200, 40), (90, 150)], [(120, 125), (210, 240)]]  # as the page draws it


def test_a_letter_and_a_scribble_drawn_as_strokes_are_not_digits(reader):
    # The fixture run trained with outlier exposure (Liberation letters, wandering scribbles): a
    # K and crossed straight lines, neither of which it saw, leave no two digits likely.
    from pictures import draw_strokes

    hash_ = [[(90, 40), (90, 240)], [(180, 40), (180, 240)], [(40, 100), (240, 100)], [(40, 180), (240, 180)]]
    readings = reader.read([np.asarray(draw_strokes(s), np.float32) for s in (LETTER_K, hash_)])
    assert [r.decision.verdict for r in readings] == ["not a digit", "not a digit"]
    assert all(r.to_dict()["message"].startswith("not a digit: it looks like none") for r in readings)


def test_a_picture_the_rejector_finds_far_from_the_training_digits_is_not_a_digit_with_its_probabilities(reader):
    # A photo of a digit never preprocessed: dark ink on a white page, fed as it is.
    from helpers import FIXTURES

    from digits.data.kaggle import load_kaggle_csv

    negative = 255.0 - load_kaggle_csv(FIXTURES / "test.csv", kind="test").images[:20]
    readings = reader.read(list(negative), preprocess=False)
    assert reader.runtime.rejector is not None
    assert sum(r.decision.verdict == "not a digit" for r in readings) >= 18
    for r in (r for r in readings if r.decision.verdict == "not a digit"):
        shown = r.to_dict()
        assert shown["label"] is None and shown["probabilities"] is not None and not shown["digit_found"]
        assert shown["message"].startswith("not a digit: it looks like none of the digits")
