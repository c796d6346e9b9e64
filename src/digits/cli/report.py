"""``digits report`` (one run's HTML page) and ``digits compare`` (runs side by side)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from digits.cli.args import HelpFormatter, add_device_flag
from digits.console import console


def add_commands(sub: Any) -> None:
    """Register ``digits report`` and ``digits compare`` on the main parser's sub-parsers."""
    report = sub.add_parser("report", formatter_class=HelpFormatter,
                            help="a self-contained HTML report of a run directory, its PNGs beside it")
    report.add_argument("run_dir", metavar="RUN_DIR")
    report.add_argument("--out", metavar="HTML", help="report file (default: RUN_DIR/report/report.html)")
    add_device_flag(report)

    compare = sub.add_parser("compare", formatter_class=HelpFormatter,
                             help="runs side by side: a table, and an HTML page with their validation curves")
    compare.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    compare.add_argument("--out", default="compare", metavar="DIR", help="folder for compare.html and its PNG")


def report(args: argparse.Namespace, created: list[Path]) -> int:
    """``digits report RUN_DIR``: the run's self-contained HTML report."""
    report_on(Path(args.run_dir), args.out, args.device)
    return 0


def report_on(run_dir: Path, out: str | None = None, device: str = "auto") -> Path:
    """Write ``run_dir``'s report, with a progress bar while it re-predicts its held-out rows,
    and print where it went."""
    import digits
    from digits.console import WorkBar
    from digits.train.device import resolve_device

    started = time.perf_counter()
    bars: list[WorkBar] = []

    def progress(done: int, total: int) -> None:  # the report's re-prediction of its held-out rows
        if not bars:
            bars.append(WorkBar("report: predicting", total, "digits").__enter__())
        bars[0].update(done)

    try:
        path = digits.write_report(run_dir, out, device=resolve_device(device), progress=progress)
    finally:
        for bar in bars:
            bar.__exit__()
    console.print(f"report: {path} ({time.perf_counter() - started:.1f} s)")
    return path


def compare(args: argparse.Namespace, created: list[Path]) -> int:
    """``digits compare RUN_DIR...``: a table of the runs, and a page with their curves."""
    import digits
    from digits.report.compare import comparison_table, read_runs, without_validation

    records = read_runs(args.run_dirs)
    page = digits.write_comparison(records, args.out)
    console.print(comparison_table(records))
    missing = without_validation(records)
    if missing:
        console.print(f"no validation curve (no validation rows): {', '.join(missing)}", soft_wrap=True)
    console.print(f"comparison: {page}")
    return 0


COMMANDS = {"report": report, "compare": compare}
