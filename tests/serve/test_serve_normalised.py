"""A run trained with input normalisation: the torch and ONNX runtimes read it the same way."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from digits.data.dataset import DigitSet


@pytest.fixture(scope="module")
def normalised_run(tmp_path_factory: pytest.TempPathFactory, fixture_train: DigitSet) -> Path:
    import digits
    from digits.serve.export import export_onnx

    path = tmp_path_factory.mktemp("normalised-run")
    config = digits.TrainConfig(model="mlp", model_args={"hidden": [64]}, epochs=2, batch_size=64,
                                optimizer="adam", lr=1e-3, val_split=0.1, device="cpu", normalise="mnist")
    rows = DigitSet(fixture_train.images[:600], fixture_train.labels[:600], "fixture")
    digits.run_training(config, rows, path)
    export_onnx(path)
    return path


def test_onnx_and_torch_runtimes_normalise_alike(normalised_run, fixture_test):
    pytest.importorskip("onnxruntime")
    from digits.serve.runtime import load_runtime

    images = fixture_test[0][:40].copy()
    images[:, 2:, 3:] = images[:, :-2, :-3]  # shifted: only a normalising reader reads it as it trained
    onnx, torch_runtime = load_runtime(normalised_run, "onnx"), load_runtime(normalised_run, "torch")
    assert onnx.normalise == "mnist"
    assert np.allclose(onnx.predict_proba(images), torch_runtime.predict_proba(images), atol=1e-4)


def test_the_graph_of_a_normalised_run_reads_each_digit_in_both_its_forms(normalised_run, fixture_test):
    ort = pytest.importorskip("onnxruntime")
    from digits.data.normalise import readings

    session = ort.InferenceSession(str(normalised_run / "model.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == ["batch", 2, 28, 28]  # MNIST's form, and as it stands
    forms = readings(fixture_test[0][:8], "mnist")
    assert session.run(None, {"pixels": forms})[0].shape == (8, 10)


def test_an_export_that_reads_one_form_is_refused_for_a_run_that_reads_two(normalised_run, tmp_path,
                                                                          monkeypatch):
    pytest.importorskip("onnxruntime")
    import shutil

    from digits.data.normalise import READINGS
    from digits.errors import ServeError
    from digits.serve.export import export_onnx
    from digits.serve.runtime import load_runtime

    run = shutil.copytree(normalised_run, tmp_path / "run")
    with monkeypatch.context() as before:  # exported as before the run read in two forms
        before.setitem(READINGS, "mnist", ("mnist",))
        export_onnx(run)
    with pytest.raises(ServeError, match="export again"):
        load_runtime(run, "onnx")
