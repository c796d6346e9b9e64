"""Predictions: the Predictor, the one way from a run directory (one model or an ensemble) to
probabilities, and ``predict_proba``, the batched pass each of its members makes."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from digits.data.normalise import READINGS, check_normalisation, normalise, readings
from digits.errors import ModelError
from digits.hardware import hardware, use_threads
from digits.precision import autocast
from digits.predict.calibration import Calibration, load_calibration
from digits.predict.card import RunCard, read_card
from digits.predict.rejection import Rejector, load_rejector
from digits.train.fast_mlp import is_small_mlp


def tta_views(pixels: torch.Tensor) -> list[torch.Tensor]:
    """The batch itself and four copies shifted by one pixel (left, right, up, down), zero-filled."""
    x = pixels.reshape(-1, 28, 28)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    return [x, padded[:, 1:-1, 2:], padded[:, 1:-1, :-2], padded[:, 2:, 1:-1], padded[:, :-2, 1:-1]]


def reading_views(pixels: torch.Tensor, tta: bool = False) -> list[torch.Tensor]:
    """Every view a batch is read in, each (B, 28, 28): of pixels (B, 28, 28) or (B, 784), the
    batch itself; of (B, V, 28, 28), each of its V forms (``digits.data.normalise.readings``);
    with ``tta``, each followed by its four shifted copies (:func:`tta_views`). View 0 is
    always the first form as it is: the one the penultimate features are measured on."""
    forms = list(pixels.unbind(1)) if pixels.dim() == 4 else [pixels]
    return [view for form in forms for view in (tta_views(form) if tta else [form])]


def predict_proba(model: nn.Module, images: np.ndarray, batch_size: int = 512,
                  device: torch.device | str | None = None, tta: bool = False,
                  precision: str = "fp32", progress: Callable[[int], None] | None = None) -> np.ndarray:
    """One model's class probabilities (N, 10) for images (N, 28, 28) of pixels 0-255, or
    (N, V, 28, 28) in V forms whose probabilities are averaged: the pass each member of a
    :class:`Predictor` makes (open a run directory with the Predictor, not this). ``tta``
    averages 5 shifted views of each form; ``precision="bf16"`` runs the model under bf16
    autocast. ``progress`` hears the number of images done after each batch.

    Batches of 512 stay in the CPU's caches (benchmarks/RESULTS.md has the figures)."""
    return predict_outputs(model, images, batch_size, device, tta, precision, progress)[0]


