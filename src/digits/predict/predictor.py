"""Predictions from a run directory: one model or an ensemble, with optional test-time augmentation."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from digits.errors import ModelError, RunError
from digits.hardware import hardware, use_threads
from digits.precision import autocast
from digits.predict.calibration import Calibration, load_calibration
from digits.train.fast_mlp import is_small_mlp


def tta_views(pixels: torch.Tensor) -> list[torch.Tensor]:
    """The batch itself and four copies shifted by one pixel (left, right, up, down), zero-filled."""
    x = pixels.reshape(-1, 28, 28)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    return [x, padded[:, 1:-1, 2:], padded[:, 1:-1, :-2], padded[:, 2:, 1:-1], padded[:, :-2, 1:-1]]


@torch.inference_mode()
def predict_proba(model: nn.Module, images: np.ndarray, batch_size: int = 512,
                  device: torch.device | str | None = None, tta: bool = False,
                  precision: str = "fp32", progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Class probabilities (N, 10) for uint8 images (N, 28, 28); ``tta`` averages 5 shifted
    views; ``precision="bf16"`` runs the model under bf16 autocast. ``progress`` hears the
    number of images done after each batch.

    Batches of 512 stay in the CPU's caches: kaggle-cnn reads 28,000 digits in 7.5 s at
    4,096 a batch and 6.8 s at 512 (fp32, 2 cores), 1.6 s at 512 in bf16."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.eval()
    pixels = torch.from_numpy(np.ascontiguousarray(images))
    out = []
    # A small MLP, or a handful of images, runs best on one thread: more cost more to wake
    # (and on a busy machine, to wait for) than they save. One image: 0.6 ms vs 52 ms for
    # fast-cnn on two threads of a loaded 2-core machine.
    single = device.type == "cpu" and (len(images) <= 16 or is_small_mlp(model))
    with use_threads(1 if single else torch.get_num_threads()):
        for start in range(0, len(pixels), batch_size):
            batch = pixels[start:start + batch_size].to(device)
            views = tta_views(batch) if tta else [batch]
            with autocast(device, precision):
                if len(views) > 1 and len(batch) * len(views) <= batch_size:
                    # A few images: one pass over all their views, not one pass per view. A
                    # 15-member kaggle-cnn ensemble reads one image in 31 ms instead of 67 ms.
                    logits = list(model(torch.cat(views)).chunk(len(views)))
                else:
                    logits = [model(v) for v in views]
            probs = sum(torch.softmax(z.float(), dim=1) for z in logits) / len(views)
            out.append(probs.cpu())
            if progress is not None:
                progress(start + len(batch))
    return refuse_non_finite_probabilities(torch.cat(out).numpy() if out else np.zeros((0, 10), np.float32))


def refuse_non_finite_probabilities(proba: np.ndarray) -> np.ndarray:
    """``proba`` itself, or a ModelError when any row holds NaN or infinity: a label read from
    such a row is meaningless (argmax of NaN is 0), so none is ever given."""
    bad = ~np.isfinite(proba).all(axis=1)
    if bad.any():
        raise ModelError(f"the model computed NaN/inf probabilities for {int(bad.sum())} of {len(proba)} "
                         "images (diverged or overflowing weights); no prediction is made")
    return proba


def predict_labels(model: nn.Module, images: np.ndarray, **kwargs: object) -> np.ndarray:
    """The most probable digit for each image, int64 (N,)."""
    return predict_proba(model, images, **kwargs).argmax(axis=1).astype(np.int64)


@dataclass
class Predictor:
    """The models of a run directory: one, or the members of an ensemble, averaged; each
    member's probabilities calibrated by its own calibration.json, then the average by the
    ensemble's (none fitted: temperature 1)."""

    models: list[nn.Module]
    names: list[str]
    tta: bool = False
    precisions: list[str] = field(default_factory=list)  # per model: fp32 or bf16; empty: fp32
    member_calibrations: list[Calibration] = field(default_factory=list)  # per model; empty: none
    calibration: Calibration = field(default_factory=Calibration)  # of the whole: its unsure threshold

    def predict_proba(self, images: np.ndarray, tta: bool | None = None,
                      progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Mean of the members' calibrated probabilities, calibrated, (N, 10). ``progress`` hears
        the images done so far, counted over every member (``len(images) * len(self.models)`` in all)."""
        use_tta = self.tta if tta is None else tta
        precisions = self.precisions or ["fp32"] * len(self.models)
        calibrations = self.member_calibrations or [Calibration()] * len(self.models)
        mean = np.mean([c.apply(predict_proba(m, images, tta=use_tta, precision=p,
                                              progress=_offset(progress, i * len(images))))
                        for i, (m, p, c) in enumerate(zip(self.models, precisions, calibrations))], axis=0)
        return mean if len(self.models) == 1 else self.calibration.apply(mean)

    def predict(self, images: np.ndarray, tta: bool | None = None,
                progress: Callable[[int], None] | None = None) -> np.ndarray:
        """The most probable digit for each image."""
        return self.predict_proba(images, tta, progress).argmax(axis=1).astype(np.int64)


def _offset(progress: Callable[[int], None] | None, before: int) -> Callable[[int], None] | None:
    return None if progress is None else (lambda done: progress(before + done))


def load_predictor(run_dir: str | os.PathLike[str], device: torch.device | str = "cpu",
                   precision: str = "auto") -> Predictor:
    """A Predictor for ``run_dir``: its model, or every member listed in ensemble.json.

    ``precision``: ``auto`` predicts each model in the precision it trained in where the
    device computes it natively (see ``inference_precision``), else fp32; or ``fp32``/``bf16``."""
    from digits.jsonfile import ENSEMBLE, read_json
    from digits.runs import check_finished, load_model

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"{run_dir}: no such run directory")
    check_finished(run_dir)  # an ensemble still training: named as a whole, not by its member
    tta, dirs = False, [run_dir]
    if (run_dir / "ensemble.json").is_file():
        spec = read_json(run_dir / "ensemble.json", ENSEMBLE)
        tta, dirs = bool(spec.get("tta")), [run_dir / member for member in spec["members"]]
    loaded = [load_model(d, device) for d in dirs]
    precisions = [inference_precision(d, device) if precision == "auto" else precision for d in dirs]
    members = [load_calibration(d) for d in dirs]
    whole = members[0] if dirs == [run_dir] else load_calibration(run_dir)
    return Predictor([for_inference(m) for m, _ in loaded], [c.name for _, c in loaded], tta, precisions,
                     members, whole)


def inference_precision(run_dir: str | os.PathLike[str], device: torch.device | str = "cpu") -> str:
    """The number format to predict with: the one the model trained in (its config.json), when
    the device computes it natively; else fp32. A model trained under bf16 autocast reads the
    same digits in bf16 (28,000 of 28,000 for kaggle-cnn)."""
    from digits.jsonfile import TRAIN, Optional, read_json

    config = Path(run_dir) / "config.json"
    recorded = read_json(config, {"train": Optional(TRAIN)}) if config.is_file() else {}
    trained = (recorded.get("train") or {}).get("precision") or "fp32"
    hw = hardware(torch.device(device))
    native = {"bf16": hw.native_bf16, "fp16": hw.kind == "cuda" and (hw.fast_fp16 or hw.native_bf16)}
    return trained if native.get(trained, False) else "fp32"


def for_inference(model: nn.Module) -> nn.Module:
    """``model`` laid out for fast prediction, in place: on the CPU, a network with
    convolutions goes channels-last, where oneDNN's NHWC convolution and max-pool kernels
    predict 28,000 digits with fast-cnn in 3.0 s instead of 5.7 s (same labels; the
    probabilities differ by under 1e-6)."""
    params = list(model.parameters())
    on_cpu = bool(params) and params[0].device.type == "cpu"
    if on_cpu and any(isinstance(m, nn.Conv2d) for m in model.modules()):
        model.to(memory_format=torch.channels_last)
    return model
