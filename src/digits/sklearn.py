"""A scikit-learn classifier around the registered models, so that ``GridSearchCV`` and
``cross_val_score`` work as in the tutorial's notebook (which wrapped Keras for them).

>>> from digits.sklearn import DigitClassifier
>>> clf = DigitClassifier(hidden=64, epochs=2)            # doctest: +SKIP
>>> clf.fit(X_train, y_train).score(X_test, y_test)       # doctest: +SKIP
0.93...

``X`` is read one of two ways, decided by its width in ``fit``:

* 784 columns, or (n, 28, 28): pixel values 0-255, one image per row. They are rounded and
  clipped to uint8 and trained by ``digits.train.fit.train_model`` exactly as ``digits train``
  trains the registered model (its 10 outputs, the pixels scaled inside the model).
* any other width: numeric features of a table. They are standardised inside the model with
  the training rows' mean and standard deviation (a constant column is only centred) and
  fed, as float32, to the registered MLP with its first layer re-sized to the width and its
  last to the number of classes, and trained by ``digits.train.fit.fit`` (its general engine).
  Convolutional models need images and refuse such ``X``.

The estimator passes scikit-learn's ``check_estimator`` (see tests/test_sklearn_estimator.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets, unique_labels
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import nn

PIXELS = 784
MLP_MODULES = (nn.Flatten, nn.Linear, nn.ReLU, nn.Dropout)  # what a re-sizable network is made of


class FeatureClassifier(nn.Module):
    """Numeric features in, logits out: the standardisation lives inside the model, as the
    pixel scaling does in ``digits.models.layers.Classifier``, so a pickled model is whole."""

    def __init__(self, net: nn.Module, mean: np.ndarray, std: np.ndarray) -> None:
        super().__init__()
        self.net = net
        # float64, so that large or finely spaced features lose nothing before they are centred.
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float64))
        self.register_buffer("scale", torch.as_tensor(1.0 / std, dtype=torch.float64))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = (features.to(torch.float64) - self.mean) * self.scale  # (N, F) standardised
        return self.net(x.to(torch.float32))  # (N, n_classes) logits


def feature_mlp(model: str, model_args: dict[str, Any], n_features: int, n_outputs: int) -> nn.Sequential:
    """Registered MLP ``model`` for a table: its first layer takes ``n_features`` inputs, its last
    gives ``n_outputs`` logits (both initialised as Keras does); hidden layers as registered."""
    from digits.models.layers import keras_dense_init
    from digits.models.registry import create_model

    net = create_model(model, **model_args).net
    if not isinstance(net, nn.Sequential) or not all(isinstance(m, MLP_MODULES) for m in net):
        raise ValueError(f"model {model!r} takes 28x28 images (784 features per row), but X has {n_features} "
                         "features: use a fully connected model (tutorial-mlp, mlp-256, mlp or softmax)")
    layers = list(net)
    linear = [i for i, m in enumerate(layers) if isinstance(m, nn.Linear)]
    layers[linear[0]] = nn.Linear(n_features, layers[linear[0]].out_features)
    layers[linear[-1]] = nn.Linear(layers[linear[-1]].in_features, n_outputs)  # the same layer for softmax
    for i in (linear[0], linear[-1]):
        layers[i].apply(keras_dense_init)
    return nn.Sequential(*layers)


class DigitClassifier(ClassifierMixin, BaseEstimator):
    """Train a ``digits`` model as a scikit-learn classifier.

    Parameters
    ----------
    model : str
        A registered model name (see ``digits models``). With a width other than 784 it must
        be fully connected (tutorial-mlp, mlp-256, mlp, softmax).
    hidden : int or None
        Shortcut for ``model_args["hidden"]`` (the tutorial grid's parameter).
    model_args : dict or None
        Arguments of the model builder.
    epochs, batch_size, optimizer, lr, schedule, device
        As in ``digits.train.config.TrainConfig``; defaults are the tutorial's, with the
        notebook's 15 epochs.
    augment : float
        Strength 0-1 of random rotation, zoom and shift; images (784 features) only.
    random_state : int, RandomState instance or None
        Seeds the initial weights and the shuffling (``TrainConfig.seed``): the same integer
        gives the same model on the CPU. None draws a seed from NumPy's global generator.

    Attributes
    ----------
    classes_ : ndarray, the labels seen in ``fit`` (at most 10 for images).
    n_features_in_ : int, the width of ``X`` in ``fit``.
    model_ : the trained torch module (``Classifier`` for images, ``FeatureClassifier`` otherwise).
    history_ : ``digits.train.history.History``, one row per epoch.
    """

    def __init__(self, model: str = "tutorial-mlp", hidden: int | None = None,
                 model_args: dict[str, Any] | None = None, epochs: int = 15, batch_size: int = 64,
                 optimizer: str = "rmsprop", lr: float = 1e-3, schedule: str = "constant",
                 augment: float = 0.0, random_state: Any = 0, device: str = "cpu") -> None:
        self.model = model
        self.hidden = hidden
        self.model_args = model_args
        self.epochs = epochs
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.lr = lr
        self.schedule = schedule
        self.augment = augment
        self.random_state = random_state
        self.device = device

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.random_state is None  # otherwise the same seed, the same model
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = False
        tags.input_tags.three_d_array = False  # only (n, 28, 28) images, not 3-D arrays in general
        tags.classifier_tags.multi_class = True
        tags.classifier_tags.multi_label = False
        return tags

    def _config(self, augment: bool) -> Any:
        from digits.train.augment import augment_settings
        from digits.train.config import TrainConfig

        args = dict(self.model_args or {})
        if self.hidden is not None:
            args["hidden"] = self.hidden
        return TrainConfig(model=self.model, model_args=args, epochs=self.epochs, batch_size=self.batch_size,
                           optimizer=self.optimizer, lr=self.lr, schedule=self.schedule,
                           augment=augment_settings(self.augment) if augment else {},
                           val_split=0.0, seed=_seed(self.random_state), device=self.device)

    def fit(self, X: Any, y: Any) -> DigitClassifier:
        """Train a new model on ``X`` (images or features, see the module) and labels ``y``."""
        X, y = validate_data(self, _flatten_images(X), y, dtype=np.float64)
        check_classification_targets(y)  # continuous or multi-output y: ValueError
        self.classes_ = unique_labels(y)
        encoded = np.searchsorted(self.classes_, y).astype(np.int64)
        with _global_rng_kept():  # training seeds torch's and NumPy's generators; the caller's are kept
            if self.n_features_in_ == PIXELS:
                self.model_, self.history_ = self._fit_images(X, encoded)
            else:
                self.model_, self.history_ = self._fit_features(X, encoded)
        self.model_.eval()
        return self

    def _fit_images(self, X: np.ndarray, encoded: np.ndarray) -> tuple[nn.Module, Any]:
        from digits.data.dataset import DigitSet
        from digits.train.fit import train_model

        if len(self.classes_) > 10:
            raise ValueError(f"DigitClassifier has 10 outputs for images; y has {len(self.classes_)} classes")
        data = DigitSet(_pixels(X), encoded, "DigitClassifier.fit")
        return train_model(self._config(augment=True), data)

    def _fit_features(self, X: np.ndarray, encoded: np.ndarray) -> tuple[nn.Module, Any]:
        from digits.data.tensors import TensorSet
        from digits.train.fit import fit, seed_everything

        if self.augment:
            raise ValueError(f"augment shifts and rotates 28x28 images; X has {X.shape[1]} features, not 784")
        config = self._config(augment=False).replace(precision="fp32")  # float64 features, standardised in fp32
        seed_everything(config.seed)
        std = X.std(axis=0)
        net = feature_mlp(config.model, config.model_args, X.shape[1], len(self.classes_))
        model = FeatureClassifier(net, X.mean(axis=0), np.where(std > 0, std, 1.0))
        with _threads_for(model):
            return model, fit(model, TensorSet(torch.tensor(X), torch.tensor(encoded)), config)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Probabilities (n, n_classes), columns in the order of ``classes_``."""
        from digits.predict.predictor import Predictor

        check_is_fitted(self)
        X = validate_data(self, _flatten_images(X), reset=False, dtype=np.float64)
        if self.n_features_in_ != PIXELS:
            return _feature_proba(self.model_, X)
        predictor = Predictor.from_model(self.model_, self.model)
        proba = predictor.predict_proba(_pixels(X))[:, :len(self.classes_)]
        return proba / proba.sum(axis=1, keepdims=True)  # outputs for labels never seen are dropped

    def predict(self, X: Any) -> np.ndarray:
        """The most probable label of each row."""
        proba = self.predict_proba(X)  # first: it raises NotFittedError before fit
        return self.classes_[np.argmax(proba, axis=1)]


@torch.inference_mode()
def _feature_proba(model: FeatureClassifier, X: np.ndarray) -> np.ndarray:
    model.eval()  # no dropout: a row's prediction does not depend on the rest of the batch
    features = torch.from_numpy(np.ascontiguousarray(X)).to(model.mean.device)
    with _threads_for(model):
        return torch.softmax(model(features), dim=1).cpu().numpy()


def _seed(random_state: Any) -> int:
    # An integer is the seed itself (random_state=0 trains what `digits train --seed 0` does).
    if isinstance(random_state, (int, np.integer)):
        return int(random_state)
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


def _pixels(X: np.ndarray) -> np.ndarray:
    # DigitSet stores uint8 pixels: round and clip what the caller gave (0-255 expected).
    return np.clip(np.rint(X.astype(np.float32)), 0, 255).astype(np.uint8).reshape(-1, 28, 28)


def _flatten_images(X: Any) -> Any:
    # (n, 28, 28) images count as 784 features each, as rows of a table would.
    return X.reshape(len(X), -1) if getattr(X, "ndim", 0) == 3 and X.shape[1:] == (28, 28) else X


@contextlib.contextmanager
def _global_rng_kept() -> Iterator[None]:
    """Restore torch's CPU and NumPy's global generators afterwards (training seeds both)."""
    numpy_state = np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            np.random.set_state(numpy_state)


def _threads_for(model: nn.Module) -> contextlib.AbstractContextManager:
    """One thread for a small model on the CPU: its matmuls take less time than waking a second."""
    from digits.hardware import SMALL_MODEL, use_threads

    small = sum(p.numel() for p in model.parameters()) < SMALL_MODEL
    on_cpu = next(model.parameters()).device.type == "cpu"
    return use_threads(1) if small and on_cpu else contextlib.nullcontext()
