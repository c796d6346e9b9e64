"""``digits train``: a preset (or the defaults) with the flags on top, trained into a new run
directory, or an interrupted run resumed."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from digits.cli.args import (
    HelpFormatter,
    add_data_flags,
    add_device_flag,
    add_no_report_flag,
    add_output_flags,
    data_path,
    fraction,
    key_value,
    member_range,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)
from digits.console import console
from digits.data.normalise import NORMALISATIONS
from digits.errors import RunError
from digits.hardware import PRECISIONS
from digits.output import finish, run_files


def add_commands(sub: Any) -> None:
    """Register ``digits train`` on the main parser's sub-parsers."""
    from digits.presets import list_presets

    train = sub.add_parser("train", formatter_class=HelpFormatter,
                           help="train one model (or an ensemble) into a run directory; flags override the preset")
    train.add_argument("--preset", metavar="NAME", help=f"{', '.join(list_presets())}, or a .toml file")
    train.add_argument("--model", metavar="NAME", help="see `digits models` (default: tutorial-mlp)")
    train.add_argument("--model-arg", action="append", type=key_value, default=[], metavar="KEY=VALUE",
                       help="builder argument, JSON value (e.g. hidden=[512,256])")
    add_data_flags(train, "train")
    train.add_argument("--epochs", type=positive_int, metavar="N", help="default 25")
    train.add_argument("--batch-size", type=positive_int, metavar="N", help="default 64")
    train.add_argument("--optimizer", choices=["sgd", "rmsprop", "adam", "adamw"], help="default rmsprop")
    train.add_argument("--lr", type=positive_float, metavar="LR", help="learning rate, default 0.001")
    train.add_argument("--weight-decay", type=non_negative_float, metavar="WD")
    train.add_argument("--schedule", choices=["constant", "step", "exponential", "cosine", "onecycle", "plateau"])
    train.add_argument("--label-smoothing", type=fraction, metavar="F")
    train.add_argument("--augment", action="append", type=key_value, default=[], metavar="KEY=VALUE",
                       help="rotation=10 zoom=0.1 shift=0.1 elastic=2 noise=0.1 blur=1 contrast=0.5 stroke=0.5 "
                            "erase=0.3 photometric=0.5 (the share of digits the photometric ones reach; on the "
                            "device, per batch; see digits.train.augment)")
    train.add_argument("--normalise", choices=NORMALISATIONS,
                       help="input normalisation, recorded in the run and applied by every reader of it (mnist: "
                            "background, contrast, ink box fitted to 20x20, centred by mass; ink: background and "
                            "contrast only, the digit left where it is; default none)")
    train.add_argument("--outlier-exposure", type=non_negative_float, metavar="W",
                       help="weight of outlier exposure: a quarter batch of letters (Liberation fonts) and pen "
                            "scribbles per step, pulled toward no answer, so that what is no digit is read as "
                            "not a digit (default 0: off)")
    train.add_argument("--early-stopping", type=non_negative_int, metavar="PATIENCE",
                       help="stop after PATIENCE epochs without a better val_accuracy, keep the best weights")
    train.add_argument("--val-split", type=fraction, metavar="F",
                       help="last fraction of rows held out for validation, before shuffling (default 0.05)")
    train.add_argument("--seed", type=non_negative_int, metavar="N", help="default 0")
    add_device_flag(train, default=None)
    train.add_argument("--precision", choices=PRECISIONS,
                       help="number format (default auto: bf16 where the hardware computes it natively, "
                            "fp16 + gradient scaling on pre-Ampere GPUs, else fp32)")
    train.add_argument("--compile", action="store_true", default=None, help="torch.compile the model")
    train.add_argument("--channels-last", action="store_true", default=None, help="NHWC memory layout")
    train.add_argument("--cuda-graphs", action="store_true", default=None,
                       help="on CUDA, replay captured optimizer steps (drops the last partial batch)")
    train.add_argument("--ensemble", type=positive_int, metavar="N", help="train N members (seeds seed..seed+N-1)")
    train.add_argument("--bagging", type=fraction, metavar="F",
                       help="each ensemble member holds out its own random fraction F for validation")
    train.add_argument("--workers", type=positive_int, metavar="N", help="ensemble members trained at once")
    train.add_argument("--members", type=member_range, metavar="START:END",
                       help="train only the ensemble's members START to END-1 (from 0) into --out, a folder "
                            "other jobs (machines, a job array) share: each trains its own range")
    train.add_argument("--out", metavar="RUN_DIR", help="run directory (default: runs/<time>-<preset or model>)")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last checkpoint")
    add_output_flags(train)
    add_no_report_flag(train)


