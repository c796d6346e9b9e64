"""The Predictor, the one way from a run directory to probabilities, and ensembles trained by
several `digits train --members START:END` jobs into one shared run directory."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import FIXTURES, train_ensemble_on_fixture
from test_hardware import AMX_CPU

from digits.data.kaggle import load_kaggle_csv
from digits.errors import RunError
from digits.predict.calibration import load_calibration
from digits.predict.predictor import Predictor, average_members

TRAIN = ["train", "--train", FIXTURES / "train.csv", "--epochs", "1", "--ensemble", "2", "--no-report",
         "--quiet"]


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tutorial-mlp, one epoch, two members (seeds 0 and 1), trained by one `digits train`."""
    return train_ensemble_on_fixture(tmp_path_factory)


@pytest.fixture(scope="module")
def test_images() -> np.ndarray:
    return load_kaggle_csv(FIXTURES / "test.csv", kind="test").images


def submission_labels(path: Path) -> np.ndarray:
    return np.loadtxt(path, delimiter=",", skiprows=1, usecols=1, dtype=np.int64)


def test_a_predictor_opened_on_an_ensemble_averages_its_members(ensemble, test_images):
    predictor = Predictor.open(ensemble)
    assert predictor.names == ["tutorial-mlp", "tutorial-mlp"] and predictor.precisions == ["fp32", "fp32"]
    first, second = predictor.member_proba(test_images)
    assert np.abs(first - second).max() > 1e-2  # two members, trained from different seeds
    proba = predictor.predict_proba(test_images)
    assert proba.shape == (500, 10) and proba.dtype == np.float32
    # the average of the members' calibrated probabilities, calibrated by the ensemble's temperature
    np.testing.assert_allclose(proba, predictor.calibration.apply((first + second) / 2), atol=1e-7)
    np.testing.assert_array_equal(predictor.predict(test_images), proba.argmax(1))


def test_a_predictor_takes_uint8_or_float_pixels_as_images_or_rows_of_784(ensemble, test_images):
    predictor = Predictor.open(ensemble)
    expected = predictor.predict_proba(test_images[:50])
    for images in (test_images[:50].astype(np.float64), test_images[:50].reshape(50, 784)):
        np.testing.assert_allclose(predictor.predict_proba(images), expected, atol=1e-6)
    with pytest.raises(Exception, match=r"expected images shaped \(N, 28, 28\) or \(N, 784\)"):
        predictor.predict_proba(test_images[:5, :14])


def test_the_card_of_an_ensemble_lists_its_members(ensemble):
    card = Predictor.open(ensemble).card()
    assert card.kind == "ensemble" and [m.name for m in card.members] == ["members/01", "members/02"]
    assert card.parameters == 2 * card.members[0].parameters and card.architecture == "tutorial-mlp"
    assert card.version.startswith("ensemble-2xtutorial-mlp-")
    single = Predictor.open(ensemble / "members" / "02").card()
    assert single.kind == "single" and single.version.startswith("tutorial-mlp-")


def test_out_of_bag_probabilities_average_only_the_members_that_predicted_each_row():
    a, b = np.full((2, 10), 0.1, np.float32), np.eye(10, dtype=np.float32)[[3, 4]]
    averaged = average_members([a, b], rows=[np.array([0, 1]), np.array([1, 2])], count=4)
    np.testing.assert_allclose(averaged[0], a[0])                # only the first member held row 0
    np.testing.assert_allclose(averaged[1], (a[1] + b[0]) / 2)   # both held row 1
    np.testing.assert_allclose(averaged[2], b[1])
    assert not averaged[3].any()                                 # nobody predicted row 3


