"""Pictures of data and training: a grid of digits, the two-panel learning curves."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from digits.atomic import atomic_path  # noqa: E402
from digits.train.history import History  # noqa: E402


def _save(fig: plt.Figure, path: str | os.PathLike[str]) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def plot_digit_grid(images: np.ndarray, labels: np.ndarray | None, path: str | os.PathLike[str],
                    columns: int = 10, title: str | None = None) -> Path:
    """Save a grid of digits with their labels above them as a PNG."""
    rows = int(np.ceil(len(images) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 0.9, rows * 1.05), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(images):
            ax.imshow(images[i], cmap="gray_r", vmin=0, vmax=255)
            if labels is not None:
                ax.set_title(str(int(labels[i])), fontsize=10)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_learning_curves(history: History, path: str | os.PathLike[str], title: str | None = None) -> Path:
    """Save loss and accuracy against epochs, train vs validation, side by side."""
    epochs = history.column("epoch")
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    for ax, metric, label in ((ax_loss, "loss", "loss"), (ax_acc, "accuracy", "accuracy")):
        ax.plot(epochs, history.column(metric), "o-", ms=3, label="train")
        val = history.column(f"val_{metric}")
        if not all(np.isnan(val)):
            ax.plot(epochs, val, "s-", ms=3, label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    ax_loss.set_title("loss")
    ax_acc.set_title("accuracy")
    if title:
        fig.suptitle(title)
    return _save(fig, path)
