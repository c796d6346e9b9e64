"""The CLI's commands: each turns parsed arguments into library calls and prints the result.

Heavy imports (torch, matplotlib) happen inside the commands that need them, so that
quick commands (``score``, ``data check`` on a submission) start fast.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from digits.console import console
from digits.errors import RunError
from digits.output import finish, print_summary, run_files, wants_json


def data(args: argparse.Namespace, created: list[Path]) -> int:
    """``digits data prepare`` and ``digits data check``."""
    if args.data_command == "prepare":
        from digits.console import DownloadProgress
        from digits.data.prepare import prepare_kaggle_folder

        started = time.perf_counter()
        if not Path(args.out).exists():
            created.append(Path(args.out))  # a prepare that fails leaves no folder behind
        with DownloadProgress(console) as downloads:
            result = prepare_kaggle_folder(args.out, args.seed, tuple(args.sources),
                                           log=lambda m: console.print(f"  {m}"), on_bytes=downloads.update,
                                           force=args.force)
        print_summary(f"data ready in {result.folder} ({time.perf_counter() - started:.1f} s)",
                      {path.name: path for path in result.files})
        return 0
    return _check_file(Path(args.file))


def _check_file(path: Path) -> int:
    from digits.data.kaggle import load_kaggle_csv
    from digits.predict.submission import read_submission

    from digits.data.paths import require_file

    require_file(path)
    if _first_line(path).startswith("ImageId"):
        labels = read_submission(path)
        console.print(f"{path}: submission, {len(labels)} rows, ImageId 1..{len(labels)}")
        _print_counts(labels)
        return 0
    started = time.perf_counter()
    digits = load_kaggle_csv(path)
    kind = "train" if digits.labelled else "test"
    console.print(f"{digits.origin}: {kind} file, {len(digits)} rows of 784 pixels "
                  f"(read in {time.perf_counter() - started:.2f} s)")
    if digits.labels is not None:
        _print_counts(digits.labels)
    return 0


def _first_line(path: Path) -> str:
    with open(path, "rb") as fh:
        return fh.readline(200).decode("utf-8-sig", "replace").strip()  # past a byte-order mark


def _print_counts(labels: object) -> None:
    import numpy as np

    counts = np.bincount(np.asarray(labels), minlength=10)
    console.print("labels: " + ", ".join(f"{d}: {c}" for d, c in enumerate(counts)))


def train(args: argparse.Namespace, created: list[Path]) -> int:
    """``digits train``: validate everything first, then train into a new run directory."""
    from digits.data.kaggle import load_kaggle_csv

    if args.resume:
        run_dir = _resume(args)
    else:
        spec, name = _training_spec(args)
        source = _data_path(args, "train")
        digits = load_kaggle_csv(source, kind="train")
        run_dir = _make_run_dir(args.out, name, created)
        console.print(f"training {spec.config.model} on {len(digits)} rows from {source} into {run_dir}, "
                      f"in {spec.config.precision} on {hardware_of(spec.config.device).describe()}")
        _train_into(spec, digits, run_dir, str(source))
        created.clear()
    if args.report:
        _report_on(run_dir)
    return _finish_train(args, run_dir)


def hardware_of(device: str):
    """The hardware facts of a configured device name (``auto`` included)."""
    from digits.hardware import hardware
    from digits.train.device import resolve_device

    return hardware(resolve_device(device))


def _finish_train(args: argparse.Namespace, run_dir: Path) -> int:
    """The run's JSON object, or the files it wrote."""
    from digits.results import describe_run

    return finish(args, "train", lambda: describe_run(run_dir), run_files(run_dir),
                  f"run directory {run_dir}")


