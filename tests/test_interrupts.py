"""Interrupted and competing trainings: Ctrl-C says how to resume, a rerun into the same
folder points at --resume, predict on an unfinished run says so, and two trainings never
share one run directory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import FIXTURES

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGINT and flock are POSIX")


def _epoch(run: Path) -> int:
    try:
        return json.loads((run / "checkpoint" / "state.json").read_text())["epoch"]
    except (FileNotFoundError, ValueError, KeyError):
        return 0


def test_ctrl_c_says_how_to_resume_and_the_run_then_points_at_resume(tmp_path, kaggle_dir, cli):
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "digits.cli", "train", "--train", str(FIXTURES / "train.csv"),
                             "--epochs", "500", "--out", str(run), "--device", "cpu"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while _epoch(run) < 1 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == f"digits: interrupted; resume with: digits train --resume {run}"
    assert not (run / "model.json").exists()

    again = cli("train", "--train", FIXTURES / "train.csv", "--epochs", "1", "--out", run)
    assert again.code == 2 and again.err.count("\n") == 1
    assert f"{run}: holds an interrupted run; use --resume {run} to continue it" in again.err

    predicted = cli("predict", run, "--data", kaggle_dir)
    assert predicted.code == 2 and predicted.err.count("\n") == 1
    assert predicted.err == (f"digits: error: {run}: still training or interrupted (no model yet); "
                             f"resume with digits train --resume {run}\n")
    assert not (run / "submission.csv").exists()


def test_a_second_training_into_a_claimed_run_directory_is_refused_in_one_line(tmp_path, cli):
    run = tmp_path / "run"
    # Another process claims the folder exactly as `digits train --out` does, and holds it
    # while (still) writing nothing into it: the window in which a check-then-mkdir lets both in.
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from digits.runs import claim_run_dir; "
                               "claim_run_dir(sys.argv[1]); print('claimed', flush=True); time.sleep(60)",
                               str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "claimed"
        result = cli("train", "--train", FIXTURES / "train.csv", "--epochs", "1", "--out", run)
        assert result.code == 2 and result.err.count("\n") == 1
        assert "another training is writing into it" in result.err
        assert list(run.iterdir()) == [], "the loser wrote nothing into the winner's folder"
    finally:
        holder.kill()
        holder.wait()
    # Once the holder is gone (however it ended), the empty folder can be claimed again.
    assert cli("train", "--train", FIXTURES / "train.csv", "--epochs", "1", "--no-report", "--out", run).code == 0


def test_the_same_folder_can_be_trained_into_again_by_one_process_once_emptied(tmp_path, cli):
    run = tmp_path / "run"
    run.mkdir()
    first = cli("train", "--train", FIXTURES / "train.csv", "--epochs", "1", "--no-report", "--out", run)
    assert first.code == 0, first.err
    again = cli("train", "--train", FIXTURES / "train.csv", "--epochs", "1", "--out", run)
    assert again.code == 2 and "already exists and is not empty; choose another --out" in again.err
    assert os.listdir(run), "a refused training leaves the finished run alone"
