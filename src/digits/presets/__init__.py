"""Presets: named training recipes stored as TOML files in this folder (data, not code), and
``training_plan``, which turns one (or the defaults) into what a run trains: the config for
the hardware it runs on, with the caller's overrides on top."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from digits.atomic import write_text
from digits.errors import DigitsError
from digits.hardware import Hardware, hardware
from digits.tomlfiles import read_named_toml, shipped_names
from digits.train.config import TrainConfig

if TYPE_CHECKING:
    from digits.train.ensemble import EnsembleSpec


@dataclass(frozen=True)
class Preset:
    """A recipe: the training config plus how many ensemble members, bagging and TTA."""

    name: str
    description: str
    target: str
    config: TrainConfig
    members: int = 1
    bagging: float = 0.0   # fraction of rows each member holds out at random; 0 = config.val_split
    tta: bool = False      # test-time augmentation when predicting
    workers: int = 1       # members trained at once (processes); useful on a GPU
    # Per device type ("cpu", "cuda", "mps"): settings that replace the config's there, and
    # within a table, per class of hardware ("native-bf16", "emulated-bf16"): settings that
    # replace those. What is fastest differs: channels-last pays on a CPU with AMX, not on AVX2.
    on_device: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The ensemble's members, in turn, train with these settings on top (EnsembleSpec.variants).
    variants: tuple[dict[str, Any], ...] = ()

    def settings_for(self, hw: Hardware) -> dict[str, Any]:
        """The training settings this preset changes on hardware ``hw``: its ``[cpu]``/``[cuda]``/
        ``[mps]`` table, then that table's ``[cpu.native-bf16]`` or ``[cpu.emulated-bf16]`` sub-table."""
        return {k: v for k, v in self._table_for(hw).items() if k not in DEVICE_ENSEMBLE_SETTINGS}

    def members_for(self, hw: Hardware) -> int:
        """How many members the ensemble has on hardware ``hw``: a device table's ``members``, else
        the ``[ensemble]`` table's (fewer where an epoch takes longer, to keep the preset's time)."""
        return int(self._table_for(hw).get("members", self.members))

    def _table_for(self, hw: Hardware) -> dict[str, Any]:
        table = dict(self.on_device.get(hw.kind, {}))
        classes = {name: table.pop(name) for name in HARDWARE_CLASSES if name in table}
        return table | classes.get(hw.bf16_class, {})

    def config_for(self, target: Any) -> TrainConfig:
        """The training config on ``target`` (a ``torch.device``, a name such as "cuda:0", or the
        ``Hardware`` facts of one): the preset's, with the settings for that hardware applied and
        its number format resolved."""
        from digits.train.device import resolve_config

        hw = target if isinstance(target, Hardware) else hardware(target)
        return resolve_config(self.config.replace(**self.settings_for(hw)), hw)

    def trains(self) -> str:
        """What it trains, in a few words: "15 x kaggle-cnn, 30 epochs, batch 128"."""
        config = self.config
        what = f"{self.members} x {config.model}" if self.members > 1 else config.model
        return f"{what}, {config.epochs} epoch{'s' if config.epochs != 1 else ''}, batch {config.batch_size}"

    def device_tables(self) -> list[str]:
        """Its per-hardware tables, one line each: ``[cuda] channels_last=false``, then
        ``[cuda.native-bf16] precision="fp32"``."""
        lines = []
        for kind, values in self.on_device.items():
            general = {k: v for k, v in values.items() if k not in HARDWARE_CLASSES}
            if general or len(general) == len(values):  # an empty [cpu] above [cpu.native-bf16] says nothing
                lines.append(f"[{kind}] {settings_text(general)}")
            lines += [f"[{kind}.{name}] {settings_text(values[name])}" for name in HARDWARE_CLASSES
                      if name in values]
        return lines


def settings_text(values: dict[str, Any]) -> str:
    """Settings as ``key=JSON`` pairs: ``epochs=30, augment={"rotation": 10.0}``."""
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in values.items())


def list_presets() -> list[str]:
    """Names of the built-in presets."""
    return shipped_names(resources.files(__package__))


def load_preset(name: str) -> Preset:
    """A built-in preset by name, or any preset file by path (``my.toml``)."""
    label, data = read_named_toml(name, resources.files(__package__), "preset")
    return _from_dict(label, data)