def test_the_report_of_an_ensemble_reads_the_scored_test_set_with_the_labels_of_digits_predict(ensemble,
                                                                                               tmp_path, cli):
    from digits.report.evaluate import evaluate
    from digits.report.heldout import find_held_out
    from digits.report.record import read_run

    run = tmp_path / "run"
    shutil.copytree(ensemble, run)
    assert cli("predict", run, "--data", FIXTURES, "-q").code == 0
    assert cli("score", run / "submission.csv", "--solution", FIXTURES / "solution.csv").code == 0
    report = cli("report", run, "--out", tmp_path / "report.html")
    assert report.code == 0, report.err
    page = (tmp_path / "report.html").read_text()
    evaluation = evaluate(find_held_out(read_run(run)))
    assert evaluation.held_out.kind == "test" and len(evaluation.member_accuracy) == 2
    np.testing.assert_array_equal(evaluation.predicted, submission_labels(run / "submission.csv"))
    members = page[page.index('<section id="members">'):]
    for name, accuracy in zip(("01", "02"), evaluation.member_accuracy):
        assert f"<td>{name}</td>" in members and f"{accuracy:.4f}</td></tr>" in members


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_members_jobs_one_after_another_make_the_ensemble_one_command_trains(ensemble, tmp_path, cli):
    from digits.schemas import validator

    shared = tmp_path / "shared"
    first = cli(*TRAIN, "--members", "0:1", "--out", shared, "--json")
    assert first.code == 0, first.err
    assert (shared / "members" / "01" / "metrics.json").is_file() and not (shared / "members" / "02").exists()
    assert not (shared / "calibration.json").exists()  # the job that completes the ensemble calibrates it
    described = json.loads(first.out)
    assert not list(validator("train").iter_errors(described))
    assert described["members"] == 2 and described["ensemble"]["missing_members"] == ["members/02"]

    # Partial: every command that predicts refuses it in one line naming what is missing.
    picture = tmp_path / "digit.png"
    from PIL import Image

    Image.new("L", (28, 28), 0).save(picture)
    for command in (["predict", shared, "--data", FIXTURES], ["export", shared], ["report", shared],
                    ["predict-image", picture, "--run", shared],
                    ["serve", shared, "--port", _free_port()]):
        refused = cli(*command)
        assert refused.code == 2 and refused.err.count("\n") == 1, (command, refused.err)
        assert "1 of 2 ensemble members not trained yet: members/02" in refused.err, refused.err
        assert "--members 1:2" in refused.err
    assert not (shared / "submission.csv").exists() and not (shared / "model.onnx").exists()

    second = cli(*TRAIN, "--members", "1:2", "--out", shared, "--json")
    assert second.code == 0, second.err
    described = json.loads(second.out)
    assert not list(validator("train").iter_errors(described))
    assert "missing_members" not in described["ensemble"]
    assert [m["config"]["seed"] for m in described["ensemble"]["member_runs"]] == [0, 1]
    assert cli("predict", shared, "--data", FIXTURES, "-q").code == 0
    assert cli("predict", ensemble, "--data", FIXTURES, "--out", tmp_path / "one.csv", "-q").code == 0
    np.testing.assert_array_equal(submission_labels(shared / "submission.csv"),
                                  submission_labels(tmp_path / "one.csv"))
    images = load_kaggle_csv(FIXTURES / "test.csv").images
    np.testing.assert_array_equal(Predictor.open(shared).predict_proba(images),
                                  Predictor.open(ensemble).predict_proba(images))
    assert (shared / "ensemble.json").read_text() == (ensemble / "ensemble.json").read_text()
    assert load_calibration(shared).fitted and load_calibration(shared) == load_calibration(ensemble)
    recorded = json.loads((shared / "metrics.json").read_text())
    assert recorded["members"] == 2 and len(recorded["member_metrics"]) == 2


