"""Speed of digits against its peers: interleaved in one run, medians and ratios, recorded.

Groups (``--only``, default all):
  mlp      the tutorial's MLP, 10 epochs, batch 64, 42,000 rows; test accuracy on the 28,000
           Kaggle-split test rows (solution.csv). Peers: Keras 3 + TensorFlow running the
           tutorial as written (in its own venv: ``--keras-python``), a plain PyTorch
           DataLoader loop, and digits' own general fit loop. Baseline: Keras.
  cnn      one epoch on MNIST's standard 60,000 / 10,000 split: the published
           99%-in-one-epoch recipe in plain PyTorch, and digits' ``fast`` preset.
           Baseline: the recipe.
  predict  ``digits predict`` on the 28,000 test rows as a whole process, the model alone
           on the same rows, and single-image latency.

Each repetition runs every contender of a group once, in turn, so a noisy shared machine
slows all of them alike; the tables report medians. Results are appended to
benchmarks/RESULTS.md unless ``--no-record``. Never part of ``make test``.

    python benchmarks/speed.py --data /tmp/kdata3 --keras-python /tmp/venv-keras/bin/python
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the peers package

from machine import add_isa_flag, describe, levels_to_run, run_held_to_avx2  # noqa: E402
from peers import plain_torch_mlp, recipe99  # noqa: E402

from digits.data.dataset import DigitSet  # noqa: E402
from digits.data.kaggle import load_kaggle_csv  # noqa: E402
from digits.data.submission import read_submission  # noqa: E402
from digits.jsonfile import write_json  # noqa: E402
from digits.models.registry import create_model  # noqa: E402
from digits.predict.predictor import Member, Predictor, for_inference, inference_precision  # noqa: E402
from digits.runs import save_model  # noqa: E402
from digits.train.config import TrainConfig  # noqa: E402
from digits.train.engines import AutogradEngine  # noqa: E402
from digits.train.fit import TensorSet, seed_everything, train_model  # noqa: E402
from digits.train.schedule import StepRates  # noqa: E402

TUTORIAL = TrainConfig(model="tutorial-mlp", epochs=10, batch_size=64, optimizer="rmsprop", lr=1e-3,
                       val_split=0.0, device="cpu")


@dataclass(frozen=True)
class Measurement:
    """One timed run: wall seconds of the timed part, the CPU seconds its process spent in
    it (all threads; NaN where not measured) and test accuracy (NaN if none)."""

    seconds: float
    accuracy: float = float("nan")
    cpu_seconds: float = float("nan")


@dataclass
class Contender:
    """Something to time: ``run(seed)`` trains or predicts once and measures itself."""

    name: str
    run: Callable[[int], Measurement]
    results: list[Measurement] = field(default_factory=list)

    def median(self, attr: str = "seconds") -> float:
        return statistics.median(getattr(m, attr) for m in self.results)


@dataclass(frozen=True)
class Kaggle:
    """The Kaggle-format folder: 42,000 labelled rows, 28,000 test rows and their answers."""

    train: DigitSet
    test: DigitSet
    answers: np.ndarray


def interleave(contenders: Sequence[Contender], repeats: int, warmup: bool = False) -> None:
    """Run every contender once per repetition, in turn; optionally one untimed run first."""
    if warmup:
        for c in contenders:
            c.run(-1)
    for rep in range(repeats):
        for c in contenders:
            c.results.append(c.run(rep))
            m = c.results[-1]
            print(f"  [{rep + 1}/{repeats}] {c.name}: {m.seconds:.3f} s"
                  + ("" if np.isnan(m.accuracy) else f", accuracy {m.accuracy:.4f}"), flush=True)


def table(title: str, contenders: Sequence[Contender], baseline: str | None, unit: str = "s") -> str:
    """A markdown table of medians (min-max) and the ratio baseline / contender."""
    base = next((c for c in contenders if c.name == baseline and c.results), None)
    lines = [f"### {title}", "", f"| contender | median ({unit}) | min-max | CPU (median) | accuracy (median) | "
             f"{'speed-up vs ' + baseline if base else 'speed-up'} |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    scale = 1e3 if unit == "ms" else 1.0
    for c in contenders:
        if not c.results:
            continue
        lo, hi = (min(m.seconds for m in c.results) * scale, max(m.seconds for m in c.results) * scale)
        acc, cpu = c.median("accuracy"), c.median("cpu_seconds") * scale
        ratio = f"{base.median() / c.median():.2f}x" if base else "-"
        lines.append(f"| {c.name} | {c.median() * scale:.3f} | {lo:.3f}-{hi:.3f} | "
                     f"{'-' if np.isnan(cpu) else f'{cpu:.3f}'} | "
                     f"{'-' if np.isnan(acc) else f'{acc:.4f}'} | {ratio} |")
    return "\n".join(lines) + "\n"


# --- the tutorial MLP --------------------------------------------------------------------

def accuracy_of(model: torch.nn.Module, data: Kaggle) -> float:
    return float(np.mean(Predictor.from_model(model).predict(data.test.images) == data.answers))


def digits_fit(data: Kaggle) -> Callable[[int], Measurement]:
    """``digits train``'s library call: fit() takes the hand-fused MLP path by itself."""
    def run(seed: int) -> Measurement:
        started, cpu = time.perf_counter(), time.process_time()
        model, _ = train_model(TUTORIAL.replace(seed=max(seed, 0)), data.train)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        return Measurement(seconds, accuracy_of(model, data), cpu)
    return run


