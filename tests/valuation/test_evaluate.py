"""Tests of noisy-label detection, point-removal curves and the evaluation report."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors
from sklearn.preprocessing import StandardScaler

from databazaar.core.errors import InvalidInput
from databazaar.valuation.evaluate import (
    flip_labels,
    noisy_label_detection,
    point_removal_curve,
    two_means_split,
)
from databazaar.valuation.report import EvaluationReport, evaluation_report
from databazaar.valuation.result import ValuationResult

# -- flip_labels ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "fraction"), [(100, 0.1), (37, 0.25), (7, 0.3), (10, 0.99), (1000, 0.013)]
)
def test_flip_labels_flips_exactly_round_fraction_n_to_other_classes(n: int, fraction: float):
    rng = np.random.default_rng(n)
    y = rng.integers(0, 2, size=n)
    y[:2] = [0, 1]  # both classes present
    y_before = y.copy()
    y_noisy, idx = flip_labels(y, fraction, random_state=0)
    assert idx.dtype == np.int64
    assert idx.size == round(fraction * n)
    assert np.all(np.diff(idx) > 0)  # sorted, unique
    changed = np.flatnonzero(y_noisy != y)
    np.testing.assert_array_equal(changed, idx)
    assert y_noisy.dtype == y.dtype
    assert set(np.unique(y_noisy)) <= {0, 1}
    np.testing.assert_array_equal(y, y_before)  # the input is not flipped in place


def test_flip_labels_multiclass_strings_uses_every_other_class():
    rng = np.random.default_rng(1)
    y = rng.choice(np.array(["cat", "dog", "emu"]), size=3000)
    y_noisy, idx = flip_labels(y, 0.5, random_state=3)
    assert idx.size == 1500
    assert np.all(y_noisy[idx] != y[idx])
    mask = np.ones(y.size, dtype=bool)
    mask[idx] = False
    np.testing.assert_array_equal(y_noisy[mask], y[mask])
    # flips of "cat" go to "dog" and "emu" about equally (uniform over the other classes)
    cats = idx[y[idx] == "cat"]
    share_dog = float(np.mean(y_noisy[cats] == "dog"))
    assert set(np.unique(y_noisy[cats])) == {"dog", "emu"}
    assert 0.4 < share_dog < 0.6
    assert y_noisy.dtype == y.dtype


def test_flip_labels_accepts_series_and_float_labels_and_is_reproducible():
    y = pd.Series([0.5, 1.5, 2.5, 0.5, 1.5, 2.5, 0.5, 1.5, 2.5, 0.5])
    a, ia = flip_labels(y, 0.3, random_state=7)
    b, ib = flip_labels(y, 0.3, random_state=np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ia, ib)
    assert ia.size == 3
    assert np.all(a[ia] != y.to_numpy()[ia])
    assert set(a) <= {0.5, 1.5, 2.5}
    draws = {tuple(flip_labels(y, 0.3, random_state=s)[1]) for s in range(20)}
    assert len(draws) > 1


@pytest.mark.parametrize("fraction", [0, 0.0, 1, 1.0, -0.1, 1.5, float("nan"), "0.1", True, None])
def test_flip_labels_rejects_fraction_outside_open_unit_interval(fraction):
    with pytest.raises(InvalidInput, match="fraction"):
        flip_labels(np.array([0, 1, 0, 1]), fraction)


def test_flip_labels_error_paths():
    with pytest.raises(InvalidInput, match="single class"):
        flip_labels(np.zeros(10), 0.2)
    with pytest.raises(InvalidInput, match="rounds to 0"):
        flip_labels(np.array([0, 1, 0, 1]), 0.1)
    with pytest.raises(InvalidInput, match="empty"):
        flip_labels(np.array([]), 0.1)
    with pytest.raises(InvalidInput, match="one-dimensional"):
        flip_labels(np.zeros((3, 2)), 0.5)
    with pytest.raises(InvalidInput, match="missing"):
        flip_labels(np.array(["a", None, "b"], dtype=object), 0.5)
    with pytest.raises(InvalidInput, match="mixes label types"):
        flip_labels(np.array([1, "a", 2, "b"], dtype=object), 0.5)
    with pytest.raises(InvalidInput, match="random_state"):
        flip_labels(np.array([0, 1, 0, 1]), 0.5, random_state="seed")


# -- two_means_split and noisy_label_detection ------------------------------------


def _brute_two_means(v: np.ndarray) -> float:
    """Smallest within-cluster SSE over every threshold between distinct values."""
    best = np.inf
    for t in np.unique(v)[:-1]:
        lo, hi = v[v <= t], v[v > t]
        best = min(best, ((lo - lo.mean()) ** 2).sum() + ((hi - hi.mean()) ** 2).sum())
    return best


@pytest.mark.parametrize("seed", range(6))
def test_two_means_split_is_the_optimal_1d_clustering(seed: int):
    rng = np.random.default_rng(seed)
    v = np.round(np.concatenate([rng.normal(0, 1, 30), rng.normal(4, 1, 10)]), 1)  # ties
    low, threshold = two_means_split(v)
    lo_mask = np.zeros(v.size, dtype=bool)
    lo_mask[low] = True
    lo, hi = v[lo_mask], v[~lo_mask]
    assert lo.max() < threshold < hi.min()  # a clean cut, equal values together
    sse = ((lo - lo.mean()) ** 2).sum() + ((hi - hi.mean()) ** 2).sum()
    assert sse == pytest.approx(_brute_two_means(v), rel=1e-12, abs=1e-12)


def test_two_means_split_hand_cases():
    low, t = two_means_split([1, 2, 3, 4, 10, 11, 12, 13])
    np.testing.assert_array_equal(low, [0, 1, 2, 3])
    assert t == 7.0
    low, t = two_means_split([0, 0, 0, 5])  # ties stay together
    np.testing.assert_array_equal(low, [0, 1, 2])
    assert t == 2.5
    low, t = two_means_split([3.0, 3.0, 3.0])  # no split possible
    assert low.size == 0 and t == float("-inf")


def test_detection_perfect_ranking():
    v = np.array([5.0, -2.0, 4.0, 6.0, -3.0, 5.5, 4.5, 6.5, 5.2, 4.8])
    out = noisy_label_detection(v, [1, 4])
    assert out["auroc"] == 1.0
    assert out["kmeans_f1"] == 1.0
    assert out["kmeans_precision"] == 1.0 and out["kmeans_recall"] == 1.0
    assert out["kmeans_n_predicted"] == 2
    assert out["bottom_k_f1"] == 1.0
    assert out["n_points"] == 10 and out["n_flipped"] == 2
    assert out["random_auroc"] == 0.5 and out["random_bottom_k_f1"] == 0.2


def test_detection_reversed_ranking():
    v = np.array([5.0, 9.0, 4.0, 6.0, 10.0, 5.5, 4.5, 6.5, 5.2, 4.8])
    out = noisy_label_detection(v, [1, 4])
    assert out["auroc"] == 0.0
    assert out["bottom_k_f1"] == 0.0 and out["bottom_k_precision"] == 0.0
    assert out["kmeans_f1"] == 0.0  # the low cluster is the 8 clean points
    assert out["kmeans_n_predicted"] == 8


def test_detection_partial_ranking_exact_numbers():
    # flipped values 1 and 10; clean 2, 3, 4, 11, 12, 13.  Pairs with flipped < clean:
    # 1 beats all 6, 10 beats 3 -> AUROC 9/12.  2-means low cluster {1,2,3,4}: tp 1,
    # precision 1/4, recall 1/2, F1 2/(4+2).  Bottom-2 {1,2}: precision = recall = 1/2.
    v = ValuationResult(values=np.array([1.0, 2, 3, 4, 10, 11, 12, 13]), method="demo")
    out = noisy_label_detection(v, np.array([0, 4]), n=8)
    assert out["auroc"] == pytest.approx(0.75)
    assert out["kmeans_precision"] == pytest.approx(0.25)
    assert out["kmeans_recall"] == pytest.approx(0.5)
    assert out["kmeans_f1"] == pytest.approx(1 / 3)
    assert out["kmeans_threshold"] == 7.0
    assert out["bottom_k_precision"] == out["bottom_k_recall"] == out["bottom_k_f1"] == 0.5


def test_detection_ties_and_mask_input():
    v = np.zeros(6)
    mask = np.array([True, False, False, True, False, False])
    out = noisy_label_detection(v, mask)
    assert out["auroc"] == 0.5  # all tied: half credit for every pair
    assert out["kmeans_n_predicted"] == 0 and out["kmeans_f1"] == 0.0
    assert out["kmeans_precision"] == 0.0 and out["kmeans_recall"] == 0.0
    # float positions that are whole numbers and a pandas Series are accepted
    same = noisy_label_detection(pd.Series([3.0, 1.0, 2.0]), np.array([1.0]))
    assert same["auroc"] == 1.0


@pytest.mark.parametrize(
    ("values", "flipped", "kwargs", "match"),
    [
        ([1.0, np.nan, 2.0], [0], {}, "NaN"),
        ([1.0, np.inf, 2.0], [0], {}, "NaN or infinity"),
        ([], [0], {}, "empty"),
        ([[1.0, 2.0]], [0], {}, "one-dimensional"),
        (["a", "b"], [0], {}, "numeric"),
        ([1.0, 2.0, 3.0], [0], {"n": 4}, "3 entries but n=4"),
        ([1.0, 2.0, 3.0], [0], {"n": 0}, "positive integer"),
        ([1.0, 2.0, 3.0], [0], {"n": True}, "positive integer"),
        ([1.0, 2.0, 3.0], [], {}, "empty"),
        ([1.0, 2.0, 3.0], [0, 1, 2], {}, "every point"),
        ([1.0, 2.0, 3.0], [3], {}, "outside"),
        ([1.0, 2.0, 3.0], [-1], {}, "outside"),
        ([1.0, 2.0, 3.0], [1, 1], {}, "duplicate"),
        ([1.0, 2.0, 3.0], [0.5], {}, "integer positions"),
        ([1.0, 2.0, 3.0], ["a"], {}, "integer positions"),
        ([1.0, 2.0, 3.0], [True, False], {}, "boolean mask of length 2"),
        ([1.0, 2.0, 3.0], [[0]], {}, "one-dimensional"),
        ([1.0, 2.0, 3.0], np.zeros(3, dtype=bool), {}, "empty"),
    ],
)
def test_detection_error_paths(values, flipped, kwargs, match):
    with pytest.raises(InvalidInput, match=match):
        noisy_label_detection(values, flipped, **kwargs)


# -- point_removal_curve ----------------------------------------------------------


def _two_cluster_case():
    """1-D, two far clusters, 4 of 20 labels flipped, values = 1 clean / 0 flipped.

    Within a cluster the gaps grow (0, 1, 3, 6, 10, ...) so nearest neighbours never
    tie.  The test set is the training x with the *true* labels; the model is 1-NN.
    """
    tri = np.array([i * (i + 1) / 2 for i in range(10)])
    x = np.concatenate([tri, 100 + tri]).reshape(-1, 1)
    y_true = np.repeat([0, 1], 10)
    y = y_true.copy()
    flipped = np.array([0, 1, 10, 11])
    y[flipped] = 1 - y[flipped]
    v = np.ones(20)
    v[flipped] = 0.0
    return x, y, y_true, v


def test_removal_curve_low_first_exact_and_monotone():
    x, y, y_true, v = _two_cluster_case()
    c = point_removal_curve(v, KNeighborsClassifier(1), x, y, x, y_true, order="low")
    # 1-NN predicts a present point's own label: 16/20 right.  Removing flipped point 0
    # leaves test x=0 with neighbour x=1 (flipped): still 0.8; removing x=1 as well
    # fixes both: 0.9; the same in the second cluster: 1.0; then only clean points go.
    np.testing.assert_allclose(c["scores"], [0.8, 0.8, 0.9, 0.9] + [1.0] * 7)
    np.testing.assert_array_equal(c["n_removed"], np.arange(11))
    assert np.all(np.diff(c["scores"]) >= 0)
    # trapezoids of width 0.05: 0.04 + 0.0425 + 0.045 + 0.0475 + 6 * 0.05 = 0.475
    assert c["auc"] == pytest.approx(0.475)
    assert c["normalized_auc"] == pytest.approx(0.95)
    assert not c["fallback"].any()
    assert c["order"] == "low" and c["scorer"] == "accuracy"
    np.testing.assert_array_equal(c["scores_std"], np.zeros(11))


def test_removal_curve_high_first_falls_and_matches_manual_retraining():
    x, y, y_true, v = _two_cluster_case()
    c = point_removal_curve(v, KNeighborsClassifier(1), x, y, x, y_true, order="high")
    assert c["scores"][0] == pytest.approx(0.8)
    assert np.all(np.diff(c["scores"]) <= 0)
    assert c["scores"][-1] < 0.6
    low = point_removal_curve(v, KNeighborsClassifier(1), x, y, x, y_true, order="low")
    assert c["normalized_auc"] < low["normalized_auc"] - 0.2
    # independent recomputation: drop the r highest (stable order), refit, score
    order = np.argsort(-v, kind="stable")
    for r, score in zip(c["n_removed"], c["scores"], strict=True):
        keep = np.sort(order[r:])
        model = KNeighborsClassifier(1).fit(x[keep], y[keep])
        assert score == pytest.approx(float(np.mean(model.predict(x) == y_true)))


def test_removal_curve_random_baseline_is_reproducible_with_spread():
    x, y, y_true, v = _two_cluster_case()
    kw = dict(order="random", random_state=3, n_repeats=4)
    a = point_removal_curve(v, KNeighborsClassifier(1), x, y, x, y_true, **kw)
    b = point_removal_curve(v, KNeighborsClassifier(1), x, y, x, y_true, **kw)
    np.testing.assert_array_equal(a["scores"], b["scores"])
    assert a["scores"][0] == pytest.approx(0.8) and a["scores_std"][0] == 0.0
    assert a["scores_std"][1:].max() > 0
    assert np.all((a["scores"] >= 0) & (a["scores"] <= 1))


def test_removal_curve_single_class_left_falls_back_to_constant_predictor():
    x = np.array([0.0, 1, 2, 3, 4, 10, 11, 12, 13, 14]).reshape(-1, 1)
    y = np.repeat(["neg", "pos"], 5)
    v = np.repeat([0.0, 1.0], 5)  # "pos" points are the most valuable
    x_test = np.array([0.5, 1.5, 2.5, 11.5, 12.5]).reshape(-1, 1)
    y_test = np.array(["neg", "neg", "neg", "pos", "pos"])
    c = point_removal_curve(
        v, LogisticRegression(), x, y, x_test, y_test, order="high", fractions=[0.0, 0.2, 0.5]
    )
    # at 0.5 only "neg" is left: LogisticRegression cannot fit one class, the constant
    # "neg" predictor scores 3/5
    np.testing.assert_array_equal(c["fallback"], [False, False, True])
    assert c["scores"][0] == 1.0
    assert c["scores"][2] == pytest.approx(0.6)
    with pytest.raises(ValueError):
        LogisticRegression().fit(x[:5], y[:5])


def test_removal_curve_accepts_callable_scorer_and_valuation_result():
    x, y, y_true, v = _two_cluster_case()

    def error_count(est, xs, ys):
        return float(np.sum(est.predict(xs) != ys))

    c = point_removal_curve(
        ValuationResult(values=v),
        KNeighborsClassifier(1),
        x,
        y,
        x,
        y_true,
        order="low",
        fractions=[0.0, 0.2],
        scorer=error_count,
    )
    np.testing.assert_allclose(c["scores"], [4.0, 0.0])
    assert c["scorer"] == "error_count"
    single = point_removal_curve(
        v, KNeighborsClassifier(1), x, y, x, y_true, order="low", fractions=[0.1]
    )
    assert single["auc"] == 0.0 and single["normalized_auc"] == pytest.approx(0.9)


class _NoParams:
    def fit(self, x, y):
        return self

    def predict(self, x):
        return np.zeros(len(x))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"order": "middle"}, "unknown order"),
        ({"n_repeats": 0}, "n_repeats"),
        ({"values": np.ones(19)}, "19 entries but x_train has 20"),
        ({"values": np.r_[np.ones(19), np.nan]}, "NaN"),
        ({"fractions": [0.0, 1.0]}, r"\[0, 1\)"),
        ({"fractions": [-0.1, 0.2]}, r"\[0, 1\)"),
        ({"fractions": []}, "empty"),
        ({"fractions": [0.2, 0.1]}, "increasing"),
        ({"fractions": [0.0, np.nan]}, "NaN"),
        ({"scorer": "not_a_metric"}, "unknown scorer"),
        ({"scorer": 42}, "scorer must be"),
        ({"model": object()}, "fit and predict"),
        ({"model": _NoParams()}, "cannot be cloned"),
        ({"x_test": np.zeros((5, 2))}, "features"),
        ({"y_train": np.zeros(19)}, "19 labels"),
        ({"x_train": np.full((20, 1), np.nan)}, "NaN"),
    ],
)
def test_removal_curve_error_paths(kwargs, match):
    x, y, y_true, v = _two_cluster_case()
    args = dict(
        values=v, model=KNeighborsClassifier(1), x_train=x, y_train=y, x_test=x, y_test=y_true
    )
    args.update(kwargs)
    with pytest.raises(InvalidInput, match=match):
        point_removal_curve(**args)


# -- report ----------------------------------------------------------------------


def test_evaluation_report_markdown_dict_and_svg():
    x, y, y_true, v = _two_cluster_case()
    result = ValuationResult(values=v, method="oracle")
    rep = evaluation_report(
        result,
        KNeighborsClassifier(1),
        x,
        y,
        x,
        y_true,
        flipped_idx=[0, 1, 10, 11],
        n_repeats=2,
        random_state=0,
    )
    assert isinstance(rep, EvaluationReport)
    assert rep.method == "oracle" and rep.n_points == 20
    assert rep.detection["auroc"] == 1.0 and rep.detection["kmeans_f1"] == 1.0
    assert set(rep.curves) == {"high", "low", "random"}
    md = rep.to_markdown()
    assert "## Valuation evaluation: oracle (n = 20)" in md
    assert "| AUROC (-value vs flipped) | 1.0000 | 0.5000 |" in md
    assert "| F1, bottom-k (k = 4) | 1.0000 | 0.2000 |" in md
    assert "| 0.10 | " in md and "| area / width | " in md
    d = rep.to_dict()
    back = json.loads(json.dumps(d))
    assert back["curves"]["low"]["scores"] == pytest.approx([0.8, 0.8, 0.9, 0.9] + [1.0] * 7)
    assert back["detection"]["n_flipped"] == 4
    frame = rep.curves_frame()
    assert list(frame.columns) == [
        "order",
        "fraction",
        "n_removed",
        "score",
        "score_std",
        "fallback",
    ]
    assert len(frame) == 33 and set(frame["order"]) == {"high", "low", "random"}
    low = frame[frame["order"] == "low"]
    assert low["score"].tolist() == pytest.approx([0.8, 0.8, 0.9, 0.9] + [1.0] * 7)
    assert EvaluationReport(method="m", n_points=3).curves_frame().empty
    svg = rep.plot_svg()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg and "</svg>" in svg


def test_evaluation_report_without_flips_or_random():
    x, y, y_true, v = _two_cluster_case()
    rep = evaluation_report(
        v, KNeighborsClassifier(1), x, y, x, y_true, include_random=False, fractions=[0, 0.25]
    )
    assert rep.detection is None and rep.method == "values"
    assert set(rep.curves) == {"high", "low"}
    md = rep.to_markdown()
    assert "Noisy-label detection" not in md and "random" not in md
    assert rep.to_dict()["detection"] is None


def test_report_marks_fallback_and_plot_needs_curves():
    x = np.array([0.0, 1, 2, 3, 10, 11, 12, 13]).reshape(-1, 1)
    y = np.repeat([0, 1], 4)
    rep = evaluation_report(
        np.repeat([0.0, 1.0], 4),
        LogisticRegression(),
        x,
        y,
        x,
        y,
        fractions=[0.0, 0.5],
        include_random=False,
    )
    assert rep.curves["high"]["fallback"].tolist() == [False, True]
    assert "0.5000*" in rep.to_markdown() and "constant predictor" in rep.to_markdown()
    with pytest.raises(InvalidInput, match="no removal curves"):
        EvaluationReport(method="m", n_points=3).plot_svg()
    with pytest.raises(InvalidInput, match="NaN"):
        evaluation_report([np.nan] * 8, LogisticRegression(), x, y, x, y)
    with pytest.raises(InvalidInput, match=r"x_train, y_train, x_test, y_test \(5 array"):
        evaluation_report(np.zeros(8), LogisticRegression(), x, y, x, y, [0, 1])
    with pytest.raises(InvalidInput, match=r"unknown option.*order"):
        evaluation_report(np.zeros(8), LogisticRegression(), x, y, x, y, order="high")
    with pytest.raises(InvalidInput, match=r"unknown option.*n_repeat"):
        evaluation_report(np.zeros(8), LogisticRegression(), x, y, x, y, n_repeat=3)


# -- real data: detection beats random ----------------------------------------------


def _agreement_score(x: np.ndarray, y: np.ndarray, k: int = 5) -> np.ndarray:
    """Fraction of each point's k nearest neighbours (itself excluded) with its label."""
    _, idx = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x)
    return (y[idx[:, 1:]] == y[:, None]).mean(axis=1)


