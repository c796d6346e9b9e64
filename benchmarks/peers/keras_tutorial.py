"""Peer: the 2017 Keras tutorial's network exactly as written, on Keras 3 + TensorFlow.

784 -> Dense 32 relu -> Dense 10 softmax, rmsprop (Keras defaults: lr 1e-3, rho 0.9,
epsilon 1e-7), categorical cross-entropy, 10 epochs, batch 64, pixels / 255, one-hot labels.
Timed: ``model.fit`` wall time (a fresh model each run, tracing included, as a user pays it).

TensorFlow lives in its own environment, so this file imports nothing from ``digits``;
``benchmarks/speed.py`` runs it with ``--keras-python`` in ``--serve`` mode and sends one
``run SEED`` line per repetition, so its runs interleave with ours in one benchmark run.

    /tmp/venv-keras/bin/python benchmarks/peers/keras_tutorial.py --data arrays.npz --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402


def load_arrays(path: str) -> dict[str, np.ndarray]:
    """x_train (N, 784) float32 in [0, 1], y_train one-hot, x_test, y_test (labels)."""
    with np.load(path) as z:
        x_train = z["x_train"].reshape(len(z["x_train"]), 784).astype("float32") / 255
        x_test = z["x_test"].reshape(len(z["x_test"]), 784).astype("float32") / 255
        return {"x_train": x_train, "y_train": np.eye(10, dtype="float32")[z["y_train"]],
                "x_test": x_test, "y_test": z["y_test"].astype(np.int64)}


def run_once(data: dict[str, np.ndarray], seed: int, epochs: int = 10) -> dict[str, float]:
    """Build, compile and fit the tutorial's model; time the fit, then predict the test set."""
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="rmsprop", loss="categorical_crossentropy", metrics=["accuracy"])
    started, cpu = time.perf_counter(), time.process_time()
    model.fit(data["x_train"], data["y_train"], epochs=epochs, batch_size=64, verbose=0)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    started = time.perf_counter()
    proba = model.predict(data["x_test"], batch_size=4096, verbose=0)
    predict_seconds = time.perf_counter() - started
    one = data["x_test"][:1]
    model(one)  # warm the eager call path once before timing single images
    latencies = []
    for i in range(50):
        started = time.perf_counter()
        model(data["x_test"][i:i + 1], training=False).numpy().argmax()
        latencies.append(time.perf_counter() - started)
    return {"seconds": seconds, "cpu_seconds": cpu, "accuracy": float(np.mean(proba.argmax(1) == data["y_test"])),
            "predict_seconds": predict_seconds, "latency_ms": float(np.median(latencies) * 1e3)}


def versions() -> dict[str, str]:
    import keras
    import tensorflow as tf

    return {"keras": keras.__version__, "tensorflow": tf.__version__}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help=".npz with x_train, y_train, x_test, y_test (uint8 pixels)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=1, help="runs when not serving")
    parser.add_argument("--serve", action="store_true", help="read 'run SEED' lines, answer JSON lines")
    args = parser.parse_args(argv)
    data = load_arrays(args.data)
    print(json.dumps({"ready": True, **versions()}), flush=True)
    if not args.serve:
        for seed in range(args.repeats):
            print(json.dumps(run_once(data, seed, args.epochs)), flush=True)
        return 0
    for line in sys.stdin:
        command, _, seed = line.strip().partition(" ")
        if command != "run":
            break
        print(json.dumps(run_once(data, int(seed or 0), args.epochs)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
