"""Outlier exposure: the letters and scribbles a run may be shown as "no digit", and what
training on them does to a model's reading of letters from fonts it never saw."""

from __future__ import annotations

import string

import numpy as np
import pytest
import torch
from helpers import FIXTURES
from PIL import Image, ImageDraw, ImageFont

from digits.data import outliers
from digits.data.kaggle import load_kaggle_csv
from digits.data.normalise import mnist_form
from digits.errors import DigitsError
from digits.models.registry import create_model
from digits.predict.predictor import predict_proba
from digits.train.config import TrainConfig
from digits.train.engines import AutogradEngine
from digits.train.fit import choose_engine, fit, seed_everything


def test_outlier_pictures_are_letters_and_scribbles_in_mnist_form_made_once_then_read_from_the_cache(
        outlier_pictures_cached, monkeypatch):
    # outlier_pictures_cached: the session's first call drew them into an empty cache, which wrote
    # one file, copied into this test's cache; from there they are read, never drawn again.
    assert len(list(outlier_pictures_cached.glob("outliers-v*-seed0-*.npy"))) == 1
    for drawing in ("letter_pictures", "scribble_pictures"):
        monkeypatch.setattr(outliers, drawing, lambda *a, **k: pytest.fail("drawn again, not read from the cache"))
    pictures = outliers.outlier_pictures(seed=0)
    letters = len(outliers.fit_fonts()) * len(outliers.LETTERS) * 4
    assert pictures.dtype == np.uint8 and pictures.shape[1:] == (28, 28)
    assert letters < len(pictures) <= letters + 2000  # every letter, and the scribbles with ink enough
    assert (pictures.reshape(len(pictures), -1).max(1) == 255).all()  # each one light ink at full white
    monkeypatch.undo()
    assert not np.array_equal(outliers.scribble_pictures(50, seed=1), outliers.scribble_pictures(50, seed=2))


def test_letters_drawn_as_digits_are_never_shown_as_outliers():
    assert not set(outliers.DIGIT_SHAPED) & set(outliers.LETTERS) and set(outliers.DIGIT_SHAPED) == set("OoIlSsZz")
    assert len(outliers.LETTERS) == 52 - 8


def test_without_the_fonts_outlier_exposure_says_in_one_line_how_to_get_them(monkeypatch, tmp_path):
    monkeypatch.setattr(outliers, "FONT_FOLDERS", (str(tmp_path),))
    with pytest.raises(DigitsError) as raised:
        outliers.fit_fonts()
    assert "fonts-liberation" in str(raised.value) and "\n" not in str(raised.value)


def _letters_in(font_file: str) -> np.ndarray:
    """Every letter in one font the outliers never use, as the app's pictures come into MNIST's form."""
    canvases = []
    for char in string.ascii_letters:
        img = Image.new("L", (112, 112), 0)
        ImageDraw.Draw(img).text((56, 56), char, fill=255, anchor="mm", font=ImageFont.truetype(font_file, 70))
        canvases.append(np.asarray(img))
    return mnist_form(np.stack(canvases)).images


def test_a_model_trained_with_outlier_exposure_doubts_letters_of_fonts_it_never_saw(outlier_pictures_cached):
    train, val = load_kaggle_csv(FIXTURES / "train.csv").split_last(0.1)
    unseen = _letters_in(ImageFont.truetype("DejaVuSans.ttf", 10).path)
    config = TrainConfig(model="mlp", model_args={"hidden": [128]}, epochs=8, batch_size=32, optimizer="adam",
                         device="cpu", precision="fp32", seed=0)
    read = {}
    for weight in (0.0, 1.0):
        seed_everything(0)
        model = create_model("mlp", hidden=[128])
        trained_with = config.replace(outlier_exposure=weight)
        if weight:
            assert choose_engine([model], trained_with, torch.device("cpu")) == [AutogradEngine]
        fit(model, train, trained_with)
        read[weight] = (predict_proba(model, unseen).max(1).mean(),
                        np.mean(predict_proba(model, val.images).argmax(1) == val.labels))
    (plain_top, plain_accuracy), (doubting_top, doubting_accuracy) = read[0.0], read[1.0]
    assert doubting_top < plain_top - 0.2  # letters of another font: far less sure of any digit
    assert doubting_accuracy > plain_accuracy - 0.03  # and the digits read as well
