"""Convolutional models, from LeNet-5 to a small residual network.

Each builder reads as one declarative list of layers and states its target accuracy on
the standard MNIST test set (what it reaches with the presets that use it).
"""

from __future__ import annotations

from torch import nn

from digits.models.registry import register_model

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


def keras_bn(channels: int, dims: int = 2) -> nn.Module:
    """Batch norm with Keras' defaults: running averages with momentum 0.99 (PyTorch's 0.01), eps 1e-3."""
    cls = nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
    return cls(channels, eps=1e-3, momentum=0.01)


def conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1, padding: int | str = 0) -> list[nn.Module]:
    """Conv -> ReLU -> BatchNorm, the order of the Kaggle CNN design (bias is kept, as in Keras)."""
    return [nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding), nn.ReLU(inplace=True),
            keras_bn(c_out)]


def keras_init(module: nn.Module) -> None:
    """Keras' defaults for Conv2D and Dense: Glorot-uniform weights, zero biases."""
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.xavier_uniform_(module.weight)
        nn.init.zeros_(module.bias)


@register_model("lenet5", description="LeNet-5 (LeCun 1998) with ReLU and max-pooling",
                target="~99.0%", mean=MNIST_MEAN, std=MNIST_STD)
def lenet5() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),   # (6, 14, 14)
        nn.Conv2d(6, 16, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),             # (16, 5, 5)
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), nn.ReLU(inplace=True),
        nn.Linear(120, 84), nn.ReLU(inplace=True),
        nn.Linear(84, 10),
    )


@register_model("keras-convnet", description="Keras' 'simple MNIST convnet' example (34,826 parameters)",
                target="~99.1% (the example states ~99%)")
def keras_convnet(dropout: float = 0.5) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(inplace=True), nn.MaxPool2d(2),             # (32, 13, 13)
        nn.Conv2d(32, 64, 3), nn.ReLU(inplace=True), nn.MaxPool2d(2),            # (64, 5, 5)
        nn.Flatten(), nn.Dropout(dropout),
        nn.Linear(64 * 5 * 5, 10),
    )


@register_model("pytorch-example", description="The network of pytorch/examples mnist/main.py",
                target="~99.2%", mean=MNIST_MEAN, std=MNIST_STD)
def pytorch_example() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(inplace=True),                               # (32, 26, 26)
        nn.Conv2d(32, 64, 3), nn.ReLU(inplace=True), nn.MaxPool2d(2),            # (64, 12, 12)
        nn.Dropout(0.25), nn.Flatten(),
        nn.Linear(9216, 128), nn.ReLU(inplace=True), nn.Dropout(0.5),
        nn.Linear(128, 10),
    )


@register_model("kaggle-cnn",
                description="'How to choose a CNN for MNIST': [32C3-32C3-32C5S2]-[64C3-64C3-64C5S2]-128-10, "
                            "batch norm, dropout 0.4",
                target="~99.7% single, 0.9975 as an ensemble of 15", mean=MNIST_MEAN, std=MNIST_STD)
def kaggle_cnn(dropout: float = 0.4, width: int = 32, downsample: str = "conv") -> nn.Module:
    """``width``: channels of the first block (the second has twice as many); ``downsample``:
    "conv" (the design's 5x5 stride-2 convolution) or "pool" (2x2 max-pooling in its place, the
    variant the design's author compared it with: a third less work, for CPUs without fast bf16)."""
    if int(width) < 1 or downsample not in ("conv", "pool"):
        raise ValueError(f"need width >= 1 and downsample 'conv' or 'pool', got width={width} "
                         f"downsample={downsample!r}")
    a, b = int(width), 2 * int(width)

    def down(channels: int) -> list[nn.Module]:
        if downsample == "pool":
            return [nn.MaxPool2d(2)]
        return conv_bn(channels, channels, 5, stride=2, padding=2)

    # Built as the Keras original was: its initialisation and batch-norm defaults.
    net = nn.Sequential(
        *conv_bn(1, a, 3), *conv_bn(a, a, 3),                                    # (a, 24, 24)
        *down(a), nn.Dropout(dropout),                                           # (a, 12, 12)
        *conv_bn(a, b, 3), *conv_bn(b, b, 3),                                    # (b, 8, 8)
        *down(b), nn.Dropout(dropout),                                           # (b, 4, 4)
        nn.Flatten(),
        nn.Linear(b * 4 * 4, 128), nn.ReLU(inplace=True), keras_bn(128, dims=1), nn.Dropout(dropout),
        nn.Linear(128, 10),
    )
    net.apply(keras_init)
    return net


@register_model("fast-cnn", description="The 99%-in-one-epoch design: Conv24 5x5, Conv32 3x3, FC 256",
                target="~99.0% after one epoch", mean=MNIST_MEAN, std=MNIST_STD)
def fast_cnn(c1: int = 24, c2: int = 32, hidden: int = 256) -> nn.Module:
    # Pooling before ReLU: the same function and gradients (max commutes with a monotone
    # function), with ReLU and its backward on a quarter of the values.
    return nn.Sequential(
        nn.Conv2d(1, c1, 5), nn.MaxPool2d(2), nn.ReLU(inplace=True),             # (c1, 12, 12)
        nn.Conv2d(c1, c2, 3), nn.MaxPool2d(2), nn.ReLU(inplace=True),            # (c2, 5, 5)
        nn.Flatten(),
        nn.Linear(c2 * 5 * 5, hidden), nn.ReLU(inplace=True),
        nn.Linear(hidden, 10),
    )


@register_model("fast-cnn-s2", description="fast-cnn with its first convolution at stride 2 in place of "
                "convolution + 2x2 max-pool: a quarter of the first layer's work, no pooling there",
                target="~99.1-99.2% after one epoch with label smoothing (the `fast` preset)",
                mean=MNIST_MEAN, std=MNIST_STD)
def fast_cnn_s2(c1: int = 24, c2: int = 32, hidden: int = 256, conv_bias: bool = True) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, c1, 5, stride=2, bias=conv_bias), nn.ReLU(inplace=True),     # (c1, 12, 12)
        nn.Conv2d(c1, c2, 3, bias=conv_bias), nn.MaxPool2d(2), nn.ReLU(inplace=True),  # (c2, 5, 5)
        nn.Flatten(),
        nn.Linear(c2 * 5 * 5, hidden), nn.ReLU(inplace=True),
        nn.Linear(hidden, 10),
    )


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and an identity (or 1x1) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
        )
        self.shortcut = (nn.Identity() if stride == 1 and c_in == c_out else nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.act(self.body(x) + self.shortcut(x))


@register_model("resnet", description="A small residual CNN: 3 stages (32-64-128), 2 blocks each, GAP",
                target="~99.7% single model with augmentation", mean=MNIST_MEAN, std=MNIST_STD)
def resnet(width: int = 32, dropout: float = 0.2) -> nn.Module:
    w = width
    return nn.Sequential(
        nn.Conv2d(1, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),  # (w, 28, 28)
        ResidualBlock(w, w), ResidualBlock(w, w),
        ResidualBlock(w, 2 * w, stride=2), ResidualBlock(2 * w, 2 * w),                      # (2w, 14, 14)
        ResidualBlock(2 * w, 4 * w, stride=2), ResidualBlock(4 * w, 4 * w),                  # (4w, 7, 7)
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
        nn.Linear(4 * w, 10),
    )
