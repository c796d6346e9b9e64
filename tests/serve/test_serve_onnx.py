"""ONNX export: the same predictions as PyTorch, and a server that never imports torch."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from dataclasses import replace

import numpy as np
import pytest

from digits.errors import ServeError
from digits.predict.calibration import load_calibration, save_calibration, temper
from digits.predict.predictor import Predictor, predict_proba
from digits.runs import load_model, save_model
from digits.serve.runtime import OnnxRuntime, load_runtime


def test_onnx_predicts_what_pytorch_predicts_on_the_fixture(onnx_run_dir, fixture_test):
    images, labels = fixture_test
    expected = Predictor.open(onnx_run_dir, "cpu", precision="fp32").predict_proba(images)  # calibrated
    got = OnnxRuntime(onnx_run_dir).predict_proba(images)
    assert got.shape == (500, 10)
    assert np.array_equal(got.argmax(1), expected.argmax(1))
    assert np.abs(got - expected).max() < 1e-5
    assert (got.argmax(1) == labels).mean() > 0.8


def test_the_onnx_graph_applies_the_runs_temperature_as_the_predictor_does(onnx_run_dir, fixture_test):
    images = fixture_test[0][:100]
    temperature = load_calibration(onnx_run_dir).temperature
    assert abs(temperature - 1) > 0.05  # the fixture run is fitted one: there is a temperature to apply
    model, _ = load_model(onnx_run_dir)
    raw = predict_proba(model, images)
    got = OnnxRuntime(onnx_run_dir).predict_proba(images)
    assert np.abs(got - temper(raw, temperature)).max() < 1e-5
    assert np.abs(got - raw).max() > 1e-3


def test_the_onnx_graph_takes_the_even_share_out_as_the_predictor_does(onnx_run_dir, fixture_test, tmp_path):
    from digits.serve.export import export_onnx

    run = tmp_path / "run"
    shutil.copytree(onnx_run_dir, run)
    save_calibration(run, replace(load_calibration(run), unmix=True))  # a run trained with label smoothing
    with pytest.raises(ServeError, match="export again"):  # exported before: the graph does not unmix
        OnnxRuntime(run)
    export_onnx(run)
    images = fixture_test[0][:100]
    expected = Predictor.open(run, "cpu", precision="fp32").predict_proba(images)
    assert np.abs(OnnxRuntime(run).predict_proba(images) - expected).max() < 1e-5


def test_an_export_made_before_the_run_was_calibrated_again_is_refused(onnx_run_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(onnx_run_dir, run)
    calibration = load_calibration(run)
    save_calibration(run, replace(calibration, temperature=calibration.temperature * 1.5))
    with pytest.raises(ServeError, match="exported with temperatures .* calibration.json now says .* again"):
        OnnxRuntime(run)


def test_onnx_takes_any_batch_size(onnx_run_dir, fixture_test):
    runtime = OnnxRuntime(onnx_run_dir)
    for n in (1, 3, 64):
        assert runtime.predict_proba(fixture_test[0][:n]).shape == (n, 10)


def test_serving_onnx_never_imports_torch(onnx_run_dir, fixture_test):
    digit = fixture_test[0][0].tolist()
    script = textwrap.dedent(f"""
        import sys
        from fastapi.testclient import TestClient
        from digits.serve.app import create_app
        from digits.serve.reader import DigitReader
        reader = DigitReader.open({str(onnx_run_dir)!r}, "onnx")
        with TestClient(create_app(reader)) as client:
            answer = client.post("/api/predict", json={{"pixels": {digit!r}}})
            assert answer.status_code == 200, answer.text
            assert client.get("/api/health").json()["runtime"] == "onnx"
        print(answer.json()["label"], "torch" in sys.modules)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    label, torch_imported = done.stdout.split()
    assert torch_imported == "False"
    assert int(label) == int(fixture_test[1][0])


def test_an_export_from_older_weights_is_refused(onnx_run_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(onnx_run_dir, run)
    model, card = load_model(run)
    with __import__("torch").no_grad():
        next(model.parameters()).add_(0.01)  # retrained: the weights are not those exported
    save_model(run, model, card.name, card.args)
    with pytest.raises(ServeError, match="export again"):
        OnnxRuntime(run)


def test_serving_onnx_without_an_export_says_how_to_make_one(run_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run, ignore=shutil.ignore_patterns("model.onnx"))
    with pytest.raises(ServeError, match="--format onnx"):
        load_runtime(run, "onnx")


def test_onnx_measures_the_distance_from_the_training_digits_that_pytorch_measures(onnx_run_dir, fixture_test):
    images = np.concatenate([fixture_test[0][:100], 255 - fixture_test[0][:50]])  # digits, and negatives
    runtime = OnnxRuntime(onnx_run_dir)
    assert runtime.rejector is not None  # every run calibrated on validation rows has one
    proba, distance = runtime.read(images)
    expected_proba, expected = Predictor.open(onnx_run_dir, "cpu", precision="fp32").predict_with_distance(images)
    assert np.abs(proba - expected_proba).max() < 1e-5
    assert np.allclose(distance, expected, rtol=1e-4)
    assert np.array_equal(runtime.rejector.rejects(distance), runtime.rejector.rejects(expected))
    assert runtime.rejector.rejects(distance[100:]).mean() > 0.9


def test_onnx_serves_a_run_without_a_rejector_as_before(onnx_run_dir, fixture_test, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(onnx_run_dir, run)
    (run / "rejector.safetensors").unlink()
    runtime = OnnxRuntime(run)
    proba, distance = runtime.read(fixture_test[0][:10])
    assert runtime.rejector is None and distance is None and proba.shape == (10, 10)
