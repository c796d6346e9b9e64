"""Accuracy benchmark: train presets over several seeds and report test accuracy.

For each preset and seed it trains on
  * the Kaggle split (``DATA/train.csv``), predicts ``DATA/test.csv`` and scores the
    submission against ``DATA/solution.csv`` exactly as ``digits score`` does;
  * the standard MNIST split (``DATA/mnist-standard.npz``: first 60,000 train, last 10,000 test).
Ensembles also report each member's own accuracy (a single model) next to the average.
The test rows are never seen in training. Results are printed as a Markdown table and,
with ``--record``, appended to benchmarks/RESULTS.md with the machine they ran on.

    python benchmarks/accuracy.py --preset cpu-best --seeds 3 --data data --record
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from digits.data.dataset import DigitSet
from digits.data.kaggle import load_kaggle_csv
from digits.data.prepare import load_standard_split
from digits.data.submission import read_submission, score_submission, write_submission
from digits.hardware import hardware
from digits.jsonfile import write_json
from digits.models.registry import count_parameters, create_model
from digits.predict.calibrate import calibrate_run
from digits.predict.predictor import Predictor, average_members
from digits.presets import load_preset
from digits.train.device import resolve_device
from digits.train.ensemble import EnsembleSpec, train_ensemble

RESULTS = Path(__file__).with_name("RESULTS.md")
sys.path.insert(0, str(Path(__file__).resolve().parent))  # machine.py beside this script


def machine() -> str:
    """The device and host, for the record: the hardware's facts (ISA level, bf16), versions."""
    from machine import describe

    return describe("cuda" if torch.cuda.is_available() else "cpu")


def run_one(spec: EnsembleSpec, train: DigitSet, run_dir: Path) -> tuple[float, object]:
    """Train ``spec`` into ``run_dir`` and calibrate it on the rows it held out, as ``digits
    train`` does (so robustness.py and calibration.py can measure the run); return (wall seconds
    of the training, predictor)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    started = time.perf_counter()
    train_ensemble(spec, train, run_dir, log=lambda m: print(f"    {m}", flush=True))
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    device = resolve_device(spec.config.device)
    calibrated = time.perf_counter()
    calibration = calibrate_run(run_dir, train, spec, device)
    if calibration is not None:
        print(f"    calibrated in {time.perf_counter() - calibrated:.1f} s: {calibration.describe()}", flush=True)
    return seconds, Predictor.open(run_dir, device)


def accuracies(predictor, images: np.ndarray, labels: np.ndarray | None, tta: bool) -> tuple[float, list[float]]:
    """(ensemble accuracy, each member's accuracy)."""
    members = predictor.member_proba(images, tta=tta)
    ensemble = average_members(members).argmax(1)
    return float(np.mean(ensemble == labels)), [float(np.mean(p.argmax(1) == labels)) for p in members]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", action="append", required=True, help="preset name (repeatable)")
    parser.add_argument("--seeds", type=int, default=3, help="independent runs per preset")
    parser.add_argument("--data", default="data", help="folder written by `digits data prepare`")
    parser.add_argument("--mnist", help="instead of --data: an MNIST file (e.g. mnist.npz); the Kaggle split "
                                        "is made in memory exactly as `digits data prepare` (seed 0) makes it")
    parser.add_argument("--split", choices=["kaggle", "standard", "both"], default="both")
    parser.add_argument("--members", type=int, help="override the preset's ensemble size")
    parser.add_argument("--epochs", type=int, help="override the preset's epochs")
    parser.add_argument("--workers", type=int, help="override the preset's worker processes")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                        help="override a training setting, e.g. --set cuda_graphs=true")
    parser.add_argument("--limit", type=int, help="train on the first N rows only (a smoke test)")
    parser.add_argument("--runs", default="runs/bench", help="where run directories go")
    parser.add_argument("--json", help="also write the results as JSON here")
    parser.add_argument("--record", action="store_true", help="append the table to benchmarks/RESULTS.md")
    args = parser.parse_args(argv)

    data = Path(args.data)
    if args.mnist:
        data = _split_in_memory(args.mnist, Path(args.runs))
    splits = ["kaggle", "standard"] if args.split == "both" else [args.split]
    rows = []
    for name in args.preset:
        preset = load_preset(name)
        device = resolve_device(preset.config.device)
        base = preset.config_for(device)
        for split in splits:
            if split == "kaggle" and isinstance(data, dict):
                train, test_images, test_labels = data["train"], data["test"], None
                data_dir = data["folder"]
            elif split == "kaggle":
                train = load_kaggle_csv(data / "train.csv", kind="train")
                test_images = load_kaggle_csv(data / "test.csv", kind="test").images
                test_labels, data_dir = None, data
            elif isinstance(data, dict):
                x_tr, y_tr, x_te, y_te = data["standard"]
                train = DigitSet(x_tr, y_tr.astype(np.int64), "mnist-standard train")
                test_images, test_labels = x_te, y_te.astype(np.int64)
            else:
                x_tr, y_tr, x_te, y_te = load_standard_split(data)
                train = DigitSet(x_tr, y_tr.astype(np.int64), "mnist-standard train")
                test_images, test_labels = x_te, y_te.astype(np.int64)
            if args.limit:
                train = train.subset(slice(0, args.limit))
            for seed in range(args.seeds):
                config = base.replace(seed=base.seed + 100 * seed, epochs=args.epochs)
                config = config.replace(**{k: json.loads(v) for k, v in (o.split("=", 1) for o in args.set)})
                spec = EnsembleSpec(config, args.members or preset.members_for(hardware(device)), preset.bagging,
                                    preset.tta, args.workers or preset.workers, variants=preset.variants)
                run_dir = Path(args.runs) / f"{name}-{split}-seed{seed}"
                print(f"{name} on the {split} split, run {seed + 1}/{args.seeds} -> {run_dir}", flush=True)
                seconds, predictor = run_one(spec, train, run_dir)
                if split == "kaggle":
                    labels = predictor.predict(test_images)
                    submission = write_submission(run_dir / "submission.csv", labels)
                    accuracy = score_submission(submission, data_dir / "solution.csv")
                    truth = read_submission(data_dir / "solution.csv")
                    _, singles = accuracies(predictor, test_images, truth, preset.tta)
                else:
                    accuracy, singles = accuracies(predictor, test_images, test_labels, preset.tta)
                row = {"preset": name, "split": split, "seed": seed, "model": config.model,
                       "parameters": count_parameters(create_model(config.model, **config.model_args)),
                       "members": spec.members, "epochs": config.epochs, "seconds": round(seconds, 2),
                       "accuracy": accuracy, "member_accuracy": singles, "device": machine()}
                rows.append(row)
                print(f"  accuracy {accuracy:.5f}  members {np.round(singles, 5).tolist()}  {seconds:.1f} s",
                      flush=True)
    table = summarise(rows)
    print(table)
    if args.json:
        write_json(args.json, rows)
    if args.record:
        with open(RESULTS, "a") as fh:
            fh.write(f"\n### Accuracy, {time.strftime('%Y-%m-%d')}, {rows[0]['device']}\n\n"
                     f"`python benchmarks/accuracy.py {' '.join(sys.argv[1:])}`\n\n{table}\n")
    return 0