def test_jobs_racing_to_write_ensemble_json_leave_one_whole_file_and_refuse_other_settings(tmp_path):
    import threading

    from digits.train.config import TrainConfig
    from digits.train.ensemble import EnsembleSpec, describe_ensemble, write_description_once

    path = tmp_path / "ensemble.json"
    specs = [EnsembleSpec(TrainConfig(lr=lr), members=4) for lr in (0.1, 0.1, 0.2, 0.2, 0.3, 0.3)]
    start, outcomes = threading.Barrier(len(specs)), {}

    def job(i: int) -> None:
        start.wait()
        try:
            write_description_once(path, describe_ensemble(specs[i]))
            outcomes[i] = "written"
        except RunError as exc:
            outcomes[i] = str(exc)

    threads = [threading.Thread(target=job, args=(i,)) for i in range(len(specs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winner = json.loads(path.read_text())["train"]["lr"]
    for i, spec in enumerate(specs):  # the jobs with the winner's settings go on; the others are refused
        assert (outcomes[i] == "written") == (spec.config.lr == winner), outcomes[i]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ensemble.json"]  # no temporary file left


@pytest.mark.slow  # two processes training at once; the test above holds the race on ensemble.json
def test_two_members_jobs_running_at_once_share_one_run_directory(ensemble, tmp_path):
    shared = tmp_path / "shared"
    jobs = [subprocess.Popen([sys.executable, "-m", "digits.cli", *map(str, TRAIN), "--members", part,
                              "--out", str(shared)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for part in ("0:1", "1:2")]
    for job in jobs:
        _, err = job.communicate(timeout=300)
        assert job.returncode == 0, err
    images = load_kaggle_csv(FIXTURES / "test.csv").images
    np.testing.assert_array_equal(Predictor.open(shared).predict(images),
                                  Predictor.open(ensemble).predict(images))
    assert (shared / "ensemble.json").read_text() == (ensemble / "ensemble.json").read_text()
    # metrics.json: written by whichever job finished last
    assert json.loads((shared / "metrics.json").read_text())["members"] == 2


@pytest.mark.parametrize("members, message", [
    ("5:3", "--members 5:3: expected START:END with 0 <= START < END <= 2"),
    ("1:1", "--members 1:1: expected START:END with 0 <= START < END <= 2"),
    ("0:3", "--members 0:3: expected START:END with 0 <= START < END <= 2, the ensemble's size"),
    ("0-2", "argument --members: expected START:END, two integers >= 0"),
])
def test_an_invalid_members_range_is_refused_in_one_line(tmp_path, cli, members, message):
    result = cli(*TRAIN, "--members", members, "--out", tmp_path / "run")
    assert result.code == 2 and result.err.count("\n") == 1 and message in result.err, result.err
    assert not (tmp_path / "run").exists()


def test_a_members_range_overlapping_another_jobs_is_refused(tmp_path, cli):
    shared = tmp_path / "shared"
    assert cli(*TRAIN, "--members", "0:1", "--out", shared).code == 0
    again = cli(*TRAIN, "--members", "0:2", "--out", shared)
    assert again.code == 2 and again.err.count("\n") == 1
    assert f"{shared / 'members' / '01'}: this member is already trained or begun" in again.err
    assert "--members ranges of one ensemble must not overlap" in again.err
    # A member another job is training right now: its folder is locked by that job.
    hold = ("import sys, time; from pathlib import Path; from digits.runs import claimed_members\n"
            "with claimed_members([Path(sys.argv[1])], fresh=True):\n"
            "    print('claimed', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", hold, str(shared / "members" / "02")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "claimed"
        busy = cli(*TRAIN, "--members", "1:2", "--out", shared)
        assert busy.code == 2 and "another job is training this member" in busy.err, busy.err
    finally:
        holder.kill()
        holder.wait()
    assert not (shared / "metrics.json").exists()


def test_a_members_job_with_other_settings_is_refused_and_leaves_ensemble_json_as_it_was(tmp_path, cli):
    shared = tmp_path / "shared"
    assert cli(*TRAIN, "--members", "0:1", "--out", shared).code == 0
    before = (shared / "ensemble.json").read_text()
    other = cli(*TRAIN, "--members", "1:2", "--lr", "0.01", "--out", shared)
    assert other.code == 2 and other.err.count("\n") == 1
    assert "describes another ensemble (train.lr: 0.001 there, 0.01 here)" in other.err
    assert (shared / "ensemble.json").read_text() == before and not (shared / "members" / "02").exists()


def test_a_bf16_trained_ensemble_is_served_in_bf16_as_predict_reads_it(tmp_path, cli, monkeypatch,
                                                                       test_images):
    from fastapi.testclient import TestClient

    from digits.predict import predictor
    from digits.serve.app import create_app
    from digits.serve.reader import DigitReader

    run = tmp_path / "run"
    assert cli(*TRAIN, "--model", "softmax", "--precision", "bf16", "--device", "cpu", "--out", run).code == 0
    monkeypatch.setattr(predictor, "hardware", lambda device: AMX_CPU)  # a CPU that computes bf16 natively
    predicted = json.loads(cli("predict", run, "--data", FIXTURES, "--device", "cpu", "--json").out)
    assert predicted["precisions"] == ["bf16", "bf16"]
    reader = DigitReader.open(run, "torch")
    assert [m.precision for m in reader.summary.card.members] == ["bf16", "bf16"]
    images = test_images[:200]
    with TestClient(create_app(reader)) as client:
        answer = client.post("/api/predict?preprocess=false", json={"images": images.tolist()}).json()
    served = np.array([p["probabilities"] for p in answer["predictions"]])
    bf16 = Predictor.open(run).predict_proba(images)
    fp32 = Predictor.open(run, precision="fp32").predict_proba(images)
    # The autocast path: the served probabilities are the bf16 ones, not the fp32 ones.
    assert np.abs(served - bf16).max() < 1e-5 < np.abs(served - fp32).max()
    np.testing.assert_array_equal(served.argmax(1), submission_labels(run / "submission.csv")[:200])


def test_a_partial_ensemble_is_refused_by_the_library_too(tmp_path, cli):
    shared = tmp_path / "shared"
    assert cli(*TRAIN, "--members", "1:2", "--out", shared).code == 0
    with pytest.raises(RunError, match=r"members/01; train them with `digits train \.\.\. --members 0:1"):
        Predictor.open(shared)
