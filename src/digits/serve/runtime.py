"""Runtimes that turn 28x28 digits into probabilities: PyTorch or ONNX Runtime.

The server only sees the :class:`Runtime` protocol. The ONNX path reads model.json,
metrics.json and model.onnx without importing torch, so a server can run on a machine
(or in a container) that has onnxruntime but no PyTorch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from digits.errors import RunError, ServeError
from digits.jsonfile import CONFIG, ENSEMBLE, METRICS, MODEL_CARD, read_json
from digits.predict.scores import read_score
from digits.weightsfile import weights_digest

RUNTIMES = ("torch", "onnx")
ONNX_FILE = "model.onnx"
ONNX_SOURCE_KEY = "digits_model_version"  # ONNX metadata: the weights an export came from


class Runtime(Protocol):
    """Anything that maps uint8 digits (N, 28, 28) to probabilities float32 (N, 10)."""

    name: str

    def predict_proba(self, images: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class ModelSummary:
    """The model card shown by the page and GET /api/model."""

    architecture: str
    args: dict[str, Any]
    parameters: int
    version: str
    accuracy: float | None
    accuracy_source: str | None  # "test" or "validation": where ``accuracy`` was measured
    runtime: str

    def to_dict(self) -> dict[str, Any]:
        return {"architecture": self.architecture, "args": self.args, "parameters": self.parameters,
                "version": self.version, "accuracy": self.accuracy, "accuracy_source": self.accuracy_source,
                "runtime": self.runtime}


def model_version(run_dir: str | os.PathLike[str]) -> str:
    """Names the trained weights: architecture plus the start of the weights' SHA-256."""
    run_dir = Path(run_dir)
    card = read_json(run_dir / "model.json", MODEL_CARD)
    # Checked from its header first: a weights file that is a device, a FIFO or far too big
    # is refused before the hash would read it to the end.
    digest = weights_digest(run_dir / "model.safetensors")
    return f"{card['architecture']}-{digest[:12]}"


def summarize(run_dir: str | os.PathLike[str], runtime: str) -> ModelSummary:
    """Read the model card of ``run_dir`` (model.json, metrics.json) without loading the model."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"{run_dir}: no such run directory")
    if (run_dir / "ensemble.json").is_file():  # checked as digits predict checks it, then refused
        members = read_json(run_dir / "ensemble.json", ENSEMBLE)["members"]
        raise ServeError(f"{run_dir}: an ensemble of {len(members)}; serving ensembles is not supported "
                         f"yet: serve one member, {run_dir / members[0]}")
    if (run_dir / "config.json").is_file():
        read_json(run_dir / "config.json", CONFIG)  # a damaged one fails here, as in digits predict
    card = read_json(run_dir / "model.json", MODEL_CARD)
    metrics = read_json(run_dir / "metrics.json", METRICS) if (run_dir / "metrics.json").is_file() else {}
    recorded = read_score(run_dir)  # `digits score`'s figure on the answer key's unseen test rows
    accuracy, source = (float(recorded["score"]), "test") if recorded else _accuracy(metrics)
    return ModelSummary(card["architecture"], dict(card["args"]), card.get("parameters") or 0,
                        model_version(run_dir), accuracy, source, runtime)


def _accuracy(metrics: dict[str, Any]) -> tuple[float | None, str | None]:
    # A test figure, when something measured one, beats the validation figure of training.
    # The types were checked when metrics.json was read (the METRICS schema).
    for key in ("test_accuracy", "score"):  # score: the tutorial's local leaderboard, on unseen test rows
        if metrics.get(key) is not None:
            return float(metrics[key]), "test"
    final = metrics.get("final") or {}
    if final.get("val_accuracy") is not None:
        return float(final["val_accuracy"]), "validation"
    return None, None


def load_runtime(run_dir: str | os.PathLike[str], kind: str = "torch") -> Runtime:
    """The runtime ``kind`` ("torch" or "onnx") for the model of ``run_dir``."""
    if kind == "torch":
        from digits.serve.torch_runtime import TorchRuntime  # the only place torch comes in

        return TorchRuntime(run_dir)
    if kind == "onnx":
        return OnnxRuntime(run_dir)
    raise ServeError(f"unknown runtime {kind!r}; choose one of {', '.join(RUNTIMES)}")


class OnnxRuntime:
    """model.onnx (from ``digits export RUN_DIR --format onnx``) on ONNX Runtime's CPU provider."""

    name = "onnx"

    def __init__(self, run_dir: str | os.PathLike[str], threads: int = 1) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise ServeError("the onnx runtime needs onnxruntime: pip install 'digits[serve]'") from None
        path = Path(run_dir) / ONNX_FILE
        if not path.is_file():
            raise ServeError(f"{path}: missing; run `digits export {run_dir} --format onnx` first")
        options = ort.SessionOptions()
        # One thread per request: concurrency comes from serving requests side by side.
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors for a bad file
            raise ServeError(f"{path}: ONNX Runtime cannot load it ({str(exc).splitlines()[0]})") from None
        exported_from = self.session.get_modelmeta().custom_metadata_map.get(ONNX_SOURCE_KEY)
        current = model_version(run_dir)
        if exported_from != current:
            raise ServeError(f"{path}: exported from weights {exported_from}, but the run now holds "
                             f"{current}; "
                             f"export again")
        self.input_name = self.session.get_inputs()[0].name

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        pixels = np.ascontiguousarray(images, dtype=np.uint8).reshape(-1, 28, 28)
        return self.session.run(None, {self.input_name: pixels})[0].astype(np.float32)
