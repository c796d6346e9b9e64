"""`digits tune --grid`: the notebook's protocol (stratified folds, refit, submission, table)
on the 2,000-digit fixture, with every fit's per-epoch history kept."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
from helpers import FIXTURES, with_stderr_on_a_terminal
from sklearn.model_selection import StratifiedKFold

from digits.data.kaggle import load_kaggle_csv
from digits.hardware import describe_cpu
from digits.presets import load_preset
from digits.tune.grid import GridSpec, best_cell, get_grid, run_grid, stratified_folds


def test_folds_are_scikit_learns_stratified_folds_as_grid_search_cv_uses() -> None:
    labels = load_kaggle_csv(FIXTURES / "train.csv", kind="train").labels
    ours = stratified_folds(labels, 3)
    theirs = list(StratifiedKFold(3).split(np.zeros(len(labels)), labels))
    for (a, b), (c, d) in zip(ours, theirs):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)


def test_the_tutorial_grid_takes_batches_of_64_where_bf16_is_native_and_128_where_it_is_not() -> None:
    avx2 = {"sse4_2", "avx", "avx2", "fma"}
    amx = describe_cpu("Intel Xeon Platinum 8481C", avx2 | {"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}, 2)
    zen3 = describe_cpu("AMD EPYC 7B13", avx2, 2)
    grid = get_grid("tutorial")
    assert (grid.on(amx).batch_size, grid.on(zen3).batch_size) == (64, 128)
    assert grid.on(zen3).config(0.001, seed=0, hidden=512).batch_size == 128  # the refit and its preset too
    assert get_grid("quick").on(zen3) == get_grid("quick")  # a grid that states no batch of its own


def test_each_cell_scores_every_fold_and_reports_mean_and_population_std() -> None:
    data = load_kaggle_csv(FIXTURES / "train.csv", kind="train")
    spec = GridSpec("t", hidden=(8, 32), lrs=(0.001, 0.003), folds=2, epochs=2)
    cells = run_grid(spec, data)
    assert [(c.hidden, c.lr) for c in cells] == [(8, 0.001), (8, 0.003), (32, 0.001), (32, 0.003)]
    for c in cells:
        assert len(c.fold_scores) == 2 and all(len(h) == 2 for h in c.histories)
        assert c.fold_scores == tuple(h.rows[-1]["val_accuracy"] for h in c.histories)
        assert c.std == np.std(c.fold_scores) and c.mean == np.mean(c.fold_scores)
    assert best_cell(cells).mean == max(c.mean for c in cells)


def test_grid_command_prints_the_table_and_writes_results_histories_refit_and_submission(tmp_path: Path) -> None:
    out = tmp_path / "grid"
    result = subprocess.run([sys.executable, "-m", "digits.cli", "tune", "--grid", "quick", "--data", str(FIXTURES),
                             "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "hidden units" in result.stdout and "±" in result.stdout and "wall time" in result.stdout
    with open(out / "cv_results.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4 and sorted(int(r["rank_test_score"]) for r in rows) == [1, 2, 3, 4]
    with open(out / "histories.csv") as fh:
        history = list(csv.DictReader(fh))
    assert len(history) == 4 * 2 * 2  # cells x folds x epochs: every fit, every epoch
    assert all(0 < float(r["val_accuracy"]) <= 1 for r in history)
    best = min(rows, key=lambda r: int(r["rank_test_score"]))
    assert load_preset(out / "best.toml").config.model_args == {"hidden": int(best["param_hidden"])}
    for name in ("model.safetensors", "model.json", "history.csv", "curves.png", "submission.csv"):
        assert (out / "refit" / name).is_file(), name
    assert (out / "optimization_history.png").is_file() and (out / "param_importances.png").is_file()
    storage = f"sqlite:///{out / 'study.db'}"
    study = optuna.load_study(study_name=optuna.get_all_study_names(storage)[0], storage=storage)
    assert len(study.trials) == 4 and abs(study.best_value - max(float(r["mean_test_score"]) for r in rows)) < 1e-6


def test_the_grid_widths_are_shared_out_between_cores_by_total_width() -> None:
    from digits.tune.grid import balanced_parts

    assert balanced_parts((32, 64, 128, 256, 512), 2) == [[4], [0, 1, 2, 3]]  # 512 | 480 units
    assert balanced_parts((32, 64, 128, 256, 512), 1) == [[0, 1, 2, 3, 4]]
    assert balanced_parts((8,), 4) == [[0]]


def test_the_grid_shows_one_bar_over_every_fits_steps_with_rate_and_time_left_on_stderr(tmp_path: Path) -> None:
    code, out, text = with_stderr_on_a_terminal("tune", "--grid", "quick", "--data", str(FIXTURES),
                                                "--out", str(tmp_path / "grid"), timeout=300)
    assert code == 0, text
    # 8 fits (4 cells x 2 folds) of 1,000 rows, 16 steps an epoch, 2 epochs: 256 steps; the refit 64
    assert "8 fits (4 cells x 2 folds)" in text and "/256" in text and "refit" in text and "/64" in text
    assert "steps/s" in text and "left" in text and "steps/s" not in out
