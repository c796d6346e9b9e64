"""The training engine: schedules, label smoothing, early stopping, augmentation, presets, ensembles."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from helpers import FIXTURES
from test_hardware import AMX_CPU, AVX2_CPU, H100

from digits.data.kaggle import load_kaggle_csv
from digits.errors import DigitsError, DigitsWarning
from digits.hardware import hardware
from digits.models.registry import create_model
from digits.predict.predictor import Predictor, predict_proba, tta_views
from digits.presets import list_presets, load_preset, training_plan
from digits.train.augment import random_affine
from digits.train.config import TrainConfig
from digits.train.ensemble import EnsembleSpec, member_split, train_ensemble
from digits.train.fit import train_model

SMALL = TrainConfig(model="keras-convnet", epochs=2, batch_size=64, optimizer="adam", lr=1e-3,
                    val_split=0.25, seed=3, device="cpu")


@pytest.fixture(scope="module")
def digits_800():
    return load_kaggle_csv(FIXTURES / "train.csv").subset(slice(0, 800))


@pytest.mark.parametrize("schedule, args, expected", [
    ("constant", {}, [1e-3, 1e-3, 1e-3]),
    ("exponential", {"gamma": 0.5}, [1e-3, 5e-4, 2.5e-4]),
    ("step", {"step_size": 2, "gamma": 0.1}, [1e-3, 1e-3, 1e-4]),
])
def test_epoch_schedules_set_the_learning_rate_of_each_epoch(digits_800, schedule, args, expected):
    train, val = digits_800.split_last(0.25)
    config = SMALL.replace(model="softmax", epochs=3, schedule=schedule, schedule_args=args)
    _, history = train_model(config, train, val)
    assert history.column("lr") == pytest.approx(expected)


@pytest.mark.parametrize("schedule", ["cosine", "onecycle", "plateau"])
def test_step_and_metric_schedules_change_the_learning_rate(digits_800, schedule):
    train, val = digits_800.split_last(0.25)
    config = SMALL.replace(model="softmax", epochs=3, schedule=schedule)
    if schedule == "plateau":  # a huge step size stalls validation accuracy, so the plateau cut comes
        config = config.replace(epochs=6, lr=5.0, optimizer="sgd", schedule_args={"patience": 0, "factor": 0.5})
    _, history = train_model(config, train, val)
    assert len(set(history.column("lr"))) > 1


def test_onecycle_ends_near_zero_learning_rate(digits_800):
    _, history = train_model(SMALL.replace(model="softmax", schedule="onecycle"), *digits_800.split_last(0.25))
    assert history.column("lr")[-1] < 1e-5


def test_unknown_schedule_is_a_user_error(digits_800):
    with pytest.raises(DigitsError, match="unknown schedule 'warp'"):
        train_model(SMALL.replace(schedule="warp"), *digits_800.split_last(0.25))


def test_label_smoothing_raises_the_training_loss(digits_800):
    train, val = digits_800.split_last(0.25)
    plain = train_model(SMALL.replace(model="softmax"), train, val)[1].column("loss")[-1]
    smooth = train_model(SMALL.replace(model="softmax", label_smoothing=0.2), train, val)[1].column("loss")[-1]
    assert smooth > plain + 0.1


def test_early_stopping_stops_and_restores_the_best_weights(digits_800):
    train, val = digits_800.split_last(0.25)
    # A huge learning rate makes validation accuracy stall at once, so patience runs out.
    config = SMALL.replace(model="softmax", epochs=30, lr=5.0, optimizer="sgd", early_stopping=2)
    model, history = train_model(config, train, val)
    assert len(history) < 30
    best_epoch = history.best_epoch("val_accuracy", "max")
    assert len(history) == best_epoch + 2
    from digits.train.fit import TensorSet, evaluate

    _, acc = evaluate(model, TensorSet.from_digits(val, torch.device("cpu")))
    assert acc == pytest.approx(max(history.column("val_accuracy")))


def test_early_stopping_without_validation_is_refused():
    with pytest.raises(DigitsError, match="early stopping needs a validation split"):
        TrainConfig(early_stopping=3, val_split=0.0)


def test_augmentation_off_is_the_identity_and_on_moves_the_ink(digits_800):
    x = torch.from_numpy(digits_800.images[:64])
    assert torch.equal(random_affine(x), x.float().reshape(-1, 1, 28, 28))
    torch.manual_seed(0)
    moved = random_affine(x, rotation=10, zoom=0.1, shift=0.1)
    assert moved.shape == (64, 1, 28, 28) and moved.dtype == torch.float32
    assert 0 <= moved.min() and moved.max() <= 255 + 1e-3  # bilinear weights sum to 1
    changed = (moved.reshape(64, -1) - x.float().reshape(64, -1)).abs().sum(1)
    assert (changed > 0).all()
    # Ink is kept (bilinear resampling, at most 10% zoom): total brightness within 30%.
    ratio = moved.sum() / x.float().sum()
    assert 0.7 < ratio < 1.3


def test_shift_moves_the_centre_of_mass_by_at_most_the_range(digits_800):
    x = torch.from_numpy(digits_800.images[:256])
    torch.manual_seed(1)
    moved = random_affine(x, shift=0.1).reshape(256, 28, 28)
    cols = torch.arange(28.0)

    def centre(img):
        return (img.sum(1) * cols).sum(1) / img.sum((1, 2))

    delta = (centre(moved) - centre(x.float())).abs()
    assert delta.max() <= 0.1 * 28 + 0.5 and delta.mean() > 0.3


def test_elastic_distortion_keeps_the_digit_recognisable(digits_800):
    x = torch.from_numpy(digits_800.images[:32])
    torch.manual_seed(2)
    out = random_affine(x, elastic=2.0).reshape(32, -1)
    similarity = torch.nn.functional.cosine_similarity(out, x.float().reshape(32, -1))
    assert (similarity > 0.5).all() and (similarity < 0.999).all()


def test_augmented_training_is_repeatable_with_the_seed(digits_800):
    train, val = digits_800.split_last(0.25)
    config = SMALL.replace(augment={"rotation": 10, "zoom": 0.1, "shift": 0.1}, epochs=1)
    a = train_model(config, train, val)[1].rows[0]
    b = train_model(config, train, val)[1].rows[0]
    assert {k: v for k, v in a.items() if k != "seconds"} == {k: v for k, v in b.items() if k != "seconds"}


def test_bf16_and_channels_last_train_on_cpu(digits_800):
    train, val = digits_800.split_last(0.25)
    _, history = train_model(SMALL.replace(precision="bf16", channels_last=True, epochs=1), train, val)
    assert history.rows[0]["val_accuracy"] > 0.3


def test_every_preset_loads():
    assert {"tutorial", "fast", "cpu-best", "gpu-best"} <= set(list_presets())
    for name in list_presets():
        preset = load_preset(name)
        assert preset.description and preset.target and preset.config.epochs >= 1


def test_cpu_best_reads_like_the_app_and_keeps_rows_for_its_calibration_where_bf16_is_native():
    config = load_preset("cpu-best").config_for(AMX_CPU)
    # Every input path reads digits in MNIST's form, so the run trains on them in that form; its
    # held-out rows fit the temperature and the unsure and not-a-digit thresholds.
    assert config.normalise == "mnist" and config.val_split > 0 and config.outlier_exposure > 0
    # Generic augmentation, the photometric part on half of the digits; none of the benchmark's lines.
    assert 0 < config.augment["photometric"] < 1 and "erase" not in config.augment
    # In fp32 on AVX2 the epochs that fit 10 minutes reach 99.5% only with the plain recipe.
    plain = load_preset("cpu-best").config_for(AVX2_CPU)
    assert (plain.precision, plain.epochs, plain.normalise, plain.val_split) == ("fp32", 11, "none", 0.0)
    assert set(plain.augment) == {"rotation", "zoom", "shift"} and plain.outlier_exposure == 0


def test_an_ensembles_members_train_their_variants_in_turn_on_top_of_the_recipe(tmp_path, digits_800):
    config = TrainConfig(model="softmax", epochs=1, augment={"rotation": 10.0}, seed=7)
    spec = EnsembleSpec(config, members=3, variants=({}, {"augment": {"erasing": 0.5}, "lr": 0.01}))
    first, second, third = (spec.member_config(i) for i in range(3))
    assert (first.augment, first.lr, first.seed) == ({"rotation": 10.0}, config.lr, 7)
    assert (second.augment, second.lr, second.seed) == ({"rotation": 10.0, "erasing": 0.5}, 0.01, 8)
    assert (third.augment, third.seed) == (first.augment, 9)  # the variants come round again
    train_ensemble(spec, digits_800.subset(slice(0, 200)), tmp_path / "run")
    recorded = [json.loads((tmp_path / "run" / f"members/0{i}/config.json").read_text())["train"] for i in (1, 2, 3)]
    assert [r["augment"] for r in recorded] == [first.augment, second.augment, third.augment]
    # ensemble.json keeps the variants: a resumed run or another --members job trains the same members.
    assert json.loads((tmp_path / "run" / "ensemble.json").read_text())["variants"] == [{}, {"augment": {"erasing": 0.5},
                                                                                           "lr": 0.01}]


def test_a_preset_gives_its_members_variants_and_fewer_members_where_an_epoch_takes_longer(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text('[train]\nmodel = "fast-cnn"\n\n[ensemble]\nmembers = 2\n'
                    'variants = [{}, { augment = { erasing = 0.5 } }]\n\n[cpu.emulated-bf16]\nmembers = 1\n')
    preset = load_preset(path)
    assert preset.variants == ({}, {"augment": {"erasing": 0.5}})
    assert (preset.members_for(AMX_CPU), preset.members_for(AVX2_CPU)) == (2, 1)
    assert "members" not in preset.settings_for(AVX2_CPU)
    plan = training_plan(path, device="cpu")  # what `digits train --preset p.toml` trains here
    assert plan.variants == preset.variants and plan.members == preset.members_for(hardware("cpu"))
    path.write_text('[ensemble]\nvariants = [{ augment = { erasin = 0.5 } }]\n')
    with pytest.raises(DigitsError, match=r"p.toml: \[ensemble\] variant 1: unknown augmentation erasin"):
        load_preset(path)
    path.write_text('[cpu]\nmembers = 0\n')
    with pytest.raises(DigitsError, match=r"\[cpu\]: members should be a whole number >= 1, found 0"):
        load_preset(path)


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(DigitsError, match="unknown preset 'turbo'; known presets: cpu-best, fast"):
        load_preset("turbo")


def test_a_preset_can_change_settings_on_one_kind_of_device(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text('[train]\nmodel = "fast-cnn"\nprecision = "bf16"\nchannels_last = true\n\n'
                    '[cuda]\nprecision = "fp32"\nchannels_last = false\n')
    preset = load_preset(path)
    with pytest.warns(DigitsWarning):  # bf16 as written, on a CPU that emulates it
        assert preset.config_for(AVX2_CPU) == preset.config  # no [cpu] table: as written
    on_gpu = preset.config_for(H100)
    assert (on_gpu.precision, on_gpu.channels_last, on_gpu.model) == ("fp32", False, "fast-cnn")
    assert load_preset("fast").config_for(H100).precision == "fp32"


def test_presets_command_lists_the_recipes_and_shows_one_whole(cli):
    listing = cli("presets")
    assert listing.code == 0 and all(name in listing.out for name in list_presets())
    assert "15 x kaggle-cnn, 45 epochs, batch 64" in listing.out  # kaggle-record
    shown = cli("presets", "fast")
    assert shown.code == 0 and "batch_size=384" in shown.out and '[cuda.native-bf16] precision="fp32"' in shown.out
    unknown = cli("presets", "turbo")
    assert unknown.code == 2 and "unknown preset 'turbo'" in unknown.err and not unknown.out


@pytest.mark.parametrize("text, message", [
    ('[cuda]\nbatch = 3\n', r"preset .*p.toml: \[cuda\]: unknown training setting\(s\): batch"),
    ('[cuda]\nprecision = "fp8"\n', r"\[cuda\]: precision must be one of auto, fp32, bf16, fp16"),
    ('cuda = 3\n', r"\[cuda\] must be a table"),
    ('[gpu]\nprecision = "fp32"\n', r"unknown key\(s\) gpu; known: .*\[cuda\]"),
])
def test_a_bad_device_table_is_refused_when_the_preset_loads(tmp_path, text, message):
    (tmp_path / "p.toml").write_text(text)
    with pytest.raises(DigitsError, match=message):
        load_preset(tmp_path / "p.toml")


@pytest.mark.parametrize("name", list_presets())
def test_every_preset_runs_on_cpu_for_a_few_batches(tmp_path, digits_800, name, outlier_pictures_cached):
    # The GPU presets too: what runs here is what a GPU runs, but for the [cuda] table.
    preset = load_preset(name)
    config = preset.config_for("cpu").replace(epochs=1, device="cpu")
    spec = EnsembleSpec(config, members=min(preset.members, 2), bagging=preset.bagging, variants=preset.variants)
    metrics = train_ensemble(spec, digits_800.subset(slice(0, 300)), tmp_path / "run")
    assert metrics["members"] == spec.members and len(metrics["member_metrics"]) == spec.members
    probs = Predictor.open(tmp_path / "run").predict_proba(digits_800.images[:10])
    assert probs.shape == (10, 10) and np.allclose(probs.sum(1), 1, atol=1e-5)


def test_gpu_best_on_the_cpu_trains_the_robust_reader_and_its_ensemble_answers_calibrated(
        tmp_path, kaggle_dir, cli, outlier_pictures_cached):
    # gpu-best's CPU smoke test: its recipe, two of its members for one epoch, through the command
    # a GPU runs (what a GPU adds is the CUDA graphs: test_engines checks their steps on the CPU).
    config = load_preset("gpu-best").config_for(H100)
    assert (config.normalise, config.outlier_exposure, config.val_split) == ("mnist", 0.5, 0.05)
    assert config.augment == load_preset("cpu-best").config_for(AMX_CPU).augment  # trained the way cpu-best is
    run = tmp_path / "gpu-best"
    trained = cli("train", "--preset", "gpu-best", "--data", kaggle_dir, "--device", "cpu", "--precision", "fp32",
                  "--epochs", "1", "--ensemble", "2", "--workers", "1", "--out", run, "--no-report", "--quiet")
    assert trained.code == 0, trained.err
    # The last 5% of the 2,000 rows, held out by both members, fit each one's temperature, the
    # average's, the unsure and the not-a-digit thresholds, and the rejector's distance.
    predictor = Predictor.open(run)
    assert predictor.tta and len(predictor.members) == 2 and predictor.rejector is not None
    assert predictor.calibration.source == "validation" and predictor.calibration.measured["rows"] == 100
    assert predictor.calibration.no_digit_below is not None
    # Label smoothing and outlier exposure taught an even share: each member's is taken out first.
    assert all(m.calibration.fitted and m.calibration.unmix for m in predictor.members)
    probabilities = tmp_path / "proba.csv"
    answered = cli("predict", run, "--data", kaggle_dir, "--probabilities", probabilities)
    assert answered.code == 0, answered.err
    rows = [line.split(",") for line in probabilities.read_text().splitlines()[1:]]
    assert len(rows) == 500 and {r[-1] for r in rows} <= {"answered", "unsure", "not a digit"}


def test_the_record_attempt_and_its_peer_are_the_kaggle_notebooks_ensemble():
    record, peer = load_preset("gpu-best"), load_preset("kaggle-record")
    assert record.members == peer.members == 15 and record.config.model == peer.config.model == "kaggle-cnn"
    assert (peer.config.epochs, peer.config.batch_size, peer.bagging) == (45, 64, 0.1)
    assert (peer.config.schedule, peer.config.schedule_args, peer.config.lr) == ("exponential", {"gamma": 0.95}, 1e-3)


def test_a_model_trained_in_bf16_predicts_in_bf16_where_the_cpu_computes_it(tmp_path, digits_800, monkeypatch):
    from digits.predict import predictor

    for precision in ("fp32", "bf16"):
        spec = EnsembleSpec(SMALL.replace(model="lenet5", epochs=1, precision=precision), members=1)
        train_ensemble(spec, digits_800, tmp_path / precision)
    monkeypatch.setattr(predictor, "hardware", lambda device: AMX_CPU)
    assert Predictor.open(tmp_path / "fp32").precisions == ["fp32"]
    bf16 = Predictor.open(tmp_path / "bf16")
    assert bf16.precisions == ["bf16"]
    images = digits_800.images[:400]
    fast, exact = bf16.predict_proba(images), predict_proba(bf16.models[0], images)
    assert np.abs(fast - exact).max() < 0.03 and np.mean(fast.argmax(1) == exact.argmax(1)) >= 0.99
    monkeypatch.setattr(predictor, "hardware", lambda device: AVX2_CPU)  # emulated bf16 is slower
    assert Predictor.open(tmp_path / "bf16").precisions == ["fp32"]


def test_predict_says_which_precision_each_model_read_in(tmp_path, kaggle_dir, cli):
    from digits.hardware import hardware

    run = tmp_path / "run"
    assert cli("train", "--model", "lenet5", "--data", kaggle_dir, "--epochs", "1", "--precision", "bf16",
               "--device", "cpu", "--out", run, "--no-report", "--quiet").code == 0
    auto = json.loads(cli("predict", run, "--data", kaggle_dir, "--device", "cpu", "--json").out)
    assert auto["precisions"] == ["bf16" if hardware("cpu").native_bf16 else "fp32"]
    exact = json.loads(cli("predict", run, "--data", kaggle_dir, "--device", "cpu", "--precision", "fp32",
                           "--json").out)
    assert exact["precisions"] == ["fp32"] and exact["rows"] == auto["rows"]


def test_bagged_members_hold_out_different_rows(digits_800):
    _, val_a = member_split(digits_800, 0.1, seed=0, val_split=0.05)
    _, val_b = member_split(digits_800, 0.1, seed=1, val_split=0.05)
    assert len(val_a) == 80 and not np.array_equal(val_a.images, val_b.images)


def test_ensemble_prediction_is_the_mean_of_its_members(tmp_path, digits_800):
    spec = EnsembleSpec(SMALL.replace(model="softmax", epochs=1), members=3)
    train_ensemble(spec, digits_800, tmp_path / "run")
    predictor = Predictor.open(tmp_path / "run")
    images = digits_800.images[:50]
    members = [predict_proba(m, images) for m in predictor.models]
    assert len(members) == 3 and not np.allclose(members[0], members[1])
    assert np.allclose(predictor.predict_proba(images), np.mean(members, axis=0), atol=1e-6)
    recorded = json.loads((tmp_path / "run" / "ensemble.json").read_text())
    assert recorded["members"] == ["members/01", "members/02", "members/03"]


def test_tta_views_are_one_pixel_shifts():
    x = torch.zeros(1, 28, 28, dtype=torch.uint8)
    x[0, 10, 10] = 255
    positions = [tuple(torch.nonzero(v[0])[0].tolist()) for v in tta_views(x)]
    assert positions == [(10, 10), (10, 9), (10, 11), (9, 10), (11, 10)]


def test_tta_gives_the_same_probabilities_for_a_few_images_as_in_a_large_batch(digits_800):
    # A few images go through the model once with all five views stacked; a large batch goes
    # view by view. Either way each image gets the mean over its own five views.
    model = create_model("fast-cnn").eval()
    images = digits_800.images[:40]
    stacked = predict_proba(model, images[:3], tta=True)            # 3 x 5 rows <= 512: stacked
    one_by_one = predict_proba(model, images, tta=True, batch_size=40)  # 40 x 5 > 40: per view
    with torch.no_grad():
        views = tta_views(torch.from_numpy(images[:3]))
        by_hand = torch.stack([torch.softmax(model(v), 1) for v in views]).mean(0).numpy()
    assert np.allclose(stacked, one_by_one[:3], atol=1e-5)
    assert np.allclose(stacked, by_hand, atol=1e-5)


def test_predict_command_with_tta_and_ensemble(tmp_path, kaggle_dir, cli):
    run = tmp_path / "run"
    trained = cli("train", "--model", "softmax", "--data", kaggle_dir, "--epochs", "1", "--ensemble", "2",
                  "--out", run)
    assert trained.code == 0, trained.err
    assert "member 2/2" in trained.out
    result = cli("predict", run, "--data", kaggle_dir, "--tta")
    assert result.code == 0 and "ensemble of 2" in result.out
    score = cli("score", run / "submission.csv", "--solution", kaggle_dir / "solution.csv")
    assert float(score.out.split()[1]) > 0.7


def test_preset_with_flag_overrides(tmp_path, kaggle_dir, cli):
    run = tmp_path / "run"
    result = cli("train", "--preset", "fast", "--data", kaggle_dir, "--batch-size", "128", "--out", run)
    assert result.code == 0, result.err
    config = json.loads((run / "config.json").read_text())["train"]
    assert config["model"] == "fast-cnn-s2" and config["batch_size"] == 128 and config["schedule"] == "onecycle"
    assert config["optimizer_args"] == {"betas": [0.7, 0.9], "fused": True}
    assert math.isclose(config["lr"], 0.015)


def test_train_uses_the_presets_table_for_its_device_and_flags_still_win(tmp_path, kaggle_dir, cli):
    (tmp_path / "p.toml").write_text('[train]\nmodel = "softmax"\nepochs = 3\nlr = 0.5\n\n'
                                     '[cpu]\nepochs = 1\nlr = 0.01\n\n[cuda]\nepochs = 7\n')
    run = tmp_path / "run"
    result = cli("train", "--preset", tmp_path / "p.toml", "--data", kaggle_dir, "--device", "cpu",
                 "--lr", "0.02", "--out", run)
    assert result.code == 0, result.err
    config = json.loads((run / "config.json").read_text())["train"]
    assert (config["epochs"], config["lr"]) == (1, 0.02)


def test_cuda_graphs_are_ignored_on_cpu(digits_800):
    train, val = digits_800.split_last(0.25)
    plain = train_model(SMALL.replace(model="softmax", epochs=1), train, val)[1].rows[0]
    graphs = train_model(SMALL.replace(model="softmax", epochs=1, cuda_graphs=True), train, val)[1].rows[0]
    assert plain["loss"] == graphs["loss"]


@pytest.mark.parametrize("steps", [1, 2, 5])
def test_one_cycle_works_for_runs_of_a_few_steps(steps):
    from digits.train.schedule import build_schedule

    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    schedule = build_schedule("onecycle", optimizer, 1, steps, pct_start=0.2)
    rates = []
    for _ in range(steps):  # torch's OneCycleLR divided by zero here for 5 steps at pct_start 0.2
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        if schedule is not None:
            schedule.after_step()
    assert all(0 <= rate <= 0.1 for rate in rates) and len(rates) == steps
