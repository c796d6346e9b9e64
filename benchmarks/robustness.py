"""Robustness: how well trained runs read digits that are not MNIST's test digits as they are.

For each run directory (and, with ``--peers``, the published one-epoch recipe and the tutorial
MLP in plain PyTorch, trained here on the same rows as the first run), accuracy on
  * clean held-out digits: rows the run never saw (compared by content with each model's
    ``training_rows.npy``), Kaggle's test.csv + solution.csv from ``digits data prepare``, or
    with ``--heldout standard`` MNIST's own 10,000 test digits (mnist-standard.npz);
  * the same digits through the app's preprocessing (what a picture of one goes through);
  * MNIST-C's 15 corruptions of them (Mu & Gilmer 2019; ``corruptions.py``), at the single
    severity of MNIST-C's dataset: each one, their mean and the worst; ``--severities all``
    adds severities 1-5 of those that have them;
  * UCI optdigits (scikit-learn's 1,797 digits of other writers, ``optdigits.py``), put into
    MNIST form through the app's preprocessing;
  * the held-out digits redrawn as pen strokes on a canvas (``drawn.py``) and preprocessed.
Everything random is drawn from ``--seed``: the same seed gives the same pictures and figures.

Prints a table with the machine, writes the JSON (``--out``), a picture of a few examples of
each test set (``--picture``), ``robustness.json`` in each run directory (the run report shows
it) and appends the table to benchmarks/RESULTS.md. Every file is written atomically.

    python benchmarks/robustness.py runs/tutorial --peers --data data
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # corruptions.py, optdigits.py, drawn.py, machine.py, peers/

from corruptions import CORRUPTIONS, set_rng  # noqa: E402
from machine import describe  # noqa: E402

from digits.atomic import output_kind, write_text  # noqa: E402
from digits.data.dataset import DigitSet  # noqa: E402
from digits.data.identity import image_hashes, read_fingerprint, rows_hash  # noqa: E402
from digits.data.kaggle import load_kaggle_csv  # noqa: E402
from digits.data.normalise import READINGS, normalise  # noqa: E402
from digits.data.prepare import load_standard_split  # noqa: E402
from digits.data.submission import read_submission  # noqa: E402
from digits.errors import DataError, DigitsError, RunError  # noqa: E402
from digits.hardware import hardware  # noqa: E402
from digits.jsonfile import read_json, write_json  # noqa: E402

RESULTS = HERE / "RESULTS.md"
RESULT_FILE = "robustness.json"  # in each run directory; the run report shows it
EXAMPLES = 8                     # digits per test set in the picture
PEER_MLP_EPOCHS = 10             # the tutorial trains its MLP for 10 epochs

Proba = Callable[[np.ndarray], np.ndarray]  # uint8 (N, 28, 28) -> probabilities (N, 10)


@dataclass(frozen=True)
class Reader:
    """A model under test: a run directory or a peer trained here."""

    name: str
    kind: str                 # "run" or "peer"
    describe: str             # what it is, in a few words
    proba: Proba
    fingerprint: np.ndarray   # sorted hashes of every row it trained or validated on
    run_dir: Path | None = None


@dataclass(frozen=True)
class TestSet:
    """Digits with their labels; ``found`` is False where preprocessing saw no digit (wrong)."""

    name: str
    kind: str                 # "clean", "corruption", "severity" (a sweep level), "other"
    images: np.ndarray
    labels: np.ndarray
    found: np.ndarray | None = None
    severity: int | None = None
    note: str = ""
    held_out_rows: bool = True  # its rows are the held-out digits, in order (optdigits' are not)


@dataclass
class Outcome:
    """One reader's accuracy and expected calibration error on every test set, and seconds spent."""

    reader: Reader
    accuracy: dict[str, float] = field(default_factory=dict)
    ece: dict[str, float] = field(default_factory=dict)  # of its probabilities (a run's: calibrated)
    seconds: float = 0.0


