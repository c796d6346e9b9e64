"""The CUDA-graph trainer's arithmetic, checked on the CPU.

``GraphedTrainer(capture=False)`` runs exactly the steps a graph would record (staged
batches, the per-step learning-rate and momentum tables, gradients set to None), eagerly.
Its runs must match the ordinary training loop's, so what the GPU replays is what the
loop would have computed.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import FIXTURES

from digits.data.kaggle import load_kaggle_csv
from digits.errors import DigitsError
from digits.models.registry import create_model
from digits.train.config import TrainConfig
from digits.train.fit import TensorSet, fit, seed_everything
from digits.train.graphed import GraphedTrainer, schedule_tables

CPU = torch.device("cpu")
# 21 batches of 32: one graph of 16 steps and a tail graph of 5 per epoch.
BASE = TrainConfig(model="fast-cnn-s2", epochs=2, batch_size=32, optimizer="adam", lr=0.01,
                   schedule="onecycle", label_smoothing=0.1, val_split=0.0, seed=5, device="cpu")


@pytest.fixture(scope="module")
def digits_672():
    return load_kaggle_csv(FIXTURES / "train.csv").subset(slice(0, 672))


def train_both(config: TrainConfig, data):
    """(eager loop's history rows, graphed trainer's epoch results, largest weight difference)."""
    seed_everything(0)
    eager = create_model(config.model)
    start = {k: v.clone() for k, v in eager.state_dict().items()}
    rows = fit(eager, data, config, device=CPU).rows
    graphed = create_model(config.model)
    graphed.load_state_dict(start)
    trainer = GraphedTrainer(graphed, TensorSet.from_digits(data, CPU), config, capture=False)
    generator = torch.Generator().manual_seed(config.seed)
    epochs = [trainer.run_epoch(generator) for _ in range(config.epochs)]
    diff = max((a - b).abs().max().item() for a, b in zip(eager.state_dict().values(),
                                                            graphed.state_dict().values()))
    return rows, epochs, diff


@pytest.mark.parametrize("changes", [
    {},                                                            # one-cycle moves Adam's beta1 too
    {"schedule_args": {"cycle_momentum": False}, "optimizer_args": {"betas": [0.7, 0.9], "fused": True}},
    {"optimizer": "sgd", "lr": 0.05, "schedule": "exponential", "schedule_args": {"gamma": 0.5}},
    {"optimizer": "adamw", "weight_decay": 0.01, "schedule": "cosine"},
    # fp16 (pre-Ampere GPUs): the loss scaling held on the device, as GradScaler does it
    {"precision": "fp16", "schedule_args": {"cycle_momentum": False}, "optimizer_args": {"fused": True}},
])
def test_graphed_steps_compute_what_the_training_loop_computes(digits_672, changes):
    rows, epochs, diff = train_both(BASE.replace(**changes), digits_672)
    # fp16: GradScaler unscales inside the fused kernel, the graph just before it, so fp16 rounding
    # differs: the losses agree to 1e-3 over both epochs, single weights drift by a step or so of Adam.
    tolerance = 1e-3 if changes.get("precision") == "fp16" else 1e-4
    weight_tolerance = 0.1 if changes.get("precision") == "fp16" else 1e-4
    for row, (loss, accuracy, lr) in zip(rows, epochs):
        assert loss == pytest.approx(row["loss"], rel=tolerance)
        assert accuracy == pytest.approx(row["accuracy"], abs=2 / 672)
        assert lr == pytest.approx(row["lr"], rel=1e-5, abs=1e-9)
    assert diff < weight_tolerance


def test_compiled_forward_and_loss_compute_the_same_steps(digits_672):
    # compile=true compiles the forward pass and the loss as one function (about 10 s here).
    config = BASE.replace(epochs=1)
    runs = []
    for compile in (False, True):
        torch.manual_seed(0)
        model = create_model(config.model)
        trainer = GraphedTrainer(model, TensorSet.from_digits(digits_672, CPU), config.replace(compile=compile),
                                 capture=False)
        runs.append((trainer.run_epoch(torch.Generator().manual_seed(0)), model.state_dict()))
    (plain, plain_weights), (compiled, compiled_weights) = runs
    assert compiled == pytest.approx(plain, rel=1e-5)
    assert max((plain_weights[k] - compiled_weights[k]).abs().max().item() for k in plain_weights) < 1e-4


def test_a_reset_trainer_repeats_its_run(digits_672):
    model = create_model("fast-cnn-s2")
    start = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = GraphedTrainer(model, TensorSet.from_digits(digits_672, CPU), BASE, capture=False)
    runs = []
    for _ in range(2):
        trainer.reset(start)
        generator = torch.Generator().manual_seed(1)
        runs.append([trainer.run_epoch(generator) for _ in range(BASE.epochs)])
    assert runs[0] == runs[1]


def test_schedule_tables_match_the_eager_schedules():
    config = BASE.replace(epochs=3, schedule="exponential", schedule_args={"gamma": 0.5}, lr=1e-3)
    lrs, momenta = schedule_tables(config, 2)
    assert lrs == pytest.approx([1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4, 2.5e-4]) and momenta is None
    lrs, momenta = schedule_tables(BASE.replace(epochs=1, lr=1e-3), 100)
    assert max(lrs) == pytest.approx(1e-3) and lrs[-1] < 1e-6 and lrs[0] < 1e-4
    # one-cycle's default momentum cycle: 0.95 down to 0.85 while the rate rises, and back
    assert momenta[0] == pytest.approx(0.95) and min(momenta) == pytest.approx(0.85, abs=1e-3)
    assert momenta[-1] == pytest.approx(0.95, abs=1e-3)
    with pytest.raises(DigitsError, match="plateau depends on validation"):
        schedule_tables(BASE.replace(schedule="plateau"), 10)


def test_what_graphs_cannot_replay_is_refused_by_name(digits_672):
    data = TensorSet.from_digits(digits_672, CPU)
    with pytest.raises(DigitsError, match="cannot cycle SGD's momentum"):
        GraphedTrainer(create_model("softmax"), data, BASE.replace(optimizer="sgd"), capture=False)
    with pytest.raises(DigitsError, match="fp16 with CUDA graphs needs a fused optimizer"):
        GraphedTrainer(create_model("softmax"), data, BASE.replace(precision="fp16"), capture=False)
    with pytest.raises(DigitsError, match="need a CUDA device"):
        GraphedTrainer(create_model("softmax"), data, BASE)
    with pytest.raises(DigitsError, match="at least one full batch of 1024"):
        GraphedTrainer(create_model("softmax"), data, BASE.replace(batch_size=1024), capture=False)
    assert np.isfinite(GraphedTrainer(create_model("softmax"), data, BASE, capture=False).run_epoch(
        torch.Generator().manual_seed(0))[0])
