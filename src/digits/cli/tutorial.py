"""``digits tutorial``: the whole 2017 tutorial, printing each step."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from digits.cli.args import (
    HelpFormatter,
    add_no_report_flag,
    add_output_flags,
    non_negative_int,
    positive_int,
)
from digits.console import console
from digits.output import print_summary, run_files, wants_json


def add_commands(sub: Any) -> None:
    """Register ``digits tutorial`` on the main parser's sub-parsers."""
    tut = sub.add_parser("tutorial", formatter_class=HelpFormatter, help="the 2017 tutorial, end to end")
    tut.add_argument("--data", default="data", metavar="DIR", help="Kaggle folder (train.csv, test.csv)")
    tut.add_argument("--out", metavar="RUN_DIR", help="run directory (default: runs/<time>-tutorial)")
    tut.add_argument("--epochs", type=positive_int, default=25, metavar="N", help="exploration epochs")
    tut.add_argument("--seed", type=non_negative_int, default=0, metavar="N")
    add_output_flags(tut)
    add_no_report_flag(tut)


def tutorial(args: argparse.Namespace, created: list[Path]) -> int:
    """``digits tutorial``: every step of the tutorial on ``--data``, into a new run directory."""
    import digits
    from digits.cli.report import report_on
    from digits.cli.train import make_run_dir
    from digits.console import EpochProgress
    from digits.data.paths import data_file
    from digits.output import emit_json
    from digits.results import tutorial_result

    data_dir = Path(args.data)
    for kind in ("train", "test"):
        data_file(None, data_dir, kind)
    digits.load_kaggle_csv(data_dir / "train.csv", kind="train")  # validate before creating anything
    run_dir = make_run_dir(args.out, "tutorial", created)
    started = time.perf_counter()
    result = digits.run_tutorial(data_dir, run_dir, digits.TUTORIAL.replace(epochs=args.epochs, seed=args.seed),
                                 say=console.print, callbacks=[EpochProgress()])
    created.clear()
    seconds = time.perf_counter() - started
    if args.report:
        report_on(result.run_dir)
    if wants_json(args):
        emit_json("tutorial", tutorial_result(run_dir, data_dir, seconds))
        return 0
    print_summary(f"run directory {result.run_dir} ({seconds:.0f} s)", run_files(run_dir) | {
        f"validation_{label}": path for label, path in run_files(run_dir / "validation").items()})
    if result.score is not None:
        console.print(f"score: {result.score:.5f}")
    return 0


COMMANDS = {"tutorial": tutorial}
