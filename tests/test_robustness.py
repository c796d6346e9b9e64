"""The robustness benchmark: MNIST-C's corruptions, optdigits in MNIST form, the benchmark end to
end on a tiny run, and the protocol's rule that training never sees the corruptions."""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import FIXTURES, train_fixture_run
from PIL import Image

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SRC = Path(__file__).resolve().parents[1] / "src" / "digits"
sys.path.insert(0, str(BENCHMARKS))

import corruptions  # noqa: E402
from corruptions import CORRUPTIONS  # noqa: E402

from digits.data.kaggle import load_kaggle_csv, write_kaggle_csv  # noqa: E402
from digits.data.submission import read_submission, write_submission  # noqa: E402

WITHOUT_RANDOMNESS = {"scale", "brightness", "stripe", "canny_edges"}  # MNIST-C draws nothing for these
# One parameter that grows with the severity: each level changes the digits more than the last.
ONE_PARAMETER = ("shot_noise", "impulse_noise", "shear", "scale", "rotate", "brightness", "translate")


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    return load_kaggle_csv(FIXTURES / "train.csv", kind="train").images[:40]


def change(before: np.ndarray, after: np.ndarray) -> float:
    return float(np.abs(after.astype(np.float64) - before).mean())


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_each_corruption_keeps_shape_and_dtype_changes_the_digits_and_repeats_for_a_seed(digits, name):
    corruption = CORRUPTIONS[name]
    once = corruption(digits, np.random.default_rng(7))
    again = corruption(digits, np.random.default_rng(7))
    assert once.dtype == np.uint8 and once.shape == digits.shape
    assert np.array_equal(once, again)
    assert change(digits, once) > 1.0
    assert (once != digits).any(axis=(1, 2)).mean() > 0.9  # nearly every digit, not a few
    if name not in WITHOUT_RANDOMNESS:
        assert not np.array_equal(once, corruption(digits, np.random.default_rng(8)))


@pytest.mark.parametrize("name", [n for n in CORRUPTIONS if n != "shot_noise"])
def test_each_digit_is_corrupted_on_its_own_whatever_the_others_in_the_batch(digits, name):
    # A whole batch goes through each filter at once; no digit may bleed into its neighbours.
    # (Shot noise is left out: NumPy's Poisson sampler draws more numbers for a brighter pixel,
    # so changing one digit moves the others' draws, not their ink.)
    other = digits.copy()
    other[0] = 255 - other[0]
    assert np.array_equal(CORRUPTIONS[name](digits, np.random.default_rng(4))[1:],
                          CORRUPTIONS[name](other, np.random.default_rng(4))[1:])


def test_there_are_mnist_c_s_fifteen_at_its_published_severities():
    assert list(CORRUPTIONS) == ["shot_noise", "impulse_noise", "glass_blur", "motion_blur", "shear",
                                 "scale", "rotate", "brightness", "translate", "stripe", "fog", "spatter",
                                 "dotted_line", "zigzag", "canny_edges"]
    published = {name: c.published for name, c in CORRUPTIONS.items()}
    assert published == {"shot_noise": 5, "impulse_noise": 4, "glass_blur": 1, "motion_blur": 1, "shear": 2,
                         "scale": 3, "rotate": 2, "brightness": 5, "translate": 3, "stripe": None, "fog": 5,
                         "spatter": 4, "dotted_line": None, "zigzag": None, "canny_edges": None}


def test_the_calibration_benchmark_measures_under_the_same_fifteen_the_robustness_benchmark_draws(digits):
    import importlib.util

    spec = importlib.util.spec_from_file_location("benchmarks_calibration", BENCHMARKS / "calibration.py")
    calibration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(calibration)
    shifted = calibration.shifted_sets(digits)
    assert list(shifted) == list(CORRUPTIONS)  # MNIST-C's, not the generic stand-ins
    for name, corruption in CORRUPTIONS.items():  # as robustness.py draws each for seed 0
        assert np.array_equal(shifted[name], corruption(digits, corruptions.set_rng(0, name)))


@pytest.mark.parametrize("name", ONE_PARAMETER)
def test_a_higher_severity_changes_the_digits_more(digits, name):
    corruption = CORRUPTIONS[name]
    changes = [change(digits, corruption(digits, np.random.default_rng(3), s)) for s in corruption.severities]
    assert changes == sorted(changes) and len(set(changes)) == 5, changes


