"""Studies shared by worker processes: every trial recorded once, crashes retried, and the
same on SQLite (the default) and on a real PostgreSQL server."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from postgres_server import find_bin, postgres_server

FIXTURES = Path(__file__).parent / "fixtures"


def _digits(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "digits.cli", *args], capture_output=True, text=True,
                          timeout=300, **kwargs)


# Trials of about a second each, so that both workers are busy on the study at once
# (with seconds-short trials the first worker up could finish them all alone).
SHARED_SPACE = ('[fixed]\nmodel = "tutorial-mlp"\nepochs = 12\nval_split = 0.2\n[params]\n'
                '"model_args.hidden" = { type = "int", low = 8, high = 32 }\n'
                'lr = { type = "float", low = 0.001, high = 0.01, log = true }\n')


def _tune(storage: str, study: str, out: Path, trials: int, workers: int) -> subprocess.CompletedProcess:
    space = out.parent / "shared.toml"
    space.write_text(SHARED_SPACE)
    return _digits("tune", "--space", str(space), "--trials", str(trials), "--workers", str(workers),
                   "--storage", storage, "--study", study, "--out", str(out), "--data", str(FIXTURES))


def _check_every_trial_recorded_once(storage: str, study: str, result: subprocess.CompletedProcess,
                                     trials: int) -> None:
    assert result.returncode == 0, result.stderr
    recorded = optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=False)
    numbers = [t.number for t in recorded]
    assert sorted(numbers) == list(range(len(recorded)))  # no gap, no number twice
    assert len({t._trial_id for t in recorded}) == len(recorded)
    states = {t.state for t in recorded}
    assert states <= {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}, states
    # Each worker's own tally, printed when it stops, against the storage: disjoint, and together all of it.
    tallies = [list(map(int, re.findall(r"\d+", m))) for m in re.findall(r"ran trials \[([\d, ]*)\]", result.stdout)]
    assert len(tallies) == 2, result.stdout
    ran = [n for tally in tallies for n in tally]
    assert len(ran) == len(set(ran)) and set(ran) == set(numbers)
    assert all(tallies), "both workers ran trials on the one study"
    finished = trials <= len(recorded) <= trials + 1  # two workers may both start the last trial
    assert finished, len(recorded)
    for t in recorded:
        assert t.user_attrs["config"]["model"] == "tutorial-mlp"
        assert len(t.user_attrs["history"]) == len(t.intermediate_values) >= 1
    assert {t.user_attrs["worker"] for t in recorded} and len({t.user_attrs["worker"] for t in recorded}) == 2


def test_two_workers_share_a_sqlite_study_and_record_every_trial_once(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    result = _tune(storage, "shared", tmp_path / "out", trials=6, workers=2)
    _check_every_trial_recorded_once(storage, "shared", result, trials=6)
    out = tmp_path / "out"
    assert (out / "trials.csv").is_file() and (out / "optimization_history.png").stat().st_size > 1000
    assert (out / "best.toml").read_text().startswith("description = \"study shared")


@pytest.mark.skipif(find_bin("initdb") is None, reason="PostgreSQL not installed (make postgres installs it)")
def test_two_workers_share_a_postgresql_study_and_record_every_trial_once(tmp_path: Path) -> None:
    with postgres_server() as url:
        result = _tune(url, "shared-pg", tmp_path / "out", trials=6, workers=2)
        _check_every_trial_recorded_once(url, "shared-pg", result, trials=6)


def test_the_default_storage_is_a_sqlite_file_in_the_study_folder(tmp_path: Path) -> None:
    result = _digits("tune", "--space", "tiny", "--trials", "2", "--out", str(tmp_path / "s"),
                     "--data", str(FIXTURES))
    assert result.returncode == 0, result.stderr
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 's' / 'study.db'}")
    assert len(study.get_trials()) >= 2
    assert "best" in result.stdout and "digits train --preset" in result.stdout


def test_a_killed_workers_trial_is_marked_failed_and_retried_with_the_same_parameters(tmp_path: Path) -> None:
    # Trials of several seconds, so one is caught running: dropout keeps the model off the fused
    # MLP path, which would finish 60 epochs of 1,600 rows in well under a second. Long enough to be
    # caught running, short enough that the retry (the same trial again) does not dominate the suite.
    space = tmp_path / "slow.toml"
    space.write_text('[fixed]\nmodel = "mlp"\nmodel_args = { hidden = [32], dropout = 0.1 }\nepochs = 80\n'
                     'val_split = 0.2\n[params]\nlr = { type = "float", low = 0.001, high = 0.002 }\n')
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    args = [sys.executable, "-m", "digits.cli", "tune", "--space", str(space), "--trials", "1", "--storage", storage,
            "--study", "crash", "--out", str(tmp_path / "out"), "--data", str(FIXTURES), "--heartbeat", "1"]
    victim = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    running = []
    while not running and time.monotonic() < deadline:
        time.sleep(0.2)
        try:
            trials = optuna.load_study(study_name="crash", storage=storage).get_trials()
        except KeyError:
            continue  # the study is not created yet
        # Running with its parameters drawn: a trial is created a moment before they are stored.
        running = [t for t in trials if t.state == optuna.trial.TrialState.RUNNING and t.params]
    assert running, "no trial started"
    os.killpg(victim.pid, signal.SIGKILL)  # a crash: no chance to clean up
    victim.wait()
    time.sleep(6.0)  # well past the grace period (3 heartbeats of 1 s)

    result = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    trials = optuna.load_study(study_name="crash", storage=storage).get_trials()
    killed = next(t for t in trials if t.number == running[0].number)
    assert killed.state == optuna.trial.TrialState.FAIL
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retry) == 1 and retry[0].state == optuna.trial.TrialState.COMPLETE
    assert retry[0].params == killed.params


def test_a_user_error_is_one_line_and_exit_status_2(tmp_path: Path) -> None:
    result = _digits("tune", "--space", "no-such-space", "--data", str(FIXTURES), "--out", str(tmp_path / "x"))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "unknown space 'no-such-space'" in result.stderr
    assert not (tmp_path / "x").exists()
    bad = _digits("tune", "--space", "tiny", "--storage", "oracle://x", "--data", str(FIXTURES),
                  "--out", str(tmp_path / "y"))
    assert bad.returncode == 2 and "--storage" in bad.stderr and bad.stderr.count("\n") == 1


def test_a_worker_whose_trials_all_fail_stops_with_a_one_line_error(tmp_path: Path) -> None:
    space = tmp_path / "broken.toml"  # every sampled width is negative: no model can be built
    space.write_text('[fixed]\nmodel = "cnn-small"\n'
                     '[params]\n"model_args.c1" = { type = "int", low = -3, high = -1 }\n')
    result = _digits("tune", "--space", str(space), "--trials", "3", "--data", str(FIXTURES),
                     "--out", str(tmp_path / "b"))
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("digits: error: study broken: 5 trials in a row failed; the last: model 'cnn-small' "
                           "cannot be built"), last


def test_tune_on_a_device_this_machine_lacks_is_one_line_before_any_trial(tmp_path: Path) -> None:
    import torch

    missing = "cuda:99" if torch.cuda.is_available() else "cuda"
    result = _digits("tune", "--space", "tiny", "--trials", "1", "--device", missing, "--data", str(FIXTURES),
                     "--out", str(tmp_path / "s"))
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"digits: error: --device {missing}: ")
    assert not (tmp_path / "s").exists()


def test_failed_trials_are_logged_one_line_each_without_tracebacks(tmp_path: Path) -> None:
    space = tmp_path / "broken.toml"
    space.write_text('[fixed]\nmodel = "cnn-small"\n'
                     '[params]\n"model_args.c1" = { type = "int", low = -3, high = -1 }\n')
    result = _digits("tune", "--space", str(space), "--trials", "3", "--data", str(FIXTURES),
                     "--out", str(tmp_path / "b"), "--quiet")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 6 and all("Trial" in line and "failed" in line for line in lines[:5]), lines