@pytest.fixture(scope="module")
def cancer():
    x, y = load_breast_cancer(return_X_y=True)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    scaler = StandardScaler().fit(xtr)
    return scaler.transform(xtr), ytr, scaler.transform(xte), yte


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_knn_agreement_detects_flips_on_breast_cancer(cancer, seed: int):
    xtr, ytr, _, _ = cancer
    y_noisy, flipped = flip_labels(ytr, 0.1, random_state=seed)
    assert flipped.size == round(0.1 * len(ytr))
    out = noisy_label_detection(_agreement_score(xtr, y_noisy), flipped)
    assert out["auroc"] > 0.9  # random: 0.5
    assert out["bottom_k_f1"] > 5 * out["random_bottom_k_f1"]
    assert out["kmeans_f1"] > 0.5


def test_knn_shapley_detects_flips_and_orders_removal(cancer):
    knn = pytest.importorskip("databazaar.valuation.knn")
    xtr, ytr, xte, yte = cancer
    y_noisy, flipped = flip_labels(ytr, 0.1, random_state=0)
    values = knn.knn_shapley(xtr, y_noisy, xte, yte, k=5)
    out = noisy_label_detection(values, flipped)
    assert out["auroc"] > 0.9
    assert out["bottom_k_f1"] > 5 * out["random_bottom_k_f1"]
    assert out["kmeans_f1"] > 0.6
    kw = dict(fractions=[0.0, 0.1, 0.2, 0.3])
    model = KNeighborsClassifier(5)
    high = point_removal_curve(values, model, xtr, y_noisy, xte, yte, order="high", **kw)
    low = point_removal_curve(values, model, xtr, y_noisy, xte, yte, order="low", **kw)
    assert high["scores"][0] == low["scores"][0]
    assert low["normalized_auc"] > high["normalized_auc"] + 0.05


def test_make_classification_knn_agreement_beats_random_values():
    x, y = make_classification(
        n_samples=500, n_features=8, n_informative=5, class_sep=1.5, random_state=0
    )
    y_noisy, flipped = flip_labels(y, 0.1, random_state=0)
    knn_auroc = noisy_label_detection(_agreement_score(x, y_noisy), flipped)["auroc"]
    aurocs = [
        noisy_label_detection(np.random.default_rng(s).normal(size=500), flipped)["auroc"]
        for s in range(20)
    ]
    assert abs(np.mean(aurocs) - 0.5) < 0.05
    assert knn_auroc > 0.8
    assert knn_auroc > max(aurocs) + 0.2


def test_flip_labels_all_pairs_of_classes_reachable():
    y = np.repeat(np.arange(4), 200)
    y_noisy, idx = flip_labels(y, 0.6, random_state=0)
    pairs = set(zip(y[idx].tolist(), y_noisy[idx].tolist(), strict=True))
    assert pairs == {(a, b) for a, b in itertools.permutations(range(4), 2)}
