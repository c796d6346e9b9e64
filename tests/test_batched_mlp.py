"""The batched trainer must give each model exactly what ordinary training gives it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from digits.data.kaggle import load_kaggle_csv
from digits.models.registry import create_model
from digits.train.optim import build_optimizer
from digits.tune.batched_mlp import MlpStack, Stream, rmsprop_update, train_stack

FIXTURE = "tests/fixtures/train.csv"


def _models(widths: list[int], groups: int, seed: int = 0) -> list[list[torch.nn.Module]]:
    torch.manual_seed(seed)
    return [[create_model("tutorial-mlp", hidden=w) for w in widths] for _ in range(groups)]


def test_packing_then_unpacking_returns_the_same_models() -> None:
    models = _models([3, 5], groups=2)
    stack = MlpStack.from_models(models, lrs=[1e-3, 2e-3])
    pixels = torch.randint(0, 256, (7, 28, 28), dtype=torch.uint8)
    for g in range(2):
        for m in range(2):
            torch.testing.assert_close(stack.to_model(g, m)(pixels), models[g][m](pixels))


@pytest.mark.parametrize("aliased", [False, True])
def test_fused_rmsprop_update_equals_torch_rmsprop_with_keras_settings(aliased: bool) -> None:
    torch.manual_seed(1)
    p = torch.randn(30, 20)
    reference = p.clone().requires_grad_(True)
    opt = build_optimizer("rmsprop", [reference], lr=0.003)
    params, v, scratch = [p.clone()], [torch.zeros_like(p)], [torch.zeros_like(p)]
    for _ in range(5):
        g = torch.randn(30, 20)
        reference.grad = g.clone()
        opt.step()
        rmsprop_update(params, [g], [g] if aliased else scratch, v, lr=0.003)
    torch.testing.assert_close(params[0], reference.detach(), rtol=1e-5, atol=1e-6)


def test_stacked_training_matches_ordinary_training_of_each_model() -> None:
    data = load_kaggle_csv(FIXTURE, kind="train")
    images = torch.from_numpy(data.images[:300])
    labels = torch.from_numpy(data.labels[:300])
    widths, lrs = [4, 16, 8], [0.001, 0.003]
    models = _models(widths, groups=2)
    stack = MlpStack.from_models(models, lrs)
    # two streams of different sizes, so one batch is short and the padding is exercised
    streams = [Stream(torch.arange(0, 150)), Stream(torch.arange(150, 290))]
    batch, epochs = 32, 2
    train_stack(stack, images, labels, streams, group_stream=[0, 1], epochs=epochs, batch_size=batch, seed=5)

    for g, lr in enumerate(lrs):
        gen = torch.Generator().manual_seed(5 * 1000 + g)  # the stream's shuffling generator
        orders = [streams[g].train[torch.randperm(len(streams[g].train), generator=gen)] for _ in range(epochs)]
        for m in range(len(widths)):
            model = models[g][m]
            opt = build_optimizer("rmsprop", model.parameters(), lr)
            for order in orders:
                for start in range(0, len(order), batch):
                    idx = order[start:start + batch]
                    loss = F.cross_entropy(model(images[idx]), labels[idx])
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
            trained = stack.to_model(g, m)
            for ours, theirs in zip(trained.parameters(), model.parameters()):
                diff = (ours - theirs).abs()
                # RMSprop divides by sqrt(v): a weight whose gradients are all ~1e-9 moves by
                # ~lr per step, so float rounding there shows up as a rare difference ~lr/100.
                assert diff.max() < 0.02 * lr, (g, m, diff.max())
                assert (diff > 1e-6).float().mean() < 1e-3, (g, m, (diff > 1e-6).float().mean())


def test_history_records_every_epoch_of_every_model_with_validation() -> None:
    data = load_kaggle_csv(FIXTURE, kind="train")
    images, labels = torch.from_numpy(data.images), torch.from_numpy(data.labels)
    stack = MlpStack.from_models(_models([8, 16], groups=1), [0.002])
    streams = [Stream(torch.arange(0, 1500), torch.arange(1500, 2000))]
    histories = train_stack(stack, images, labels, streams, [0], epochs=3, batch_size=64)
    assert [len(h) for h in histories[0]] == [3, 3]
    for history in histories[0]:
        assert history.column("epoch") == [1.0, 2.0, 3.0]
        assert history.rows[-1]["loss"] < history.rows[0]["loss"]
        assert 0.5 < history.rows[-1]["val_accuracy"] <= 1.0


def test_bf16_first_layer_trains_as_well_as_fp32_and_reports_the_last_epoch_in_fp32() -> None:
    data = load_kaggle_csv(FIXTURE, kind="train")
    images, labels = torch.from_numpy(data.images), torch.from_numpy(data.labels)
    streams = [Stream(torch.arange(0, 1500), torch.arange(1500, 2000))]
    trained = {}
    for precision in ("fp32", "bf16"):
        stack = MlpStack.from_models(_models([16, 64], groups=1), [0.002], precision)
        trained[precision] = (stack, train_stack(stack, images, labels, streams, [0], epochs=3, batch_size=64))
    (fp32, hist32), (bf16, hist16) = trained["fp32"], trained["bf16"]
    assert not torch.equal(fp32.w1, bf16.w1)  # the bf16 matmuls really ran
    for m in range(2):
        assert abs(hist16[0][m].rows[-1]["val_accuracy"] - hist32[0][m].rows[-1]["val_accuracy"]) < 0.02
    # the last epoch's validation, the one a grid reports, is the fp32 model's own accuracy
    model = bf16.to_model(0, 1)
    with torch.no_grad():
        accuracy = (model(images[1500:2000]).argmax(1) == labels[1500:2000]).float().mean().item()
    assert hist16[0][1].rows[-1]["val_accuracy"] == pytest.approx(accuracy, abs=1e-6)
