"""A damaged run directory is refused in one line (file, field, what was expected), exit 2,
by every command that opens it: predict, report, serve, and train --resume; weights files are
checked from their header before anything reads or hashes them."""

from __future__ import annotations

import json
import os
import resource
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import FIXTURES
from safetensors.torch import load_file, save_file

import digits
from digits.data.kaggle import load_kaggle_csv
from digits.errors import DigitsError, ModelError
from digits.serve.reader import DigitReader
from digits.train.config import TrainConfig
from digits.train.fit import train_model

TINY = TrainConfig(model="tutorial-mlp", epochs=1, batch_size=64, val_split=0.1, seed=0, device="cpu")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real finished run: tutorial-mlp, one epoch on the fixture's 2,000 digits, calibrated on
    its 200 validation rows."""
    path = tmp_path_factory.mktemp("trained") / "run"
    digits.run_training(TINY, load_kaggle_csv(FIXTURES / "train.csv", kind="train"), path,
                        data_source=str(FIXTURES / "train.csv"))
    assert (path / "calibration.json").is_file()
    return path


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory: pytest.TempPathFactory, trained: Path) -> Path:
    """A run that stopped after its first epoch's checkpoint: config.json and checkpoint/."""
    path = tmp_path_factory.mktemp("interrupted") / "run"
    path.mkdir()
    shutil.copy(trained / "config.json", path / "config.json")
    data = load_kaggle_csv(FIXTURES / "train.csv", kind="train")
    train, val = data.split_last(TINY.val_split)
    train_model(TINY, train, val, checkpoint_dir=path / "checkpoint")
    config = json.loads((path / "config.json").read_text())
    config["train"]["epochs"] = 2  # one epoch left to run
    (path / "config.json").write_text(json.dumps(config))
    return path


def _edit(path: Path, change) -> None:
    data = json.loads(path.read_text())
    changed = change(data)  # None: changed in place; a string: the file's new text
    path.write_text(changed if isinstance(changed, str) else json.dumps(data if changed is None else changed))


def _as_ensemble(run: Path, root: Path) -> Path:
    """An ensemble directory with ``run`` as its one member."""
    ensemble = root / "ensemble"
    shutil.copytree(run, ensemble / "members" / "01")
    (ensemble / "ensemble.json").write_text(json.dumps({
        "members": ["members/01"], "tta": False, "bagging": 0.0, "train": TINY.to_dict()}))
    (ensemble / "metrics.json").write_text(json.dumps({"model": "tutorial-mlp", "members": 1,
                                                       "train_seconds": 1.0}))
    return ensemble


SINGLE, ENSEMBLE = "single", "ensemble"
# case: (run kind, file, damage, what the message says, commands that open that file)
DAMAGE = {
    "architecture a number": (SINGLE, "model.json", lambda d: d.update(architecture=5),
                              "model.json: field 'architecture' should be a string, found the number 5",
                              ("predict", "report", "serve")),
    "args a list": (SINGLE, "model.json", lambda d: d.update(args=[32]),
                    "model.json: field 'args' should be an object, found a list", ("predict", "report", "serve")),
    "normalization a string": (SINGLE, "model.json", lambda d: d.update(normalization="mnist"),
                               "model.json: field 'normalization' should be an object, found a string",
                               ("predict", "report", "serve")),
    "a billion hidden units": (SINGLE, "model.json", lambda d: d.update(args={"hidden": 10 ** 9}),
                               "would have 795,000,000,010 parameters, more than the 100,000,000 allowed",
                               ("predict", "report", "serve")),
    "nested 100,000 deep": (SINGLE, "model.json", lambda d: "[" * 100_000 + "]" * 100_000,
                            "model.json: nested more than 64 levels deep", ("predict", "report", "serve")),
    "parameters a string": (SINGLE, "model.json", lambda d: d.update(parameters="many"),
                            "model.json: field 'parameters' should be an integer, found a string",
                            ("predict", "report", "serve")),
    "metrics parameters a list": (SINGLE, "metrics.json", lambda d: d.update(parameters=[1]),
                                  "metrics.json: field 'parameters' should be an integer, found a list",
                                  ("report", "serve")),
    "metrics final a list": (SINGLE, "metrics.json", lambda d: d.update(final=[0.9]),
                             "metrics.json: field 'final' should be an object, found a list", ("report", "serve")),
    "config train a list": (SINGLE, "config.json", lambda d: d.update(train=[1]),
                            "config.json: field 'train' should be an object, found a list", ("predict", "report")),
    "temperature a string": (SINGLE, "calibration.json", lambda d: d.update(temperature="hot"),
                             "calibration.json: field 'temperature' should be a number, found a string",
                             ("predict", "report", "serve")),
    "temperature zero": (SINGLE, "calibration.json", lambda d: d.update(temperature=0),
                         "calibration.json: field 'temperature' should be a positive number, found 0",
                         ("predict", "serve")),
    "unsure threshold over 1": (SINGLE, "calibration.json", lambda d: d.update(unsure_below=7),
                                "field 'unsure_below' should be a probability in [0, 1], found 7",
                                ("predict", "serve")),
    "ensemble without members": (ENSEMBLE, "ensemble.json", lambda d: d.pop("members") and None,
                                 "ensemble.json: missing field 'members' (expected a non-empty list of strings)",
                                 ("predict", "report")),
    "ensemble with no members": (ENSEMBLE, "ensemble.json", lambda d: d.update(members=[]),
                                 "ensemble.json: field 'members' should be a non-empty list of strings, "
                                 "found an empty list", ("predict", "report")),
    "ensemble members an integer": (ENSEMBLE, "ensemble.json", lambda d: d.update(members=2),
                                    "ensemble.json: field 'members' should be a non-empty list of strings, "
                                    "found the number 2", ("predict", "report")),
}
CASES = [pytest.param(case, command, id=f"{case}-{command}")
         for case, (*_, commands) in DAMAGE.items() for command in commands]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _open_with(cli, command: str, run: Path, out: Path) -> str:
    """Open ``run`` as ``command`` does; return the one-line error it ends with (exit status 2)."""
    if command == "serve":
        # `digits serve` opens the run with DigitReader.open before it listens; called here
        # directly, a run that opened after all fails the test instead of serving forever.
        with pytest.raises(DigitsError) as refused:
            DigitReader.open(run, "torch")
        assert "\n" not in str(refused.value)
        return str(refused.value)
    if command == "predict":
        result = cli("predict", run, "--test", FIXTURES / "test.csv", "--out", out / "submission.csv",
                     "--device", "cpu")
    else:
        result = cli("report", run, "--out", out / "report.html", "--device", "cpu")
    assert result.code == 2
    assert result.err.startswith("digits: error: ") and result.err.count("\n") == 1, result.err
    return result.err


