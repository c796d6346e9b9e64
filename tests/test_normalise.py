"""The one input normalisation (digits.data.normalise) and the generic augmentation: what a
shifted, shrunk, brightened or spattered digit becomes, and that a run records and applies it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import FIXTURES

from digits.data.dataset import DigitSet
from digits.data.kaggle import load_kaggle_csv
from digits.data.normalise import mnist_form, normalise, readings
from digits.errors import DigitsError
from digits.train.augment import augment_batch
from digits.train.config import TrainConfig


@pytest.fixture(scope="module")
def digits28() -> np.ndarray:
    return load_kaggle_csv(FIXTURES / "test.csv", kind="test").images[:200]


def _correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    a, b = a - a.mean(1, keepdims=True), b - b.mean(1, keepdims=True)
    return (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))


def _shifted(images: np.ndarray, rows: int, cols: int) -> np.ndarray:
    out = np.zeros_like(images)
    src = images[:, max(0, -rows):28 - max(0, rows), max(0, -cols):28 - max(0, cols)]
    out[:, max(0, rows):max(0, rows) + src.shape[1], max(0, cols):max(0, cols) + src.shape[2]] = src
    return out


def _shrunk(images: np.ndarray, factor: int = 2) -> np.ndarray:
    # Block means: the digit at half its size, in the middle of an empty field.
    small = images.reshape(len(images), 28 // factor, factor, 28 // factor, factor).mean(axis=(2, 4))
    out = np.zeros(images.shape, np.float32)
    start = (28 - small.shape[1]) // 2
    out[:, start:start + small.shape[1], start:start + small.shape[2]] = small
    return np.rint(out).astype(np.uint8)


CHANGES = {"shifted": lambda x: _shifted(x, 3, -4),
           "shrunk": _shrunk,
           "brightened": lambda x: np.clip(x.astype(int) + 110, 0, 255).astype(np.uint8),
           "dimmed on grey": lambda x: (x * 0.4 + 80).astype(np.uint8)}


def test_clean_mnist_rows_barely_change(digits28):
    normalised = normalise(digits28)
    assert normalised.dtype == np.uint8 and normalised.shape == digits28.shape
    unchanged = np.abs(normalised.astype(int) - digits28.astype(int)).max(axis=(1, 2)) <= 2
    assert unchanged.mean() >= 0.95  # the rest moved by one pixel: a centre of mass on a half


@pytest.mark.parametrize("change", ["shifted", "shrunk", "brightened", "dimmed on grey"])
def test_a_changed_digit_normalises_to_nearly_the_clean_one(digits28, change):
    clean = normalise(digits28)
    changed = CHANGES[change](digits28)
    normalised = normalise(changed)
    assert np.median(_correlation(normalised, clean)) > 0.85  # a digit shrunk to half its size lost detail
    # Nearer to the clean digit, pixel for pixel, than the changed one was.
    assert np.abs(normalised.astype(int) - clean).mean() < np.abs(changed.astype(int) - clean).mean() / 2


def test_noise_pixels_and_a_dotted_line_do_not_stretch_the_box(digits28):
    specks = digits28.copy()
    specks[:, 0, 0] = specks[:, 27, 27] = specks[:, 1, 26] = 255  # far corners: would stretch a plain box
    dotted = digits28.copy()
    dotted[:, 26, ::4] = 255  # single dots across the bottom row
    clean = normalise(digits28)
    for noisy in (specks, dotted):
        assert np.median(_correlation(normalise(noisy), clean)) > 0.95


@pytest.mark.parametrize("change", ["brightened", "dimmed on grey"])
def test_ink_normalisation_takes_away_light_and_paper_and_moves_nothing(digits28, change):
    changed = CHANGES[change](digits28)
    inked = normalise(changed, "ink")
    assert np.median(_correlation(inked, digits28)) > 0.95
    assert np.abs(inked.astype(int) - digits28).mean() < np.abs(changed.astype(int) - digits28).mean() / 4
    # A shifted digit stays where it was put; a clean one stays as it was.
    moved = _shifted(digits28, 3, -4)
    assert np.median(_correlation(normalise(moved, "ink"), moved)) > 0.99
    assert (np.abs(normalise(digits28, "ink").astype(int) - digits28).max(axis=(1, 2)) <= 2).mean() >= 0.95


def test_a_model_under_mnist_normalisation_reads_each_digit_in_mnist_form_and_as_it_stands(digits28):
    # A line drawn through a digit widens its ink box: MNIST's form shrinks the digit, the
    # second form keeps it where and as large as it was written.
    crossed = digits28.copy()
    crossed[:, 3:5, 1:27] = 255
    forms = readings(crossed, "mnist")
    assert forms.shape == (len(digits28), 2, 28, 28) and forms.dtype == np.uint8
    assert np.array_equal(forms[:, 0], normalise(crossed, "mnist"))
    assert np.array_equal(forms[:, 1], normalise(crossed, "ink"))
    below = (slice(None), slice(6, None))  # the digit's own rows, under the line
    assert np.median(_correlation(forms[:, 1][below], digits28[below])) > 0.95
    assert np.median(_correlation(forms[:, 0][below], digits28[below])) < 0.9
    assert readings(digits28, "none").shape == (len(digits28), 1, 28, 28)


def test_blank_rows_are_kept_as_they_are_and_not_found():
    blank = np.zeros((2, 28, 28), np.uint8)
    blank[1] = 30  # an even grey field: no ink
    result = mnist_form(blank)
    assert not result.found.any() and not result.images.any()
    assert np.array_equal(normalise(blank), blank)


def test_larger_pictures_and_batches_go_through_the_same_steps(digits28):
    big = digits28[:4].repeat(3, axis=1).repeat(3, axis=2)  # 84x84: the same digits, three times the size
    assert _correlation(mnist_form(big).images, normalise(digits28[:4])).min() > 0.9
    one_by_one = np.stack([normalise(d[None])[0] for d in digits28[:20]])
    assert np.array_equal(one_by_one, normalise(digits28[:20]))


def test_an_unknown_normalisation_is_a_one_line_error():
    with pytest.raises(DigitsError) as caught:
        TrainConfig.from_dict({"normalise": "mnsit"}, "preset.toml: [train]")
    assert "\n" not in str(caught.value)
    assert "normalise must be one of none, mnist, ink, got 'mnsit'" in str(caught.value)
    with pytest.raises(DigitsError, match="unknown augmentation strok; known: rotation"):
        TrainConfig(augment={"strok": 0.5})


@pytest.mark.parametrize("setting", [{"stroke": 1.0}, {"blur": 1.5}, {"contrast": 0.5}, {"noise": 0.2},
                                     {"erase": 1.0}, {"erasing": 1.0},
                                     {"rotation": 10.0, "stroke": 0.5, "noise": 0.1}])
def test_augmentation_changes_pixels_but_keeps_shape_dtype_and_range(digits28, setting):
    x = torch.from_numpy(digits28[:64])
    torch.manual_seed(0)
    y = augment_batch(x, **setting)
    assert y.shape == (64, 1, 28, 28) and y.dtype == torch.float32
    assert 0 <= float(y.min()) and float(y.max()) <= 255
    assert float((y[:, 0] - x.float()).abs().mean()) > 1.0


def test_random_erasing_fills_one_rectangle_of_2_to_40_percent_of_the_image_with_noise():
    torch.manual_seed(0)
    y = augment_batch(torch.zeros(2000, 28, 28), erasing=1.0)[:, 0]
    filled = y > 0
    share = filled.float().mean(dim=(1, 2))
    assert 0.005 < float(share.min()) and float(share.max()) < 0.5 and 0.18 < float(share.mean()) < 0.24  # whole pixels
    rows, cols = filled.any(dim=2), filled.any(dim=1)  # one rectangle: its box is all it fills
    box = rows.sum(1) * cols.sum(1)
    assert float((filled.sum(dim=(1, 2)) / box).min()) > 0.98  # noise of 0 is rare, not a hole


def test_photometric_changes_reach_only_their_share_of_the_images(digits28):
    x = torch.from_numpy(digits28[:200])
    torch.manual_seed(0)
    y = augment_batch(x, noise=0.2, blur=1.0, photometric=0.5)[:, 0]
    untouched = (y == x.float()).all(dim=2).all(dim=1)
    assert 0.35 < float(untouched.float().mean()) < 0.65  # the rest are seen as written
    torch.manual_seed(0)
    assert not (augment_batch(x, noise=0.2, blur=1.0)[:, 0] == x.float()).all(dim=2).all(dim=1).any()
    with pytest.raises(DigitsError, match=r"augment photometric is the share .* expected a number in \[0, 1\], got 1.5"):
        TrainConfig(augment={"noise": 0.2, "photometric": 1.5})


def test_training_with_normalisation_records_it_and_predict_applies_it(tmp_path):
    import digits
    from digits.predict.predictor import Predictor

    train = load_kaggle_csv(FIXTURES / "train.csv", kind="train")
    config = digits.TrainConfig(model="mlp", model_args={"hidden": [64]}, epochs=2, batch_size=64,
                                optimizer="adam", lr=1e-3, val_split=0.1, device="cpu", normalise="mnist")
    digits.run_training(config, DigitSet(train.images[:600], train.labels[:600], "fixture"), tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["train"]["normalise"] == "mnist"
    predictor = Predictor.open(tmp_path)
    assert [m.normalise for m in predictor.members] == ["mnist"]
    images = load_kaggle_csv(FIXTURES / "test.csv", kind="test").images[:50]
    shifted = _shifted(images, 2, 3)
    # It reads a shifted digit in MNIST's form and as it stands (light and contrast taken away),
    # and averages the two readings.
    plain = Predictor.from_model(predictor.models[0], "mlp")
    both = (plain.predict_proba(normalise(shifted, "mnist")) + plain.predict_proba(normalise(shifted, "ink"))) / 2
    assert np.allclose(predictor.predict_proba(shifted), both, atol=1e-6)
