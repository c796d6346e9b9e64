"""The committed serving run is what ``tests/fixtures/make_serve_run.py`` trains with this code."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
from pictures import FIXTURES

from digits.predict.predictor import predict_proba
from digits.runs import load_model


def _script():
    spec = importlib.util.spec_from_file_location("make_serve_run", FIXTURES / "make_serve_run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _accuracy(run: Path, fixture_test: tuple[np.ndarray, np.ndarray]) -> float:
    model, _ = load_model(run, "cpu")
    images, labels = fixture_test
    return float((predict_proba(model, images).argmax(1) == labels).mean())


def test_the_committed_run_was_trained_with_the_scripts_settings(run_dir):
    recorded = json.loads((run_dir / "config.json").read_text())["train"]
    assert recorded == {**_script().CONFIG.to_dict(), "precision": recorded["precision"]}
    assert recorded["precision"] == "fp32"  # a plain MLP on a CPU, whatever the CPU


def test_the_script_still_makes_a_run_of_the_same_kind_and_skill(tmp_path, run_dir, fixture_test,
                                                                   outlier_pictures_cached):
    fresh = tmp_path / "fresh"
    _script().make(fresh)  # a few seconds on one thread
    assert sorted(p.name for p in fresh.iterdir()) == sorted(p.name for p in run_dir.iterdir() if p.suffix != ".onnx")
    committed_card, fresh_card = (json.loads((run / "model.json").read_text()) for run in (run_dir, fresh))
    assert fresh_card == committed_card  # same architecture, parameters and input format
    # Another CPU's rounding moves single digits, not the skill: 500 test digits, within 3 points.
    assert abs(_accuracy(fresh, fixture_test) - _accuracy(run_dir, fixture_test)) <= 0.03
