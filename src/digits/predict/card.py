"""The model card of a run directory: what it predicts with (one model or an ensemble's
members: architecture, parameters, recorded accuracy, number format) and which weights.

Read from the run's JSON files and the weights' headers, without torch: the ONNX server
shows the same card as the PyTorch one.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from digits.jsonfile import CONFIG, METRICS, MODEL_CARD, read_json
from digits.predict.scores import read_score
from digits.runmodels import RunKind, RunModels, run_models
from digits.weightsfile import weights_digest


@dataclass(frozen=True)
class MemberCard:
    """One model of a run: for an ensemble, one member."""

    name: str                    # its folder in the run ("members/01"), "." for a run of one model
    architecture: str
    args: dict[str, Any]
    parameters: int
    accuracy: float | None       # recorded on held-out digits
    accuracy_source: str | None  # "test" or "validation": where ``accuracy`` was measured
    precision: str               # the number format it predicts in

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "architecture": self.architecture, "args": self.args,
                "parameters": self.parameters, "accuracy": self.accuracy,
                "accuracy_source": self.accuracy_source, "precision": self.precision}


@dataclass(frozen=True)
class RunCard:
    """What the model card shows: the run's kind, its members, the recorded accuracy."""

    kind: RunKind
    members: tuple[MemberCard, ...]
    version: str                 # names the weights (model_version)
    accuracy: float | None       # the run's own: a recorded test score, else validation
    accuracy_source: str | None  # "test", "validation", or "members' validation" (their mean)
    tta: bool                    # whether predictions average shifted views

    @property
    def architecture(self) -> str:
        """The members' architecture; ``mixed`` when an ensemble's members differ."""
        names = {m.architecture for m in self.members}
        return names.pop() if len(names) == 1 else "mixed"

    @property
    def args(self) -> dict[str, Any]:
        """The members' builder arguments when they share them, else none."""
        first = self.members[0].args
        return dict(first) if all(m.args == first for m in self.members) else {}

    @property
    def parameters(self) -> int:
        """Of every member together: what predicting one digit computes with."""
        return sum(m.parameters for m in self.members)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "architecture": self.architecture, "args": self.args,
                "parameters": self.parameters, "version": self.version, "accuracy": self.accuracy,
                "accuracy_source": self.accuracy_source, "tta": self.tta,
                "members": [m.to_dict() for m in self.members]}


def read_card(run_dir: str | os.PathLike[str], precisions: Sequence[str] | None = None,
              tta: bool | None = None) -> RunCard:
    """The card of ``run_dir`` (RunError when it cannot predict yet, as ``run_models`` says).
    ``precisions``: the number format each member predicts in (default fp32); ``tta``: whether
    predictions use test-time augmentation (default: what the run recorded)."""
    models = run_models(run_dir)
    precisions = list(precisions or ["fp32"] * len(models.model_dirs))
    members = tuple(_member_card(models, d, p) for d, p in zip(models.model_dirs, precisions))
    if models.kind == "single":
        accuracy, source = members[0].accuracy, members[0].accuracy_source
    else:
        accuracy, source = _ensemble_accuracy(models.run_dir, members)
    return RunCard(models.kind, members, model_version(run_dir), accuracy, source,
                   models.tta if tta is None else tta)


def _member_card(models: RunModels, model_dir: Path, precision: str) -> MemberCard:
    if (model_dir / "config.json").is_file():
        read_json(model_dir / "config.json", CONFIG)  # a damaged one fails here, as in digits predict
    card = read_json(model_dir / "model.json", MODEL_CARD)
    accuracy, source = run_accuracy(model_dir)
    name = "." if model_dir == models.run_dir else model_dir.relative_to(models.run_dir).as_posix()
    return MemberCard(name, card["architecture"], dict(card["args"]), card.get("parameters") or 0,
                      accuracy, source, precision)


def run_accuracy(run_dir: str | os.PathLike[str]) -> tuple[float | None, str | None]:
    """The accuracy one model's run recorded, and where: `digits score`'s figure on the answer
    key's unseen test rows, else a test figure in metrics.json, else the final validation one."""
    recorded = read_score(run_dir)
    if recorded:
        return float(recorded["score"]), "test"
    path = Path(run_dir) / "metrics.json"
    metrics = read_json(path, METRICS) if path.is_file() else {}
    # The types were checked when metrics.json was read (the METRICS schema).
    for key in ("test_accuracy", "score"):  # score: the tutorial's local leaderboard, on unseen test rows
        if metrics.get(key) is not None:
            return float(metrics[key]), "test"
    final = metrics.get("final") or {}
    if final.get("val_accuracy") is not None:
        return float(final["val_accuracy"]), "validation"
    return None, None


def _ensemble_accuracy(run_dir: Path, members: Sequence[MemberCard]) -> tuple[float | None, str | None]:
    # The ensemble's own test score when one is recorded; else only its members were measured.
    recorded = read_score(run_dir)
    if recorded:
        return float(recorded["score"]), "test"
    measured = [m.accuracy for m in members if m.accuracy is not None]
    if len(measured) < len(members):
        return None, None
    sources = {m.accuracy_source for m in members}
    return sum(measured) / len(measured), "members' test" if sources == {"test"} else "members' validation"


def model_version(run_dir: str | os.PathLike[str]) -> str:
    """Names the trained weights: architecture plus the start of the weights' SHA-256 (for an
    ensemble, the member count and a hash of every member's weights, in order)."""
    models = run_models(run_dir)
    digests, architectures = [], []
    for model_dir in models.model_dirs:
        architectures.append(read_json(model_dir / "model.json", MODEL_CARD)["architecture"])
        # Checked from its header first: a weights file that is a device, a FIFO or far too big
        # is refused before the hash would read it to the end.
        digests.append(weights_digest(model_dir / "model.safetensors"))
    if models.kind == "single":
        return f"{architectures[0]}-{digests[0][:12]}"
    shared = architectures[0] if len(set(architectures)) == 1 else "mixed"
    combined = hashlib.sha256("\n".join(digests).encode()).hexdigest()
    return f"ensemble-{len(digests)}x{shared}-{combined[:12]}"
