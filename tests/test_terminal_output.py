"""What the commands print: one JSON object on stdout with --json (valid against its schema,
and nothing else there), nothing at all with --quiet, and a closing summary of the files
written; errors stay one line on stderr with status 2 in every mode."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from helpers import FIXTURES, with_stderr_on_a_terminal
from rich.console import Console
from rich.progress import Progress

from digits.console import DownloadProgress
from digits.schemas import COMMANDS, load_schema, validator
from digits.tune.search import snapshot
from digits.tune.search_report import TrialBars

DOCS = Path(__file__).parents[1] / "docs" / "json.md"


def _validated(command: str, stdout: str) -> dict:
    """stdout parsed as one JSON object (anything else there fails), checked against its schema."""
    result = json.loads(stdout)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in validator(command).iter_errors(result)]
    assert not errors, errors
    assert result["command"] == command
    return result


@pytest.fixture
def trained(tmp_path, kaggle_dir, cli):
    run = tmp_path / "run"
    assert cli("train", "--data", kaggle_dir, "--epochs", "2", "--out", run, "-q").code == 0
    return run


def test_train_json_is_the_only_thing_on_stdout_and_matches_its_schema(tmp_path, kaggle_dir, cli):
    run = tmp_path / "run"
    result = cli("train", "--data", kaggle_dir, "--epochs", "3", "--out", run, "--json")
    assert result.code == 0, result.err
    out = _validated("train", result.out)
    assert out["run_dir"] == str(run.resolve()) and out["epochs"] == 3 and out["parameters"] == 25450
    assert out["data"] == {"source": str(kaggle_dir / "train.csv"), "rows": 2000, "train_rows": 1900,
                           "val_rows": 100}
    assert 1 <= out["best"]["val_loss"]["epoch"] <= 3 and 0 < out["final"]["val_accuracy"] <= 1
    assert {"config", "model", "model_card", "history", "curves", "metrics"} <= set(out["files"])
    assert all(Path(p).is_file() for p in out["files"].values())
    assert "val_loss" in result.err, "the epoch table moved to stderr"


def test_train_json_describes_each_member_of_an_ensemble(tmp_path, kaggle_dir, cli):
    result = cli("train", "--data", kaggle_dir, "--epochs", "1", "--ensemble", "2", "--out", tmp_path / "run",
                 "--json")
    assert result.code == 0, result.err
    out = _validated("train", result.out)
    assert out["members"] == 2 and out["final"] is None
    assert [m["config"]["seed"] for m in out["ensemble"]["member_runs"]] == [0, 1]


def test_predict_json_counts_labels_of_every_row_it_wrote(trained, kaggle_dir, cli):
    result = cli("predict", trained, "--data", kaggle_dir, "--json")
    assert result.code == 0, result.err
    out = _validated("predict", result.out)
    assert out["rows"] == 500 == sum(out["label_counts"])
    assert out["submission"] == str((trained / "submission.csv").resolve())
    assert out["models"] == ["tutorial-mlp"]
    assert Path(out["submission"]).read_text().count("\n") == 501


def test_score_json_gives_accuracy_as_correct_over_rows(trained, kaggle_dir, cli):
    assert cli("predict", trained, "--data", kaggle_dir, "-q").code == 0
    result = cli("score", trained / "submission.csv", "--solution", kaggle_dir / "solution.csv", "--json")
    assert result.code == 0, result.err
    out = _validated("score", result.out)
    assert out["rows"] == 500 and out["accuracy"] == out["correct"] / 500 and out["accuracy"] > 0.5
    assert result.err == ""


def test_tutorial_json_holds_both_runs_and_the_score(tmp_path, kaggle_dir, cli):
    result = cli("tutorial", "--data", kaggle_dir, "--out", tmp_path / "tut", "--epochs", "3", "--json")
    assert result.code == 0, result.err
    out = _validated("tutorial", result.out)
    chosen = out["validation_run"]["best"]["val_loss"]["epoch"]
    assert out["final_run"]["epochs"] == out["chosen_epochs"] == chosen
    assert out["score"] > 0.5 and "[6/6]" in result.err


def test_tune_grid_json_lists_every_cell_and_the_refit(tmp_path, cli):
    result = cli("tune", "--grid", "quick", "--data", FIXTURES, "--out", tmp_path / "grid", "--json")
    assert result.code == 0, result.err
    out = _validated("tune", result.out)
    assert out["kind"] == "grid" and out["search"] is None and len(out["grid"]["cells"]) == 4
    assert out["best"]["value"] == max(c["mean"] for c in out["grid"]["cells"])
    assert out["trial_counts"]["complete"] == 4 and 0 < out["grid"]["score"] <= 1
    assert all(Path(p).is_file() for p in out["files"].values()) and "refit_submission" in out["files"]


def test_tune_search_json_with_worker_processes_keeps_their_lines_off_stdout(tmp_path):
    result = subprocess.run([sys.executable, "-m", "digits.cli", "tune", "--space", "tiny", "--trials", "2",
                             "--workers", "2", "--data", str(FIXTURES), "--out", str(tmp_path / "s"),
                             "--json"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    out = _validated("tune", result.stdout)
    assert out["kind"] == "search" and out["search"]["workers"] == 2 and out["grid"] is None
    assert out["trial_counts"]["total"] == len(out["trials"]) >= 2
    assert out["best"]["value"] == max(t["value"] for t in out["trials"] if t["state"] == "complete")
    assert Path(out["files"]["best_preset"]).is_file() and Path(out["files"]["study_db"]).is_file()
    assert len(re.findall(r"worker \d .* ran trials", result.stderr)) == 2, "the workers' tallies, on stderr"


def test_quiet_prints_nothing_on_success(tmp_path, kaggle_dir, cli):
    run = tmp_path / "run"
    for args in (["train", "--data", kaggle_dir, "--epochs", "1", "--out", run],
                 ["predict", run, "--data", kaggle_dir],
                 ["score", run / "submission.csv", "--solution", kaggle_dir / "solution.csv"],
                 ["tune", "--grid", "quick", "--data", kaggle_dir, "--out", tmp_path / "grid"]):
        result = cli(*args, "--quiet")
        assert (result.code, result.out, result.err) == (0, "", ""), args[0]
    assert (run / "submission.csv").is_file() and (tmp_path / "grid" / "best.toml").is_file()


@pytest.mark.parametrize("mode", ["--quiet", "--json"])
def test_errors_stay_one_line_on_stderr_with_status_2_and_nothing_on_stdout(tmp_path, cli, mode):
    result = cli("predict", tmp_path / "nowhere", "--data", FIXTURES, mode)
    assert (result.code, result.out) == (2, "")
    assert result.err.count("\n") == 1 and "no such run directory" in result.err


def _summary(out: str, headline: str) -> dict[str, Path]:
    """The ``label  path`` lines under the summary's headline."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(headline))
    rows = [line.split(None, 1) for line in lines[start + 1:] if line.startswith("  ")]
    return {label: Path(path) for label, path in rows}