# --- the models under test -------------------------------------------------------------------

def model_dirs(run_dir: Path) -> list[Path]:
    """The run directory itself, or each member of an ensemble."""
    if (run_dir / "ensemble.json").is_file():
        return [run_dir / str(m) for m in read_json(run_dir / "ensemble.json").get("members", [])]
    return [run_dir]


def run_fingerprint(run_dir: Path) -> np.ndarray:
    """Every row any model of ``run_dir`` trained or validated on, as sorted hashes."""
    parts = []
    for model_dir in model_dirs(run_dir):
        name = read_json(model_dir / "config.json").get("data", {}).get("fingerprint")
        if not name or not (model_dir / name).is_file():
            raise RunError(f"{model_dir}: records no training rows (training_rows.npy); cannot choose test "
                           "rows it never saw")
        parts.append(read_fingerprint(model_dir / name))
    return np.unique(np.concatenate(parts))


def open_run(run_dir: Path, device: torch.device, one_form: bool = False) -> list[Reader]:
    """A run directory as a Reader: its probabilities come from ``digits.predict.predictor``.
    With ``one_form``, a run whose members read each digit in several forms
    (``digits.data.normalise.READINGS``) comes a second time, read in the first form only
    (MNIST's): a peer beside it."""
    from digits.predict.predictor import Member, Predictor

    if not run_dir.is_dir():
        raise RunError(f"{run_dir}: no such run directory")
    fingerprint = run_fingerprint(run_dir)
    predictor = Predictor.open(run_dir, device)  # the one place a run's probabilities come from
    config = read_json(model_dirs(run_dir)[0] / "config.json").get("train", {})
    epochs = config.get("epochs", "?")
    what = f"{config.get('model', '?')}, {epochs} epoch{'' if epochs == 1 else 's'}"
    if len(predictor.members) > 1:
        what += f", {len(predictor.members)} members"
    readers = [Reader(run_dir.name, "run", what, predictor.predict_proba, fingerprint, run_dir)]
    forms = {READINGS[m.normalise] for m in predictor.members}
    if one_form and len(forms) == 1 and len(first := forms.pop()) > 1:
        # The same members and temperatures, fed the first form already made: they read nothing else.
        members = [Member(m.model, m.architecture, m.precision, m.calibration, "none") for m in predictor.members]
        single = Predictor(members, predictor.tta, calibration=predictor.calibration)
        readers.append(Reader(f"{run_dir.name}, {first[0]} form only", "peer", what,
                              lambda images: single.predict_proba(normalise(images, first[0])), fingerprint))
    return readers


def training_rows(run_dir: Path, train_file: Path | None) -> DigitSet:
    """The rows the first model of ``run_dir`` fitted on (its validation rows left out), read
    from the file it records (or ``train_file``) and checked to be that very file."""
    config = read_json(model_dirs(run_dir)[0] / "config.json")
    record, settings = config.get("data", {}), config.get("train", {})
    source = train_file or Path(str(record.get("source", "")))
    if not source.is_file():
        raise DataError(f"{source}: the training file of {run_dir} is not there; name it with --train FILE")
    data = read_training_file(source)
    if record.get("rows_hash") and rows_hash(data) != record["rows_hash"]:
        raise DataError(f"{source}: not the rows {run_dir} trained on (its row hash differs from the run's "
                        "config.json); name the right file with --train FILE")
    train, _ = data.split_last(float(settings.get("val_split") or 0.0))
    return train


def read_training_file(path: Path) -> DigitSet:
    """A Kaggle train.csv (or zip), or the standard split's training half from an
    ``mnist-standard.npz`` (``x_train``, ``y_train``) as ``digits data prepare`` writes it."""
    if path.suffix != ".npz":
        return load_kaggle_csv(path, kind="train")
    try:
        with np.load(path, allow_pickle=False) as arrays:
            return DigitSet(arrays["x_train"], arrays["y_train"].astype(np.int64), str(path))
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"{path}: expected an mnist-standard.npz with x_train and y_train ({exc})") from None