def _split_in_memory(mnist_file: str, folder: Path) -> dict:
    """The default Kaggle split (as `digits data prepare` makes it) without writing CSV files."""
    from digits.data.mnist import load_mnist
    from digits.data.prepare import kaggle_split

    mnist = load_mnist([mnist_file])
    train_idx, test_idx = kaggle_split(mnist, seed=0)
    folder.mkdir(parents=True, exist_ok=True)
    write_submission(folder / "solution.csv", mnist.labels[test_idx])
    return {"train": DigitSet(mnist.images[train_idx], mnist.labels[train_idx].astype(np.int64), mnist_file),
            "test": mnist.images[test_idx], "folder": folder, "standard": mnist.standard_split()}


def summarise(rows: list[dict]) -> str:
    """A Markdown table: one line per preset and split, mean +- std over seeds."""
    lines = ["| preset | split | model | params | members x epochs | device | wall s (median) | "
             "test accuracy (mean ± std) | single model (mean of members) |",
             "| --- | --- | --- | ---: | --- | --- | ---: | --- | --- |"]
    keys = sorted({(r["preset"], r["split"]) for r in rows}, key=lambda k: (k[0], k[1]))
    for preset, split in keys:
        group = [r for r in rows if (r["preset"], r["split"]) == (preset, split)]
        accs = [r["accuracy"] for r in group]
        singles = [a for r in group for a in r["member_accuracy"]]
        std = statistics.stdev(accs) if len(accs) > 1 else 0.0
        single = f"{statistics.mean(singles):.5f} ± {statistics.stdev(singles) if len(singles) > 1 else 0:.5f}"
        lines.append(f"| {preset} | {split} | {group[0]['model']} | {group[0]['parameters']:,} | "
                     f"{group[0]['members']} x {group[0]['epochs']} | {group[0]['device']} | "
                     f"{statistics.median(r['seconds'] for r in group):.1f} | "
                     f"{statistics.mean(accs):.5f} ± {std:.5f} (n={len(accs)}) | {single} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