def _training_spec(args: argparse.Namespace):
    """The preset (or defaults) with every given flag applied on top."""
    from digits.models.registry import resolve_model_args
    from digits.presets import load_preset
    from digits.train.config import TrainConfig
    from digits.hardware import hardware
    from digits.train.device import resolve_config, resolve_device
    from digits.train.ensemble import EnsembleSpec

    preset = load_preset(args.preset) if args.preset else None
    # The preset's settings for the hardware it will run on (its [cuda] table on a GPU, say);
    # flags given on the command line still win; then the number format is resolved, once.
    base = TrainConfig()
    if preset:
        base = preset.config.replace(**preset.settings_for(hardware(resolve_device(args.device or
                                                                                   preset.config.device))))
    model_args = dict(base.model_args) if args.model in (None, base.model) else {}
    model_args.update(dict(args.model_arg))
    augment = dict(base.augment) | dict(args.augment)
    config = base.replace(model=args.model, epochs=args.epochs, batch_size=args.batch_size,
                          optimizer=args.optimizer, lr=args.lr, weight_decay=args.weight_decay,
                          schedule=args.schedule, label_smoothing=args.label_smoothing,
                          early_stopping=args.early_stopping, val_split=args.val_split, seed=args.seed,
                          device=args.device, precision=args.precision, compile=args.compile,
                          channels_last=args.channels_last, cuda_graphs=args.cuda_graphs)
    config = config.replace(model_args=model_args, augment=augment)
    resolve_model_args(config.model, **config.model_args)  # unknown model or argument: fail before any work
    config = resolve_config(config, resolve_device(config.device))  # the format this hardware runs
    spec = EnsembleSpec(config, members=args.ensemble or (preset.members if preset else 1),
                        bagging=args.bagging if args.bagging is not None else (preset.bagging if preset else 0.0),
                        tta=preset.tta if preset else False,
                        workers=args.workers or (preset.workers if preset else 1))
    return spec, (preset.name if preset else config.model)


def _train_into(spec, digits, run_dir: Path, source: str, resume: bool = False) -> None:
    from digits.console import EpochProgress
    from digits.train.ensemble import train_ensemble
    from digits.train.run import train_run

    if spec.members > 1:
        metrics = train_ensemble(spec, digits, run_dir, [EpochProgress()], source, log=console.print)
        console.print(f"done: {spec.members} members, {metrics['train_seconds']:.1f} s of training")
        return
    result = train_run(spec.config, digits, run_dir, [EpochProgress()], source, resume=resume)
    for line in _train_summary(result.metrics, spec.config.to_dict(), run_dir, Path(source)):
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
    from digits.data.kaggle import load_kaggle_csv
    from digits.jsonfile import ENSEMBLE, RESUMABLE_CONFIG, read_json
    from digits.atomic import remove_leftovers
    from digits.runs import RUN_FILES, unfinished_run
    from digits.train.config import TrainConfig
    from digits.train.ensemble import EnsembleSpec

    run_dir = Path(args.resume)
    if not run_dir.is_dir():
        raise RunError(f"{run_dir}: no such run directory")
    if (run_dir / "ensemble.json").is_file():
        recorded = read_json(run_dir / "ensemble.json", ENSEMBLE)
        config = TrainConfig.from_dict(recorded["train"], f"{run_dir / 'ensemble.json'}: field 'train'")
        spec = EnsembleSpec(config, len(recorded["members"]), recorded.get("bagging") or 0.0,
                            bool(recorded.get("tta")), args.workers or 1)
        first = read_json(run_dir / recorded["members"][0] / "config.json", RESUMABLE_CONFIG)
        source = first["data"]["source"]
    else:
        recorded = read_json(run_dir / "config.json", RESUMABLE_CONFIG)
        where = f"{run_dir / 'config.json'}: field 'train'"
        spec = EnsembleSpec(TrainConfig.from_dict(recorded["train"], where))
        source = recorded["data"]["source"]
    if not unfinished_run(run_dir):
        raise RunError(f"{run_dir}: no checkpoint to resume from (the run finished)")
    # A kill mid-write leaves our temporary files (a SIGKILL runs no clean-up): gone before going on.
    for folder in (run_dir, run_dir / "checkpoint"):
        remove_leftovers(folder, RUN_FILES)
    # Killed before its first checkpoint: config.json has all it takes to start it again.
    started = (run_dir / "ensemble.json").is_file() or (run_dir / "checkpoint" / "state.json").is_file()
    digits = load_kaggle_csv(source, kind="train")
    _same_rows_as_recorded(run_dir, digits, source)
    console.print(f"{'resuming' if started else 'starting again (no checkpoint yet)'} {run_dir} on {source}")
    _train_into(spec, digits, run_dir, source, resume=started)
    return run_dir


def _same_rows_as_recorded(run_dir: Path, digits, source: str) -> None:
    """A RunError when the training file changed since the run began: resuming would train
    on rows its training_rows.npy does not list."""
    from digits.data.identity import rows_hash
    from digits.jsonfile import read_json

    first = run_dir if (run_dir / "config.json").is_file() else next(
        (d for d in sorted((run_dir / "members").glob("*")) if (d / "config.json").is_file()), None)
    recorded = read_json(first / "config.json")["data"].get("rows_hash") if first else None
    if recorded and recorded != rows_hash(digits):
        raise RunError(f"{source}: not the rows {run_dir} began training on (their hash differs); "
                       "resume needs the very same file")


