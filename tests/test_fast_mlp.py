"""Prediction's thread and memory-layout choices for the models the fused MLP engine trains.
(The engine's own tests are in tests/test_engines.py.)"""

from __future__ import annotations

import pytest
import torch
from helpers import FIXTURES

from digits.data.kaggle import load_kaggle_csv
from digits.models.registry import create_model
from digits.runs import save_model
from digits.train.fit import seed_everything


@pytest.fixture(scope="module")
def split():
    return load_kaggle_csv(FIXTURES / "train.csv").split_last(0.1)


def test_prediction_runs_small_models_on_one_thread_and_restores_the_thread_count(split, monkeypatch):
    from digits.predict import predictor

    train, _ = split
    seen = []
    real = predictor.use_threads

    def spy(count):
        seen.append(count)
        return real(count)

    monkeypatch.setattr(predictor, "use_threads", spy)
    threads = torch.get_num_threads()
    labels = predictor.predict_proba(create_model("tutorial-mlp"), train.images[:100]).argmax(1)
    predictor.predict_proba(create_model("fast-cnn"), train.images[:1])
    assert seen == [1, 1] and labels.shape == (100,) and torch.get_num_threads() == threads
    assert not predictor.is_small_mlp(create_model("fast-cnn"))


def test_a_loaded_cnn_predicts_channels_last_with_the_probabilities_of_the_saved_model(tmp_path, split):
    from digits.predict.predictor import Predictor, predict_proba

    train, _ = split
    seed_everything(5)
    cnn = create_model("fast-cnn").eval()
    expected = predict_proba(cnn, train.images[:300])
    save_model(tmp_path, cnn, "fast-cnn", {})
    predictor = Predictor.open(tmp_path)
    conv = next(m for m in predictor.models[0].modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    # Other kernels, other rounding: equal to float tolerance, not bit for bit.
    torch.testing.assert_close(torch.from_numpy(predictor.predict_proba(train.images[:300])),
                               torch.from_numpy(expected), rtol=1e-4, atol=1e-5)
