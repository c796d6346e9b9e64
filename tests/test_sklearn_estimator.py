"""DigitClassifier behaves as a scikit-learn estimator: scikit-learn's own checks, and
GridSearchCV / cross_val_score / clone / pickle on real digits as the tutorial's notebook used them."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.utils.estimator_checks import parametrize_with_checks

from digits.data.kaggle import load_kaggle_csv
from digits.sklearn import DigitClassifier

# DigitClassifier takes images: rows of exactly 28 x 28 = 784 pixel values. Each check below
# builds its data from a handful of arbitrary features (make_blobs, iris-like tables of 1 to
# 10 columns), so it cannot apply to an image classifier; the reason is the same for all.
_FEATURES = "feeds rows of 1-10 arbitrary features; an image classifier takes 784 pixels per row"
NOT_FOR_IMAGES = [
    "check_fit_score_takes_y", "check_estimators_overwrite_params", "check_dont_overwrite_parameters",
    "check_estimators_fit_returns_self", "check_readonly_memmap_input", "check_n_features_in_after_fitting",
    "check_positive_only_tag_during_fit", "check_estimators_dtypes", "check_dtype_object",
    "check_pipeline_consistency", "check_estimators_nan_inf", "check_estimators_pickle",
    "check_f_contiguous_array_estimator", "check_classifier_data_not_an_array", "check_classifiers_one_label",
    "check_classifiers_classes", "check_classifiers_train", "check_supervised_y_2d",
    "check_methods_sample_order_invariance", "check_methods_subset_invariance", "check_fit2d_1sample",
    "check_fit2d_1feature", "check_dict_unchanged", "check_fit_idempotent", "check_fit_check_is_fitted",
    "check_n_features_in", "check_fit2d_predict1d",
]
EXPECTED_FAILED = {name: _FEATURES for name in NOT_FOR_IMAGES}


@parametrize_with_checks([DigitClassifier(epochs=2, hidden=16)], expected_failed_checks=lambda est: EXPECTED_FAILED)
def test_scikit_learn_estimator_checks(estimator, check) -> None:
    check(estimator)


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    data = load_kaggle_csv("tests/fixtures/train.csv", kind="train")
    return data.images.reshape(len(data), 784).astype(np.float64), data.labels


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
    with pytest.raises(ValueError, match="784 pixels"):
        DigitClassifier(epochs=1).fit(np.zeros((20, 5)), np.arange(20) % 2)
