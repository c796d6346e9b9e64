"""The hand-fused MLP path: the same weights and history as autograd + torch.optim, and
taken only where it can promise that.

The fast path runs its small matmuls on one thread; the reference loop here does too, and
then the two agree bit for bit (with two threads the reference's own matmuls round
differently, and RMSprop lets such last-bit differences grow over epochs)."""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
import torch
from helpers import FIXTURES

from digits.data.kaggle import load_kaggle_csv
from digits.models.registry import create_model
from digits.runs import load_model, save_model
from digits.train.callbacks import Callback
from digits.train.config import TrainConfig
from digits.train.fast_mlp import FastMlpEpochs, can_fit_fast
from digits.train.fit import StepSettings, TensorSet, evaluate, fit, seed_everything, train_one_epoch
from digits.train.optim import build_optimizer

CPU = torch.device("cpu")
BASE = TrainConfig(model="tutorial-mlp", epochs=2, batch_size=64, seed=3, device="cpu")


@pytest.fixture(scope="module")
def split():
    # 1,800 training rows: 28 full batches and a last one of 8, so the short batch is covered.
    return load_kaggle_csv(FIXTURES / "train.csv").split_last(0.1)


@contextmanager
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def reference_fit(model, train, val, config):
    """fit()'s general loop, step for step: autograd, torch.optim, the same seeded orders."""
    with one_thread():
        return _reference_fit(model, train, val, config)


def _reference_fit(model, train, val, config):
    data, val_data = TensorSet.from_digits(train, CPU), TensorSet.from_digits(val, CPU)
    optimizer = build_optimizer(config.optimizer, model.parameters(), config.lr, **config.optimizer_args)
    generator = torch.Generator().manual_seed(config.seed)
    rows = []
    for _ in range(config.epochs):
        order = torch.randperm(len(data), generator=generator)
        loss, acc, _ = train_one_epoch(model, model, optimizer, data, order, StepSettings(config.batch_size))
        rows.append((loss, acc, *evaluate(model, val_data)))
    return rows


def twin_models(config):
    """Two identical freshly initialised models, as train_model() would build them."""
    seed_everything(config.seed)
    fast = create_model(config.model, **config.model_args)
    slow = create_model(config.model, **config.model_args)
    slow.load_state_dict(fast.state_dict())
    return fast, slow


@pytest.mark.parametrize("config", [
    BASE,
    BASE.replace(optimizer="adam", lr=3e-3),
    BASE.replace(optimizer="sgd", lr=0.05),
    BASE.replace(optimizer="sgd", lr=0.05, optimizer_args={"momentum": 0.5, "nesterov": True}),
    BASE.replace(model="mlp", model_args={"hidden": [48, 24]}, optimizer_args={"rho": 0.8, "eps": 1e-6}),
], ids=["rmsprop", "adam", "sgd-momentum", "sgd-nesterov", "mlp-two-hidden"])
def test_fast_path_ends_with_the_weights_and_history_of_autograd_and_torch_optim(split, config):
    train, val = split
    fast, slow = twin_models(config)
    assert can_fit_fast(fast, config, (), CPU)
    history = fit(fast, train, config, val)
    expected = reference_fit(slow, train, val, config)
    for (name, a), b in zip(fast.state_dict().items(), slow.state_dict().values()):
        assert torch.equal(a, b), f"{name} differs after {config.epochs} epochs"
    for row, (loss, acc, val_loss, val_acc) in zip(history.rows, expected):
        assert row["loss"] == pytest.approx(loss, rel=1e-5) and row["accuracy"] == pytest.approx(acc, abs=1e-3)
        assert row["val_loss"] == pytest.approx(val_loss, rel=1e-4)
        assert row["val_accuracy"] == pytest.approx(val_acc, abs=2e-3)
        assert row["lr"] == config.lr and row["seconds"] > 0


def test_fit_takes_the_fast_path_for_the_tutorial_and_gives_the_same_seed_the_same_weights(split):
    train, val = split
    fast, slow = twin_models(BASE)
    history = fit(fast, train, BASE, val)
    reference_fit(slow, train, val, BASE)
    assert can_fit_fast(fast, BASE, (), CPU) and len(history) == 2
    assert all(torch.equal(a, b) for a, b in zip(fast.parameters(), slow.parameters()))
    again, _ = twin_models(BASE)
    assert fit(again, train, BASE, val).rows[-1]["loss"] == history.rows[-1]["loss"]
    assert all(torch.equal(a, b) for a, b in zip(again.parameters(), fast.parameters()))


@dataclass(frozen=True)
class ExtendedConfig(TrainConfig):
    """TrainConfig as a feature added later (mixup, say) might extend it."""

    mixup: float = 0.0


@pytest.mark.parametrize("model, config, device", [
    ("mlp-dropout", BASE, CPU),
    ("tutorial-mlp", BASE.replace(optimizer="adamw"), CPU),
    ("tutorial-mlp", BASE.replace(optimizer_args={"weight_decay": 1e-4}), CPU),
    ("tutorial-mlp", BASE.replace(optimizer="adam", optimizer_args={"amsgrad": True}), CPU),
    ("tutorial-mlp", BASE, torch.device("cuda")),
    ("tutorial-mlp", BASE.replace(schedule="onecycle"), CPU),
    ("tutorial-mlp", BASE.replace(augment={"rotation": 10.0}), CPU),
    ("tutorial-mlp", BASE.replace(label_smoothing=0.1), CPU),
    ("tutorial-mlp", BASE.replace(weight_decay=1e-4), CPU),
    ("tutorial-mlp", BASE.replace(precision="bf16"), CPU),
    ("tutorial-mlp", ExtendedConfig(mixup=0.2), CPU),
])
def test_anything_the_fast_path_cannot_do_goes_to_the_general_loop(model, config, device):
    net = create_model("mlp", dropout=0.25) if model == "mlp-dropout" else create_model(model)
    assert not can_fit_fast(net, config, (), device)


