"""ONNX export: a run's model as model.onnx, uint8 pixels (N, 28, 28) in, probabilities out.

Scaling and normalisation are inside the model (``Classifier``), and the softmax is added
here, so an ONNX consumer feeds raw pixels and reads probabilities with no other code.
"""

from __future__ import annotations

import inspect
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from digits.atomic import atomic_path
from digits.errors import ServeError
from digits.runs import load_model
from digits.serve.runtime import ONNX_FILE, ONNX_SOURCE_KEY, model_version

OPSET = 17  # onnxruntime >= 1.14 runs it; no op we need is newer
FORMATS = ("onnx",)


class _Probabilities(nn.Module):
    """The classifier followed by a softmax over its 10 logits."""

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.classifier(pixels).float(), dim=1)  # (N, 10)


def export_onnx(run_dir: str | os.PathLike[str], out: str | os.PathLike[str] | None = None) -> Path:
    """Write the model of ``run_dir`` as ONNX (default ``RUN_DIR/model.onnx``), atomically.

    The file records the weights' version in its metadata, so the ONNX runtime can refuse
    an export that no longer matches the run's weights.
    """
    model, _card = load_model(run_dir, "cpu")
    target = Path(out) if out is not None else Path(run_dir) / ONNX_FILE
    wrapped = _Probabilities(model).eval()
    example = torch.zeros(2, 28, 28, dtype=torch.uint8)
    with atomic_path(target) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter, chosen on purpose below
        torch.onnx.export(wrapped, (example,), str(tmp), input_names=["pixels"],
                          output_names=["probabilities"], opset_version=OPSET,
                          dynamic_axes={"pixels": {0: "batch"}, "probabilities": {0: "batch"}},
                          **_legacy_exporter())
        _add_metadata(tmp, {ONNX_SOURCE_KEY: model_version(run_dir)})
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
