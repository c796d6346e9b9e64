"""digits: recognise handwritten digits, from Kaggle's CSV files to a scored submission.

The library API is the names below, the same calls the ``digits`` command, the notebook and
the tests make (the README's Library section shows them at work)::

    import digits

    train = digits.load_kaggle_csv("data/train.csv", kind="train")
    plan = digits.training_plan("fast", epochs=2)         # a preset for this hardware, overridden
    result = digits.run_training(plan, train, "runs/fast")
    test = digits.load_kaggle_csv("data/test.csv", kind="test")
    labels = digits.open_predictor(result.run_dir).predict(test.images)

- data: ``load_kaggle_csv``, ``locate_data_folder``, ``load_mnist``, ``prepare_kaggle_folder``, ``DigitSet``
- models: ``list_models``, ``create_model``, ``count_parameters``
- training: ``list_presets``, ``load_preset``, ``training_plan``, ``TrainConfig``, ``run_training``;
  the 2017 tutorial: ``TUTORIAL``, ``choose_epochs``, ``run_tutorial``
- prediction: ``open_predictor``, ``Predictor``, ``write_submission``, ``score_submission``
- reports: ``write_report``, ``write_comparison``, ``plot_digit_grid``
- errors: ``DigitsError``, the base of every error a user can act on
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from digits.version import __version__

# Each public name and the module that defines it, imported on first use: `import digits`,
# `digits --help` and `digits serve --runtime onnx` must not pay for (or need) torch.
_HOMES = {
    "DigitSet": "digits.data.dataset",
    "load_kaggle_csv": "digits.data.kaggle",
    "locate_data_folder": "digits.data.paths",
    "load_mnist": "digits.data.mnist",
    "prepare_kaggle_folder": "digits.data.prepare",
    "list_models": "digits.models.registry",
    "create_model": "digits.models.registry",
    "count_parameters": "digits.models.registry",
    "list_presets": "digits.presets",
    "load_preset": "digits.presets",
    "training_plan": "digits.presets",
    "TrainConfig": "digits.train.config",
    "run_training": "digits.api",
    "TUTORIAL": "digits.tutorial",
    "choose_epochs": "digits.tutorial",
    "run_tutorial": "digits.tutorial",
    "open_predictor": "digits.api",
    "Predictor": "digits.predict.predictor",
    "write_submission": "digits.data.submission",
    "score_submission": "digits.data.submission",
    "write_report": "digits.report.write",
    "write_comparison": "digits.report.compare",
    "plot_digit_grid": "digits.report.plots",
    "DigitsError": "digits.errors",
}

# What `from digits import *` gives and docs.py lists: every name of _HOMES (a test holds them equal).
__all__ = [
    "TUTORIAL",
    "DigitSet",
    "DigitsError",
    "Predictor",
    "TrainConfig",
    "__version__",
    "choose_epochs",
    "count_parameters",
    "create_model",
    "list_models",
    "list_presets",
    "load_kaggle_csv",
    "load_mnist",
    "load_preset",
    "locate_data_folder",
    "open_predictor",
    "plot_digit_grid",
    "prepare_kaggle_folder",
    "run_training",
    "run_tutorial",
    "score_submission",
    "training_plan",
    "write_comparison",
    "write_report",
    "write_submission",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'digits' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # what type checkers and editors see; nothing is imported at run time
    from digits.api import open_predictor, run_training
    from digits.data.dataset import DigitSet
    from digits.data.kaggle import load_kaggle_csv
    from digits.data.mnist import load_mnist
    from digits.data.paths import locate_data_folder
    from digits.data.prepare import prepare_kaggle_folder
    from digits.data.submission import score_submission, write_submission
    from digits.errors import DigitsError
    from digits.models.registry import count_parameters, create_model, list_models
    from digits.predict.predictor import Predictor
    from digits.presets import list_presets, load_preset, training_plan
    from digits.report.compare import write_comparison
    from digits.report.plots import plot_digit_grid
    from digits.report.write import write_report
    from digits.train.config import TrainConfig
    from digits.tutorial import TUTORIAL, choose_epochs, run_tutorial
