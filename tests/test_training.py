"""The fit loop, its history, the Keras-style validation split and the run directory."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import FIXTURES

from digits.data.kaggle import load_kaggle_csv
from digits.errors import ModelError, RunError
from digits.runs import load_model, save_model
from digits.train.config import TrainConfig
from digits.train.fit import train_model
from digits.train.history import COLUMNS, History
from digits.train.run import train_run

FAST = TrainConfig(model="tutorial-mlp", epochs=3, batch_size=64, val_split=0.1, seed=7, device="cpu")


@pytest.fixture(scope="module")
def train_set():
    return load_kaggle_csv(FIXTURES / "train.csv")


def test_validation_split_is_the_last_rows_before_shuffling(train_set):
    train, val = train_set.split_last(0.05)
    assert len(train) == 1900 and len(val) == 100
    assert np.array_equal(val.images, train_set.images[1900:])
    assert np.array_equal(train.labels, train_set.labels[:1900])


def test_history_has_one_row_per_epoch_with_every_column(train_set):
    train, val = train_set.split_last(0.1)
    _, history = train_model(FAST, train, val)
    assert len(history) == 3 and list(history.rows[0]) == list(COLUMNS)
    assert history.column("epoch") == [1, 2, 3]
    assert history.column("loss")[-1] < history.column("loss")[0]
    assert all(0 <= a <= 1 for a in history.column("val_accuracy"))
    assert history.column("lr") == [1e-3] * 3


def test_same_seed_twice_on_cpu_gives_identical_history(train_set):
    train, val = train_set.split_last(0.1)
    runs = [train_model(FAST, train, val)[1] for _ in range(2)]
    drop_time = [{k: v for k, v in row.items() if k != "seconds"} for h in runs for row in h.rows]
    assert drop_time[:3] == drop_time[3:]


def test_another_seed_gives_another_history(train_set):
    train, val = train_set.split_last(0.1)
    a = train_model(FAST, train, val)[1].column("loss")
    b = train_model(FAST.replace(seed=8), train, val)[1].column("loss")
    assert a != b


def test_tutorial_mlp_learns_real_digits(train_set):
    train, val = train_set.split_last(0.2)
    _, history = train_model(FAST.replace(epochs=8), train, val)
    assert max(history.column("val_accuracy")) > 0.85  # 1,600 digits, 8 epochs


def test_run_directory_holds_config_history_curves_weights_and_metrics(tmp_path, train_set):
    import digits

    result = digits.run_training(FAST, train_set, tmp_path / "run")  # trains, draws curves.png, calibrates
    names = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"config.json", "history.csv", "curves.png", "model.safetensors", "model.json",
            "metrics.json"} <= names
    assert not [n for n in names if n.endswith(".tmp")]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["train"]["seed"] == 7 and config["environment"]["digits"]
    assert History.load(tmp_path / "run" / "history.csv").column("epoch") == [1, 2, 3]
    card = json.loads((tmp_path / "run" / "model.json").read_text())
    assert card["architecture"] == "tutorial-mlp" and card["parameters"] == 25450
    assert card["normalization"] == {"scale": 1 / 255, "mean": 0.0, "std": 1.0} and card["classes"] == 10
    assert result.metrics["epochs"] == 3


def test_saved_weights_are_safetensors_not_pickle(tmp_path, train_set):
    train_run(FAST.replace(epochs=1), train_set, tmp_path / "run")
    raw = (tmp_path / "run" / "model.safetensors").read_bytes()
    header_len = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + header_len])
    assert header["__metadata__"]["architecture"] == "tutorial-mlp"
    assert b"\x80\x04" not in raw[:2]  # no pickle protocol marker


def test_loaded_model_predicts_exactly_as_trained(tmp_path, train_set):
    result = train_run(FAST.replace(epochs=1), train_set, tmp_path / "run")
    model, card = load_model(tmp_path / "run")
    x = torch.from_numpy(train_set.images[:64])
    with torch.no_grad():
        assert torch.equal(model(x), result.model.eval()(x))
    assert card.name == "tutorial-mlp"


def test_weights_of_another_architecture_are_an_incompatible_checkpoint(tmp_path, train_set):
    result = train_run(FAST.replace(epochs=1), train_set, tmp_path / "run")
    save_model(tmp_path / "run", result.model, "tutorial-mlp", {})
    card = json.loads((tmp_path / "run" / "model.json").read_text())
    card["args"] = {"hidden": 64}
    (tmp_path / "run" / "model.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match=r"incompatible checkpoint for tutorial-mlp"):
        load_model(tmp_path / "run")


def test_missing_run_directory_is_a_run_error(tmp_path):
    with pytest.raises(RunError, match="no such run directory"):
        load_model(tmp_path / "nope")


def test_zero_validation_split_trains_on_every_row(tmp_path, train_set):
    result = train_run(FAST.replace(epochs=1, val_split=0.0), train_set, tmp_path / "run")
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["data"]["train_rows"] == 2000 and config["data"]["val_rows"] == 0
    assert np.isnan(result.history.rows[0]["val_loss"])
