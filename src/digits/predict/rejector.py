"""The not-a-digit network: a small MLP that scores how unlike a handwritten digit a 28x28
model input is (a logit: above a threshold, "not a digit").

A digit classifier trained on MNIST alone reads a letter or a scribble as some digit, often
with full confidence; its probabilities cannot say "none of these". This network is fitted
once, apart from any run, on handwritten digits (positives) against generated non-digits
(negatives), and shipped as ``notdigit.safetensors``; each run then picks its own threshold
on its validation rows (:mod:`digits.predict.verdict`).

The negatives come from generators *different* from the ones ``benchmarks/nondigits.py``
tests with, so the benchmark measures what the network learned, not what it memorised:

- fitted on: letters in the Liberation fonts (rotated, sized and thickened at random),
  random polylines (connected strokes with rounded joints) and thresholded blob noise;
  digits in the Liberation fonts count as digits (positives), so that the network learns
  letters from digits, not print from handwriting;
- tested on (the benchmark): letters in every other font Debian ships (DejaVu), crossed
  straight lines drawn independently, uniform and Gaussian noise, blank and near-blank canvases.

The forward pass is numpy (the ONNX server never imports torch). The fitting, which draws
its negatives through the app's own preprocessing, is :mod:`digits.serve.notdigit_fit`:
``python -m digits.serve.notdigit_fit --data DIR``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from digits.errors import RunError

REJECTOR_FILE = Path(__file__).with_name("notdigit.safetensors")


@dataclass(frozen=True)
class Rejector:
    """An MLP 784 -> hidden (ReLU) -> 1 on pixels / 255; ``default_above``: the logit
    above which an input is not a digit when a run chose no threshold of its own."""

    w1: np.ndarray  # (hidden, 784)
    b1: np.ndarray  # (hidden,)
    w2: np.ndarray  # (1, hidden)
    b2: np.ndarray  # (1,)
    default_above: float
    version: str

    def score(self, images: np.ndarray) -> np.ndarray:
        """The not-a-digit logit of each uint8 image (N, 28, 28), float32 (N,)."""
        x = np.asarray(images, np.float32).reshape(-1, 784) / 255.0
        hidden = np.maximum(x @ self.w1.T + self.b1, 0.0)
        return (hidden @ self.w2.T + self.b2)[:, 0].astype(np.float32)


@functools.cache
def load_rejector(path: Path = REJECTOR_FILE) -> Rejector:
    """The shipped not-a-digit network (read once per process)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file, safe_open

    try:
        tensors = load_file(str(path))
        with safe_open(str(path), "np") as handle:
            meta = handle.metadata() or {}
        above = float(meta["default_above"])
    except (OSError, SafetensorError, KeyError, ValueError) as exc:
        raise RunError(f"{path}: the not-a-digit network cannot be read ({exc}); reinstall digits") from None
    weights = {k: tensors[k].astype(np.float32) for k in ("w1", "b1", "w2", "b2")}
    return Rejector(**weights, default_above=above, version=meta.get("version", "unknown"))