def train_peers(train: DigitSet, seed: int, log: Callable[[str], None]) -> list[Reader]:
    """The published one-epoch recipe and the tutorial MLP, in plain PyTorch, on ``train``."""
    from peers import plain_torch_mlp, recipe99

    images, labels = train.images, train.require_labels().astype(np.int64)
    seen = np.unique(image_hashes(images))
    log(f"training the published recipe (1 epoch) on {len(train):,} rows")
    recipe, _ = recipe99.train_one_epoch(recipe99.to_tensor(images), torch.from_numpy(labels), seed)
    log(f"training the tutorial MLP ({PEER_MLP_EPOCHS} epochs) on {len(train):,} rows")
    mlp, _ = plain_torch_mlp.train_plain_mlp(images, labels, seed, epochs=PEER_MLP_EPOCHS)
    return [
        Reader("published recipe", "peer", "peers/recipe99.py, 1 epoch",
               _softmax_of(recipe, recipe99.to_tensor), seen),
        Reader("tutorial MLP", "peer", f"peers/plain_torch_mlp.py, {PEER_MLP_EPOCHS} epochs",
               _softmax_of(mlp, lambda x: torch.from_numpy(x.reshape(len(x), -1)).float() / 255), seen),
    ]


def _softmax_of(model: torch.nn.Module, inputs: Callable[[np.ndarray], torch.Tensor]) -> Proba:
    @torch.inference_mode()
    def proba(images: np.ndarray) -> np.ndarray:
        model.eval()
        parts = [torch.softmax(model(inputs(images[i:i + 2048])), 1) for i in range(0, len(images), 2048)]
        return torch.cat(parts).numpy() if parts else np.zeros((0, 10), np.float32)
    return proba


# --- the test sets ---------------------------------------------------------------------------

def candidate_rows(data: Path, which: str) -> tuple[np.ndarray, np.ndarray, str]:
    """(images, labels, where from) of the held-out candidates, before any are dropped."""
    if which == "standard":
        _, _, images, labels = load_standard_split(data)
        return images, labels.astype(np.int64), f"MNIST's standard test set ({data / 'mnist-standard.npz'})"
    test = load_kaggle_csv(data / "test.csv", kind="test")
    labels = read_submission(data / "solution.csv")
    if len(labels) != len(test):
        raise DataError(f"{data / 'solution.csv'}: {len(labels):,} answers for the {len(test):,} rows of "
                        f"{data / 'test.csv'}; expected one per row")
    return test.images, labels, f"{data / 'test.csv'} with {data / 'solution.csv'}"


def never_seen(images: np.ndarray, readers: list[Reader]) -> np.ndarray:
    """Indices of the rows that no reader trained or validated on."""
    hashes = image_hashes(images)
    seen = np.zeros(len(images), bool)
    for reader in readers:
        seen |= np.isin(hashes, reader.fingerprint)
    return np.flatnonzero(~seen)


def build_sets(images: np.ndarray, labels: np.ndarray, seed: int, sweep: bool,
               log: Callable[[str], None]) -> list[TestSet]:
    """Every test set, made once and read by every model."""
    from digits.serve.preprocess import prepare_digit

    sets = [TestSet("clean", "clean", images, labels)]
    sets.append(_prepared("clean, through the app's preprocessing", "other",
                          [prepare_digit(d.astype(np.float32)) for d in images], labels))
    for name, corruption in CORRUPTIONS.items():
        log(f"corrupting {len(images):,} digits: {name}")
        sets.append(TestSet(name, "corruption", corruption(images, set_rng(seed, name)), labels,
                            severity=corruption.published))
        for severity in corruption.severities if sweep else ():
            key = f"{name}, severity {severity}"
            sets.append(TestSet(key, "severity", corruption(images, set_rng(seed, key), severity), labels,
                                severity=severity))
    sets.append(_optdigits())
    log(f"redrawing {len(images):,} digits as pen strokes")
    sets.append(_strokes(images, labels, set_rng(seed, "strokes")))
    return sets


