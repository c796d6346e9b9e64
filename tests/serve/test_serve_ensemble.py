"""An ensemble served, exported and read from pictures: through the Predictor, with the labels
and probabilities of `digits predict`."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from browser import chromium, needs_chromium
from fastapi.testclient import TestClient
from helpers import train_ensemble_on_fixture
from pictures import FIXTURES, encode
from PIL import Image

from digits.cli import main
from digits.predict.predictor import Predictor
from digits.serve.app import create_app
from digits.serve.preprocess import decode_image, prepare_digit
from digits.serve.reader import DigitReader
from digits.serve.runtime import OnnxRuntime


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-member tutorial-mlp ensemble, its submission for the fixture's test.csv from
    `digits predict`, and its ONNX export from `digits export`."""
    run = train_ensemble_on_fixture(tmp_path_factory)
    assert main(["predict", str(run), "--data", str(FIXTURES), "--quiet"]) == 0
    assert main(["export", str(run), "--format", "onnx"]) == 0
    return run


def predicted_labels(run: Path) -> np.ndarray:
    """The labels `digits predict` wrote into the run's submission.csv."""
    return np.loadtxt(run / "submission.csv", delimiter=",", skiprows=1, usecols=1, dtype=np.int64)


def served_labels(reader: DigitReader, images: np.ndarray) -> tuple[np.ndarray, list[dict]]:
    """The labels the app answers for ``images`` (as 28x28 model inputs, in batches), and the
    model card it shows."""
    labels = []
    with TestClient(create_app(reader)) as client:
        for start in range(0, len(images), 250):
            batch = {"images": images[start:start + 250].tolist()}
            answer = client.post("/api/predict?preprocess=false", json=batch)
            assert answer.status_code == 200, answer.text
            labels += [p["label"] for p in answer.json()["predictions"]]
        card = client.get("/api/model").json()
    return np.array(labels), card


@pytest.mark.parametrize("runtime", ["torch", "onnx"])
def test_an_ensemble_is_served_with_the_labels_of_digits_predict(ensemble, fixture_test, runtime):
    labels, card = served_labels(DigitReader.open(ensemble, runtime), fixture_test[0])
    # A submission holds a digit for every row; the app says "not a digit" (no label) of the few
    # test digits beyond the rejector's threshold, as many as of the validation digits (0.5%).
    answered = np.array([label is not None for label in labels])
    assert answered.mean() >= 0.98
    np.testing.assert_array_equal(labels[answered].astype(np.int64), predicted_labels(ensemble)[answered])
    assert card["kind"] == "ensemble" and card["runtime"] == runtime
    assert card["architecture"] == "tutorial-mlp" and card["version"].startswith("ensemble-2xtutorial-mlp-")


def test_the_model_card_describes_each_member_with_its_parameters_and_recorded_accuracy(ensemble):
    reader = DigitReader.open(ensemble, "torch")
    with TestClient(create_app(reader)) as client:
        card = client.get("/api/model").json()
    members = card["members"]
    assert [m["name"] for m in members] == ["members/01", "members/02"]
    for member in members:
        recorded = json.loads((ensemble / member["name"] / "metrics.json").read_text())
        assert member["parameters"] == recorded["parameters"] > 0
        assert member["accuracy"] == recorded["final"]["val_accuracy"]
        assert member["accuracy_source"] == "validation"
        assert member["precision"] == "fp32" and member["architecture"] == "tutorial-mlp"
    assert card["parameters"] == sum(m["parameters"] for m in members)
    assert card["accuracy"] == pytest.approx(np.mean([m["accuracy"] for m in members]))
    assert card["accuracy_source"] == "members' validation" and card["tta"] is False


def test_the_onnx_ensemble_gives_pytorchs_probabilities_within_1e_5_on_the_fixture(ensemble, fixture_test):
    images = fixture_test[0]
    expected = Predictor.open(ensemble, "cpu", precision="fp32").predict_proba(images)
    got = OnnxRuntime(ensemble).predict_proba(images)
    assert got.shape == (500, 10)
    assert np.abs(got - expected).max() < 1e-5
    members = Predictor.open(ensemble, "cpu", precision="fp32").member_proba(images)
    assert np.abs(members[0] - members[1]).max() > 1e-2  # one graph averaging two different members