@pytest.mark.parametrize("case, command", CASES)
def test_a_damaged_run_directory_is_refused_in_one_line_naming_the_file_and_field(tmp_path, trained, cli,
                                                                                   case, command):
    kind, name, damage, message, _ = DAMAGE[case]
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    if kind == ENSEMBLE:
        run = _as_ensemble(run, tmp_path)
    _edit(run / name, damage)
    out = tmp_path / "out"
    error = _open_with(cli, command, run, out)
    assert message in error and str(run) in error
    assert not out.exists(), "nothing written"


RESUME_DAMAGE = {
    "state.json an array": ("checkpoint/state.json", lambda d: [],
                            "state.json: expected a JSON object, found an empty list"),
    "optimizer a string": ("checkpoint/state.json", lambda d: d.update(optimizer="adam"),
                           "state.json: field 'optimizer' should be an object, found a string"),
    "epoch a string": ("checkpoint/state.json", lambda d: d.update(epoch="1"),
                       "state.json: field 'epoch' should be an integer, found a string"),
    "tensors outside the checkpoint": ("checkpoint/state.json", lambda d: d.update(tensors="../model.json"),
                                       "state.json: field 'tensors' should name a file in"),
    "config.json without data": ("config.json", lambda d: d.pop("data") and None,
                                 "config.json: missing field 'data' (expected an object)"),
    "config.json train a list": ("config.json", lambda d: d.update(train=[]),
                                 "config.json: field 'train' should be an object, found an empty list"),
    "config.json epochs a string": ("config.json", lambda d: d["train"].update(epochs="2"),
                                    "config.json: field 'train': setting 'epochs' should be an integer, "
                                    "found '2'"),
}


@pytest.mark.parametrize("case", list(RESUME_DAMAGE))
def test_resume_of_a_damaged_checkpoint_is_refused_in_one_line(tmp_path, interrupted, cli, case):
    name, damage, message = RESUME_DAMAGE[case]
    run = tmp_path / "run"
    shutil.copytree(interrupted, run)
    _edit(run / name, damage)
    result = cli("train", "--resume", run, "--no-report")
    assert result.code == 2
    assert result.err.startswith("digits: error: ") and result.err.count("\n") == 1, result.err
    assert message in result.err
    assert not (run / "model.safetensors").exists()


def test_resume_of_an_undamaged_checkpoint_finishes_the_run(tmp_path, interrupted, cli):
    run = tmp_path / "run"
    shutil.copytree(interrupted, run)
    result = cli("train", "--resume", run, "--no-report")
    assert result.code == 0, result.err
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 2


# --- the weights file: checked from its header, before it is read or hashed ------------------

