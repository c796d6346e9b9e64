"""DigitClassifier behaves as a scikit-learn estimator: scikit-learn's own checks, and
GridSearchCV / cross_val_score / clone / pickle on real digits as the tutorial's notebook used them."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.utils import get_tags
from sklearn.utils.estimator_checks import parametrize_with_checks

from digits.data.dataset import DigitSet
from digits.data.kaggle import load_kaggle_csv
from digits.predict.predictor import predict_proba
from digits.sklearn import DigitClassifier
from digits.train.config import TrainConfig
from digits.train.fit import train_model

# Every check applies but one: any width of X trains (784 columns as images, others as a table).
# The sample-order check wants the probabilities equal to 1e-7 relative, and float32 matrix
# products round by a row's place in the batch on some math-library paths (MKL held to AVX2 on a
# Xeon: 5e-8 apart); it passes where they do not, and the test below pins what does hold.
# Two are skipped by scikit-learn itself, not here: check_array_api_input (SCIPY_ARRAY_API unset)
# and the pandas half of check_classifier_data_not_an_array (pandas is not installed).
EXPECTED_FAILED: dict[str, str] = {
    "check_methods_sample_order_invariance": "float32 rounding can depend on a row's place in the batch"}


# 5 epochs at lr 0.01: check_classifiers_train wants > 83% training accuracy on 200-300 blob
# points (4-5 batches an epoch); 2 epochs at the default 0.001 reach 50%. This module: ~5 s.
@parametrize_with_checks([DigitClassifier(epochs=5, hidden=16, lr=0.01)],
                         expected_failed_checks=lambda est: EXPECTED_FAILED)
def test_scikit_learn_estimator_checks(estimator, check) -> None:
    check(estimator)


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    data = load_kaggle_csv("tests/fixtures/train.csv", kind="train")
    return data.images.reshape(len(data), 784).astype(np.float64), data.labels


def test_the_order_of_the_rows_moves_probabilities_by_float32_rounding_at_most(digits) -> None:
    X, y = digits
    model = DigitClassifier(hidden=16, epochs=2, lr=0.01).fit(X[:600], y[:600])
    order = np.random.default_rng(0).permutation(400)
    rows = X[600:1000]
    assert np.allclose(model.predict_proba(rows)[order], model.predict_proba(rows[order]), rtol=1e-5, atol=1e-6)
    assert (model.predict(rows)[order] == model.predict(rows[order])).all()


def test_grid_search_cv_over_hidden_units_and_learning_rate_as_the_notebook(digits) -> None:
    X, y = digits
    search = GridSearchCV(DigitClassifier(epochs=3), {"hidden": [8, 64], "lr": [0.001, 0.003]}, cv=3)
    search.fit(X[:1200], y[:1200])
    assert set(search.cv_results_["params"][0]) == {"hidden", "lr"}
    assert len(search.cv_results_["mean_test_score"]) == 4
    assert search.best_params_["hidden"] == 64  # wider is better, as in the notebook's table
    assert search.score(X[1200:], y[1200:]) > 0.8


def test_cross_val_score_gives_one_accuracy_per_fold(digits) -> None:
    X, y = digits
    scores = cross_val_score(DigitClassifier(hidden=32, epochs=3), X[:900], y[:900], cv=3)
    assert scores.shape == (3,) and (scores > 0.7).all()


def test_fitted_classifier_predicts_labels_probabilities_and_survives_pickle(digits) -> None:
    X, y = digits
    clf = DigitClassifier(hidden=32, epochs=2).fit(X[:1000], y[:1000])
    proba = clf.predict_proba(X[1000:1100])
    assert proba.shape == (100, 10) and np.allclose(proba.sum(1), 1.0, atol=1e-5)
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict(X[1000:1100]), clf.predict(X[1000:1100]))
    assert clf.score(X[1000:], y[1000:]) == np.mean(clf.predict(X[1000:]) == y[1000:])
    assert clf.n_features_in_ == 784 and len(clf.history_) == 2


def test_labels_of_any_kind_come_back_as_given(digits) -> None:
    X, y = digits
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    clf = DigitClassifier(hidden=16, epochs=1).fit(X[:500].reshape(-1, 28, 28), names[y[:500]])
    assert set(clf.predict(X[500:600])) <= set(names)


def test_parameters_round_trip_and_unfitted_use_is_refused() -> None:
    clf = DigitClassifier(model="cnn-small", model_args={"c1": 8}, lr=0.01)
    assert clone(clf).get_params() == clf.get_params()
    assert clf.set_params(epochs=4).epochs == 4
    with pytest.raises(NotFittedError):
        clf.predict(np.zeros((1, 784)))


def test_784_columns_train_exactly_as_digits_train_does(digits) -> None:
    X, y = digits
    clf = DigitClassifier(hidden=16, epochs=2, random_state=3).fit(X[:600], y[:600])
    config = TrainConfig(model="tutorial-mlp", model_args={"hidden": 16}, epochs=2, val_split=0.0, seed=3,
                         device="cpu")
    images = X[:600].reshape(-1, 28, 28).astype(np.uint8)
    model, history = train_model(config, DigitSet(images, y[:600], "rows"))
    for name, weights in model.state_dict().items():
        torch.testing.assert_close(clf.model_.state_dict()[name], weights, rtol=0, atol=0)
    assert clf.history_.column("loss") == history.column("loss")
    proba = predict_proba(model, X[600:700].reshape(-1, 28, 28).astype(np.uint8))
    np.testing.assert_array_equal(clf.predict_proba(X[600:700]), proba / proba.sum(axis=1, keepdims=True))


def test_tables_of_any_other_width_train_a_standardised_mlp() -> None:
    X, y = load_digits(return_X_y=True)  # scikit-learn's own 8 x 8 digits: 64 features of 0-16
    clf = DigitClassifier(hidden=32, epochs=20).fit(X[:1200], y[:1200])
    assert clf.n_features_in_ == 64 and clf.model_.net[1].in_features == 64
    assert clf.score(X[1200:], y[1200:]) > 0.85
    np.testing.assert_allclose(clf.model_.mean.numpy(), X[:1200].mean(axis=0))
    with pytest.raises(ValueError, match="X has 784 features, but DigitClassifier is expecting 64"):
        clf.predict(np.zeros((1, 784)))


def test_as_many_outputs_as_classes_for_a_table() -> None:
    X = np.arange(60, dtype=float).reshape(-1, 1)
    clf = DigitClassifier(hidden=8, epochs=1).fit(X, np.arange(60) % 12)
    assert clf.predict_proba(X).shape == (60, 12)


def test_convolutional_models_and_augmentation_refuse_a_table() -> None:
    X, y = np.zeros((20, 5)), np.arange(20) % 2
    with pytest.raises(ValueError, match="takes 28x28 images .* use a fully connected model"):
        DigitClassifier(model="cnn-small", epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="augment shifts and rotates 28x28 images"):
        DigitClassifier(augment=0.5, epochs=1).fit(X, y)


def test_the_same_random_state_gives_the_same_model_and_leaves_global_generators_alone() -> None:
    X, y = load_digits(return_X_y=True)
    np.random.seed(7)
    torch.manual_seed(7)
    clf = DigitClassifier(hidden=8, epochs=1, random_state=5)
    first = clf.fit(X[:300], y[:300]).predict_proba(X[300:400])
    assert np.random.randint(1 << 30) == np.random.RandomState(7).randint(1 << 30)
    assert torch.equal(torch.rand(3), torch.rand(3, generator=torch.Generator().manual_seed(7)))
    again = clone(clf).fit(X[:300], y[:300]).predict_proba(X[300:400])
    np.testing.assert_array_equal(first, again)
    assert not get_tags(DigitClassifier()).non_deterministic
    assert get_tags(DigitClassifier(random_state=None)).non_deterministic