def test_a_config_extended_with_features_left_at_their_defaults_still_runs_fast():
    assert can_fit_fast(create_model("tutorial-mlp"), ExtendedConfig(), (), CPU)


def test_a_network_that_is_not_a_linear_relu_stack_goes_to_the_general_loop():
    model = create_model("tutorial-mlp")
    model.net[2] = torch.nn.Tanh()
    assert not can_fit_fast(model, BASE, (), CPU)


class Recorder(Callback):
    def __init__(self) -> None:
        self.events: list[tuple] = []

    def on_train_begin(self, epochs, steps_per_epoch):
        self.events.append(("train_begin", epochs, steps_per_epoch))

    def on_epoch_begin(self, epoch):
        self.events.append(("epoch_begin", epoch))

    def on_batch_end(self, epoch, step):
        self.events.append(("batch", epoch, step))

    def on_epoch_end(self, epoch, row):
        self.events.append(("epoch_end", epoch, row["loss"]))
        return epoch == 2  # stop early, after the second of three epochs

    def on_train_end(self, history):
        self.events.append(("train_end", len(history)))


def test_callbacks_get_every_hook_the_progress_bar_reaches_the_last_step_and_can_stop(split):
    train, _ = split
    recorder = Recorder()
    history = fit(create_model("tutorial-mlp"), train, BASE.replace(epochs=3), None, [recorder])
    steps = math.ceil(len(train) / 64)
    kinds = [e[0] for e in recorder.events]
    assert recorder.events[0] == ("train_begin", 3, steps) and recorder.events[-1] == ("train_end", 2)
    assert kinds.count("epoch_begin") == 2 and kinds.count("epoch_end") == 2 and len(history) == 2
    for epoch in (1, 2):
        batches = [e[2] for e in recorder.events if e[0] == "batch" and e[1] == epoch]
        assert batches == sorted(batches) and batches[-1] == steps
    assert math.isnan(history.rows[0]["val_loss"])


def test_the_trained_model_saves_and_reloads_and_the_thread_count_is_restored(tmp_path, split):
    train, _ = split
    model = create_model("tutorial-mlp")
    threads = torch.get_num_threads()
    fit(model, train, BASE.replace(epochs=1))
    assert torch.get_num_threads() == threads
    save_model(tmp_path, model, "tutorial-mlp", {})
    loaded, _ = load_model(tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(loaded.parameters(), model.parameters()))


class Interrupt(Callback):
    """Stands for a killed process: raises as epoch ``at`` begins (its predecessor is saved)."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_epoch_begin(self, epoch):
        if epoch == self.at:
            raise KeyboardInterrupt


@pytest.mark.parametrize("optimizer", ["rmsprop", "adam", "sgd"])
def test_a_checkpointed_fast_run_resumes_to_the_uninterrupted_weights(tmp_path, split, optimizer):
    train, val = split
    config = BASE.replace(epochs=3, optimizer=optimizer, lr=0.05 if optimizer == "sgd" else 1e-3)
    whole, _ = twin_models(config)
    fit(whole, train, config, val, checkpoint_dir=tmp_path / "whole")
    interrupted, _ = twin_models(config)
    with pytest.raises(KeyboardInterrupt):
        fit(interrupted, train, config, val, [Interrupt(3)], checkpoint_dir=tmp_path / "cut")
    resumed = create_model("tutorial-mlp")
    history = fit(resumed, train, config, val, checkpoint_dir=tmp_path / "cut", resume=True)
    assert history.column("epoch") == [1, 2, 3]
    assert all(torch.equal(a, b) for a, b in zip(resumed.parameters(), whole.parameters()))


def test_the_general_loop_resumes_a_fast_runs_checkpoint_to_the_same_weights(tmp_path, split):
    train, val = split
    config = BASE.replace(epochs=3)
    whole, _ = twin_models(config)
    fit(whole, train, config, val, checkpoint_dir=tmp_path / "whole")
    interrupted, _ = twin_models(config)
    with pytest.raises(KeyboardInterrupt):
        fit(interrupted, train, config, val, [Interrupt(3)], checkpoint_dir=tmp_path / "cut")
    # channels_last changes nothing for Linear layers but is a setting the fast path leaves
    # to the general loop: so the last epoch runs through autograd + torch.optim.
    general = config.replace(channels_last=True)
    assert not can_fit_fast(create_model("tutorial-mlp"), general, (), CPU)
    resumed = create_model("tutorial-mlp")
    with one_thread():
        fit(resumed, train, general, val, checkpoint_dir=tmp_path / "cut", resume=True)
    assert all(torch.equal(a, b) for a, b in zip(resumed.parameters(), whole.parameters()))


def test_fast_epochs_refuse_an_optimizer_over_other_parameters():
    model = create_model("tutorial-mlp")
    optimizer = build_optimizer("rmsprop", list(model.parameters())[::-1], 1e-3)
    with pytest.raises(ValueError, match="exactly the model's parameters"):
        FastMlpEpochs(model, optimizer, 64)


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
