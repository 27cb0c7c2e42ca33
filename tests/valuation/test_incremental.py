"""Incremental prefix scans agree with cold fits, and TMC values do not change."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier

from databazaar.valuation.montecarlo import MaxSamples, TMCShapley, sample_rng
from databazaar.valuation.utility import Utility


def _data(n: int = 60, m: int = 40, classes: int = 3, seed: int = 0):  # type: ignore[no-untyped-def]
    x, y = make_classification(
        n + m,
        n_features=6,
        n_informative=4,
        n_classes=classes,
        flip_y=0.1,
        random_state=seed,
    )
    labels = np.array(["ant", "bee", "cat", "dog"])[y]  # labels of any type
    return x[:n], labels[:n], x[n:], labels[n:]


def _cold_prefix_scores(model, data, perm):  # type: ignore[no-untyped-def]
    cold = Utility(model, *data, cache=False, incremental=False)
    assert cold.prefix_scores(perm) is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.array([cold(perm[: j + 1]) for j in range(perm.size)])


@pytest.mark.parametrize(
    "model",
    [KNeighborsClassifier(1), KNeighborsClassifier(4), KNeighborsClassifier(5, p=2), GaussianNB()],
    ids=["knn1", "knn4-vote-ties", "knn5", "gnb"],
)
def test_prefix_scores_equal_cold_fits(model) -> None:  # type: ignore[no-untyped-def]
    data = _data()
    u = Utility(model, *data, cache=False)
    for j in range(3):
        perm = sample_rng(7, j).permutation(60)
        inc = u.prefix_scores(perm)
        assert inc is not None
        np.testing.assert_array_equal(inc, _cold_prefix_scores(model, data, perm))
    assert u.n_evaluations == 3 * 60


def test_knn_prefix_shorter_than_k_scores_default() -> None:
    data = _data()
    u = Utility(KNeighborsClassifier(5), *data, default_score=0.123, cache=False)
    scores = u.prefix_scores(np.arange(10))
    assert scores is not None
    np.testing.assert_array_equal(scores[:4], 0.123)
    assert scores[4] != 0.123 or scores[5] != 0.123


def test_test_labels_unseen_in_training_are_never_predicted() -> None:
    xtr, ytr, xte, yte = _data()
    yte = yte.copy()
    yte[:10] = "zebra"
    data = (xtr, ytr, xte, yte)
    perm = np.random.default_rng(1).permutation(60)
    for model in (KNeighborsClassifier(3), GaussianNB()):
        inc = Utility(model, *data, cache=False).prefix_scores(perm)
        np.testing.assert_array_equal(inc, _cold_prefix_scores(model, data, perm))


@pytest.mark.parametrize("model", [KNeighborsClassifier(3), GaussianNB()], ids=["knn", "gnb"])
def test_tmc_values_equal_cold_fit_values(model) -> None:  # type: ignore[no-untyped-def]
    data = _data(n=30, m=30, classes=2, seed=3)
    kw = {"truncation_tol": 0.01, "truncation_patience": 2, "stopping": MaxSamples(6)}
    fast = TMCShapley(**kw, random_state=4).fit(Utility(model, *data)).result_
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cold = TMCShapley(**kw, random_state=4).fit(Utility(model, *data, incremental=False))
    # the same permutations and the same prefix utilities: the same estimate, well
    # within one standard error
    np.testing.assert_allclose(fast.values, cold.result_.values, atol=1e-12)
    finite = np.isfinite(fast.stderr) & (fast.stderr > 0)
    assert np.all(np.abs(fast.values - cold.result_.values)[finite] <= fast.stderr[finite])


class _VotingKNN(KNeighborsClassifier):
    def predict(self, X):  # type: ignore[no-untyped-def]
        return super().predict(X)


@pytest.mark.parametrize(
    ("model", "scorer"),
    [
        (LogisticRegression(), "accuracy"),
        (KNeighborsClassifier(3, weights="distance"), "accuracy"),
        (KNeighborsClassifier(3, p=1), "accuracy"),
        (_VotingKNN(3), "accuracy"),
        (GaussianNB(priors=[0.2, 0.3, 0.5]), "accuracy"),
        (KNeighborsClassifier(3), "f1_macro"),
    ],
    ids=["logreg", "knn-distance", "knn-manhattan", "knn-subclass", "gnb-priors", "f1"],
)
def test_models_without_an_exact_scan_refit(model, scorer) -> None:  # type: ignore[no-untyped-def]
    u = Utility(model, *_data(), scorer=scorer)
    assert u.prefix_scores(np.arange(10)) is None
    assert u.n_evaluations == 0


def test_scanner_is_rebuilt_after_pickling() -> None:
    data = _data()
    u = Utility(KNeighborsClassifier(3), *data)
    perm = np.arange(60)[::-1]
    before = u.prefix_scores(perm)
    copy = pickle.loads(pickle.dumps(u))
    assert copy._scanner is None
    np.testing.assert_array_equal(copy.prefix_scores(perm), before)


def test_labels_of_mixed_types_fall_back_to_cold_fits() -> None:
    xtr, _, xte, _ = _data()
    ytr = np.array([1, "b"] * 30, dtype=object)
    yte = np.array(["b", 1] * 20, dtype=object)
    u = Utility(KNeighborsClassifier(3), xtr, ytr, xte, yte, default_score=0.5)
    assert u.prefix_scores(np.arange(9)) is None
