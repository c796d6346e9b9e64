"""The model registry and the tutorial's network, exactly."""

from __future__ import annotations

import math

import pytest
import torch

from digits.errors import ModelError
from digits.models import count_parameters, create_model, list_models
from digits.models.registry import resolve_model_args


def test_tutorial_mlp_is_784_32_10_with_25450_parameters():
    model = create_model("tutorial-mlp")
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(784, 32), (32, 10)]
    assert count_parameters(model) == 25_450
    assert any(isinstance(m, torch.nn.ReLU) for m in model.modules())


def test_dense_layers_start_like_keras_glorot_uniform_and_zero_bias():
    torch.manual_seed(0)
    first = [m for m in create_model("tutorial-mlp").modules() if isinstance(m, torch.nn.Linear)][0]
    limit = math.sqrt(6 / (784 + 32))
    assert first.weight.abs().max() <= limit
    assert first.weight.abs().max() > 0.95 * limit  # uniform over the whole range, not a narrower init
    assert torch.count_nonzero(first.bias) == 0


def test_model_takes_raw_pixels_and_scales_them_to_unit_range():
    model = create_model("softmax")
    pixels = torch.full((2, 28, 28), 255, dtype=torch.uint8)
    with torch.no_grad():
        linear = model.net[1]
        expected = linear(torch.ones(2, 784))
        assert torch.allclose(model(pixels), expected, atol=1e-5)


@pytest.mark.parametrize("info", list_models(), ids=lambda i: i.name)
def test_every_registered_model_runs_forward_and_backward(info):
    model = create_model(info.name)
    logits = model(torch.randint(0, 256, (4, 28, 28), dtype=torch.uint8))
    assert logits.shape == (4, 10)
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 3])).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_none_overrides_fall_back_to_defaults_and_others_apply():
    assert resolve_model_args("mlp", hidden=None) == {"hidden": [512, 256], "dropout": 0.0}
    assert count_parameters(create_model("mlp", hidden=[64])) == 784 * 64 + 64 + 64 * 10 + 10


def test_unknown_model_and_unknown_argument_are_user_errors():
    with pytest.raises(ModelError, match=r"unknown model 'resnet-9000' \(did you mean 'resnet'\?\); known models: "):
        create_model("resnet-9000")
    with pytest.raises(ModelError, match="takes no argument depth"):
        create_model("tutorial-mlp", depth=3)


def test_list_models_filters_by_pattern():
    assert [m.name for m in list_models("mlp*")] == ["mlp", "mlp-256"]


def test_models_command_lists_parameter_counts(cli):
    result = cli("models")
    assert result.code == 0
    assert "tutorial-mlp" in result.out and "25,450" in result.out
