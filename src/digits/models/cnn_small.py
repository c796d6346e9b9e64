"""A small two-block CNN whose widths are arguments, for searching over architectures."""

from __future__ import annotations

from torch import nn

from digits.models.registry import register_model


def build_cnn_small(c1: int, c2: int, hidden: int, dropout: float) -> nn.Sequential:
    """conv 3x3 (1 -> c1) + ReLU + maxpool, conv 3x3 (c1 -> c2) + ReLU + maxpool,
    dense ``hidden`` + ReLU + dropout, dense 10 (logits)."""
    if min(c1, c2, hidden) < 1 or not 0.0 <= dropout < 1.0:
        raise ValueError(f"need positive widths and dropout in [0, 1), got c1={c1} c2={c2} "
                         f"hidden={hidden} dropout={dropout}")
    return nn.Sequential(
        nn.Conv2d(1, c1, 3), nn.ReLU(), nn.MaxPool2d(2),        # (N, c1, 13, 13)
        nn.Conv2d(c1, c2, 3), nn.ReLU(), nn.MaxPool2d(2),       # (N, c2, 5, 5)
        nn.Flatten(), nn.Linear(c2 * 25, hidden), nn.ReLU(), nn.Dropout(dropout),
        nn.Linear(hidden, 10),
    )


@register_model("cnn-small", description="Two conv blocks + dense: --model-arg c1=16 c2=32 hidden=128 dropout=0.25",
                target="~0.99 in a few epochs", mean=0.1307, std=0.3081)
def cnn_small(c1: int = 16, c2: int = 32, hidden: int = 128, dropout: float = 0.25) -> nn.Module:
    return build_cnn_small(int(c1), int(c2), int(hidden), float(dropout))