@pytest.mark.parametrize("name", ["glass_blur", "motion_blur", "fog"])
def test_the_highest_severity_of_a_several_parameter_corruption_changes_more_than_the_lowest(digits, name):
    # Their parameters grow together but not each in step (glass blur's second level shuffles
    # once where the first shuffles twice), so only the ends are ordered. Spatter's levels are
    # two kinds of spatter in MNIST-C's code, not one growing.
    corruption = CORRUPTIONS[name]
    assert change(digits, corruption(digits, np.random.default_rng(3), 5)) > \
        change(digits, corruption(digits, np.random.default_rng(3), 1)) * 1.2


def test_a_corruption_with_one_form_refuses_a_severity_and_the_others_refuse_six(digits):
    with pytest.raises(ValueError, match="one form"):
        CORRUPTIONS["stripe"](digits, np.random.default_rng(0), 3)
    with pytest.raises(ValueError, match="1-5"):
        CORRUPTIONS["fog"](digits, np.random.default_rng(0), 6)


def test_brightness_adds_half_the_range_and_stripe_inverts_seven_columns_at_each_side(digits):
    rng = np.random.default_rng(0)
    brighter = corruptions.brightness(digits, rng).astype(np.int64)
    assert np.abs(brighter - np.minimum(digits + 127.5, 255)).max() <= 0.5  # rounded, either way at .5
    striped = corruptions.stripe(digits, rng)
    assert np.array_equal(striped[:, :, 7:21], digits[:, :, 7:21])
    assert np.array_equal(striped[:, :, :7], 255 - digits[:, :, :7])
    assert np.array_equal(striped[:, :, 21:], 255 - digits[:, :, 21:])


def test_translate_moves_each_digit_whole_pixels_along_both_axes(digits):
    moved = corruptions.translate(digits, np.random.default_rng(0))  # MNIST-C's severity: 3 pixels
    padded = np.pad(digits, ((0, 0), (3, 3), (3, 3)))
    for digit, out in zip(padded, moved):
        shifts = [digit[3 + dr:31 + dr, 3 + dc:31 + dc] for dr in (-3, 3) for dc in (-3, 3)]
        assert any(np.array_equal(out, s) for s in shifts)


def test_canny_edges_of_a_filled_square_are_its_outline():
    square = np.zeros((1, 28, 28), np.uint8)
    square[0, 9:19, 9:19] = 255
    edges = corruptions.canny_edges(square, np.random.default_rng(0))[0]
    assert set(np.unique(edges)) == {0, 255}
    ring = np.zeros((28, 28), bool)
    ring[7:21, 7:21] = True
    ring[11:17, 11:17] = False
    assert edges[~ring].max() == 0         # nothing deep inside or far outside
    assert (edges[8:20, 8:20] > 0).sum() >= 30  # and the outline is drawn all round
    for side in (edges[7:11, 9:19], edges[17:21, 9:19], edges[9:19, 7:11], edges[9:19, 17:21]):
        assert side.any()


def test_motion_blur_smears_a_dot_along_one_line_and_keeps_its_ink():
    dot = np.zeros((1, 28, 28), np.uint8)
    dot[0, 14, 14] = 255
    smeared = corruptions.motion_blur(dot, np.random.default_rng(0))[0].astype(np.float64)
    assert abs(smeared.sum() - 255) < 12          # the kernel sums to one (rounding aside)
    lit = np.argwhere(smeared > 0)
    assert len(lit) >= 8                          # spread over many pixels...
    rows, cols = lit.T
    assert np.polyfit(cols, rows, 1, full=True)[1].sum() < len(lit)  # ...along one straight line


def test_optdigits_become_1797_mnist_form_digits_with_scikit_learns_labels():
    from optdigits import load_optdigits
    from sklearn.datasets import load_digits

    images, labels, found = load_optdigits()
    assert images.shape == (1797, 28, 28) and images.dtype == np.uint8
    assert np.array_equal(labels, load_digits().target)
    assert found.all()
    # In MNIST's form: light ink on black, a 20-pixel box, the centre of mass in the middle.
    for image in images:
        rows, cols = np.flatnonzero(image.any(axis=1)), np.flatnonzero(image.any(axis=0))
        assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 == 20
    rows = np.arange(28)
    mass = images.sum(axis=(1, 2)).astype(np.float64)
    centre = (images.sum(axis=2) @ rows) / mass
    assert np.abs(centre - 14).max() < 1.5
    assert images.max(axis=(1, 2)).min() == 255


