"""The commands on their own: train, predict, score, tutorial; errors are one line, status 2."""

from __future__ import annotations

import json

import pytest
from helpers import FIXTURES


def test_train_predict_score_chain(tmp_path, kaggle_dir, cli):
    run = tmp_path / "run"
    trained = cli("train", "--model", "tutorial-mlp", "--data", kaggle_dir, "--epochs", "2", "--seed", "1",
                  "--out", run)
    assert trained.code == 0, trained.err
    assert "val_accuracy" in trained.out and (run / "model.safetensors").is_file()
    predicted = cli("predict", run, "--data", kaggle_dir)
    assert predicted.code == 0, predicted.err
    assert (run / "submission.csv").read_text().startswith("ImageId,Label\n1,")
    scored = cli("score", run / "submission.csv", "--solution", kaggle_dir / "solution.csv")
    assert scored.code == 0
    assert scored.out.startswith("score: ") and 0.5 < float(scored.out.split()[1]) <= 1.0


def test_train_flags_reach_the_run_config(tmp_path, cli):
    run = tmp_path / "run"
    result = cli("train", "--train", FIXTURES / "train.csv", "--epochs", "1", "--batch-size", "32",
                 "--val-split", "0.2", "--seed", "5", "--optimizer", "adam", "--lr", "0.002",
                 "--model", "mlp", "--model-arg", "hidden=[64,32]", "--out", run)
    assert result.code == 0, result.err
    config = json.loads((run / "config.json").read_text())["train"]
    assert config | {"device": "x"} == config | {
        "model": "mlp", "model_args": {"hidden": [64, 32]}, "epochs": 1, "batch_size": 32,
        "val_split": 0.2, "seed": 5, "optimizer": "adam", "lr": 0.002, "device": "x"}


