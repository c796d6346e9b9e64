"""A scikit-learn estimator around any registered model, so that ``GridSearchCV`` and
``cross_val_score`` work as in the tutorial's notebook (which wrapped Keras for them).

>>> from digits.sklearn import DigitClassifier
>>> clf = DigitClassifier(hidden=64, epochs=2)            # doctest: +SKIP
>>> clf.fit(X_train, y_train).score(X_test, y_test)       # doctest: +SKIP
0.93...

``X`` holds pixel values 0-255, one image per row: (n, 784) or (n, 28, 28).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

PIXELS = 784


class DigitClassifier(ClassifierMixin, BaseEstimator):
    """Train a ``digits`` model as a scikit-learn classifier.

    Parameters
    ----------
    model : str
        A registered model name (see ``digits models``).
    hidden : int or None
        Shortcut for ``model_args["hidden"]`` (the tutorial grid's parameter).
    model_args : dict or None
        Arguments of the model builder.
    epochs, batch_size, optimizer, lr, schedule, augment, seed, device
        As in ``digits.train.config.TrainConfig``; defaults are the tutorial's, with the
        notebook's 15 epochs.

    Attributes
    ----------
    classes_ : ndarray of the labels seen in ``fit`` (at most 10).
    model_ : the trained torch module.  history_ : per-epoch training history.
    n_features_in_ : 784.
    """

    def __init__(self, model: str = "tutorial-mlp", hidden: int | None = None, model_args: dict[str, Any] | None = None,
                 epochs: int = 15, batch_size: int = 64, optimizer: str = "rmsprop", lr: float = 1e-3,
                 schedule: str = "constant", augment: float = 0.0, seed: int = 0, device: str = "cpu") -> None:
        self.model = model
        self.hidden = hidden
        self.model_args = model_args
        self.epochs = epochs
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.lr = lr
        self.schedule = schedule
        self.augment = augment
        self.seed = seed
        self.device = device

    def _config(self) -> Any:
        from digits.train.augment import augment_settings
        from digits.train.config import TrainConfig

        args = dict(self.model_args or {})
        if self.hidden is not None:
            args["hidden"] = self.hidden
        return TrainConfig(model=self.model, model_args=args, epochs=self.epochs, batch_size=self.batch_size,
                           optimizer=self.optimizer, lr=self.lr, schedule=self.schedule,
                           augment=augment_settings(self.augment),
                           val_split=0.0, seed=self.seed, device=self.device)

    def _images(self, X: Any, reset: bool) -> np.ndarray:
        X = _flatten_images(X)
        if reset or hasattr(self, "n_features_in_"):
            X = validate_data(self, X, reset=reset, dtype=np.float32, allow_nd=True, ensure_min_samples=1)
        X = np.asarray(X, dtype=np.float32).reshape(len(X), -1)
        if X.shape[1] != PIXELS:
            raise ValueError(f"DigitClassifier takes images of 28x28 = {PIXELS} pixels per row; "
                             f"got {X.shape[1]} features")
        return X.reshape(-1, 28, 28)

    def fit(self, X: Any, y: Any) -> DigitClassifier:
        """Train a new model on images ``X`` and labels ``y`` (any 2 to 10 distinct values)."""
        from digits.data.dataset import DigitSet
        from digits.train.fit import train_model

        X, y = validate_data(self, _flatten_images(X), y, reset=True, dtype=np.float32, allow_nd=True)
        check_classification_targets(y)
        self.classes_, encoded = np.unique(y, return_inverse=True)
        if len(self.classes_) > 10:
            raise ValueError(f"DigitClassifier has 10 outputs; y has {len(self.classes_)} classes")
        images = self._images(X, reset=False)
        # DigitSet stores uint8 pixels: round and clip what the caller gave (0-255 expected).
        pixels = np.clip(np.rint(images), 0, 255).astype(np.uint8)
        data = DigitSet(pixels, encoded.astype(np.int64), "DigitClassifier.fit")
        self.model_, self.history_ = train_model(self._config(), data)
        self.model_.eval()
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Probabilities (n, n_classes), columns in the order of ``classes_``."""
        from digits.predict.predictor import predict_proba

        check_is_fitted(self, "model_")
        pixels = np.clip(np.rint(self._images(X, reset=False)), 0, 255).astype(np.uint8)
        proba = predict_proba(self.model_, pixels)[:, :len(self.classes_)]
        return proba / proba.sum(axis=1, keepdims=True)  # outputs for labels never seen are dropped

    def predict(self, X: Any) -> np.ndarray:
        """The most probable label of each image."""
        proba = self.predict_proba(X)  # first: it raises NotFittedError before fit
        return self.classes_[np.argmax(proba, axis=1)]


def _flatten_images(X: Any) -> Any:
    # (n, 28, 28) images count as 784 features each, as rows of a table would.
    return X.reshape(len(X), -1) if getattr(X, "ndim", 0) == 3 else X
