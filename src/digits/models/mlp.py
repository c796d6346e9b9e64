"""Fully connected models: softmax regression and multi-layer perceptrons.

Dense layers are initialised as Keras does (Glorot-uniform, zero bias), so the
tutorial's network starts where the 2017 Keras model started.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from digits.models.layers import keras_dense_init
from digits.models.registry import register_model


def build_mlp(hidden: Sequence[int], dropout: float = 0.0) -> nn.Sequential:
    """784 -> hidden[0] -> ... -> 10, ReLU between layers; logits out (softmax is in the loss)."""
    if any(int(h) < 1 for h in hidden):
        raise ValueError(f"hidden layer widths must be positive, got {list(hidden)}")
    layers: list[nn.Module] = [nn.Flatten()]
    width = 784
    for units in hidden:
        layers += [nn.Linear(width, int(units)), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = int(units)
    layers.append(nn.Linear(width, 10))
    net = nn.Sequential(*layers)
    net.apply(keras_dense_init)
    return net


@register_model("tutorial-mlp", description="The 2017 tutorial: Dense 32 + ReLU, Dense 10 + softmax",
                target="~0.96 on Kaggle (the tutorial scored 0.96257)")
def tutorial_mlp(hidden: int = 32) -> nn.Module:
    return build_mlp([hidden])


@register_model("mlp-256", description="The grid search's best: Dense 256 + ReLU, Dense 10",
                target="~0.975 (the notebook's 3-fold CV best)")
def mlp_256(hidden: int = 256) -> nn.Module:
    return build_mlp([hidden])


@register_model("mlp", description="MLP of any width and depth: --model-arg hidden=[512,256]",
                target="~0.98 with two hidden layers")
def mlp(hidden: Sequence[int] = (512, 256), dropout: float = 0.0) -> nn.Module:
    return build_mlp(hidden, dropout)


@register_model("softmax", description="Softmax regression: one Dense 10 layer on the pixels",
                target="~0.92")
def softmax() -> nn.Module:
    return build_mlp([])