def digits_general_loop(data: Kaggle) -> Callable[[int], Measurement]:
    """fit()'s general loop (autograd + torch.optim), as every non-MLP model still trains."""
    def run(seed: int) -> Measurement:
        config = TUTORIAL.replace(seed=max(seed, 0))
        seed_everything(config.seed)
        model = create_model(config.model)
        tensors = TensorSet.from_digits(data.train, torch.device("cpu"))
        engine = AutogradEngine([model], tensors, config)
        rates, generator = StepRates(config, engine.steps), torch.Generator().manual_seed(config.seed)
        started, cpu = time.perf_counter(), time.process_time()
        for _ in range(config.epochs):
            engine.run_epoch(torch.randperm(len(tensors), generator=generator), rates.next_epoch(), lambda _: None)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        return Measurement(seconds, accuracy_of(model, data), cpu)
    return run


def plain_torch(data: Kaggle) -> Callable[[int], Measurement]:
    def run(seed: int) -> Measurement:
        cpu = time.process_time()
        model, seconds = plain_torch_mlp.train_plain_mlp(data.train.images, data.train.labels, max(seed, 0))
        cpu = time.process_time() - cpu  # includes building the DataLoader, a few ms
        return Measurement(seconds, plain_torch_mlp.accuracy(model, data.test.images, data.answers), cpu)
    return run