@torch.inference_mode()
def predict_outputs(model: nn.Module, images: np.ndarray, batch_size: int = 512,
                    device: torch.device | str | None = None, tta: bool = False,
                    precision: str = "fp32", progress: Callable[[int], None] | None = None,
                    features: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`predict_proba`'s probabilities and, with ``features``, the model's penultimate
    features of each image as it is (its first form, not shifted), float32 (N, D), from the same pass
    (see :func:`penultimate_features`); None without."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.eval()
    pixels = torch.from_numpy(np.ascontiguousarray(images))
    out, feats = [], []
    # A small MLP, or a handful of images, runs best on one thread: more cost more to wake
    # (and on a busy machine, to wait for) than they save. One image: 0.6 ms vs 52 ms for
    # fast-cnn on two threads of a loaded 2-core machine.
    single = device.type == "cpu" and (len(images) <= 16 or is_small_mlp(model))
    with use_threads(1 if single else torch.get_num_threads()), penultimate_features(model, features) as seen:
        for start in range(0, len(pixels), batch_size):
            batch = pixels[start:start + batch_size].to(device)
            views = reading_views(batch, tta)
            with autocast(device, precision):
                if len(views) > 1 and len(batch) * len(views) <= batch_size:
                    # A few images: one pass over all their views, not one pass per view. A
                    # 15-member kaggle-cnn ensemble reads one image in 31 ms instead of 67 ms.
                    logits = list(model(torch.cat(views)).chunk(len(views)))
                else:
                    logits = [model(v) for v in views]
            probs = sum(torch.softmax(z.float(), dim=1) for z in logits) / len(views)
            out.append(probs.cpu())
            if features:  # the first pass's first rows: the images themselves (view 0)
                feats.append(seen[0][:len(batch)].float().cpu())
                seen.clear()
            if progress is not None:
                progress(start + len(batch))
    proba = refuse_non_finite_probabilities(torch.cat(out).numpy() if out else np.zeros((0, 10), np.float32))
    if not features:
        return proba, None
    return proba, torch.cat(feats).numpy() if feats else np.zeros((0, final_linear(model).in_features), np.float32)


def final_linear(model: nn.Module) -> nn.Linear:
    """The model's last linear layer: the one that maps its penultimate features to the 10
    logits, in every registered architecture (each ends in one). ModelError if it has none."""
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not layers:
        raise ModelError(f"{type(model).__name__} has no linear layer, so no penultimate features")
    return layers[-1]


@contextlib.contextmanager
def penultimate_features(model: nn.Module, capture: bool = True) -> Iterator[list[torch.Tensor]]:
    """While open, each forward pass of ``model`` appends the input of its last linear layer
    (N, D) to the list it yields: the features the not-a-digit rejector measures. A hook, so
    that the pass that computes the probabilities gives them too, and so does an ONNX export
    traced through it. ``capture=False`` yields a list that stays empty."""
    seen: list[torch.Tensor] = []
    if not capture:
        yield seen
        return
    handle = final_linear(model).register_forward_pre_hook(lambda _, inputs: seen.append(inputs[0]))
    try:
        yield seen
    finally:
        handle.remove()


def refuse_non_finite_probabilities(proba: np.ndarray) -> np.ndarray:
    """``proba`` itself, or a ModelError when any row holds NaN or infinity: a label read from
    such a row is meaningless (argmax of NaN is 0), so none is ever given."""
    bad = ~np.isfinite(proba).all(axis=1)
    if bad.any():
        raise ModelError(f"the model computed NaN/inf probabilities for {int(bad.sum())} of {len(proba)} "
                         "images (diverged or overflowing weights); no prediction is made")
    return proba


@dataclass(frozen=True)
class Member:
    """One model of a Predictor, with the number format it predicts in and the temperature
    that calibrates its probabilities (its own calibration.json)."""

    model: nn.Module
    architecture: str
    precision: str = "fp32"  # fp32, bf16 or fp16 (autocast)
    calibration: Calibration = field(default_factory=Calibration)
    normalise: str = "none"  # the input normalisation it trained under (digits.data.normalise)

    def __post_init__(self) -> None:
        check_normalisation(self.normalise, f"{self.architecture}: normalise")


class Predictor:
    """The one way from trained weights to probabilities: a run's model, or the members of an
    ensemble averaged, each in its own number format, with optional test-time augmentation.

    Each member reads its input as it trained: normalised (``digits.data.normalise``) when its
    run says so, in each form that normalisation reads (``readings``), here and nowhere else in
    the torch path.

    The probabilities are calibrated, here and nowhere else: each member's by its own
    temperature, and an ensemble's average by the ensemble's (``calibration``, which also holds
    the confidence under which an answer is unsure). A run without calibration.json answers at
    temperature 1.

    ``rejector``, when the run has one (its rejector.safetensors), measures how far each image
    lies from the digits the run trained on (:meth:`predict_with_distance`), from the first
    member's penultimate features: beyond its threshold, an image is not a digit.

    >>> predictor = Predictor.open("runs/20250101-120000-gpu-best")  # doctest: +SKIP
    >>> predictor.predict(images)                                    # doctest: +SKIP
    array([2, 0, 9, ...])
    """

    def __init__(self, members: Sequence[Member], tta: bool = False, run_dir: Path | None = None,
                 calibration: Calibration | None = None, rejector: Rejector | None = None) -> None:
        if not members:
            raise ModelError("a Predictor needs at least one model")
        self.members = tuple(members)
        self.tta = tta              # the default; each call may say otherwise
        self.run_dir = run_dir      # where the weights came from, if from a run directory
        # Of the whole: the unsure threshold, and, over several members, the temperature of
        # their average. One model's temperature is its member's: it is applied once.
        self.calibration = calibration or (self.members[0].calibration if len(self.members) == 1
                                           else Calibration())
        self.rejector = rejector

    @classmethod
    def open(cls, run_dir: str | os.PathLike[str], device: torch.device | str = "cpu",
             tta: bool | None = None, precision: str = "auto") -> Predictor:
        """The models of ``run_dir``: its one model, or every member of its ensemble.json (a
        RunError names the members still missing from a partial one).

        ``device``: cpu, cuda, mps or auto. ``tta``: default the run's own setting.
        ``precision``: ``auto`` predicts each model in the format it trained in where the device
        computes it natively (see :func:`inference_precision`), else fp32; or ``fp32``/``bf16``."""
        from digits.runmodels import recorded_normalisation, run_models
        from digits.runs import load_model
        from digits.train.device import resolve_device

        device = resolve_device(device) if device == "auto" else torch.device(device)
        models = run_models(run_dir)
        members = []
        for model_dir in models.model_dirs:
            model, card = load_model(model_dir, device)
            chosen = inference_precision(model_dir, device) if precision == "auto" else precision
            members.append(Member(for_inference(model), card.name, chosen, load_calibration(model_dir),
                                  recorded_normalisation(model_dir)))
        whole = load_calibration(models.run_dir) if models.kind == "ensemble" else None
        return cls(members, models.tta if tta is None else tta, models.run_dir, whole,
                   load_rejector(models.run_dir))

    @classmethod
    def from_model(cls, model: nn.Module, architecture: str = "", precision: str = "fp32",
                   tta: bool = False, normalise: str = "none") -> Predictor:
        """A Predictor over a model in memory (a DigitClassifier's, a notebook's); ``normalise``:
        the input normalisation it trained under."""
        return cls([Member(model, architecture or type(model).__name__, precision, normalise=normalise)], tta)

    @property
    def models(self) -> list[nn.Module]:
        return [m.model for m in self.members]

    @property
    def names(self) -> list[str]:
        """Each member's architecture."""
        return [m.architecture for m in self.members]

    @property
    def precisions(self) -> list[str]:
        """The number format each member predicts in."""
        return [m.precision for m in self.members]

    def member_proba(self, images: np.ndarray, *, rows: Sequence[np.ndarray] | None = None,
                     tta: bool | None = None, calibrated: bool = True,
                     progress: Callable[[int], None] | None = None) -> list[np.ndarray]:
        """Each member's probabilities, calibrated by its own temperature (``calibrated=False``:
        as the network computes them, what a calibration is fitted on): on every image, or, with
        ``rows``, member ``i`` on ``images[rows[i]]`` only (the rows it held out, say).
        ``progress`` hears the images done so far, counted over every member."""
        return self._member_outputs(images, rows, tta, calibrated, progress)[0]

    def _member_outputs(self, images: np.ndarray, rows: Sequence[np.ndarray] | None, tta: bool | None,
                        calibrated: bool, progress: Callable[[int], None] | None,
                        features: bool = False) -> tuple[list[np.ndarray], np.ndarray | None]:
        """``member_proba``'s list, and with ``features`` the first member's penultimate
        features of its images (from the same pass)."""
        pixels = as_pixels(images)
        use_tta = self.tta if tta is None else tta
        indexes = list(rows) if rows is not None else [None] * len(self.members)
        if len(indexes) != len(self.members):
            raise ModelError(f"rows for {len(indexes)} members, but the predictor has {len(self.members)}")
        out, first, before, normalised = [], None, 0, {}
        for i, (member, index) in enumerate(zip(self.members, indexes)):
            mine = self._normalised(pixels, member, normalised)
            mine = mine if index is None else mine[index]
            proba, seen = predict_outputs(member.model, mine, tta=use_tta, precision=member.precision,
                                          progress=_offset(progress, before), features=features and i == 0)
            out.append(member.calibration.apply(proba) if calibrated else proba)
            first = seen if i == 0 else first
            before += len(mine)
        return out, first

    def features(self, images: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """The first member's penultimate features, float32 (N, D), of ``images`` (or of
        ``images[rows]``): what a rejector is fitted on and measures."""
        member = self.members[0]
        pixels = normalise(as_pixels(images), READINGS[member.normalise][0])  # view 0's form, the first
        return predict_outputs(member.model, pixels if rows is None else pixels[rows],
                               precision=member.precision, features=True)[1]

    @staticmethod
    def _normalised(pixels: np.ndarray, member: Member, done: dict[str, np.ndarray]) -> np.ndarray:
        """``pixels`` (N, 28, 28) in the forms ``member`` reads them in (its run's normalisation;
        ``digits.data.normalise.readings``), (N, V, 28, 28), each setting once however many
        members share it: ``done`` holds the ones made so far."""
        if member.normalise == "none":
            return pixels[:, None]  # its one form, the pixels themselves: a view, no copy
        if member.normalise not in done:
            done[member.normalise] = readings(pixels, member.normalise)
        return done[member.normalise]

    def predict_with_distance(self, images: np.ndarray, *, tta: bool | None = None,
                              progress: Callable[[int], None] | None = None
                              ) -> tuple[np.ndarray, np.ndarray | None]:
        """:meth:`predict_proba`'s calibrated probabilities and, when the run has a rejector,
        each image's distance from the digits it trained on (float64 (N,), from the same pass;
        None without one): what :func:`digits.predict.verdict.decide` says "not a digit" from."""
        probas, seen = self._member_outputs(images, None, tta, True, progress, self.rejector is not None)
        distance = self.rejector.distance(seen) if self.rejector is not None and seen is not None else None
        return self.combine(probas), distance

    def combine(self, probas: Sequence[np.ndarray], rows: Sequence[np.ndarray] | None = None,
                count: int | None = None) -> np.ndarray:
        """The answer of the whole from its members' calibrated probabilities (``member_proba``,
        with the same ``rows`` and ``count`` as :func:`average_members`): their average, and
        for an ensemble, that average calibrated by the ensemble's temperature (averaging, and
        test-time augmentation, leave it less sure than its members)."""
        average = average_members(probas, rows, count)
        return self.calibration.apply(average) if len(self.members) > 1 else average

    def predict_proba(self, images: np.ndarray, *, tta: bool | None = None,
                      progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Class probabilities, float32 (N, 10), for pixels 0-255 (uint8 or float) shaped
        (N, 28, 28) or (N, 784): the mean of the members' probabilities. ``progress`` hears
        the images done so far, over every member (``len(images) * len(self.members)`` in all).
        Calibrated (see the class): an answer whose top probability is under
        ``self.calibration.unsure_below`` is unsure (:func:`digits.predict.verdict.decide`)."""
        return self.combine(self.member_proba(images, tta=tta, progress=progress))

    def predict(self, images: np.ndarray, *, tta: bool | None = None,
                progress: Callable[[int], None] | None = None) -> np.ndarray:
        """The most probable digit for each image, int64 (N,)."""
        return self.predict_proba(images, tta=tta, progress=progress).argmax(axis=1).astype(np.int64)

    def card(self) -> RunCard:
        """The model card of the run this Predictor was opened on: kind, members (architecture,
        parameters, recorded accuracy, the precision each predicts in) and weights version."""
        if self.run_dir is None:
            raise ModelError("a Predictor made from a model in memory has no run directory, so no card")
        return read_card(self.run_dir, self.precisions, self.tta)


def average_members(probas: Sequence[np.ndarray], rows: Sequence[np.ndarray] | None = None,
                    count: int | None = None) -> np.ndarray:
    """The ensemble's probabilities, float32 (N, 10): the mean of its members'. With ``rows``
    (member ``i`` predicted ``rows[i]`` of ``count`` images), each image's mean over the
    members that predicted it."""
    if rows is None:
        return np.mean(probas, axis=0)
    total = np.zeros((count or 0, probas[0].shape[1] if probas else 10), np.float64)
    votes = np.zeros(len(total), np.int64)
    for proba, index in zip(probas, rows):
        total[index] += proba
        votes[index] += 1
    return (total / np.maximum(votes, 1)[:, None]).astype(np.float32)


def as_pixels(images: np.ndarray) -> np.ndarray:
    """``images`` as (N, 28, 28) pixels 0-255: uint8 kept as it is, floats as float32."""
    images = np.asarray(images)
    if images.shape[1:] not in ((28, 28), (784,)):
        raise ModelError(f"expected images shaped (N, 28, 28) or (N, 784), got {images.shape}")
    dtype = np.uint8 if images.dtype == np.uint8 else np.float32
    return np.ascontiguousarray(images.reshape(-1, 28, 28), dtype=dtype)


def _offset(progress: Callable[[int], None] | None, before: int) -> Callable[[int], None] | None:
    return None if progress is None else (lambda done: progress(before + done))


def inference_precision(run_dir: str | os.PathLike[str], device: torch.device | str = "cpu") -> str:
    """The number format to predict with: the one the model trained in (its config.json), when
    the device computes it natively; else fp32. A model trained under bf16 autocast reads the
    same digits in bf16 as in fp32, faster."""
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
    are faster (same labels; the probabilities differ by under 1e-6)."""
    params = list(model.parameters())
    on_cpu = bool(params) and params[0].device.type == "cpu"
    if on_cpu and any(isinstance(m, nn.Conv2d) for m in model.modules()):
        model.to(memory_format=torch.channels_last)
    return model
