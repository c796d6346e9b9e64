"""A run killed with SIGKILL and resumed ends with the same weights as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import FIXTURES
from safetensors.torch import load_file

# Dropout, augmentation and a per-epoch schedule: every kind of state a resume must restore.
ARGS = ["train", "--model", "keras-convnet", "--train", str(FIXTURES / "train.csv"), "--epochs", "6",
        "--batch-size", "50", "--optimizer", "adam", "--schedule", "exponential", "--augment", "rotation=10",
        "--augment", "shift=0.1", "--val-split", "0.5", "--seed", "11", "--device", "cpu"]


def _digits(*args: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "digits.cli", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _checkpoint_epoch(run: Path) -> int:
    try:
        return json.loads((run / "checkpoint" / "state.json").read_text())["epoch"]
    except (FileNotFoundError, ValueError, KeyError):
        return 0


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_sigkill_then_resume_gives_the_uninterrupted_weights(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")  # same thread count in every process: same arithmetic
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    uninterrupted = _digits(*ARGS, "--out", str(reference), env=env)  # beside the other, on a core of its own

    proc = _digits(*ARGS, "--out", str(killed), env=env)
    deadline = time.monotonic() + 300
    while _checkpoint_epoch(killed) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL, "the run was killed, not finished"
    assert 2 <= _checkpoint_epoch(killed) < 6 and not (killed / "model.safetensors").exists()

    resumed = _digits("train", "--resume", str(killed), env=env)
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert uninterrupted.wait(timeout=300) == 0

    expected, got = load_file(str(reference / "model.safetensors")), load_file(str(killed / "model.safetensors"))
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    history = [line.split(",")[:5] for line in (killed / "history.csv").read_text().splitlines()]
    assert history == [line.split(",")[:5] for line in (reference / "history.csv").read_text().splitlines()]
    assert not (killed / "checkpoint").exists(), "checkpoints are removed once the run is complete"


def test_resume_of_a_finished_run_says_there_is_nothing_to_resume(tmp_path, cli):
    run = tmp_path / "run"
    assert cli("train", "--model", "softmax", "--train", FIXTURES / "train.csv", "--epochs", "1",
               "--out", run).code == 0
    result = cli("train", "--resume", run)
    assert result.code == 2 and "no checkpoint to resume from" in result.err


def test_resume_refuses_a_training_file_that_changed_since_the_run_began(tmp_path, cli):
    from digits.data.kaggle import load_kaggle_csv
    from digits.train.callbacks import Callback
    from digits.train.config import TrainConfig
    from digits.train.run import train_run

    class StopAtEpoch2(Callback):  # as Ctrl-C would, after epoch 1's checkpoint
        def on_epoch_begin(self, epoch):
            if epoch == 2:
                raise KeyboardInterrupt

    source = tmp_path / "train.csv"
    source.write_text((FIXTURES / "train.csv").read_text())
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train_run(TrainConfig(model="softmax", epochs=3), load_kaggle_csv(source), run, [StopAtEpoch2()],
                  str(source))
    lines = source.read_text().splitlines()
    source.write_text("\n".join(lines[:-1]) + "\n")  # one row fewer: another file now
    result = cli("train", "--resume", run)
    assert result.code == 2 and "not the rows" in result.err and "resume needs the very same file" in result.err


def test_resume_of_a_run_killed_before_its_first_checkpoint_starts_it_again(tmp_path, cli):
    run = tmp_path / "run"
    assert cli("train", "--model", "softmax", "--train", FIXTURES / "train.csv", "--epochs", "1",
               "--out", run, "--no-report").code == 0
    for name in ("model.json", "model.safetensors", "metrics.json", "history.csv", "curves.png"):
        (run / name).unlink(missing_ok=True)  # what a SIGKILL during the first epoch leaves: config.json
    (run / ".history.csv.k1ll3d.tmp").write_text("epoch,lo")  # and a write it cut off
    again = cli("train", "--out", run, "--model", "softmax", "--train", FIXTURES / "train.csv")
    assert again.code == 2 and f"use --resume {run}" in again.err
    result = cli("train", "--resume", run, "--no-report")
    assert result.code == 0 and "starting again (no checkpoint yet)" in result.out
    assert (run / "model.json").is_file() and (run / "metrics.json").is_file()
    assert not list(run.glob(".*.tmp"))


@pytest.mark.parametrize("settings", [
    # GradScaler's scale, halved by an overflow of the small batches (gradients 65,536 times the loss's)
    {"precision": "fp16", "batch_size": 2},
    {"outlier_exposure": 0.5},  # where the draws of letters and scribbles have got to
], ids=["fp16-loss-scale", "outlier-draws"])
def test_a_resumed_run_goes_on_with_the_engines_own_state_as_the_uninterrupted_run(tmp_path, settings,
                                                                                     outlier_pictures_cached):
    from digits.data.kaggle import load_kaggle_csv
    from digits.train.callbacks import Callback
    from digits.train.config import TrainConfig
    from digits.train.run import train_run

    class StopAtEpoch3(Callback):  # as Ctrl-C would, after epoch 2's checkpoint
        def on_epoch_begin(self, epoch):
            if epoch == 3:
                raise KeyboardInterrupt

    data = load_kaggle_csv(FIXTURES / "train.csv").subset(slice(0, 100))
    config = TrainConfig(model="mlp", model_args={"hidden": [32], "dropout": 0.1}, epochs=4, optimizer="adam",
                         val_split=0.0, seed=0, device="cpu", **({"batch_size": 25} | settings))
    train_run(config, data, tmp_path / "whole")
    with pytest.raises(KeyboardInterrupt):
        train_run(config, data, tmp_path / "cut", [StopAtEpoch3()])
    if "precision" in settings:  # the state worth keeping: the scale moved off its start
        state = json.loads((tmp_path / "cut" / "checkpoint" / "state.json").read_text())
        assert state["engine"]["scaler"]["scale"] < 2.0**16
    train_run(config, data, tmp_path / "cut", resume=True)
    whole, resumed = (load_file(str(tmp_path / run / "model.safetensors")) for run in ("whole", "cut"))
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