class KerasPeer:
    """The Keras tutorial in a long-lived subprocess of the Keras venv's python, so that
    TensorFlow starts once and its runs interleave with ours."""

    def __init__(self, python: str, arrays: Path) -> None:
        script = HERE / "peers" / "keras_tutorial.py"
        self.proc = subprocess.Popen([python, str(script), "--data", str(arrays), "--serve"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        ready = json.loads(self._read())
        self.versions = f"Keras {ready['keras']}, TensorFlow {ready['tensorflow']}"
        self.predictions: list[dict[str, float]] = []

    def _read(self) -> str:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the Keras peer exited (status {self.proc.wait()})")
        return line

    def run(self, seed: int) -> Measurement:
        self.proc.stdin.write(f"run {max(seed, 0)}\n")
        self.proc.stdin.flush()
        answer = json.loads(self._read())
        self.predictions.append(answer)
        return Measurement(answer["seconds"], answer["accuracy"], answer["cpu_seconds"])

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
            self.proc.wait(timeout=60)


def keras_python(given: str | None) -> str | None:
    """The python to run the Keras peer with: the one given, or this one if it has Keras."""
    if given:
        return given if Path(given).exists() else None
    found = importlib.util.find_spec("keras") and importlib.util.find_spec("tensorflow")
    return sys.executable if found else None


def bench_mlp(data: Kaggle, args: argparse.Namespace, workdir: Path) -> str:
    contenders = [Contender("digits (fit, hand-fused MLP path)", digits_fit(data)),
                  Contender("digits general loop (autograd + torch.optim)", digits_general_loop(data)),
                  Contender("plain PyTorch (DataLoader)", plain_torch(data))]
    python, keras, notes = keras_python(args.keras_python), None, []
    if python is None:
        notes.append("Keras peer skipped: no python with tensorflow + keras (pass --keras-python, "
                     "or install the `bench` extra)")
        print(f"note: {notes[-1]}")
    else:
        arrays = workdir / "kaggle.npz"
        np.savez(arrays, x_train=data.train.images, y_train=data.train.labels,
                 x_test=data.test.images, y_test=data.answers)
        keras = KerasPeer(python, arrays)
        notes.append(f"Keras peer: {keras.versions}, `model.fit` wall time, fresh model per run")
        contenders.append(Contender("Keras 3 + TensorFlow (the tutorial as written)", keras.run))
    try:
        interleave(contenders, args.repeats)
    finally:
        if keras:
            keras.close()
    baseline = contenders[-1].name if keras else "plain PyTorch (DataLoader)"
    text = table("Tutorial MLP: 10 epochs, batch 64, 42,000 rows (test: 28,000 rows)", contenders, baseline)
    if keras and keras.predictions:
        notes.append("Keras predict on 28,000 rows: median {:.3f} s; one image through `model(x)`: "
                     "median {:.2f} ms".format(statistics.median(p["predict_seconds"] for p in keras.predictions),
                                               statistics.median(p["latency_ms"] for p in keras.predictions)))
    return text + "".join(f"\n- {n}" for n in notes) + "\n"


# --- one-epoch CNNs on the standard split -----------------------------------------------

def recipe_peer(x: torch.Tensor, y: torch.Tensor, xt: torch.Tensor, yt: torch.Tensor) -> Callable[[int], Measurement]:
    def run(seed: int) -> Measurement:
        cpu = time.process_time()
        model, seconds = recipe99.train_one_epoch(x, y, max(seed, 0))
        cpu = time.process_time() - cpu
        return Measurement(seconds, recipe99.accuracy(model, xt, yt), cpu)
    return run


def fast_preset(train: DigitSet, test: DigitSet, device: str) -> Callable[[int], Measurement]:
    """The ``fast`` preset as ``digits train --preset fast`` trains it on ``device``."""
    from digits.presets import load_preset
    from digits.train.device import resolve_device

    config = load_preset("fast").config_for(resolve_device(device)).replace(device=device)

    def run(seed: int) -> Measurement:
        started, cpu = time.perf_counter(), time.process_time()
        model, _ = train_model(config.replace(seed=max(seed, 0)), train)
        if torch.cuda.is_available() and device != "cpu":
            torch.cuda.synchronize()
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        labels = Predictor.from_model(model).predict(test.images)
        return Measurement(seconds, float(np.mean(labels == test.labels)), cpu)
    return run


def bench_cnn(data_dir: Path, args: argparse.Namespace) -> str:
    with np.load(data_dir / "mnist-standard.npz") as z:
        train = DigitSet(z["x_train"], z["y_train"].astype(np.int64), "mnist-standard train")
        test = DigitSet(z["x_test"], z["y_test"].astype(np.int64), "mnist-standard test")
    x, xt = recipe99.to_tensor(train.images), recipe99.to_tensor(test.images)
    y, yt = torch.from_numpy(train.labels), torch.from_numpy(test.labels)
    contenders = [Contender("published recipe, plain PyTorch (peers/recipe99.py)", recipe_peer(x, y, xt, yt))]
    notes = ["timed: training wall time after one untimed warm-up run each; data in memory"]
    contenders.append(Contender("digits preset `fast` (fit)", fast_preset(train, test, args.device)))
    interleave(contenders, args.repeats, warmup=True)
    text = table("One epoch, 60,000 standard-split rows (test: 10,000 rows)", contenders, contenders[0].name)
    return text + "".join(f"\n- {n}" for n in notes) + "\n"


# --- prediction --------------------------------------------------------------------------

def process_seconds(command: Sequence[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def predict_contenders(name: str, model: torch.nn.Module, data: Kaggle, data_dir: Path,
                       run_dir: Path, trained_in: str = "fp32") -> list[Contender]:
    """``digits predict`` as a process, and the model alone in process, for one saved model
    (``trained_in``: the precision its config.json records, which prediction follows)."""
    save_model(run_dir, model, name, {})
    write_json(run_dir / "config.json", {"train": TrainConfig(model=name, precision=trained_in).to_dict()})
    predictor = Predictor.open(run_dir)
    predict = [sys.executable, "-m", "digits.cli", "predict", str(run_dir), "--test", str(data_dir / "test.csv"),
               "--out", str(run_dir / "submission.csv"), "--device", "cpu"]
    process_seconds(predict)  # the first run fills the binary CSV cache; users pay that once
    read_submission(run_dir / "submission.csv")  # and it wrote a valid submission
    first = data.test.images[:1]
    label = f"{name} ({predictor.precisions[0]})"
    return [
        Contender(f"{label}: `digits predict` process, 28,000 rows", lambda _: Measurement(process_seconds(predict))),
        Contender(f"{label}: Predictor.predict, 28,000 rows (in process)",
                  lambda _: _timed(lambda: predictor.predict(data.test.images))),
        Contender(f"{label}: Predictor.predict, one image (in process)",
                  lambda _: _timed(lambda: predictor.predict(first), 200)),
    ]


def bench_predict(data: Kaggle, data_dir: Path, args: argparse.Namespace, workdir: Path) -> str:
    contenders = [
        Contender("python -c pass (interpreter start)", lambda _: Measurement(process_seconds([sys.executable, "-c", "pass"]))),
        Contender("python -c 'import torch'", lambda _: Measurement(process_seconds([sys.executable, "-c", "import torch"]))),
    ]
    model, _ = train_model(TUTORIAL, data.train)
    contenders += predict_contenders("tutorial-mlp", model, data, data_dir, workdir / "mlp")
    notes = ["`digits predict RUN --test test.csv --out submission.csv --device cpu`, binary CSV cache warm"]
    # The best single CNN (kaggle-cnn, the gpu-best member), with untrained weights: the time
    # of a forward pass does not depend on their values. An ensemble costs members x views.
    cnn = create_model("kaggle-cnn")
    contenders += predict_contenders("kaggle-cnn", cnn, data, data_dir, workdir / "cnn")
    contenders += predict_contenders("kaggle-cnn", cnn, data, data_dir, workdir / "cnn-bf16", trained_in="bf16")
    notes.append("kaggle-cnn: freshly initialised weights (speed only), as trained in fp32 and in bf16 (as "
                 "cpu-best and gpu-best are: prediction then runs in bf16 where the CPU has it natively)")
    # The best CNN as gpu-best predicts: 15 kaggle-cnn members, each over 5 test-time views,
    # in the precision a bf16-trained member predicts in here.
    precision = inference_precision(workdir / "cnn-bf16")
    members = [Member(for_inference(create_model("kaggle-cnn")), "kaggle-cnn", precision) for _ in range(15)]
    ensemble = Predictor(members, tta=True)
    first = data.test.images[:1]
    contenders.append(Contender(f"gpu-best ensemble, 15 kaggle-cnn x 5 views ({precision}): one image (in process)",
                                lambda _: _timed(lambda: ensemble.predict(first), 20)))
    notes.append("gpu-best ensemble: one image's views go through each member in one pass; 28,000 rows "
                 "cost about 75x one kaggle-cnn pass over them (minutes on 2 cores), so they are not timed here")
    interleave(contenders, args.repeats)
    text = table("Prediction on the CPU", contenders, None, unit="ms")
    return text + "".join(f"\n- {n}" for n in notes) + "\n"


def _timed(call: Callable[[], object], times: int = 1) -> Measurement:
    call()  # warm
    started, cpu = time.perf_counter(), time.process_time()
    for _ in range(times):
        call()
    return Measurement((time.perf_counter() - started) / times, cpu_seconds=(time.process_time() - cpu) / times)


# --- main --------------------------------------------------------------------------------

def load_kaggle(data_dir: Path) -> Kaggle:
    return Kaggle(load_kaggle_csv(data_dir / "train.csv", kind="train"),
                  load_kaggle_csv(data_dir / "test.csv", kind="test"),
                  read_submission(data_dir / "solution.csv"))


def record(path: Path, report: str) -> None:
    """Append ``report`` to the results file, newest last."""
    header = "" if path.exists() else "# Benchmark results\n"
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(header + "\n" + report)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data", default="data", help="`digits data prepare` folder")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repetitions per group")
    parser.add_argument("--only", default="mlp,cnn,predict", help="groups, comma-separated")
    parser.add_argument("--keras-python", help="python of a venv with tensorflow-cpu + keras")
    parser.add_argument("--device", default="cpu", help="device for the `fast` preset")
    parser.add_argument("--torch-threads", type=int, default=0,
                        help="intra-op threads for the PyTorch contenders (0: torch's default); "
                             "digits' MLP path picks one thread by itself")
    parser.add_argument("--results", default=str(HERE / "RESULTS.md"), help="file to append to")
    parser.add_argument("--no-record", action="store_true", help="print only")
    add_isa_flag(parser)
    args = parser.parse_args(argv)
    argv = list(argv if argv is not None else sys.argv[1:])
    here, held = levels_to_run(args.isa)
    status = run(args, argv) if here else 0
    return run_held_to_avx2(__file__, argv) if held else status


def run(args: argparse.Namespace, argv: list[str]) -> int:
    """Every asked group at this process's ISA level; the report printed and recorded."""
    data_dir, groups = Path(args.data), set(args.only.split(","))
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    stamp = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    report = [f"## speed.py {stamp}\n", f"- machine: {describe()}",
              f"- command: `python benchmarks/speed.py {shlex.join(argv)}`",
              f"- {args.repeats} interleaved repetitions per group; medians\n"]
    print("\n".join(report), flush=True)
    with tempfile.TemporaryDirectory(prefix="digits-speed-") as tmp:
        kaggle = load_kaggle(data_dir) if groups & {"mlp", "predict"} else None
        if "mlp" in groups:
            report.append(bench_mlp(kaggle, args, Path(tmp)))
        if "cnn" in groups:
            report.append(bench_cnn(data_dir, args))
        if "predict" in groups:
            report.append(bench_predict(kaggle, data_dir, args, Path(tmp)))
    text = "\n".join(report)
    print("\n" + text)
    if not args.no_record:
        record(Path(args.results), text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