def test_no_module_of_digits_imports_the_corruptions_nor_uses_them_to_augment():
    # MNIST-C's protocol: a model is never trained on the benchmark's corruptions.
    distinctive = {name for name in CORRUPTIONS} - {"shear", "scale", "rotate", "translate", "brightness"}
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            modules = []
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            elif isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("__import__",
                                                                                   "import_module"):
                modules = [a.value for a in node.args
                           if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            offenders += [f"{path}: imports {m}" for m in modules
                          if m.split(".")[0] in ("benchmarks", "corruptions") or m.endswith(".corruptions")]
            named = getattr(node, "id", None) or getattr(node, "attr", None) or (
                node.name if isinstance(node, (ast.FunctionDef, ast.ClassDef)) else None)
            if named in distinctive:
                offenders.append(f"{path}: uses {named}")
    assert offenders == []
    augment = (SRC / "train" / "augment.py").read_text()
    assert not any(name in augment for name in distinctive)


# --- the benchmark end to end ----------------------------------------------------------------

@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_fixture_run(tmp_path_factory)


@pytest.fixture
def mixed_data(tmp_path: Path) -> Path:
    """A data folder whose test.csv holds 300 rows the run trained on, then 100 it never saw."""
    train = load_kaggle_csv(FIXTURES / "train.csv", kind="train")
    test = load_kaggle_csv(FIXTURES / "test.csv", kind="test")
    answers = read_submission(FIXTURES / "solution.csv")
    folder = tmp_path / "data"
    folder.mkdir()
    write_kaggle_csv(folder / "test.csv", np.concatenate([train.images[:300], test.images[:100]]), None)
    write_submission(folder / "solution.csv", np.concatenate([train.labels[:300], answers[:100]]))
    return folder


def test_the_benchmark_tests_only_never_seen_rows_and_writes_json_picture_results_and_report(
        trained_run, mixed_data, tmp_path, capsys):
    import robustness

    from digits.report import write_report

    out, results = tmp_path / "out" / "robustness.json", tmp_path / "RESULTS.md"
    results.write_text("# Results\n")
    assert robustness.main([str(trained_run), "--peers", "--data", str(mixed_data), "--limit", "30",
                            "--out", str(out), "--results", str(results)]) == 0
    printed = capsys.readouterr().out
    assert "machine: " in printed and "| MNIST-C fog |" in printed and "**MNIST-C mean of 15**" in printed

    record = json.loads(out.read_text())
    assert "30 rows of" in record["held_out"] and "the 100 that none" in record["held_out"]
    assert "300 dropped as seen" in record["held_out"]
    names = [s["name"] for s in record["sets"]]
    assert names[:2] == ["clean", "clean, through the app's preprocessing"]
    assert names[2:17] == list(CORRUPTIONS)
    assert names[17:] == ["optdigits (UCI, other writers)", "redrawn as pen strokes"]
    assert [s["rows"] for s in record["sets"]] == [30] * 17 + [1797, 30]
    assert [m["name"] for m in record["models"]] == [trained_run.name, "published recipe", "tutorial MLP"]
    for model in record["models"]:
        assert set(model["accuracy"]) == set(names)
        assert all(0.0 <= a <= 1.0 for a in model["accuracy"].values())
        summary = model["summary"]
        corrupted = [model["accuracy"][n] for n in CORRUPTIONS]
        assert summary["corruptions_mean"] == pytest.approx(np.mean(corrupted))
        assert summary["corruptions_worst"] == min(corrupted)
    assert record["models"][0]["accuracy"]["clean"] > 0.5  # a trained model, not chance

    with Image.open(out.with_suffix(".png")) as picture:
        assert picture.format == "PNG" and picture.height > 19 * 40
    # Whole files, no temporary copies left beside them.
    assert sorted(p.name for p in out.parent.iterdir()) == ["robustness.json", "robustness.png"]
    assert results.read_text().startswith("# Results\n\n## robustness.py ")
    assert "| MNIST-C zigzag | 30 |" in results.read_text()

    in_run = json.loads((trained_run / "robustness.json").read_text())
    assert in_run["accuracy"] == record["models"][0]["accuracy"]
    assert [p["name"] for p in in_run["peers"]] == ["published recipe", "tutorial MLP"]
    page = write_report(trained_run, tmp_path / "report.html").read_text()
    assert '<section id="robustness">' in page and "MNIST-C, the worst corruption" in page
    assert f"{record['models'][0]['summary']['corruptions_mean']:.4f}" in page
    # The ECE of the run's calibrated probabilities, clean and under each corruption, beside its accuracy.
    assert set(in_run["ece"]) == set(names) and all(0.0 <= e <= 1.0 for e in in_run["ece"].values())
    corrupted_ece = np.mean([in_run["ece"][n] for n in CORRUPTIONS])
    assert (f"{in_run['ece']['clean'] * 100:.2f}% on the clean held-out digits, "
            f"{corrupted_ece * 100:.2f}% on MNIST-C") in page


def test_a_damaged_robustness_json_is_named_in_the_report_instead_of_stopping_it(trained_run, tmp_path):
    import shutil

    from digits.report import write_report

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    (run / "robustness.json").write_text('{"date": 3}')
    page = write_report(run, tmp_path / "report.html").read_text()
    assert '<section id="robustness">' in page and "Not shown:" in page and "robustness.json" in page


def test_the_same_seed_gives_the_same_test_sets_and_picture(trained_run, mixed_data, tmp_path):
    import robustness

    from digits.data.identity import image_hashes

    images = load_kaggle_csv(mixed_data / "test.csv", kind="test").images[300:310]
    labels = np.arange(10)
    first = robustness.build_sets(images, labels, 5, False, lambda _: None)
    second = robustness.build_sets(images, labels, 5, False, lambda _: None)
    other = robustness.build_sets(images, labels, 6, False, lambda _: None)
    def hashes(sets: list) -> list:
        return [image_hashes(s.images).tolist() for s in sets]

    assert hashes(first) == hashes(second)
    assert robustness.picture(first, 5) == robustness.picture(second, 5)
    assert not np.array_equal(first[-1].images, other[-1].images)  # the strokes follow the seed


def test_a_run_whose_every_test_row_was_trained_on_is_a_one_line_error(trained_run, tmp_path, capsys):
    import robustness

    folder = tmp_path / "seen"
    folder.mkdir()
    train = load_kaggle_csv(FIXTURES / "train.csv", kind="train")
    write_kaggle_csv(folder / "test.csv", train.images[:50], None)
    write_submission(folder / "solution.csv", train.labels[:50])
    out = tmp_path / "r.json"
    assert robustness.main([str(trained_run), "--data", str(folder), "--out", str(out), "--no-record"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "every row was trained or validated on" in err and str(folder) in err
    assert not out.exists()


def test_an_output_under_a_file_is_refused_before_any_work_and_nothing_is_written(trained_run, tmp_path,
                                                                                   capsys):
    import robustness

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    before = sorted(p.name for p in trained_run.iterdir())
    assert robustness.main([str(trained_run), "--data", str(FIXTURES), "--out", str(blocker / "r.json"),
                            "--no-record"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(blocker) in err
    assert sorted(p.name for p in trained_run.iterdir()) == before


def test_a_run_that_reads_two_forms_is_read_in_mnist_form_only_beside_it(mixed_data, tmp_path, capsys):
    import robustness

    from digits.cli import main

    run = tmp_path / "normalised"
    assert main(["train", "--train", str(FIXTURES / "train.csv"), "--epochs", "1", "--normalise", "mnist",
                 "--no-report", "--quiet", "--out", str(run)]) == 0
    out = tmp_path / "robustness.json"
    assert robustness.main([str(run), "--one-form", "--data", str(mixed_data), "--limit", "20",
                            "--out", str(out), "--no-record"]) == 0
    models = json.loads(out.read_text())["models"]
    assert [(m["name"], m["kind"]) for m in models] == [("normalised", "run"), ("normalised, mnist form only", "peer")]
    # The same weights, read two ways: alike on clean digits, apart where a line or an outline widens the box.
    assert models[0]["accuracy"]["clean"] == pytest.approx(models[1]["accuracy"]["clean"], abs=0.1)
    assert models[0]["accuracy"] != models[1]["accuracy"]
    in_run = json.loads((run / "robustness.json").read_text())
    assert in_run["accuracy"] == models[0]["accuracy"]
    assert [p["name"] for p in in_run["peers"]] == ["normalised, mnist form only"]