def test_summary_after_training_lists_every_written_file_and_each_exists(tmp_path, kaggle_dir, cli,
                                                                          monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("train", "--data", kaggle_dir, "--epochs", "1", "--out", "run")
    assert result.code == 0, result.err
    listed = _summary(result.out, "run directory run")
    assert set(listed) == {"config", "model", "model_card", "history", "curves", "metrics", "training_rows",
                           "calibration", "rejector", "report"}
    assert all(path.is_file() for path in listed.values())
    assert listed["report"] == Path("run/report/report.html")
    assert ({p.name for p in listed.values()} - {"report.html"}
            == {p.name for p in Path("run").iterdir() if p.is_file()})


def test_summary_after_predict_and_tutorial_lists_submission_and_both_runs(tmp_path, kaggle_dir, cli):
    tut = tmp_path / "tut"
    result = cli("tutorial", "--data", kaggle_dir, "--out", tut, "--epochs", "2")
    assert result.code == 0, result.err
    listed = _summary(result.out, f"run directory {tut}")
    assert {"submission", "samples", "curves", "validation_curves", "validation_history"} <= set(listed)
    assert all(path.is_file() for path in listed.values())
    predicted = cli("predict", tut, "--data", kaggle_dir, "--out", tmp_path / "again.csv")
    listed = _summary(predicted.out, "tutorial-mlp: predicted 500 digits")
    assert listed == {"submission": tmp_path / "again.csv"}


def _schema_properties(schema: dict, found: set[str]) -> set[str]:
    if isinstance(schema, dict):
        found.update(schema.get("properties", {}))
        for value in schema.values():
            _schema_properties(value, found)
    elif isinstance(schema, list):
        for value in schema:
            _schema_properties(value, found)
    return found


@pytest.mark.parametrize("command", COMMANDS)
def test_every_field_of_a_schema_is_documented_in_its_section_of_docs_json(command):
    text = DOCS.read_text()
    section = text.split(f"## `digits {command}")[1].split("\n## ")[0]
    shared = text.split("## Shared objects")[1].split("\n## ")[0]
    names = _schema_properties(load_schema(command), set()) | (
        _schema_properties(load_schema("common"), set()) if command in ("train", "tutorial") else set())
    missing = [n for n in sorted(names) if f"`{n}`" not in section + shared]
    assert not missing, missing


def test_download_bars_follow_the_bytes_and_a_log_gets_one_line_per_file():
    terminal = Console(file=io.StringIO(), force_terminal=True, width=100)
    with DownloadProgress(terminal) as bars:
        for done in (0, 5_000_000, 9_912_422):
            bars.update("train-images-idx3-ubyte.gz", done, 9_912_422)
        (task,) = bars.progress.tasks
        assert task.finished and task.completed == 9_912_422
    log = Console(file=io.StringIO(), force_terminal=False)
    with DownloadProgress(log) as bars:
        bars.update("t10k-labels-idx1-ubyte.gz", 0, 4_542)
        bars.update("t10k-labels-idx1-ubyte.gz", 4_542, 4_542)
    assert log.file.getvalue() == "  downloaded t10k-labels-idx1-ubyte.gz (0.0 MB)\n"


def test_running_trials_show_their_steps_from_the_storage_and_leave_when_done():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    trial.set_user_attr("steps", [60, 150])
    assert snapshot(study).steps == ((0, 60, 150),)
    progress = Progress(disable=True)
    bars = TrialBars(progress)
    bars.update(snapshot(study).steps)
    (task,) = progress.tasks
    assert (task.completed, task.total) == (60, 150)
    study.tell(trial, 0.9)
    bars.update(snapshot(study).steps)
    assert progress.tasks == []


def test_training_shows_a_bar_inside_each_epoch_with_steps_rate_and_time_left_on_stderr(tmp_path):
    code, out, shown = with_stderr_on_a_terminal("train", "--data", str(FIXTURES), "--epochs", "2",
                                                  "--out", str(tmp_path / "run"), "--no-report")
    assert code == 0, shown
    assert "epoch 1/2" in shown and "epoch 2/2" in shown and "/30" in shown  # 30 steps of 64 rows
    assert "steps/s" in shown and "left" in shown
    assert "steps/s" not in out and "  1/2 " in out, "stdout keeps the epoch table only"


def test_predict_shows_a_bar_over_the_digits_on_stderr(trained, tmp_path):
    code, out, shown = with_stderr_on_a_terminal("predict", str(trained), "--data", str(FIXTURES),
                                                  "--out", str(tmp_path / "s.csv"))
    assert code == 0, shown
    assert "predicting" in shown and "digits/s" in shown and "digits/s" not in out


@pytest.mark.parametrize("mode", ["--quiet", "--json"])
def test_no_bars_under_quiet_or_json(tmp_path, mode):
    code, _, shown = with_stderr_on_a_terminal("train", "--data", str(FIXTURES), "--epochs", "1",
                                                "--out", str(tmp_path / "run"), "--no-report", mode)
    assert code == 0 and "steps/s" not in shown and "epoch 1/1" not in shown


def test_a_bar_on_a_log_prints_a_line_now_and_then_not_a_redraw(monkeypatch):
    from digits import console as terminal

    log = io.StringIO()
    monkeypatch.setattr(terminal, "LOG_EVERY", 0.0)  # every update is "long enough" here
    with terminal.WorkBar("epoch 1/3", 200, "steps", Console(file=log, width=140)) as bar:
        bar.update(50)
        bar.update(200)  # the end: the epoch's table row says it, not a progress line
    lines = log.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("  epoch 1/3: 50/200 steps (25%), ")
    assert "steps/s, about " in lines[0] and lines[0].endswith(" left")