def train(args: argparse.Namespace, created: list[Path]) -> int:
    """``digits train``: validate everything first, then train into a new run directory."""
    import digits
    from digits.cli.report import report_on

    if args.resume:
        run_dir = _resume(args)
    else:
        preset = digits.load_preset(args.preset) if args.preset else None
        plan = digits.training_plan(
            preset, model=args.model, model_args=dict(args.model_arg), augment=dict(args.augment),
            epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr,
            weight_decay=args.weight_decay, schedule=args.schedule, label_smoothing=args.label_smoothing,
            normalise=args.normalise, outlier_exposure=args.outlier_exposure,
            early_stopping=args.early_stopping, val_split=args.val_split,
            seed=args.seed, device=args.device,
            precision=args.precision, compile=args.compile, channels_last=args.channels_last,
            cuda_graphs=args.cuda_graphs, members=args.ensemble, bagging=args.bagging, workers=args.workers,
            part=args.members)
        _check_members(args, plan.members)
        source = data_path(args, "train")
        rows = digits.load_kaggle_csv(source, kind="train")
        if plan.part is not None:  # one job of several: the folder is shared, never removed on failure
            from digits.runs import open_shared_run_dir

            run_dir = open_shared_run_dir(args.out)
        else:
            run_dir = make_run_dir(args.out, preset.name if preset else plan.config.model, created)
        what = f"members {plan.part[0]}:{plan.part[1]} of {plan.members} " if plan.part else ""
        console.print(f"training {what}{plan.config.model} on {len(rows)} rows from {source} into {run_dir}, "
                      f"in {plan.config.precision} on {_hardware_of(plan.config.device).describe()}")
        _train_into(plan, rows, run_dir, str(source))
        created.clear()
    if args.report and not _members_missing(run_dir):
        report_on(run_dir)
    return finish(args, "train", lambda: _describe_run(run_dir), run_files(run_dir), f"run directory {run_dir}")


def _check_members(args: argparse.Namespace, members: int) -> None:
    """``--members START:END`` needs an ensemble and the shared ``--out`` folder."""
    if args.members is None:
        return
    if members < 2:
        raise RunError(f"--members {args.members[0]}:{args.members[1]}: needs an ensemble (--ensemble N, "
                       "or a preset with members); this trains one model")
    if not args.out:
        raise RunError("--members needs --out RUN_DIR: the run directory every job of the ensemble writes into")


def _members_missing(run_dir: Path) -> list[int]:
    """The members of a partial ensemble still to train (other --members jobs' share)."""
    from digits.jsonfile import ENSEMBLE, read_json
    from digits.runmodels import ENSEMBLE_FILE, missing_members

    if not (run_dir / ENSEMBLE_FILE).is_file():
        return []
    return missing_members(run_dir, read_json(run_dir / ENSEMBLE_FILE, ENSEMBLE)["members"])


def _describe_run(run_dir: Path) -> dict[str, Any]:
    from digits.results import describe_run

    return describe_run(run_dir)


def _hardware_of(device: str) -> Any:
    """The hardware facts of a configured device name (``auto`` included)."""
    from digits.hardware import hardware
    from digits.train.device import resolve_device

    return hardware(resolve_device(device))


def _train_into(plan: Any, rows: Any, run_dir: Path, source: str, resume: bool = False) -> None:
    import digits
    from digits.console import EpochProgress

    result = digits.run_training(plan, rows, run_dir, [EpochProgress()], source, resume=resume, log=console.print)
    if plan.members > 1:
        metrics = result.metrics
        if metrics.get("missing"):
            console.print(f"done: {len(metrics['member_metrics'])} of {plan.members} members, "
                          f"{metrics['train_seconds']:.1f} s of training; still to train (by other --members "
                          f"jobs): {', '.join(metrics['missing'])}")
            return
        console.print(f"done: {plan.members} members, {metrics['train_seconds']:.1f} s of training")
        return
    for line in _train_summary(result.metrics, plan.config.to_dict(), run_dir, Path(source)):
        console.print(line, soft_wrap=True)


