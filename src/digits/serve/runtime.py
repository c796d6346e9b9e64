"""Runtimes that turn 28x28 digits into probabilities: PyTorch (the library's Predictor) or
ONNX Runtime.

The server only sees the :class:`Runtime` protocol. The ONNX path reads the run's JSON files
and model.onnx without importing torch, so a server can run on a machine (or in a container)
that has onnxruntime but no PyTorch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from digits.data.normalise import READINGS, readings
from digits.errors import ServeError
from digits.predict.calibration import Calibration, load_calibration, temperature_record
from digits.predict.card import RunCard, read_card
from digits.predict.rejection import Rejector, load_rejector
from digits.runmodels import recorded_normalisation, run_models

RUNTIMES = ("torch", "onnx")
ONNX_FILE = "model.onnx"
ONNX_SOURCE_KEY = "digits_model_version"  # ONNX metadata: the weights an export came from
ONNX_TTA_KEY = "digits_tta"  # ONNX metadata: "true" when the graph averages shifted views
ONNX_CALIBRATION_KEY = "digits_temperatures"  # ONNX metadata: the temperatures the graph applies
ONNX_FEATURES = "features"  # the graph's second output: the first member's penultimate features


class Runtime(Protocol):
    """Anything that maps uint8 digits (N, 28, 28) to calibrated probabilities float32 (N, 10),
    and says what it predicts with; ``calibration`` (the run's, of the whole) says when an
    answer is unsure, ``rejector`` (None for a run without one) when it is not a digit."""

    name: str
    calibration: Calibration
    rejector: Rejector | None

    def predict_proba(self, images: np.ndarray) -> np.ndarray: ...

    def read(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The calibrated probabilities and, with a rejector, each image's distance from the
        training digits (float64 (N,)), as ``Predictor.predict_with_distance`` gives them."""
        ...

    def card(self) -> RunCard: ...


@dataclass(frozen=True)
class ModelSummary:
    """The model card shown by the page and GET /api/model: the run's card and the runtime."""

    card: RunCard
    runtime: str
    calibration: str = ""  # how the probabilities are calibrated, and when an answer is unsure

    @property
    def version(self) -> str:
        return self.card.version

    @property
    def what(self) -> str:
        """The model in a few words: "mlp", "ensemble of 15 x kaggle-cnn"."""
        if self.card.kind == "single":
            return self.card.architecture
        return f"ensemble of {len(self.card.members)} x {self.card.architecture}"

    def to_dict(self) -> dict[str, Any]:
        return {**self.card.to_dict(), "runtime": self.runtime, "calibration": self.calibration}


def summarize(runtime: Runtime) -> ModelSummary:
    """The model card of what ``runtime`` serves."""
    rejector = f"; {runtime.rejector.describe()}" if runtime.rejector is not None else ""
    return ModelSummary(runtime.card(), runtime.name, runtime.calibration.describe() + rejector)


def load_runtime(run_dir: str | os.PathLike[str], kind: str = "torch") -> Runtime:
    """The runtime ``kind`` ("torch" or "onnx") for the model (or ensemble) of ``run_dir``."""
    if kind == "torch":
        from digits.serve.torch_runtime import TorchRuntime  # the only place torch comes in

        return TorchRuntime(run_dir)
    if kind == "onnx":
        return OnnxRuntime(run_dir)
    raise ServeError(f"unknown runtime {kind!r}; choose one of {', '.join(RUNTIMES)}")


def one_normalisation(run_dir: str | os.PathLike[str], normalisations: list[str]) -> str:
    """The one input normalisation all the members of ``run_dir`` trained under, or a ServeError:
    one ONNX graph reads one input."""
    found = sorted(set(normalisations))
    if len(found) > 1:
        raise ServeError(f"{run_dir}: its members trained under different input normalisations "
                         f"({', '.join(found)}); one ONNX graph cannot read for them all")
    return found[0]


def graph_pixels(images: np.ndarray, normalise: str) -> np.ndarray:
    """uint8 pixels as the exported graph of a run trained under ``normalise`` takes them: each
    digit in the forms the run reads (``digits.data.normalise.readings``), (N, V, 28, 28), or
    (N, 28, 28) where it reads one form only, as any ONNX consumer holds its pixels."""
    forms = readings(np.ascontiguousarray(images, dtype=np.uint8).reshape(-1, 28, 28), normalise)
    return forms[:, 0] if forms.shape[1] == 1 else forms


class OnnxRuntime:
    """model.onnx (from ``digits export RUN_DIR --format onnx``) on ONNX Runtime's CPU provider:
    one model, or an ensemble exported as one graph that averages its members; the graph
    applies the run's temperatures, as the Predictor does (the unsure threshold is read from
    calibration.json, without torch), and the input is put in the forms the run reads
    (``digits.data.normalise.readings``) by the same NumPy code the Predictor calls."""

    name = "onnx"

    def __init__(self, run_dir: str | os.PathLike[str], threads: int = 1) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise ServeError("the onnx runtime needs onnxruntime: pip install 'digits[serve]'") from None
        self.run_dir = Path(run_dir)
        # A run that cannot predict (a partial ensemble, say) fails first, as in digits predict.
        models = run_models(run_dir)
        members = len(models.model_dirs)
        member_calibrations = [load_calibration(d) for d in models.model_dirs]
        self.normalise = one_normalisation(run_dir, [recorded_normalisation(d) for d in models.model_dirs])
        ensemble = load_calibration(run_dir) if models.kind == "ensemble" else None
        # Of the whole, as the Predictor's: an ensemble's own, or its one model's.
        self.calibration = member_calibrations[0] if ensemble is None else ensemble
        temperatures = temperature_record(member_calibrations, ensemble)
        path = self.run_dir / ONNX_FILE
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
        metadata = self.session.get_modelmeta().custom_metadata_map
        self._card = read_card(run_dir, ["fp32"] * members, metadata.get(ONNX_TTA_KEY) == "true")
        exported_from = metadata.get(ONNX_SOURCE_KEY)
        if exported_from != self._card.version:
            raise ServeError(f"{path}: exported from weights {exported_from}, but the run now holds "
                             f"{self._card.version}; export again")
        # An export older than calibration applies none: temperature 1 everywhere.
        none = temperature_record([Calibration()] * members, None if ensemble is None else Calibration())
        exported_with = metadata.get(ONNX_CALIBRATION_KEY, none)
        if exported_with != temperatures:
            raise ServeError(f"{path}: exported with temperatures {exported_with}, but the run's "
                             f"calibration.json now says {temperatures}; export again")
        graph_input = self.session.get_inputs()[0]
        self.input_name = graph_input.name
        # An export from before the run read each digit in its forms takes another shape.
        wanted = ["batch", *graph_pixels(np.zeros((1, 28, 28), np.uint8), self.normalise).shape[1:]]
        if list(graph_input.shape) != wanted:
            raise ServeError(f"{path}: its graph reads pixels shaped {graph_input.shape}, but the run reads "
                             f"each digit in {len(READINGS[self.normalise])} form(s), shaped {wanted}; "
                             "export again")
        self.rejector = load_rejector(run_dir)
        outputs = [o.name for o in self.session.get_outputs()]
        if self.rejector is not None and ONNX_FEATURES not in outputs:
            raise ServeError(f"{path}: exported without the features output that the run's "
                             "rejector.safetensors measures; export again")
        self._outputs = outputs[:1] + ([ONNX_FEATURES] if self.rejector is not None else [])

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        return self.read(images)[0]

    def read(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        found = self.session.run(self._outputs, {self.input_name: graph_pixels(images, self.normalise)})
        distance = self.rejector.distance(found[1]) if self.rejector is not None else None
        return found[0].astype(np.float32), distance

    def card(self) -> RunCard:
        """The run's card, with the graph's number format (fp32) and test-time augmentation."""
        return self._card
