"""The pieces a search is built from: spaces, presets, cnn-small, schedules, augmentation."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import torch

from digits.errors import DigitsError, TuneError
from digits.models.registry import count_parameters, create_model
from digits.presets import load_preset, write_preset
from digits.train.augment import augment_settings, random_affine
from digits.train.config import TrainConfig
from digits.train.schedule import build_schedule
from digits.tune.space import list_spaces, load_space


@pytest.mark.parametrize("name", ["arch", "cnn", "mlp", "tiny"])
def test_every_shipped_space_turns_a_trial_into_a_training_config(name: str) -> None:
    space = load_space(name)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=1))
    config = space.suggest(study.ask())
    assert isinstance(config, TrainConfig) and config.val_split > 0
    create_model(config.model, **config.model_args)  # the sampled arguments build the model


def test_shipped_spaces_are_listed() -> None:
    assert {"arch", "cnn", "mlp", "tiny"} <= set(list_spaces())


def test_a_conditional_parameter_is_sampled_only_when_its_condition_holds(tmp_path: Path) -> None:
    path = tmp_path / "arch.toml"
    path.write_text('[params]\nmodel = { type = "categorical", choices = ["tutorial-mlp", "cnn-small"] }\n'
                    '"model_args.c1" = { type = "int", low = 4, high = 8, when = { model = "cnn-small" } }\n'
                    '"model_args.hidden" = { type = "int", low = 8, high = 16, when = { model = "tutorial-mlp" } }\n')
    space = load_space(path)
    for model in ("tutorial-mlp", "cnn-small"):
        config = space.suggest(optuna.trial.FixedTrial({"model": model, "model_args.c1": 5, "model_args.hidden": 9}))
        assert config.model == model
        assert set(config.model_args) == ({"c1"} if model == "cnn-small" else {"hidden"})


@pytest.mark.parametrize("text, message", [
    ('[params]\nlearning_rate = { type = "float", low = 0.1, high = 1 }', "not a training setting"),
    ('[params]\nlr = { type = "float", low = 1, high = 0.1 }', "low <= high"),
    ('[params]\nlr = { type = "normal" }', "needs type"),
    ('[fixed]\nval_split = 0.0\n[params]\nlr = { type = "float", low = 0.1, high = 1 }', "val_split must be > 0"),
    ("[fixed]\n", "nothing to search"),
])
def test_a_wrong_space_file_is_refused_with_the_reason(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(TuneError, match=message):
        load_space(path)


def test_a_preset_written_from_a_config_loads_back_to_the_same_config(tmp_path: Path) -> None:
    config = TrainConfig(model="mlp", model_args={"hidden": [512, 256], "dropout": 0.1}, epochs=7, lr=3e-4,
                         optimizer="adam", schedule="onecycle", augment=augment_settings(0.3), val_split=0.0,
                         seed=4)
    write_preset(tmp_path / "p.toml", config, "a comment\non two lines")
    preset = load_preset(tmp_path / "p.toml")
    assert preset.config == config and preset.description == "a comment\non two lines"
    with pytest.raises(DigitsError, match="unknown preset"):
        load_preset("no-such-preset")


def test_cnn_small_maps_pixels_to_ten_logits_with_its_arguments() -> None:
    model = create_model("cnn-small", c1=8, c2=16, hidden=32, dropout=0.0)
    assert model(torch.randint(0, 256, (5, 28, 28), dtype=torch.uint8)).shape == (5, 10)
    assert count_parameters(model) == (9 * 8 + 8) + (72 * 16 + 16) + (400 * 32 + 32) + (32 * 10 + 10)


def test_cosine_schedule_decays_to_zero_and_onecycle_peaks_at_the_learning_rate() -> None:
    for name, check in (("cosine", lambda lrs: lrs[0] == 0.1 and lrs[-1] < 1e-6),
                        ("onecycle", lambda lrs: abs(max(lrs) - 0.1) < 1e-3 and lrs[0] < 0.01 and lrs[-1] < 1e-3)):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        sched = build_schedule(name, opt, epochs=1, steps_per_epoch=100)
        lrs = []
        for _ in range(100):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.after_step()
        lrs.append(opt.param_groups[0]["lr"])
        assert check(lrs), (name, lrs[0], max(lrs), lrs[-1])
    assert build_schedule("constant", opt, 1, 10) is None


def test_augmentation_keeps_shape_and_range_and_strength_zero_changes_nothing() -> None:
    pixels = torch.zeros(4, 28, 28, dtype=torch.uint8)
    pixels[:, 10:18, 12:16] = 255
    assert augment_settings(0.0) == {}
    assert torch.equal(random_affine(pixels, **augment_settings(0.0)), pixels.float().reshape(4, 1, 28, 28))
    torch.manual_seed(0)
    moved = random_affine(pixels, **augment_settings(1.0))
    assert moved.shape == (4, 1, 28, 28) and moved.min() >= 0 and moved.max() <= 255.001
    assert not torch.equal(moved, pixels.float().reshape(4, 1, 28, 28))


def test_a_trial_records_its_optimizer_steps_as_it_trains_for_the_watchers_bars() -> None:
    from digits.data.kaggle import load_kaggle_csv
    from digits.train.fit import train_model
    from digits.tune.objective import ReportToTrial
    from digits.tune.search import snapshot

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    train, val = load_kaggle_csv(Path(__file__).parent / "fixtures" / "train.csv").split_last(0.5)
    train_model(TrainConfig(model="softmax", epochs=2, device="cpu"), train, val, [ReportToTrial(trial)])
    assert trial.user_attrs["steps"] == [32, 32]  # 2 epochs of 16 steps of 64 rows, all done
    assert snapshot(study).steps == ((0, 32, 32),)
