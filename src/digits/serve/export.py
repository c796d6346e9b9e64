"""ONNX export: a run's model, or its whole ensemble, as model.onnx: uint8 pixels (N, 28, 28)
in (or (N, V, 28, 28), each digit in the V forms its run reads: ``digits.data.normalise.readings``),
probabilities out, and the first member's penultimate features (what the run's not-a-digit
rejector measures, in numpy, beside the graph).

Scaling is inside each model (``Classifier``); the softmax, the average over the forms, the
optional test-time views, an ensemble's members and the run's temperatures are added here, so an
ONNX consumer feeds pixels and reads calibrated probabilities; a run trained under a normalisation
is fed its forms (NumPy, ``readings``; the ONNX runtime does it), one without is fed raw pixels.
"""

from __future__ import annotations

import inspect
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from digits.atomic import atomic_path
from digits.errors import ServeError
from digits.predict.calibration import FLOOR, Calibration, temperature_record
from digits.predict.card import model_version
from digits.predict.predictor import Predictor, penultimate_features, reading_views
from digits.serve.runtime import (
    ONNX_CALIBRATION_KEY,
    ONNX_FEATURES,
    ONNX_FILE,
    ONNX_SOURCE_KEY,
    ONNX_TTA_KEY,
    graph_pixels,
    one_normalisation,
)

OPSET = 17  # onnxruntime >= 1.14 runs it; no op we need is newer
FORMATS = ("onnx",)


def _temper(proba: torch.Tensor, temperature: float, even_share: bool = False) -> torch.Tensor:
    """``Calibration.apply`` in graph ops: ``digits.predict.calibration.unmix`` when
    ``even_share``, then softmax(log(p) / T); T = 1 adds none."""
    if even_share:
        classes = proba.shape[1]
        share = (classes * proba.min(dim=1, keepdim=True).values).clamp_max(1.0 - 1e-6)
        rest = (proba - share / classes).clamp_min(0.0) / (1.0 - share)
        proba = rest / rest.sum(dim=1, keepdim=True).clamp_min(FLOOR)
    if temperature == 1.0:
        return proba
    return torch.softmax(torch.log(proba.clamp_min(FLOOR)) / temperature, dim=1)


class _Averaged(nn.Module):
    """Each member's softmax probabilities (averaged over each image's forms and, with ``tta``,
    their five shifted views) calibrated by its temperature, then averaged over the members and
    calibrated by the ensemble's: what ``Predictor.predict_proba`` computes, as one graph; and
    the first member's penultimate features of the image's first form as it is (view 0), as
    ``Predictor.predict_with_distance`` measures them."""

    def __init__(self, members: list[nn.Module], tta: bool, calibrations: list[Calibration],
                 ensemble: Calibration | None = None) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.tta = tta
        self.calibrations = calibrations
        self.ensemble = ensemble or Calibration()

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        views = reading_views(pixels, self.tta)
        probs = []
        with penultimate_features(self.members[0]) as seen:  # traced: the hook's tensor is an output
            for member, calibration in zip(self.members, self.calibrations):
                mean = torch.stack([torch.softmax(member(view).float(), dim=1) for view in views]).mean(dim=0)
                probs.append(_temper(mean, calibration.temperature, calibration.unmix))
        features = seen[0].float()  # (N, D): member 0's first pass, on the unshifted view
        average = torch.stack(probs).mean(dim=0)
        return _temper(average, self.ensemble.temperature, self.ensemble.unmix), features  # (N, 10)


def export_onnx(run_dir: str | os.PathLike[str], out: str | os.PathLike[str] | None = None,
                tta: bool | None = None) -> Path:
    """Write the model of ``run_dir`` as ONNX (default ``RUN_DIR/model.onnx``), atomically: one
    graph, uint8 pixels (N, 28, 28) in (or (N, V, 28, 28): the V forms the run reads),
    calibrated probabilities (N, 10) and the first member's penultimate features (N, D) out; an
    ensemble's graph averages its members. ``tta``: average the five shifted views too (default:
    what the run recorded).

    The file records the weights' version and the temperatures in its metadata, so the ONNX
    runtime can refuse an export that no longer matches the run's weights or calibration.
    """
    predictor = Predictor.open(run_dir, "cpu", tta=tta, precision="fp32")  # ONNX Runtime computes in fp32
    target = Path(out) if out is not None else Path(run_dir) / ONNX_FILE
    # Contiguous (NCHW) weights: the layout for_inference chose for PyTorch's CPU kernels is
    # not one the exporter needs.
    members = [m.model.to(memory_format=torch.contiguous_format) for m in predictor.members]
    calibrations = [m.calibration for m in predictor.members]
    ensemble = predictor.calibration if len(members) > 1 else None  # one model: its own, applied once
    wrapped = _Averaged(members, predictor.tta, calibrations, ensemble).eval()
    normalisation = one_normalisation(run_dir, [m.normalise for m in predictor.members])
    example = torch.from_numpy(graph_pixels(np.zeros((2, 28, 28), np.uint8), normalisation))
    with atomic_path(target) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter, chosen on purpose below
        # The shifted views' slices have a step the exporter cannot fold; they run as they are.
        warnings.filterwarnings("ignore", "Constant folding", UserWarning)
        torch.onnx.export(wrapped, (example,), str(tmp), input_names=["pixels"],
                          output_names=["probabilities", ONNX_FEATURES], opset_version=OPSET,
                          dynamic_axes={"pixels": {0: "batch"}, "probabilities": {0: "batch"},
                                        ONNX_FEATURES: {0: "batch"}},
                          **_legacy_exporter())
        _add_metadata(tmp, {ONNX_SOURCE_KEY: model_version(run_dir),
                            ONNX_TTA_KEY: "true" if predictor.tta else "false",
                            ONNX_CALIBRATION_KEY: temperature_record(calibrations, ensemble)})
    return target


def _legacy_exporter() -> dict[str, bool]:
    # torch >= 2.9 defaults to the dynamo exporter, which needs onnxscript; the TorchScript
    # exporter needs nothing more and handles this model's two ops. torch 2.4 has no flag.
    return {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}


def _add_metadata(path: Path, values: dict[str, str]) -> None:
    try:
        import onnx
    except ImportError:
        raise ServeError("ONNX export needs the onnx package: pip install 'digits[serve]'") from None
    proto = onnx.load(str(path))
    for key, value in values.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