def _prepared(name: str, kind: str, prepared: list, labels: np.ndarray, note: str = "") -> TestSet:
    images = np.stack([p.image for p in prepared]) if prepared else np.zeros((0, 28, 28), np.uint8)
    return TestSet(name, kind, images, labels, np.array([p.found for p in prepared], bool), note=note)


def _optdigits() -> TestSet:
    from optdigits import load_optdigits

    images, labels, found = load_optdigits()
    return TestSet("optdigits (UCI, other writers)", "other", images, labels, found,
                   note="scikit-learn's load_digits, 8x8 scans rendered and preprocessed",
                   held_out_rows=False)


def _strokes(images: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> TestSet:
    from drawn import as_strokes

    from digits.serve.preprocess import prepare_digit

    return _prepared("redrawn as pen strokes", "other", [prepare_digit(as_strokes(d, rng)) for d in images],
                     labels, note="drawn.py: each digit's skeleton drawn with a pen, then preprocessed")


# --- measuring -------------------------------------------------------------------------------

def measure(reader: Reader, sets: list[TestSet]) -> Outcome:
    """``reader``'s accuracy and ECE (15 bins) on each set; a picture preprocessing found no
    digit in is wrong (and left out of the ECE: no probabilities are given for it)."""
    from digits.predict.calibration import expected_calibration_error

    outcome = Outcome(reader)
    started = time.perf_counter()
    for test in sets:
        proba = reader.proba(test.images) if len(test.images) else np.zeros((0, 10), np.float32)
        predicted = proba.argmax(axis=1)
        read = np.ones(len(proba), bool) if test.found is None else np.asarray(test.found, bool)
        outcome.ece[test.name] = expected_calibration_error(proba[read], test.labels[read])
        right = predicted == test.labels
        if test.found is not None:
            right &= test.found
        outcome.accuracy[test.name] = float(right.mean()) if len(right) else float("nan")
    outcome.seconds = time.perf_counter() - started
    return outcome


def summary(outcome: Outcome, sets: list[TestSet]) -> dict[str, object]:
    """Clean accuracy, the corruptions' mean and worst (MNIST-C's severities), the other sets."""
    corrupted = {t.name: outcome.accuracy[t.name] for t in sets if t.kind == "corruption"}
    worst = min(corrupted, key=corrupted.get)
    return {"clean": outcome.accuracy["clean"],
            "corruptions_mean": float(np.mean(list(corrupted.values()))),
            "corruptions_worst": corrupted[worst], "corruptions_worst_name": worst,
            **{t.name: outcome.accuracy[t.name] for t in sets if t.kind == "other"}}


def table(outcomes: list[Outcome], sets: list[TestSet]) -> str:
    """A Markdown table: one row per test set, one column per model."""
    models = " | ".join(f"{o.reader.name} ({o.reader.describe})" for o in outcomes)
    lines = [f"| test set | rows | {models} |", "| --- | ---: |" + " ---: |" * len(outcomes)]

    def row(name: str, rows: str, cells: list[str]) -> None:
        lines.append(f"| {name} | {rows} | " + " | ".join(cells) + " |")

    corrupted = [t.name for t in sets if t.kind == "corruption"]
    for test in sets:
        label = f"MNIST-C {test.name}" if test.kind == "corruption" else test.name
        row(label, f"{len(test.labels):,}", [f"{o.accuracy[test.name]:.4f}" for o in outcomes])
        if test.name == corrupted[-1]:  # the summary right under the last of MNIST-C's 15
            sums = [summary(o, sets) for o in outcomes]
            row(f"**MNIST-C mean of {len(corrupted)}**", "",
                [f"**{s['corruptions_mean']:.4f}**" for s in sums])
            row("**MNIST-C worst**", "", [f"**{s['corruptions_worst']:.4f}** ({s['corruptions_worst_name']})"
                                          for s in sums])
    return "\n".join(lines)


# --- pictures and records --------------------------------------------------------------------

def picture(sets: list[TestSet], seed: int) -> bytes:
    """PNG: a row of ``EXAMPLES`` digits per test set (the same held-out digits in each
    MNIST-derived row), chosen from ``seed``; one image, so it draws fast."""
    import matplotlib.pyplot as plt

    from digits.report.plots import png_bytes

    shown = [t for t in sets if t.kind != "severity"]
    cell = 30  # a 28-pixel digit in a one-pixel grey frame
    mosaic = np.full((len(shown) * cell, EXAMPLES * cell), 128, np.uint8)
    for row, test in enumerate(shown):
        count = min(EXAMPLES, len(test.images))
        # The MNIST-derived rows show the same digits, each as that set makes it.
        rng = set_rng(seed, "picture of the held-out digits" if test.held_out_rows
                      else f"picture {test.name}")
        for column, index in enumerate(np.sort(rng.choice(len(test.images), count, replace=False))):
            mosaic[row * cell + 1:row * cell + 29, column * cell + 1:column * cell + 29] = test.images[index]
    fig, ax = plt.subplots(figsize=(EXAMPLES * 0.75 + 2.6, len(shown) * 0.75 + 0.4))
    ax.imshow(mosaic, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks(np.arange(len(shown)) * cell + cell / 2, [t.name for t in shown], fontsize=8)
    ax.set_title(f"Robustness test sets: {EXAMPLES} examples each (seed {seed})", fontsize=9)
    return png_bytes(fig)


def machine_slug(device: torch.device) -> str:
    """A file-name word for this machine: ``cpu-amd-epyc-avx2-2core``, ``cuda-nvidia-h200``."""
    hw = hardware(device)
    name = re.sub(r"[^a-z0-9]+", "-", re.sub(r"\(r\)|\(tm\)|processor|cpu", "", hw.name.lower())).strip("-")
    return f"cuda-{name}" if hw.kind == "cuda" else f"{hw.kind}-{name}-{hw.isa}-{hw.cores}core"


def shown(path: Path) -> str:
    """``path`` as the record shows it: relative to the working folder when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def record(outcomes: list[Outcome], sets: list[TestSet], facts: dict[str, object], out: Path, png: Path,
           results: Path | None, markdown: str) -> None:
    """The JSON, each run's robustness.json, the picture and the RESULTS.md section."""
    from digits.atomic import write_bytes

    per_set = [{"name": t.name, "kind": t.kind, "rows": len(t.labels), "severity": t.severity,
                "note": t.note} for t in sets]
    models = [{"name": o.reader.name, "kind": o.reader.kind, "model": o.reader.describe,
               "run_dir": shown(o.reader.run_dir) if o.reader.run_dir else None,
               "accuracy": o.accuracy, "ece": {k: round(v, 6) for k, v in o.ece.items()},
               "summary": summary(o, sets), "seconds": round(o.seconds, 2)}
              for o in outcomes]
    write_bytes(png, picture(sets, int(facts["seed"])))
    write_json(out, {**facts, "picture": shown(png), "sets": per_set, "models": models})
    peers = [m for m in models if m["kind"] == "peer"]
    for model in models:
        if model["run_dir"]:
            write_json(Path(model["run_dir"]) / RESULT_FILE,
                       {**facts, "results": shown(out), "picture": shown(png), "sets": per_set,
                        "accuracy": model["accuracy"], "ece": model["ece"], "summary": model["summary"],
                        "peers": [{"name": p["name"], "model": p["model"], "summary": p["summary"]}
                                  for p in peers]})
    if results is not None:
        before = results.read_text() if results.is_file() else ""
        write_text(results, before + f"\n## robustness.py {facts['date']}\n\n- machine: {facts['machine']}\n"
                   f"- command: `{facts['command']}`\n- held out: {facts['held_out']}\n"
                   f"- raw: `{shown(out)}`, picture `{shown(png)}`\n\n{markdown}\n")


# --- the command -----------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN", help="run directories to test")
    parser.add_argument("--peers", action="store_true",
                        help="also train the published one-epoch recipe and the tutorial MLP (plain PyTorch) "
                             "on the first run's training rows, and test them side by side")
    parser.add_argument("--one-form", action="store_true",
                        help="also read each run that reads a digit in several forms (MNIST's and as it "
                             "stands) in MNIST's form only, side by side")
    parser.add_argument("--train", type=Path, metavar="FILE",
                        help="the first run's training file (train.csv, or mnist-standard.npz for a run on "
                             "the standard split), where its config.json's path does not find it")
    parser.add_argument("--data", type=Path, default=Path("data"),
                        help="folder from `digits data prepare` (default: data)")
    parser.add_argument("--heldout", choices=("kaggle", "standard"), default="kaggle",
                        help="kaggle: test.csv + solution.csv (default); standard: MNIST's 10,000 test "
                             "digits")
    parser.add_argument("--limit", type=int, default=10_000,
                        help="held-out digits to use, the first never-seen ones (default 10,000, as MNIST-C)")
    parser.add_argument("--severities", choices=("published", "all"), default="published",
                        help="published: MNIST-C's one severity per corruption (default); all: severities "
                             "1-5 too, where a corruption has them")
    parser.add_argument("--seed", type=int, default=0, help="every random choice follows it (default 0)")
    parser.add_argument("--out", type=Path,
                        help="JSON file (default benchmarks/results/robustness-<machine>.json)")
    parser.add_argument("--picture", type=Path, help="PNG of examples (default: the JSON's name, .png)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="Markdown file to append the table to")
    parser.add_argument("--no-record", action="store_true", help="do not append to the Markdown file")
    args = parser.parse_args(argv)
    if args.limit < 1:
        parser.error("--limit must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args, sys.argv[1:] if argv is None else argv)
    except DigitsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace, argv: list[str]) -> int:
    def log(message: str) -> None:
        print(f"  {message}", file=sys.stderr, flush=True)

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    out = args.out or HERE / "results" / f"robustness-{machine_slug(device)}.json"
    png = args.picture or out.with_suffix(".png")
    results = None if args.no_record else args.results
    for target in (out, png, *(run_dir / RESULT_FILE for run_dir in args.runs), *filter(None, [results])):
        output_kind(target)  # a folder or a path under a file: refused now, not after all the work
    readers = [reader for run_dir in args.runs for reader in open_run(run_dir, device, args.one_form)]
    if args.peers:
        readers += train_peers(training_rows(args.runs[0], args.train), args.seed, log)
    images, labels, where = candidate_rows(args.data, args.heldout)
    keep = never_seen(images, readers)
    if not len(keep):
        raise DataError(f"{where}: every row was trained or validated on by one of the models; no test rows")
    use = keep[:args.limit]
    held_out = (f"{len(use):,} rows of {where}: the first of the {len(keep):,} that none of the models "
                f"trained or validated on ({len(images) - len(keep):,} dropped as seen)")
    log(held_out)
    sets = build_sets(images[use], labels[use], args.seed, args.severities == "all", log)
    outcomes = [measure(reader, sets) for reader in readers]
    machine = describe(str(device))
    markdown = table(outcomes, sets)
    print(f"machine: {machine}\nheld out: {held_out}\nseed {args.seed}\n\n{markdown}")
    facts = {"benchmark": "benchmarks/robustness.py", "date": dt.datetime.now().isoformat(timespec="seconds"),
             "machine": machine, "command": "python benchmarks/robustness.py " + shlex.join(argv),
             "seed": args.seed, "held_out": held_out, "severities": args.severities}
    record(outcomes, sets, facts, out, png, results, markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
