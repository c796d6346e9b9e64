"""``digits models`` (the registry) and ``digits presets`` (the shipped recipes)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from digits.cli.args import HelpFormatter
from digits.console import console


def add_commands(sub: Any) -> None:
    """Register ``digits models`` and ``digits presets`` on the main parser's sub-parsers."""
    models = sub.add_parser("models", formatter_class=HelpFormatter, help="list the registered models")
    models.add_argument("pattern", nargs="?", default="*", help="shell-style name filter")
    presets = sub.add_parser("presets", formatter_class=HelpFormatter,
                             help="list the shipped presets, or show one (`digits train --preset NAME`)")
    presets.add_argument("name", nargs="?", metavar="NAME", help="a preset to show whole (name or .toml file)")


def models(args: argparse.Namespace, created: list[Path]) -> int:
    """``digits models``: the registry, with parameter counts."""
    from rich.table import Table

    import digits
    from digits.errors import ModelError, did_you_mean

    found = digits.list_models(args.pattern)
    if not found:
        names = [info.name for info in digits.list_models()]
        raise ModelError(f"no model matches {args.pattern!r}{did_you_mean(args.pattern, names)}; "
                         f"known models: {', '.join(names)}")
    table = Table("model", "parameters", "description", "target", box=None, pad_edge=False)
    for info in found:
        table.add_row(info.name, f"{digits.count_parameters(digits.create_model(info.name)):,}",
                      info.description, info.target)
    console.print(table)
    return 0


def presets(args: argparse.Namespace, created: list[Path]) -> int:
    """``digits presets [NAME]``: the shipped recipes in a table, or one preset whole, each with
    the settings it resolves to on this machine's hardware."""
    from rich.markup import escape
    from rich.table import Table

    import digits
    from digits.hardware import hardware
    from digits.presets import settings_text
    from digits.train.device import resolve_device

    hw = hardware(resolve_device("auto"))

    def here(preset: Any) -> str:
        config = preset.config_for(hw)
        return (f"{config.precision}, batch {config.batch_size}"
                + (", channels-last" if config.channels_last else ""))

    if args.name:
        preset = digits.load_preset(args.name)
        lines = [f"{preset.name}: {preset.description}", f"target: {preset.target}",
                 f"[train] {settings_text(preset.config.to_dict())}"]
        if preset.members > 1:
            lines.append(f"[ensemble] members={preset.members}, bagging={preset.bagging}, "
                         f"tta={json.dumps(preset.tta)}, workers={preset.workers}"
                         + (f", variants={json.dumps(list(preset.variants))}" if preset.variants else ""))
        lines += preset.device_tables()
        lines.append(f"here ({hw.describe()}): {here(preset)}")
        for line in lines:
            console.print(line, highlight=False, markup=False)
        return 0
    table = Table("preset", "trains", "per hardware", "here", "target", box=None, pad_edge=False)
    table.columns[1].no_wrap = True  # "15 x kaggle-cnn, 45 epochs, batch 64" reads as one thing
    for name in digits.list_presets():
        preset = digits.load_preset(name)
        table.add_row(name, preset.trains(), escape("; ".join(preset.device_tables())), here(preset), preset.target)
    console.print(table)
    console.print(f"here: {hw.describe()}. `digits presets NAME` shows one whole; "
                  "`digits train --preset NAME` trains it.")
    return 0


COMMANDS = {"models": models, "presets": presets}