def training_plan(preset: str | os.PathLike[str] | Preset | None = None, *,
                  model_args: Mapping[str, Any] | None = None, augment: Mapping[str, Any] | None = None,
                  members: int | None = None, bagging: float | None = None, workers: int | None = None,
                  part: tuple[int, int] | None = None, **settings: Any) -> EnsembleSpec:
    """What a run trains: ``preset`` (a name, a .toml file, a ``Preset``; None: the defaults of
    ``TrainConfig``) resolved for the hardware it will run on, with ``settings`` on top.

    In order: the preset's ``[train]`` table; its ``[cpu]``/``[cuda]``/``[mps]`` table and the
    ``[cpu.native-bf16]``-style sub-table for the device (``settings["device"]``, else the
    preset's); then ``settings`` (any ``TrainConfig`` field; ``None`` keeps the preset's), the
    ``model_args`` and ``augment`` entries added to the preset's (a different model starts its
    arguments afresh); last, the number format is resolved for that hardware. ``members``,
    ``bagging`` and ``workers`` replace the preset's ``[ensemble]`` ones; ``part`` (start, end) makes
    the plan one job of several, training only members start to end-1 (``--members``). An unknown model,
    model argument or setting fails here, before any work.

    >>> plan = training_plan("fast", device="cpu", epochs=2)      # doctest: +SKIP
    >>> plan.config.epochs, plan.config.batch_size, plan.members  # doctest: +SKIP
    (2, 384, 1)
    """
    from digits.models.registry import resolve_model_args
    from digits.train.device import resolve_config, resolve_device
    from digits.train.ensemble import EnsembleSpec

    known = {f.name for f in dataclasses.fields(TrainConfig)} - {"model_args", "augment"}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise DigitsError(f"unknown training setting(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    if preset is not None and not isinstance(preset, Preset):
        preset = load_preset(os.fspath(preset))
    base = TrainConfig()
    if preset is not None:
        device = resolve_device(settings.get("device") or preset.config.device)
        base = preset.config.replace(**preset.settings_for(hardware(device)))
    args = dict(base.model_args) if settings.get("model") in (None, base.model) else {}
    args.update(model_args or {})
    config = base.replace(**settings).replace(model_args=args, augment=dict(base.augment) | dict(augment or {}))
    resolve_model_args(config.model, **config.model_args)  # unknown model or argument: fail before any work
    config = resolve_config(config, resolve_device(config.device))  # the format this hardware runs
    ensemble = preset or Preset("", "", "", config)  # no preset: one member, no bagging, no TTA
    return EnsembleSpec(config, members=members or ensemble.members_for(hardware(resolve_device(config.device))),
                        bagging=ensemble.bagging if bagging is None else bagging, tta=ensemble.tta,
                        workers=workers or ensemble.workers, part=part, variants=ensemble.variants)


DEVICE_TABLES = ("cpu", "cuda", "mps")
HARDWARE_CLASSES = ("native-bf16", "emulated-bf16")
DEVICE_ENSEMBLE_SETTINGS = ("members",)  # what a device table may set beside training settings


def _from_dict(label: str, data: dict[str, Any]) -> Preset:
    unknown = sorted(set(data) - {"description", "target", "train", "ensemble", *DEVICE_TABLES})
    if unknown:
        known = ", ".join(["description", "target", "[train]", "[ensemble]"] + [f"[{d}]" for d in DEVICE_TABLES])
        raise DigitsError(f"preset {label}: unknown key(s) {', '.join(unknown)}; known: {known}")
    ensemble = data.get("ensemble", {})
    unknown = sorted(set(ensemble) - {"members", "bagging", "tta", "workers", "variants"})
    if unknown:
        raise DigitsError(f"preset {label}: unknown [ensemble] setting(s) {', '.join(unknown)}")
    config = TrainConfig.from_dict(data.get("train", {}))
    variants = ensemble.get("variants", [])
    if not isinstance(variants, list) or not all(isinstance(v, dict) for v in variants):
        raise DigitsError(f"preset {label}: [ensemble] variants must be a list of tables of training settings")
    for i, variant in enumerate(variants):
        config.with_settings(variant, f"preset {label}: [ensemble] variant {i + 1}")
    on_device = {kind: data[kind] for kind in DEVICE_TABLES if kind in data}
    for kind, settings in on_device.items():
        if not isinstance(settings, dict):
            raise DigitsError(f"preset {label}: [{kind}] must be a table of training settings")
        general = {k: v for k, v in settings.items() if k not in HARDWARE_CLASSES}
        tables = {kind: general}
        for name in HARDWARE_CLASSES:
            if name in settings and not isinstance(settings[name], dict):
                raise DigitsError(f"preset {label}: [{kind}.{name}] must be a table of training settings")
            if name in settings:
                tables[f"{kind}.{name}"] = general | settings[name]
        for table, values in tables.items():
            members = values.get("members", 1)
            if not isinstance(members, int) or isinstance(members, bool) or members < 1:
                raise DigitsError(f"preset {label}: [{table}]: members should be a whole number >= 1, "
                                  f"found {members!r}")
            values = {k: v for k, v in values.items() if k not in DEVICE_ENSEMBLE_SETTINGS}
            try:  # fail at load, naming the table, rather than on the first run on that hardware
                TrainConfig.from_dict(config.to_dict() | values)
            except DigitsError as exc:
                raise DigitsError(f"preset {label}: [{table}]: {exc}") from None
    return Preset(Path(label).stem, data.get("description", ""), data.get("target", ""), config,
                  int(ensemble.get("members", 1)), float(ensemble.get("bagging", 0.0)),
                  bool(ensemble.get("tta", False)), int(ensemble.get("workers", 1)), on_device,
                  tuple(variants))


def preset_toml(config: TrainConfig, description: str = "", target: str = "") -> str:
    """``config`` as preset text; ``load_preset`` reads it back to the same config."""
    lines = [f"description = {_toml_value(description)}", f"target = {_toml_value(target)}", "", "[train]"]
    tables = {}
    for key, value in config.to_dict().items():
        if isinstance(value, dict):
            tables[key] = value
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    for name, table in tables.items():
        lines += ["", f"[train.{name}]"] + [f"{k} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def write_preset(path: str | os.PathLike[str], config: TrainConfig, description: str = "",
                 target: str = "") -> Path:
    """Write ``config`` as a preset file, atomically; train it with ``digits train --preset PATH``."""
    return write_text(path, preset_toml(config, description, target))


def _toml_value(value: Any) -> str:
    # JSON's strings, numbers, booleans and arrays are valid TOML values.
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        raise DigitsError("a preset cannot hold NaN or infinity")
    return json.dumps(value)
