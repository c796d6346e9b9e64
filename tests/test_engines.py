"""The step engines of the one training loop: each is held against the general engine on the
cases it claims, and the loop takes an engine only for what it claims.

The CUDA-graph engine is checked on the CPU with ``capture=False``: it runs exactly the steps
a graph would record (staged batches, the per-step rate tables, gradients set to None),
eagerly. Comparisons run on one thread, where the general engine's own matmuls round as the
fused ones do.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from helpers import FIXTURES

from digits.data.kaggle import load_kaggle_csv
from digits.data.tensors import TensorSet
from digits.errors import DigitsError
from digits.models.registry import create_model
from digits.runs import load_model, save_model
from digits.train import fit as loop
from digits.train.callbacks import Callback
from digits.train.config import TrainConfig
from digits.train.engines import AutogradEngine, evaluate_each
from digits.train.fast_mlp import FusedMlpEngine
from digits.train.fit import choose_engine, fit, fit_side_by_side, seed_everything
from digits.train.graphed import GraphedEngine
from digits.train.schedule import StepRates, build_schedule

CPU = torch.device("cpu")
MLP = TrainConfig(model="tutorial-mlp", epochs=2, batch_size=64, seed=3, device="cpu", precision="fp32")
# 21 batches of 32: one graph of 16 steps and a tail graph of 5 per epoch. In fp32 at a moderate
# rate on every machine: "auto" is bf16 where the CPU computes it natively (AMX, AVX512-BF16), and
# there, as with AVX-512's fp32 kernels at lr 0.01, two engines' roundings grow apart over 42 Adam
# steps until the losses differ by 2e-3; an engine's equivalence is only sharp without that.
CNN = TrainConfig(model="fast-cnn-s2", epochs=2, batch_size=32, optimizer="adam", lr=0.003, schedule="onecycle",
                  label_smoothing=0.1, val_split=0.0, seed=5, device="cpu", cuda_graphs=True, precision="fp32")


class EagerGraphs(GraphedEngine):
    """The CUDA-graph engine without capture, for any one model on the CPU: what a GPU would replay."""

    @staticmethod
    def supports(models, config, device):
        return len(models) == 1

    def __init__(self, models, data, config):
        super().__init__(models, data, config, capture=False)


@pytest.fixture(scope="module")
def split():
    # 1,800 training rows: 28 full batches and a last one of 8, so the short batch is covered.
    return load_kaggle_csv(FIXTURES / "train.csv").split_last(0.1)


@pytest.fixture(scope="module")
def digits_672():
    return load_kaggle_csv(FIXTURES / "train.csv").subset(slice(0, 672))


@contextmanager
def engines(*chosen):
    """The loop with only ``chosen`` engines to pick from, on one thread."""
    saved, threads = loop.ENGINES, torch.get_num_threads()
    loop.ENGINES = chosen
    torch.set_num_threads(1)
    try:
        yield
    finally:
        loop.ENGINES = saved
        torch.set_num_threads(threads)


def twins(config, count=2):
    """Identical freshly initialised models, as train_model() would build them."""
    seed_everything(config.seed)
    first = create_model(config.model, **config.model_args)
    others = [create_model(config.model, **config.model_args) for _ in range(count - 1)]
    for other in others:
        other.load_state_dict(first.state_dict())
    return [first, *others]


CASES = [
    (FusedMlpEngine, MLP),
    (FusedMlpEngine, MLP.replace(optimizer="adam", lr=3e-3, schedule="onecycle")),  # one-cycle moves beta1
    (FusedMlpEngine, MLP.replace(optimizer="sgd", lr=0.05, schedule="cosine")),
    (FusedMlpEngine, MLP.replace(optimizer="sgd", lr=0.05, optimizer_args={"momentum": 0.5, "nesterov": True})),
    (FusedMlpEngine, MLP.replace(model="mlp", model_args={"hidden": [48, 24]}, optimizer_args={"rho": 0.8, "eps": 1e-6},
                                 schedule="exponential", schedule_args={"gamma": 0.5})),
    (EagerGraphs, CNN),
    (EagerGraphs, CNN.replace(optimizer="sgd", lr=0.05, schedule="exponential", schedule_args={"gamma": 0.5})),
    (EagerGraphs, CNN.replace(optimizer="adamw", weight_decay=0.01, schedule="cosine")),
    # gpu-best's way: digits in MNIST's form, and outlier exposure's non-digits drawn a block at a
    # time and staged beside the rows. Not its augmentation: both engines draw the same augmented
    # batches, but on float pixels the two roundings grow apart by 0.5% within 20 Adam steps, too
    # far for a sharp check of the arithmetic.
    (EagerGraphs, CNN.replace(outlier_exposure=0.5, normalise="mnist")),
    # fp16 (pre-Ampere GPUs): the loss scaling held on the device, as GradScaler does it. On an
    # MLP: the scaling is the same for any model, and CPUs with AVX512-FP16 run fp16 convolutions'
    # backward 20x slower than fp32 (a whole CNN case took 21 s there, 4 s on AVX2).
    (EagerGraphs, CNN.replace(model="mlp", model_args={"hidden": [128]}, precision="fp16",
                              schedule_args={"cycle_momentum": False}, optimizer_args={"fused": True})),
]


@pytest.mark.parametrize("engine, config", CASES, ids=lambda c: c.__name__ if isinstance(c, type) else
                         f"{c.model}-{c.optimizer}-{c.schedule}-{c.precision}" + ("-oe" if c.outlier_exposure else ""))
def test_every_engine_trains_what_the_general_engine_trains_on_the_cases_it_claims(split, digits_672, engine, config,
                                                                                    request):
    if config.outlier_exposure:
        request.getfixturevalue("outlier_pictures_cached")
    train, val = (digits_672, None) if engine is EagerGraphs else split
    ours, reference = twins(config)
    with engines(engine, AutogradEngine):
        assert choose_engine([ours], config, CPU)[0] is engine
        history = fit(ours, train, config, val)
    with engines(AutogradEngine):
        expected = fit(reference, train, config, val)
    # fp16: GradScaler unscales inside the fused kernel, the graph just before it, so fp16 rounding
    # differs: the losses agree to 2e-3 over both epochs, single weights drift by a step or so of Adam.
    fp16 = config.precision == "fp16"
    for row, want in zip(history.rows, expected.rows):
        assert row["loss"] == pytest.approx(want["loss"], rel=2e-3 if fp16 else 1e-4)
        assert row["accuracy"] == pytest.approx(want["accuracy"], abs=2 / len(train))
        assert row["lr"] == pytest.approx(want["lr"], rel=1e-6, abs=1e-12)
        assert math.isnan(want["val_loss"]) or row["val_loss"] == pytest.approx(want["val_loss"], rel=1e-4)
    diff = max((a - b).abs().max().item() for a, b in zip(ours.state_dict().values(), reference.state_dict().values()))
    # Adam moves a weight by about lr wherever its gradients are tiny, so a rounding difference
    # in those gradients (a CNN's kernels on staged batches) shows as ~1e-4 at lr 0.01.
    assert diff < (0.1 if fp16 else 1e-3 if engine is EagerGraphs else 1e-4)


@pytest.mark.parametrize("engine", [FusedMlpEngine, AutogradEngine])
def test_models_side_by_side_train_as_each_alone(split, engine):
    train, val = split
    config = MLP.replace(epochs=2)
    seed_everything(0)
    together = [create_model("tutorial-mlp", hidden=h) for h in (8, 32, 16)]
    alone = [create_model("tutorial-mlp", hidden=h) for h in (8, 32, 16)]
    for a, b in zip(alone, together):
        a.load_state_dict(b.state_dict())
    with engines(engine, AutogradEngine):
        assert choose_engine(together, config, CPU)[0] is engine
        histories = fit_side_by_side(together, train, config, val)
    with engines(AutogradEngine):
        expected = [fit(model, train, config, val) for model in alone]
    for model, reference, history, want in zip(together, alone, histories, expected):
        assert history.column("loss") == pytest.approx(want.column("loss"), rel=1e-4)
        assert history.column("val_accuracy") == pytest.approx(want.column("val_accuracy"), abs=2e-3)
        for a, b in zip(model.parameters(), reference.parameters()):
            assert (a - b).abs().max() < 1e-4


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_fused_engine_scores_held_out_rows_as_each_model_scores_them_alone(split, precision):
    train, val = split
    held_out = TensorSet.from_digits(val, CPU)
    held_out.x[:5, 0, 0] = 255  # ink in a corner no training row has: its weights never moved, yet they count
    seed_everything(1)
    models = [create_model("tutorial-mlp", hidden=h) for h in (8, 32, 16)]
    config = MLP.replace(precision=precision)
    engine = FusedMlpEngine(models, TensorSet.from_digits(train, CPU), config)
    assert 0 not in engine.stack.pixels.tolist()
    expected = evaluate_each(models, held_out, precision)
    for (loss, accuracy), (want_loss, want_accuracy) in zip(engine.evaluate(held_out, batch_size=64), expected):
        assert loss == pytest.approx(want_loss, rel=1e-4 if precision == "fp32" else 2e-2)
        assert accuracy == pytest.approx(want_accuracy, abs=0 if precision == "fp32" else 3 / len(val))


def test_a_bf16_first_layer_trains_as_well_as_fp32(split):
    train, val = split
    runs = {}
    for precision in ("fp32", "bf16"):
        models = twins(MLP, 1) + [create_model("tutorial-mlp", hidden=16)]
        with engines(FusedMlpEngine, AutogradEngine):
            assert choose_engine(models, MLP.replace(precision=precision), CPU)[0] is FusedMlpEngine
            runs[precision] = (models, fit_side_by_side(models, train, MLP.replace(precision=precision, epochs=3), val))
    (fp32, hist32), (bf16, hist16) = runs["fp32"], runs["bf16"]
    assert not torch.equal(fp32[0].net[1].weight, bf16[0].net[1].weight)  # the bf16 matmuls really ran
    for a, b in zip(hist32, hist16):
        assert abs(a.rows[-1]["val_accuracy"] - b.rows[-1]["val_accuracy"]) < 0.03


@dataclass(frozen=True)
class ExtendedConfig(TrainConfig):
    """TrainConfig as a feature added later (mixup, say) might extend it."""

    mixup: float = 0.0


@pytest.mark.parametrize("model, config, device", [
    ("mlp-dropout", MLP, CPU),
    ("tutorial-mlp", MLP.replace(optimizer="adamw"), CPU),
    ("tutorial-mlp", MLP.replace(optimizer_args={"weight_decay": 1e-4}), CPU),
    ("tutorial-mlp", MLP.replace(optimizer="adam", optimizer_args={"amsgrad": True}), CPU),
    ("tutorial-mlp", MLP, torch.device("cuda")),
    ("tutorial-mlp", MLP.replace(schedule="onecycle"), CPU),  # RMSprop with a cycled momentum
    ("tutorial-mlp", MLP.replace(augment={"rotation": 10.0}), CPU),
    ("tutorial-mlp", MLP.replace(label_smoothing=0.1), CPU),
    ("tutorial-mlp", MLP.replace(weight_decay=1e-4), CPU),
    ("tutorial-mlp", MLP.replace(precision="fp16"), CPU),
    ("tutorial-mlp", MLP.replace(channels_last=True), CPU),
    ("tutorial-mlp", ExtendedConfig(precision="fp32"), CPU),  # a setting no engine claims yet
])
def test_what_the_fused_engine_does_not_claim_goes_to_the_general_engine(model, config, device):
    net = create_model("mlp", dropout=0.25) if model == "mlp-dropout" else create_model(model)
    assert choose_engine([net], config, device) == [AutogradEngine]


def test_the_tutorial_goes_to_the_fused_engine_and_cnns_with_graphs_on_cuda_to_the_graph_engine():
    assert choose_engine([create_model("tutorial-mlp")], MLP, CPU) == [FusedMlpEngine, AutogradEngine]
    tweaked = create_model("tutorial-mlp")
    tweaked.net[2] = torch.nn.Tanh()
    assert choose_engine([tweaked], MLP, CPU) == [AutogradEngine]
    cnn = [create_model("fast-cnn-s2")]
    assert choose_engine(cnn, CNN, torch.device("cuda")) == [GraphedEngine, AutogradEngine]
    # gpu-best trains with outlier exposure: its non-digits are staged into the graphs too.
    assert choose_engine(cnn, CNN.replace(outlier_exposure=0.5), torch.device("cuda"))[0] is GraphedEngine
    assert choose_engine(cnn, CNN, CPU) == [AutogradEngine]  # graphs only on CUDA


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


@pytest.mark.parametrize("engine", [FusedMlpEngine, AutogradEngine])
def test_callbacks_get_every_hook_the_progress_bar_reaches_the_last_step_and_can_stop(split, engine):
    train, _ = split
    recorder = Recorder()
    with engines(engine, AutogradEngine):
        history = fit(create_model("tutorial-mlp"), train, MLP.replace(epochs=3), None, [recorder])
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
    fit(model, train, MLP.replace(epochs=1))
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
def test_a_checkpointed_fused_run_resumes_to_the_uninterrupted_weights_and_the_general_engine_resumes_it_too(
        tmp_path, split, optimizer):
    train, val = split
    config = MLP.replace(epochs=3, optimizer=optimizer, lr=0.05 if optimizer == "sgd" else 1e-3, schedule="cosine")
    whole, interrupted, general = twins(config, 3)
    fit(whole, train, config, val, checkpoint_dir=tmp_path / "whole")
    with pytest.raises(KeyboardInterrupt):
        fit(interrupted, train, config, val, [Interrupt(3)], checkpoint_dir=tmp_path / "cut")
    (tmp_path / "copy").mkdir()
    for file in (tmp_path / "cut").iterdir():
        (tmp_path / "copy" / file.name).write_bytes(file.read_bytes())
    resumed = create_model("tutorial-mlp")
    history = fit(resumed, train, config, val, checkpoint_dir=tmp_path / "cut", resume=True)
    assert history.column("epoch") == [1, 2, 3]
    assert all(torch.equal(a, b) for a, b in zip(resumed.parameters(), whole.parameters()))
    with engines(AutogradEngine):  # the last epoch through autograd + torch.optim, from the same state
        fit(general, train, config, val, checkpoint_dir=tmp_path / "copy", resume=True)
    assert all((a - b).abs().max() < 1e-4 for a, b in zip(general.parameters(), whole.parameters()))


def test_step_rates_are_the_schedules_rates_step_by_step_and_survive_a_checkpoint():
    config = MLP.replace(epochs=3, schedule="exponential", schedule_args={"gamma": 0.5}, lr=1e-3)
    rates = StepRates(config, 2)
    seen = []
    for _ in range(3):
        seen += rates.next_epoch()[0]
        rates.end_epoch(0.0)
    assert seen == pytest.approx([1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4, 2.5e-4])
    one_cycle = StepRates(CNN.replace(epochs=2, lr=1e-3), 50)
    lrs, momenta = one_cycle.next_epoch()
    saved = one_cycle.state_dict()
    later = one_cycle.next_epoch()
    again = StepRates(CNN.replace(epochs=2, lr=1e-3), 50)
    again.load_state_dict(saved)
    assert again.next_epoch() == later
    lrs += later[0]
    assert max(lrs) == pytest.approx(1e-3) and lrs[-1] < 1e-6 and lrs[0] < 1e-4
    # one-cycle's default momentum cycle: 0.95 down to 0.85 while the rate rises, and back
    assert momenta[0] == pytest.approx(0.95) and min(momenta) == pytest.approx(0.85, abs=1e-3)
    # what a torch scheduler sets on a real optimizer, step by step
    optimizer = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=1e-3)
    real = build_schedule("onecycle", optimizer, 2, 50)
    for lr, momentum in zip(lrs[:50], momenta):
        assert (optimizer.param_groups[0]["lr"], optimizer.param_groups[0]["betas"][0]) == (lr, momentum)
        optimizer.step()
        real.after_step()


def test_plateau_works_with_cuda_graphs_now_that_rates_come_an_epoch_at_a_time(digits_672):
    config = CNN.replace(model="softmax", schedule="plateau", epochs=6, lr=5.0, optimizer="sgd",
                         schedule_args={"patience": 0, "factor": 0.5}, val_split=0.25, label_smoothing=0.0)
    train, val = digits_672.split_last(0.25)
    with engines(EagerGraphs, AutogradEngine):
        history = fit(create_model("softmax"), train, config, val)
    assert len(set(history.column("lr"))) > 1


def test_compiled_forward_and_loss_compute_the_same_graphed_steps(digits_672):
    # compile=true compiles the forward pass and the loss as one function (about 10 s here).
    config = CNN.replace(epochs=1)
    runs = []
    for compile in (False, True):
        model = twins(config, 1)[0]
        with engines(EagerGraphs):
            history = fit(model, digits_672, config.replace(compile=compile))
        runs.append((history.rows[0]["loss"], model.state_dict()))
    (plain, plain_weights), (compiled, compiled_weights) = runs
    assert compiled == pytest.approx(plain, rel=1e-5)
    assert max((plain_weights[k] - compiled_weights[k]).abs().max().item() for k in plain_weights) < 1e-3


def test_a_reset_graph_engine_repeats_its_run(digits_672):
    model = create_model("fast-cnn-s2")
    start = {k: v.clone() for k, v in model.state_dict().items()}
    engine = GraphedEngine([model], TensorSet.from_digits(digits_672, CPU), CNN, capture=False)
    runs = []
    for _ in range(2):
        engine.reset(start)
        rates, generator = StepRates(CNN, engine.steps), torch.Generator().manual_seed(1)
        runs.append([engine.run_epoch(torch.randperm(672, generator=generator), rates.next_epoch(), lambda _: None)
                     for _ in range(CNN.epochs)])
    assert runs[0] == runs[1]


def test_what_graphs_cannot_replay_is_refused_by_name(digits_672):
    data = TensorSet.from_digits(digits_672, CPU)
    softmax = [create_model("softmax")]
    with pytest.raises(DigitsError, match="cannot cycle SGD's momentum"):
        GraphedEngine(softmax, data, CNN.replace(optimizer="sgd"), capture=False)
    with pytest.raises(DigitsError, match="fp16 with CUDA graphs needs a fused optimizer"):
        GraphedEngine(softmax, data, CNN.replace(precision="fp16"), capture=False)
    with pytest.raises(DigitsError, match="need a CUDA device"):
        GraphedEngine(softmax, data, CNN)
    with pytest.raises(DigitsError, match="at least one full batch of 1024"):
        GraphedEngine(softmax, data, CNN.replace(batch_size=1024), capture=False)
    engine = GraphedEngine(softmax, data, CNN, capture=False)
    assert np.isfinite(engine.run_epoch(torch.arange(672), StepRates(CNN, engine.steps).next_epoch(),
                                        lambda _: None)[0][0])