def _make_run_dir(out: str | None, name: str, created: list[Path]) -> Path:
    from digits.runs import claim_run_dir, new_run_dir

    path = new_run_dir(name) if out is None else claim_run_dir(out)
    created.append(path)
    return path


def _data_path(args: argparse.Namespace, kind: str) -> Path:
    from digits.data.paths import data_file

    return data_file(getattr(args, kind), args.data, kind)


def predict(args: argparse.Namespace, created: list[Path]) -> int:
    """``digits predict RUN_DIR``: write a Kaggle submission for a test file."""
    from digits.data.kaggle import load_kaggle_csv
    from digits.predict.predictor import load_predictor
    from digits.predict.submission import write_submission
    from digits.results import predict_result
    from digits.train.device import resolve_device

    predictor = load_predictor(args.run_dir, resolve_device(args.device), args.precision)
    source = _data_path(args, "test")
    test = load_kaggle_csv(source, kind="test")
    from digits.console import WorkBar

    started = time.perf_counter()
    with WorkBar("predicting", len(test) * len(predictor.models), "digits") as bar:
        proba = predictor.predict_proba(test.images, tta=args.tta, progress=bar.update)
    labels = proba.argmax(axis=1).astype("int64")
    seconds = time.perf_counter() - started
    out = Path(args.out) if args.out else Path(args.run_dir) / "submission.csv"
    files = {"submission": out}
    if args.probabilities:
        from digits.predict.probabilities import write_probabilities
        from digits.predict.verdict import decide

        files["probabilities"] = write_probabilities(args.probabilities, proba,
                                                     decide(proba, test.images, predictor.calibration))
    write_submission(out, labels)
    what = predictor.names[0] if len(predictor.names) == 1 else f"ensemble of {len(predictor.names)}"
    tta = predictor.tta if args.tta is None else args.tta
    result = predict_result(args.run_dir, predictor.names, tta, source, out, labels, seconds,
                            predictor.precisions)
    if args.probabilities:
        result["probabilities"] = str(Path(args.probabilities).resolve())
    return finish(args, "predict", result, files, f"{what}: predicted {len(labels)} digits in {seconds:.2f} s")


def score(args: argparse.Namespace, created: list[Path]) -> int:
    """``digits score SUBMISSION --solution SOLUTION``: accuracy, as Kaggle computes it; recorded
    in the run directory the submission lies in, for its report."""
    from digits.predict.scores import check_not_trained_on, record_score
    from digits.predict.submission import count_correct
    from digits.results import score_result

    counts = count_correct(args.submission, args.solution)  # both files valid before anything else
    warning = check_not_trained_on(args.submission, args.solution)
    if warning:
        sys.stderr.write(f"digits: {warning}\n")
    result = score_result(args.submission, args.solution, *counts)
    recorded = record_score(args.submission, args.solution, result["accuracy"])
    return finish(args, "score", result, {"recorded": recorded} if recorded else {},
                  f"score: {result['accuracy']:.5f}")


def report(args: argparse.Namespace, created: list[Path]) -> int:
    """``digits report RUN_DIR``: the run's self-contained HTML report."""
    _report_on(Path(args.run_dir), args.out, args.device)
    return 0


def _report_on(run_dir: Path, out: str | None = None, device: str = "auto") -> Path:
    from digits.console import WorkBar
    from digits.report import write_report
    from digits.train.device import resolve_device

    started = time.perf_counter()
    bars: list[WorkBar] = []

    def progress(done: int, total: int) -> None:  # the report's re-prediction of its held-out rows
        if not bars:
            bars.append(WorkBar("report: predicting", total, "digits").__enter__())
        bars[0].update(done)

    try:
        path = write_report(run_dir, out, device=resolve_device(device), progress=progress)
    finally:
        for bar in bars:
            bar.__exit__()
    console.print(f"report: {path} ({time.perf_counter() - started:.1f} s)")
    return path


def compare(args: argparse.Namespace, created: list[Path]) -> int:
    """``digits compare RUN_DIR...``: a table of the runs, and a page with their curves."""
    from digits.report.compare import comparison_table, read_runs, without_validation, write_comparison

    records = read_runs(args.run_dirs)
    page = write_comparison(records, args.out)
    console.print(comparison_table(records))
    missing = without_validation(records)
    if missing:
        console.print(f"no validation curve (no validation rows): {', '.join(missing)}", soft_wrap=True)
    console.print(f"comparison: {page}")
    return 0


