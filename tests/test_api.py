"""The library API, `import digits`: a preset resolved into what a run trains, and a run trained,
opened, predicted and scored through `digits.<name>` alone, on the real-digit fixture; the
notebook and the README's library example use no other names."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import FIXTURES

import digits

ROOT = Path(__file__).parents[1]


def test_a_preset_resolves_for_this_cpu_with_the_overrides_on_top(tmp_path):
    from digits.hardware import hardware

    preset = tmp_path / "mine.toml"
    preset.write_text('description = "d"\ntarget = "t"\n\n'
                      '[train]\nmodel = "mlp"\nmodel_args = { hidden = [64] }\nepochs = 4\nlr = 0.01\n'
                      'augment = { rotation = 5.0 }\n\n[ensemble]\nmembers = 3\nbagging = 0.1\ntta = true\n\n'
                      '[cpu]\nbatch_size = 32\nseed = 7\n\n'
                      '[cpu.native-bf16]\nepochs = 5\n\n[cpu.emulated-bf16]\nepochs = 6\n\n[cuda]\nbatch_size = 999\n')
    plan = digits.training_plan(preset, device="cpu", lr=0.02, seed=None, augment={"zoom": 0.1})
    config = plan.config
    here = {"native-bf16": 5, "emulated-bf16": 6}[hardware("cpu").bf16_class]
    assert (config.epochs, config.batch_size, config.seed) == (here, 32, 7)  # [cpu], then its class's table
    assert config.lr == 0.02 and config.model_args == {"hidden": [64]}  # overrides win; None keeps the preset's
    assert config.augment == {"rotation": 5.0, "zoom": 0.1}
    assert config.precision == "fp32" and config.device == "cpu"  # the format resolved for this hardware
    assert (plan.members, plan.bagging, plan.tta) == (3, 0.1, True)
    other = digits.training_plan(digits.load_preset(preset), device="cpu", model="softmax", members=1)
    assert other.config.model_args == {} and other.members == 1  # another model starts its arguments afresh


def test_no_preset_plans_the_defaults_and_a_bad_setting_is_named():
    plan = digits.training_plan(model="tutorial-mlp", epochs=2, device="cpu")
    assert plan.config.replace(precision="auto") == digits.TrainConfig(epochs=2, device="cpu")
    assert (plan.members, plan.bagging, plan.tta) == (1, 0.0, False)
    with pytest.raises(digits.DigitsError, match="unknown training setting.*: epoch;"):
        digits.training_plan(epoch=3)
    with pytest.raises(digits.DigitsError, match="tutorial-mlp.*widht"):
        digits.training_plan(model_args={"widht": 3})


def test_a_model_and_an_ensemble_train_predict_and_score_through_import_digits(tmp_path):
    train = digits.load_kaggle_csv(FIXTURES / "train.csv", kind="train")
    test = digits.load_kaggle_csv(FIXTURES / "test.csv", kind="test")
    one = digits.run_training(digits.training_plan(epochs=1, device="cpu"), train, tmp_path / "one")
    assert one.history.rows and (one.run_dir / "model.safetensors").is_file()
    two = digits.run_training(digits.training_plan(epochs=1, device="cpu", members=2), train, tmp_path / "two")
    assert len(two.metrics["member_metrics"]) == 2 and (two.run_dir / "ensemble.json").is_file()
    for run, models in ((one.run_dir, 1), (two.run_dir, 2)):
        predictor = digits.open_predictor(run, "cpu")
        assert len(predictor.models) == models
        submission = digits.write_submission(run / "submission.csv", predictor.predict(test.images))
        assert 0.5 < digits.score_submission(submission, FIXTURES / "solution.csv") <= 1


def test_every_public_name_resolves_and_import_digits_leaves_torch_unimported():
    assert set(digits.__all__) == {"__version__", *digits._HOMES}
    for name in digits.__all__:
        assert getattr(digits, name) is not None, name
    assert set(digits.__all__) <= set(dir(digits))
    with pytest.raises(AttributeError, match="no attribute 'train_run'"):
        digits.train_run  # noqa: B018 - an internal name is not part of the API
    script = "import sys, digits, digits.cli; digits.cli.build_parser(); print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.split() == ["False"], done.stderr


def digits_names_used(source: str, where: str) -> list[str]:
    """Every name ``source`` takes from the package: what it imports from ``digits`` and each
    ``digits.<name>``; an import of a module below ``digits`` fails the test, naming it."""
    used = []
    for node in ast.walk(ast.parse(source, where)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                assert alias.name == "digits" or not alias.name.startswith("digits."), f"{where}: import {alias.name}"
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "digits":
            assert node.module == "digits", f"{where}: from {node.module} import ..."
            used += [alias.name for alias in node.names]
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "digits":
            used.append(node.attr)
    return used


def notebook_code() -> str:
    cells = json.loads((ROOT / "notebooks" / "tutorial.ipynb").read_text())["cells"]
    return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")


def readme_library_example() -> str:
    readme = (ROOT / "README.md").read_text()
    library = readme.split("\n## Library\n")[1].split("\n## ")[0]
    return "\n".join(re.findall(r"^```python\n(.*?)^```", library, re.DOTALL | re.MULTILINE))


@pytest.mark.parametrize("where, source", [("notebooks/tutorial.ipynb", notebook_code()),
                                           ("README.md's Library section", readme_library_example())])
def test_the_notebook_and_the_readmes_library_example_use_only_names_of_import_digits(where, source):
    used = digits_names_used(source, where)
    assert "run_training" in used and "open_predictor" in used  # the example is really there
    assert sorted(set(used) - set(digits.__all__)) == [], f"{where} uses names outside digits.__all__"
