"""Pictures of data and training: grids of digits, learning curves, the confusion matrix,
per-class precision and recall, the reliability diagram.

``*_figure`` functions build a figure; ``png_bytes`` renders one in memory (a report writes
its files only once every picture is ready) and ``plot_*`` save one to a file.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from digits.atomic import atomic_path  # noqa: E402
from digits.train.history import History  # noqa: E402

if TYPE_CHECKING:  # train/run.py draws its curves with this module: it must not pull in predict
    from digits.predict.calibration import ReliabilityBin


def _save(fig: plt.Figure, path: str | os.PathLike[str]) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def png_bytes(fig: plt.Figure) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return out.getvalue()


def plot_digit_grid(images: np.ndarray, labels: np.ndarray | None, path: str | os.PathLike[str],
                    columns: int = 10, title: str | None = None) -> Path:
    """Save a grid of digits with their labels above them as a PNG."""
    captions = [str(int(label)) for label in labels] if labels is not None else [""] * len(images)
    return _save(gallery_figure(images, captions, columns=columns, title=title), path)


def plot_learning_curves(history: History, path: str | os.PathLike[str], title: str | None = None) -> Path:
    """Save loss and accuracy against epochs, train vs validation, side by side."""
    return _save(learning_curves_figure([("", history, None)], title=title), path)


def draw_learning_curves(run_dir: str | os.PathLike[str]) -> list[Path]:
    """``curves.png`` beside each ``history.csv`` of a run directory (its model's, or each ensemble
    member's) that is newer than its picture; the paths drawn. Training writes the history, this
    layer draws it: the train layer draws nothing."""
    import json

    from digits.train.history import History

    run_dir = Path(run_dir)
    histories = ([run_dir / "history.csv"] if (run_dir / "history.csv").is_file()
                 else sorted((run_dir / "members").glob("*/history.csv")))
    drawn = []
    for history in histories:
        picture = history.parent / "curves.png"
        if picture.is_file() and picture.stat().st_mtime >= history.stat().st_mtime:
            continue
        try:
            title = json.loads((history.parent / "config.json").read_text())["train"]["model"]
        except (OSError, ValueError, KeyError, TypeError):
            title = None
        drawn.append(plot_learning_curves(History.load(history), picture, title=title))
    return drawn


def learning_curves_figure(curves: Sequence[tuple[str, History, int | None]], mark_label: str = "",
                           title: str | None = None) -> plt.Figure:
    """Loss and accuracy against epochs, train vs validation, for one history or several
    (an ensemble's members, one colour each); a marked epoch is a dotted line (one history)
    or a star on the validation curve (several)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    single = len(curves) == 1
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for i, (label, history, marked) in enumerate(curves):
            epochs, val = history.column("epoch"), history.column(f"val_{metric}")
            has_val = not all(math.isnan(v) for v in val)
            name = f"{label} " if label and not single else ""
            train_style = dict(marker="o", ms=3) if single else dict(ls="--", lw=1, color=f"C{i}")
            ax.plot(epochs, history.column(metric), label=f"{name}train", **train_style)
            if has_val:
                val_style = dict(marker="s", ms=3) if single else dict(lw=1.5, color=f"C{i}")
                ax.plot(epochs, val, label=f"{name}validation", **val_style)
            if marked is not None and single:
                ax.axvline(marked, color="0.4", ls=":", label=f"epoch {marked}: {mark_label}")
            elif marked is not None and has_val:
                ax.plot([marked], [val[marked - 1]], "*", ms=11, color=f"C{i}", mec="k", mew=0.5)
        ax.set(xlabel="epoch", ylabel=metric, title=metric)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if not single and any(marked is not None for _, _, marked in curves):
        fig.text(0.5, -0.02, f"★ {mark_label}", ha="center", fontsize=9)
    if title:
        fig.suptitle(title)
    return fig


def compare_curves_figure(curves: Sequence[tuple[str, History]]) -> plt.Figure:
    """Validation accuracy and validation loss of several runs on shared axes."""
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(12, 4.5))
    for label, history in curves:
        epochs = history.column("epoch")
        ax_acc.plot(epochs, history.column("val_accuracy"), "o-", ms=3, label=label)
        ax_loss.plot(epochs, history.column("val_loss"), "o-", ms=3, label=label)
    for ax, name in ((ax_acc, "validation accuracy"), (ax_loss, "validation loss")):
        ax.set(xlabel="epoch", ylabel=name, title=name)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return fig


def confusion_figure(matrix: np.ndarray, title: str) -> plt.Figure:
    """Counts, true digit down, predicted across. Mistakes are shaded on their own scale
    (red), so that a handful of errors shows beside diagonals of thousands (green)."""
    classes = len(matrix)
    diagonal = np.eye(classes, dtype=bool)
    off = np.where(diagonal, 0, matrix)
    rgba = plt.get_cmap("Reds")(off / max(int(off.max()), 1) * 0.8)
    rgba[diagonal] = (0.80, 0.92, 0.80, 1.0)
    fig, ax = plt.subplots(figsize=(6.2, 5.6))
    ax.imshow(rgba)
    for (row, col), count in np.ndenumerate(matrix):
        if count or diagonal[row, col]:
            dark = not diagonal[row, col] and off[row, col] > 0.55 * off.max()
            ax.text(col, row, str(count), ha="center", va="center", fontsize=8,
                    color="white" if dark else "black")
    ax.set(xticks=range(classes), yticks=range(classes), xlabel="predicted digit", ylabel="true digit",
           title=title)
    return fig


def per_class_figure(precision: np.ndarray, recall: np.ndarray) -> plt.Figure:
    """Precision and recall of each digit as paired bars."""
    digits = np.arange(len(precision))
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.bar(digits - 0.2, np.nan_to_num(precision), 0.4, label="precision")
    ax.bar(digits + 0.2, np.nan_to_num(recall), 0.4, label="recall")
    low = np.nanmin(np.concatenate([precision, recall, [1.0]]))
    ax.set(xticks=digits, xlabel="digit", ylim=(max(0.0, low - 0.05), 1.0),
           title="per-class precision and recall")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return fig


def gallery_figure(images: np.ndarray, captions: Sequence[str], colors: Sequence[str] | None = None,
                   columns: int = 10, title: str | None = None) -> plt.Figure:
    """Digits with a caption above each, drawn as one mosaic image: one axes instead of one
    per digit, since matplotlib's drawing cost goes with the number of axes."""
    tile, gap, band = 28, 6, 16  # pixels: digit, space between digits, caption band above each
    rows = max(1, math.ceil(len(images) / columns))
    mosaic = np.zeros((rows * (tile + band), columns * (tile + gap)), np.uint8)
    fig = plt.figure(figsize=(mosaic.shape[1] * 0.028, mosaic.shape[0] * 0.028 + (0.3 if title else 0)))
    ax = fig.add_axes((0, 0, 1, 1 if not title else mosaic.shape[0] / (mosaic.shape[0] + 11)))
    for i, (image, caption) in enumerate(zip(images, captions)):
        top, left = (i // columns) * (tile + band) + band, (i % columns) * (tile + gap) + gap // 2
        mosaic[top:top + tile, left:left + tile] = image
        ax.text(left + tile / 2, top - 1.5, caption, ha="center", va="bottom", fontsize=8,
                color=colors[i] if colors else "black", linespacing=1.0)
    ax.imshow(mosaic, cmap="gray_r", vmin=0, vmax=255, interpolation="nearest")
    ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def reliability_figure(bins: Sequence[ReliabilityBin], ece: float, title: str) -> plt.Figure:
    """A reliability diagram: per confidence bin, the share answered right against the mean
    confidence (the diagonal is perfect calibration), with each bin's row count beneath.
    ``bins``: from :func:`digits.predict.calibration.reliability_bins`."""
    fig, (top, counts) = plt.subplots(2, 1, figsize=(5, 5.5), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 1]})
    full = [b for b in bins if b.count]
    centres = [(b.low + b.high) / 2 for b in bins]
    width = bins[0].high - bins[0].low if bins else 1.0
    top.bar([(b.low + b.high) / 2 for b in full], [b.accuracy for b in full], width=width * 0.9,
            color="#4c72b0", label="accuracy")
    top.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    top.plot([b.confidence for b in full], [b.accuracy for b in full], "o", color="#c0392b", ms=3,
             label="mean confidence")
    top.set(ylabel="share answered right", ylim=(0, 1), title=f"{title}: ECE {ece * 100:.2f}%")
    top.legend(loc="upper left", fontsize=8)
    counts.bar(centres, [b.count for b in bins], width=width * 0.9, color="#8c8c8c")
    counts.set(xlabel="calibrated confidence (top probability)", ylabel="rows", yscale="log", xlim=(0, 1))
    fig.tight_layout()
    return fig