def test_an_ensemble_exported_with_tta_averages_the_shifted_views_in_the_graph(ensemble, tmp_path,
                                                                               fixture_test):
    out = tmp_path / "tta.onnx"
    assert main(["export", str(ensemble), "--tta", "--out", str(out)]) == 0
    import onnxruntime as ort

    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    images = fixture_test[0][:64]
    got = session.run(None, {"pixels": images})[0]
    predictor = Predictor.open(ensemble, "cpu", precision="fp32")
    assert np.abs(got - predictor.predict_proba(images, tta=True)).max() < 1e-5
    assert np.abs(got - predictor.predict_proba(images, tta=False)).max() > 1e-3
    assert session.get_modelmeta().custom_metadata_map["digits_tta"] == "true"


def test_serving_an_onnx_ensemble_never_imports_torch(ensemble, fixture_test):
    digit = fixture_test[0][0].tolist()
    script = textwrap.dedent(f"""
        import sys
        from fastapi.testclient import TestClient
        from digits.serve.app import create_app
        from digits.serve.reader import DigitReader
        reader = DigitReader.open({str(ensemble)!r}, "onnx")
        with TestClient(create_app(reader)) as client:
            answer = client.post("/api/predict?preprocess=false", json={{"pixels": {digit!r}}})
            assert answer.status_code == 200, answer.text
            assert len(client.get("/api/model").json()["members"]) == 2
        print(answer.json()["label"], "torch" in sys.modules)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    label, torch_imported = done.stdout.split()
    assert torch_imported == "False"
    assert int(label) == predicted_labels(ensemble)[0]


@pytest.mark.parametrize("runtime", ["torch", "onnx"])
def test_predict_image_reads_pictures_with_the_ensemble_as_the_predictor_does(ensemble, tmp_path, capsys,
                                                                              fixture_test, runtime):
    files = []
    for i, digit in enumerate(fixture_test[0][:6]):
        files.append(tmp_path / f"digit{i}.png")
        files[-1].write_bytes(encode(Image.fromarray(255 - digit)))  # dark ink on white paper
    assert main(["predict-image", *map(str, files), "--run", str(ensemble), "--runtime", runtime]) == 0
    out = capsys.readouterr().out
    seen = np.stack([prepare_digit(decode_image(f.read_bytes())).image for f in files])
    expected = Predictor.open(ensemble).predict(seen)
    for path, label in zip(files, expected):
        assert f"{path}: {label} (p=" in out
    # The pictures are the fixture's digits: preprocessed as MNIST was, they read as predict reads them.
    assert np.mean(expected == predicted_labels(ensemble)[:6]) >= 5 / 6


def test_a_served_member_of_an_ensemble_is_a_model_of_its_own(ensemble):
    reader = DigitReader.open(ensemble / "members" / "01", "torch")
    assert reader.summary.card.kind == "single" and reader.summary.card.members[0].name == "."
    assert reader.summary.what == "tutorial-mlp"


@needs_chromium
def test_the_page_describes_a_served_ensemble_and_its_members(ensemble, tmp_path):
    from playwright.sync_api import expect

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "digits.cli", "serve", str(ensemble), "--port", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=1).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "digits serve did not answer"
                time.sleep(0.2)
        with chromium(tmp_path / "chromium-profile") as browser:
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            expect(page.locator("#card-model")).to_have_text("ensemble of 2 × tutorial-mlp")
            expect(page.locator("#card-members > div")).to_have_count(2)
            expect(page.locator("#card-members > div").first).to_contain_text("members/01: 25,450 parameters")
            expect(page.locator("#card-accuracy-label")).to_have_text("members' validation accuracy")
    finally:
        server.terminate()
        _, err = server.communicate(timeout=20)
    assert "serving ensemble of 2 x tutorial-mlp" in err