def _train_summary(metrics: dict, config: dict, run_dir: Path, source: Path) -> list[str]:
    """The closing lines of a training run: its held-out score, or why it has none and how to get one."""
    from digits.train.run import no_held_out_note

    final, seconds = metrics["final"], metrics["train_seconds"]
    if final["val_accuracy"] is not None:
        return [f"done: val_accuracy {final['val_accuracy']:.4f}, {seconds:.1f} s"]
    if final["accuracy"] is None:
        return [f"done: no epochs, {seconds:.1f} s"]
    folder = source.parent
    if (folder / "solution.csv").is_file():
        how = (f"for a test score: `digits predict {run_dir} --data {folder}`, then `digits score "
               f"{run_dir / 'submission.csv'} --solution {folder / 'solution.csv'}`")
    else:
        how = f"for a test score: `digits predict {run_dir}`, then `digits score` it (or upload it to Kaggle)"
    epochs = f"{metrics['epochs']} epoch{'s' if metrics['epochs'] != 1 else ''}"
    return [f"done: {epochs}, {seconds:.1f} s; {no_held_out_note(config, final)}",
            f"  {how}; benchmarks/time_to_99.py measures a preset over many seeds"]


def _resume(args: argparse.Namespace) -> Path:
    """Continue ``--resume RUN_DIR`` with the settings and data recorded in the run."""
    import digits
    from digits.atomic import remove_leftovers
    from digits.jsonfile import ENSEMBLE, RESUMABLE_CONFIG, read_json
    from digits.runs import RUN_FILES, unfinished_run
    from digits.train.ensemble import EnsembleSpec

    run_dir = Path(args.resume)
    if not run_dir.is_dir():
        raise RunError(f"{run_dir}: no such run directory")
    if (run_dir / "ensemble.json").is_file():
        recorded = read_json(run_dir / "ensemble.json", ENSEMBLE)
        config = digits.TrainConfig.from_dict(recorded["train"], f"{run_dir / 'ensemble.json'}: field 'train'")
        plan = EnsembleSpec(config, len(recorded["members"]), recorded.get("bagging") or 0.0,
                            bool(recorded.get("tta")), args.workers or 1, part=args.members,
                            variants=tuple(recorded.get("variants") or ()))
        first = read_json(run_dir / recorded["members"][0] / "config.json", RESUMABLE_CONFIG)
        source = first["data"]["source"]
    else:
        recorded = read_json(run_dir / "config.json", RESUMABLE_CONFIG)
        where = f"{run_dir / 'config.json'}: field 'train'"
        if args.members is not None:
            raise RunError(f"--members: {run_dir} is a run of one model, not an ensemble")
        plan = EnsembleSpec(digits.TrainConfig.from_dict(recorded["train"], where))
        source = recorded["data"]["source"]
    if not unfinished_run(run_dir):
        raise RunError(f"{run_dir}: no checkpoint to resume from (the run finished)")
    # A kill mid-write leaves our temporary files (a SIGKILL runs no clean-up): gone before going on.
    for folder in (run_dir, run_dir / "checkpoint"):
        remove_leftovers(folder, RUN_FILES)
    # Killed before its first checkpoint: config.json has all it takes to start it again.
    started = (run_dir / "ensemble.json").is_file() or (run_dir / "checkpoint" / "state.json").is_file()
    rows = digits.load_kaggle_csv(source, kind="train")
    _same_rows_as_recorded(run_dir, rows, source)
    console.print(f"{'resuming' if started else 'starting again (no checkpoint yet)'} {run_dir} on {source}")
    _train_into(plan, rows, run_dir, source, resume=started)
    return run_dir


def _same_rows_as_recorded(run_dir: Path, rows: Any, source: str) -> None:
    """A RunError when the training file changed since the run began: resuming would train
    on rows its training_rows.npy does not list."""
    from digits.data.identity import rows_hash
    from digits.jsonfile import read_json

    first = run_dir if (run_dir / "config.json").is_file() else next(
        (d for d in sorted((run_dir / "members").glob("*")) if (d / "config.json").is_file()), None)
    recorded = read_json(first / "config.json")["data"].get("rows_hash") if first else None
    if recorded and recorded != rows_hash(rows):
        raise RunError(f"{source}: not the rows {run_dir} began training on (their hash differs); "
                       "resume needs the very same file")


def make_run_dir(out: str | None, name: str, created: list[Path]) -> Path:
    """The run directory to write: ``out``, claimed, or a new timestamped one under runs/;
    noted in ``created`` so that a failed command removes it."""
    from digits.runs import claim_run_dir, new_run_dir

    path = new_run_dir(name) if out is None else claim_run_dir(out)
    created.append(path)
    return path


COMMANDS = {"train": train}