def models(args: argparse.Namespace, created: list[Path]) -> int:
    """``digits models``: the registry, with parameter counts."""
    from rich.table import Table

    from digits.errors import ModelError, did_you_mean
    from digits.models.registry import count_parameters, create_model, list_models

    found = list_models(args.pattern)
    if not found:
        names = [info.name for info in list_models()]
        raise ModelError(f"no model matches {args.pattern!r}{did_you_mean(args.pattern, names)}; "
                         f"known models: {', '.join(names)}")
    table = Table("model", "parameters", "description", "target", box=None, pad_edge=False)
    for info in found:
        table.add_row(info.name, f"{count_parameters(create_model(info.name)):,}", info.description, info.target)
    console.print(table)
    return 0


def presets(args: argparse.Namespace, created: list[Path]) -> int:
    """``digits presets [NAME]``: the shipped recipes in a table, or one preset whole, each with
    the settings it resolves to on this machine's hardware."""
    import json

    from rich.markup import escape
    from rich.table import Table

    from digits.hardware import hardware
    from digits.presets import HARDWARE_CLASSES, list_presets, load_preset
    from digits.train.device import resolve_device

    def settings(values: dict) -> str:
        return ", ".join(f"{k}={json.dumps(v)}" for k, v in values.items())

    def tables(on_device: dict) -> list[str]:
        lines = []
        for kind, values in on_device.items():
            general = {k: v for k, v in values.items() if k not in HARDWARE_CLASSES}
            lines.append(f"[{kind}] {settings(general)}")
            lines += [f"[{kind}.{name}] {settings(values[name])}" for name in HARDWARE_CLASSES if name in values]
        return lines

    hw = hardware(resolve_device("auto"))

    def here(preset) -> str:
        config = preset.config_for(hw)
        return (f"{config.precision}, batch {config.batch_size}"
                + (", channels-last" if config.channels_last else ""))

    if args.name:
        preset = load_preset(args.name)
        lines = [f"{preset.name}: {preset.description}", f"target: {preset.target}",
                 f"[train] {settings(preset.config.to_dict())}"]
        if preset.members > 1:
            lines.append(f"[ensemble] members={preset.members}, bagging={preset.bagging}, "
                         f"tta={json.dumps(preset.tta)}, workers={preset.workers}")
        lines += tables(preset.on_device)
        lines.append(f"here ({hw.describe()}): {here(preset)}")
        for line in lines:
            console.print(line, highlight=False, markup=False)
        return 0
    table = Table("preset", "trains", "per hardware", "here", "target", box=None, pad_edge=False)
    table.columns[1].no_wrap = True  # "15 x kaggle-cnn, 45 epochs, batch 64" reads as one thing
    for name in list_presets():
        preset = load_preset(name)
        config = preset.config
        trains = f"{preset.members} x {config.model}" if preset.members > 1 else config.model
        trains += f", {config.epochs} epoch{'s' if config.epochs != 1 else ''}, batch {config.batch_size}"
        table.add_row(name, trains, escape("; ".join(tables(preset.on_device))), here(preset), preset.target)
    console.print(table)
    console.print(f"here: {hw.describe()}. `digits presets NAME` shows one whole; "
                  "`digits train --preset NAME` trains it.")
    return 0


def tutorial(args: argparse.Namespace, created: list[Path]) -> int:
    """``digits tutorial``: the whole 2017 tutorial, printing each step."""
    from digits.console import EpochProgress
    from digits.data.kaggle import load_kaggle_csv
    from digits.output import emit_json
    from digits.results import tutorial_result
    from digits.tutorial import TUTORIAL, run_tutorial

    from digits.data.paths import data_file

    data_dir = Path(args.data)
    for kind in ("train", "test"):
        data_file(None, data_dir, kind)
    load_kaggle_csv(data_dir / "train.csv", kind="train")  # validate before creating anything
    run_dir = _make_run_dir(args.out, "tutorial", created)
    started = time.perf_counter()
    result = run_tutorial(data_dir, run_dir, TUTORIAL.replace(epochs=args.epochs, seed=args.seed),
                          say=console.print, callbacks=[EpochProgress()])
    created.clear()
    seconds = time.perf_counter() - started
    if args.report:
        _report_on(result.run_dir)
    if wants_json(args):
        emit_json("tutorial", tutorial_result(run_dir, data_dir, seconds))
        return 0
    print_summary(f"run directory {result.run_dir} ({seconds:.0f} s)", run_files(run_dir) | {
        f"validation_{label}": path for label, path in run_files(run_dir / "validation").items()})
    if result.score is not None:
        console.print(f"score: {result.score:.5f}")
    return 0