def _digits_in_a_process(*args: object) -> subprocess.CompletedProcess:
    """``digits ARGS`` in a child with a deadline and a memory cap: a regression that blocks on
    a FIFO or reads /dev/zero fails this test instead of hanging it or filling the machine."""
    def cap_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (8 * 1024 ** 3, 8 * 1024 ** 3))

    return subprocess.run([sys.executable, "-m", "digits.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=120, preexec_fn=cap_memory, env=dict(os.environ, OMP_NUM_THREADS="1"))


def _replace_weights(run: Path, kind: str) -> None:
    weights = run / "model.safetensors"
    weights.unlink()
    if kind == "a symlink to /dev/zero":
        weights.symlink_to("/dev/zero")
    elif kind == "a FIFO":
        os.mkfifo(weights)
    else:  # an 8 GB sparse file: no disk used, but a reader that trusts it reads 8 GB of zeros
        with open(weights, "wb") as fh:
            fh.truncate(8 * 1024 ** 3)


WEIGHTS = {"a symlink to /dev/zero": "a character device, not a weights file",
           "a FIFO": "a FIFO, not a weights file",
           "an 8 GB sparse file": "not a safetensors file (no valid header length"}


@pytest.mark.skipif(not hasattr(os, "mkfifo") or not Path("/dev/zero").exists(), reason="POSIX only")
@pytest.mark.parametrize("command", ["serve", "predict"])
@pytest.mark.parametrize("kind", list(WEIGHTS))
def test_weights_that_are_a_device_a_fifo_or_a_huge_sparse_file_are_refused_at_once(tmp_path, trained, kind,
                                                                                    command):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    _replace_weights(run, kind)
    args = (["serve", run, "--port", _free_port()] if command == "serve" else
            ["predict", run, "--test", FIXTURES / "test.csv", "--out", tmp_path / "out.csv", "--device", "cpu"])
    result = _digits_in_a_process(*args)
    assert result.returncode == 2
    assert result.stderr.startswith("digits: error: ") and result.stderr.count("\n") == 1, result.stderr
    assert f"{run / 'model.safetensors'}: {WEIGHTS[kind]}" in result.stderr


def test_weights_file_longer_than_its_header_describes_is_refused(tmp_path, trained, cli):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    with open(run / "model.safetensors", "ab") as fh:
        fh.write(b"\0" * 1000)
    assert "but its safetensors header describes" in _open_with(cli, "serve", run, tmp_path / "out")


def test_weights_with_more_tensor_bytes_than_the_model_holds_are_refused(tmp_path, trained, cli):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    state = load_file(str(run / "model.safetensors"))
    state["padding"] = torch.zeros(1_000_000)
    save_file(state, str(run / "model.safetensors"))
    assert "bytes of tensors, more than the" in _open_with(cli, "predict", run, tmp_path / "out")


# --- weights that are not numbers ---------------------------------------------------------------

def _fill_weights(run: Path, value: float) -> None:
    state = load_file(str(run / "model.safetensors"))
    save_file({k: torch.full_like(v, value) if v.is_floating_point() else v for k, v in state.items()},
              str(run / "model.safetensors"))


@pytest.mark.parametrize("command", ["predict", "serve"])
def test_weights_that_hold_nan_are_refused_when_the_model_is_opened(tmp_path, trained, cli, command):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    _fill_weights(run, float("nan"))
    error = _open_with(cli, command, run, tmp_path / "out")
    assert f"{run / 'model.safetensors'}: tensor " in error and "holds NaN/inf" in error
    assert not (tmp_path / "out").exists(), "no submission of zeros"


def test_finite_weights_that_overflow_give_no_prediction_rather_than_zeros(tmp_path, trained, cli):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    _fill_weights(run, 3e38)  # finite, but every logit overflows to inf and softmax gives NaN
    assert "NaN/inf probabilities for 500 of 500 images" in _open_with(cli, "predict", run, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_served_reader_never_answers_with_non_finite_probabilities(tmp_path, trained):
    import numpy as np

    run = tmp_path / "run"
    shutil.copytree(trained, run)
    _fill_weights(run, 3e38)
    reader = DigitReader.open(run)
    digit = load_kaggle_csv(FIXTURES / "test.csv", kind="test").images[0]
    with pytest.raises(ModelError, match="NaN/inf probabilities"):
        reader.read([digit.astype(np.float32)], preprocess=False)


@pytest.mark.parametrize("ensemble, message", [
    ("{}", "field 'members'"), ('{"members": 3}', "field 'members'"),
])
def test_serve_checks_ensemble_json_as_predict_does_and_never_serves_a_damaged_run(tmp_path, ensemble, message):
    from digits.errors import DigitsError
    from digits.serve.reader import DigitReader

    run = tmp_path / "run"
    from digits.cli import main

    assert main(["train", "--model", "softmax", "--train", str(FIXTURES / "train.csv"), "--epochs", "1",
                 "--no-report", "--quiet", "--ensemble", "2", "--out", str(run)]) == 0
    if ensemble is not None:
        (run / "ensemble.json").write_text(ensemble)
    with pytest.raises(DigitsError, match=message):
        DigitReader.open(run)