def test_default_run_directory_is_timestamped_under_runs(tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("train", "--train", FIXTURES / "train.csv", "--epochs", "1")
    assert result.code == 0, result.err
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name.endswith("-tutorial-mlp") and run.name[:8].isdigit()


BAD_FLAGS = [
    ["train", "--epochs", "-1"],
    ["train", "--epochs", "0"],
    ["train", "--batch-size", "0"],
    ["train", "--val-split", "1.5"],
    ["train", "--lr", "fast"],
    ["train", "--optimizer", "adagrad"],
    ["train", "--model", "nope"],
    ["train", "--model-arg", "depth=3"],
    ["train", "--device", "tpu"],
]


@pytest.mark.parametrize("args", BAD_FLAGS, ids=" ".join)
def test_bad_flag_values_are_one_line_errors_with_status_2(tmp_path, cli, args):
    out = tmp_path / "run"
    result = cli(*args, "--train", FIXTURES / "train.csv", "--out", out)
    assert result.code == 2
    assert result.err.count("\n") == 1 and "Traceback" not in result.err
    assert not out.exists(), "nothing half-written"


def test_bad_training_file_leaves_no_run_directory(tmp_path, cli):
    bad = tmp_path / "train.csv"
    bad.write_text("label,pixel0\n1,2\n")
    result = cli("train", "--train", bad, "--out", tmp_path / "run")
    assert result.code == 2 and "train.csv: line 1: header has 2 columns" in result.err
    assert not (tmp_path / "run").exists()


def test_predict_with_missing_run_directory(tmp_path, kaggle_dir, cli):
    result = cli("predict", tmp_path / "nowhere", "--data", kaggle_dir)
    assert result.code == 2 and "no such run directory" in result.err


def test_predict_with_incompatible_checkpoint_leaves_no_submission(tmp_path, kaggle_dir, cli):
    run = tmp_path / "run"
    assert cli("train", "--data", kaggle_dir, "--epochs", "1", "--out", run).code == 0
    card = json.loads((run / "model.json").read_text())
    card["architecture"] = "mlp-256"
    (run / "model.json").write_text(json.dumps(card))
    result = cli("predict", run, "--data", kaggle_dir, "--out", tmp_path / "sub.csv")
    assert result.code == 2 and "incompatible checkpoint" in result.err
    assert result.err.count("\n") == 1 and not (tmp_path / "sub.csv").exists()


def test_predict_refuses_a_train_file_as_test_file(tmp_path, kaggle_dir, cli):
    run = tmp_path / "run"
    assert cli("train", "--data", kaggle_dir, "--epochs", "1", "--out", run).code == 0
    result = cli("predict", run, "--test", kaggle_dir / "train.csv")
    assert result.code == 2 and "expected a test file" in result.err


def test_tutorial_runs_every_step_and_ends_with_the_score(tmp_path, kaggle_dir, cli):
    run = tmp_path / "tut"
    result = cli("tutorial", "--data", kaggle_dir, "--out", run, "--epochs", "4")
    assert result.code == 0, result.err
    for step in ("[1/6]", "[2/6]", "[3/6] epochs chosen:", "[4/6]", "[5/6]", "[6/6]"):
        assert step in result.out
    last = result.out.strip().splitlines()[-1]
    assert last.startswith("score: 0.") and float(last.split()[1]) > 0.8
    assert f"[6/6] score: {last.split()[1]}, against" in result.out, "step 6 says its number"
    for name in ("samples.png", "history.csv", "curves.png", "model.safetensors", "submission.csv",
                 "validation/history.csv", "validation/curves.png"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["chosen_by"] == "lowest validation loss" and 1 <= metrics["chosen_epochs"] <= 4
    assert metrics["epochs"] == metrics["chosen_epochs"]
    assert json.loads((run / "score.json").read_text())["score"] == metrics["score"]
    report = (run / "report" / "report.html").read_text()
    assert "Confusion matrix on the scored test set" in report
    assert f"It chose {metrics['chosen_epochs']} epochs" in report


def test_tutorial_without_data_says_how_to_get_it(tmp_path, cli):
    result = cli("tutorial", "--data", tmp_path / "empty", "--out", tmp_path / "tut")
    assert result.code == 2 and "digits data prepare" in result.err
    assert not (tmp_path / "tut").exists()


def test_a_folder_given_as_train_file_suggests_data(tmp_path, kaggle_dir, cli):
    result = cli("train", "--train", kaggle_dir, "--out", tmp_path / "run")
    assert result.code == 2 and result.err.count("\n") == 1
    assert f"{kaggle_dir}: is a folder" in result.err and f"use --data {kaggle_dir}" in result.err


def test_a_file_given_as_data_folder_suggests_train(tmp_path, kaggle_dir, cli):
    result = cli("train", "--data", kaggle_dir / "train.csv", "--out", tmp_path / "run")
    assert result.code == 2 and f"is a file, not a folder; to read it, use --train {kaggle_dir / 'train.csv'}" \
        in result.err


def test_missing_default_data_folder_says_how_to_make_it(tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("train", "--out", tmp_path / "run")
    assert result.code == 2 and "data/train.csv: no such file" in result.err
    assert "digits data prepare --out data" in result.err and "make data" in result.err


def test_missing_data_below_the_repository_root_points_at_its_data_folder(tmp_path, kaggle_dir, cli, monkeypatch):
    (kaggle_dir.parent / "notebooks").mkdir()
    monkeypatch.chdir(kaggle_dir.parent / "notebooks")
    result = cli("train", "--out", tmp_path / "run")
    assert result.code == 2 and "pass --data ../data" in result.err


def test_a_named_pipe_given_as_data_file_says_what_it_is(tmp_path, cli):
    import os

    fifo = tmp_path / "train.csv"
    os.mkfifo(fifo)
    result = cli("train", "--train", fifo, "--out", tmp_path / "run")
    assert result.code == 2 and "is a named pipe (FIFO), not a file" in result.err


@pytest.mark.parametrize("args, suggestion", [
    (["trian"], "did you mean 'train'"),
    (["train", "--model", "tutorial-mpl"], "did you mean 'tutorial-mlp'?"),
    (["train", "--preset", "fats"], "did you mean 'fast'?"),
    (["train", "--optimizer", "adm"], "did you mean 'adam'"),
    (["tune", "--space", "tinny"], "did you mean 'tiny'?"),
], ids=" ".join)
def test_typos_get_a_did_you_mean(tmp_path, cli, args, suggestion):
    result = cli(*args, "--train", FIXTURES / "train.csv", "--out", tmp_path / "out")
    assert result.code == 2 and result.err.count("\n") == 1 and suggestion in result.err, result.err


def test_a_run_without_validation_says_it_has_no_held_out_score_and_how_to_get_one(tmp_path, kaggle_dir, cli):
    run = tmp_path / "run"
    result = cli("train", "--data", kaggle_dir, "--epochs", "1", "--val-split", "0", "--label-smoothing", "0.1",
                 "--out", run)
    assert result.code == 0, result.err
    done = [line for line in result.out.splitlines() if line.startswith("done:")]
    assert done and "no held-out score: no validation rows (val_split 0)" in done[0]
    assert "under label smoothing 0.1) is not a test score" in done[0]
    assert f"digits score {run / 'submission.csv'} --solution {kaggle_dir / 'solution.csv'}" in result.out
    page = (run / "report" / "report.html").read_text()
    assert "no held-out score: no validation rows" in page and "not scored" not in page
    assert "One epoch: no curves to draw" in page and "curves.png" not in page


def test_a_cpu_run_records_cuda_graphs_off_as_it_trained(tmp_path, kaggle_dir, cli):
    run = tmp_path / "run"
    result = cli("train", "--data", kaggle_dir, "--epochs", "1", "--cuda-graphs", "--device", "cpu",
                 "--out", run, "--no-report")
    assert result.code == 0, result.err
    assert json.loads((run / "config.json").read_text())["train"]["cuda_graphs"] is False


def test_models_with_a_plain_word_lists_the_models_whose_name_contains_it(cli):
    result = cli("models", "cnn")
    assert result.code == 0
    listed = {line.split()[0] for line in result.out.splitlines()[1:] if line and not line.startswith(" ")}
    assert {"cnn-small", "fast-cnn", "fast-cnn-s2", "kaggle-cnn"} == listed


def test_models_matching_nothing_is_an_error_naming_the_known_models(cli):
    result = cli("models", "lenet6")
    assert result.code == 2 and result.out == "" and result.err.count("\n") == 1
    assert "no model matches 'lenet6' (did you mean 'lenet5'" in result.err and "known models: " in result.err


def test_a_model_argument_of_the_wrong_type_names_the_argument_and_the_type(tmp_path, cli):
    result = cli("train", "--model-arg", "hidden=abc", "--train", FIXTURES / "train.csv", "--out", tmp_path / "r")
    assert result.code == 2 and "argument hidden must be an integer (default 32), got \"abc\"" in result.err
    assert not (tmp_path / "r").exists()
