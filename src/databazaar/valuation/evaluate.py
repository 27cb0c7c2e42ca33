r"""How good are data values?  Noisy-label detection and point-removal curves.

Two standard protocols measure whether a valuation ranks data sensibly (Ghorbani & Zou
2019, §4; Jiang et al. 2023, OpenDataVal, §4):

**Noisy-label detection.**  Flip the labels of a fraction of the training points
(:func:`flip_labels`), value the noisy training set, and ask how well *low* values pick
out the flipped points (:func:`noisy_label_detection`):

* *2-means F1* (OpenDataVal's rule): split the values into two clusters by exact
  one-dimensional 2-means and predict the lower cluster as noisy;
* *bottom-k F1*: predict the :math:`k` lowest-valued points as noisy, where :math:`k`
  is the number of flipped points (then precision = recall = F1);
* *AUROC* of the score :math:`-v_i` against the indicator "point i was flipped": the
  probability that a random flipped point has a lower value than a random clean one
  (ties count one half).  Random values give 0.5 in expectation, a perfect ranking 1.

**Point removal.**  Remove the highest-valued (or lowest-valued) fraction :math:`f` of
the training set, retrain the model on the rest, and record its test score
(:func:`point_removal_curve`).  A good valuation makes the score fall fast when the
best points go (``order="high"``) and stay level or rise when the worst go
(``order="low"``); ``order="random"`` is the baseline.  The curve is summarised by the
trapezoidal area under it and by that area divided by the width of the fraction range
(the mean score over the range).

:func:`~databazaar.valuation.report.evaluation_report` runs both protocols and returns
an :class:`~databazaar.valuation.report.EvaluationReport` (markdown, dict or SVG plot).

References:
    Ghorbani, A. and Zou, J. (2019). Data Shapley: Equitable valuation of data for
    machine learning. ICML.
    Jiang, K. F., Liang, W., Zou, J. and Kwon, Y. (2023). OpenDataVal: a unified
    benchmark for data valuation. NeurIPS Datasets and Benchmarks.
    Grønlund, A. et al. (2017). Fast exact k-means, k-medians and Bregman divergence
    clustering in 1D. arXiv:1701.07204.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from databazaar.core.errors import InvalidInput
from databazaar.valuation._validate import (
    check_features,
    check_labels,
    check_random_state,
    check_same_width,
)
from databazaar.valuation.result import ValuationResult
from databazaar.valuation.utility import resolve_scorer

__all__ = [
    "flip_labels",
    "noisy_label_detection",
    "point_removal_curve",
    "two_means_split",
]

DEFAULT_FRACTIONS = np.linspace(0.0, 0.5, 11)
ORDERS = ("high", "low", "random")


# -- input checks -------------------------------------------------------------


def as_values(values: Any, name: str = "values") -> np.ndarray:
    """Values as a finite 1-D float array (from a ValuationResult or array-like)."""
    if isinstance(values, ValuationResult):
        arr = np.asarray(values.values, dtype=np.float64)
    else:
        raw = values.to_numpy() if hasattr(values, "to_numpy") else values
        try:
            arr = np.asarray(raw, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"{name} must be numeric: {exc}") from exc
    if arr.ndim != 1:
        raise InvalidInput(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise InvalidInput(f"{name} is empty", hint="pass one value per training point")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise InvalidInput(
            f"{name} contains NaN or infinity ({bad.size} entries, first at position {bad[0]})",
            hint="recompute the values or drop those points before evaluating",
        )
    return arr


def _check_fraction(fraction: Any) -> float:
    if isinstance(fraction, bool) or not isinstance(
        fraction, (int, float, np.integer, np.floating)
    ):
        raise InvalidInput(f"fraction must be a number in (0, 1), got {fraction!r}")
    f = float(fraction)
    if not (0.0 < f < 1.0):
        raise InvalidInput(
            f"fraction must lie strictly between 0 and 1, got {f}",
            hint="e.g. fraction=0.1 flips 10% of the labels",
        )
    return f


def _check_flipped(flipped_idx: Any, n: int) -> np.ndarray:
    """Flipped points as a boolean mask of length ``n`` (indices or a mask accepted)."""
    raw = flipped_idx.to_numpy() if hasattr(flipped_idx, "to_numpy") else flipped_idx
    arr = np.asarray(raw)
    if arr.ndim != 1:
        raise InvalidInput(f"flipped_idx must be one-dimensional, got shape {arr.shape}")
    if arr.dtype == bool:
        if arr.shape[0] != n:
            raise InvalidInput(
                f"flipped_idx is a boolean mask of length {arr.shape[0]} but there are {n} values",
                hint="give one flag per training point, or integer indices",
            )
        mask = arr.copy()
    else:
        if arr.size and arr.dtype.kind not in "iu":
            if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
                arr = arr.astype(np.int64)
            else:
                raise InvalidInput(
                    f"flipped_idx must hold integer positions, got dtype {arr.dtype}",
                    hint="pass the second output of flip_labels",
                )
        arr = arr.astype(np.int64)
        if arr.size and (arr.min() < 0 or arr.max() >= n):
            raise InvalidInput(
                f"flipped_idx has positions outside [0, {n}): "
                f"min {int(arr.min())}, max {int(arr.max())}",
                hint="positions index the values array",
            )
        if np.unique(arr).size != arr.size:
            raise InvalidInput("flipped_idx contains duplicate positions")
        mask = np.zeros(n, dtype=bool)
        mask[arr] = True
    n_flipped = int(mask.sum())
    if n_flipped == 0:
        raise InvalidInput(
            "flipped_idx is empty: there is no flipped point to detect",
            hint="flip at least one label (flip_labels with a larger fraction)",
        )
    if n_flipped == n:
        raise InvalidInput(
            "every point is marked flipped: detection needs clean points too",
            hint="flip a fraction below 1",
        )
    return mask


def _check_fractions(fractions: Any) -> np.ndarray:
    arr = np.asarray(fractions, dtype=np.float64).reshape(-1)
    if arr.size == 0:
        raise InvalidInput("fractions is empty", hint="e.g. np.linspace(0, 0.5, 11)")
    if not np.all(np.isfinite(arr)):
        raise InvalidInput("fractions contains NaN or infinity")
    if arr.min() < 0.0 or arr.max() >= 1.0:
        raise InvalidInput(
            f"removal fractions must lie in [0, 1), got min {arr.min()} and max {arr.max()}",
            hint="at least one training point must remain",
        )
    if arr.size > 1 and np.any(np.diff(arr) <= 0):
        raise InvalidInput("fractions must be strictly increasing")
    return arr


def _check_model(model: Any) -> Any:
    if not (hasattr(model, "fit") and hasattr(model, "predict")):
        raise InvalidInput(
            f"model must be a scikit-learn style estimator with fit and predict, got {model!r}"
        )
    from sklearn.base import clone

    try:
        return clone(model)
    except TypeError as exc:
        raise InvalidInput(
            f"model cannot be cloned: {exc}", hint="pass an unfitted estimator"
        ) from exc


# -- label flipping ----------------------------------------------------------


def flip_labels(
    y: Any, fraction: float, random_state: int | np.random.Generator | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Flip ``round(fraction * n)`` labels, each to a different class chosen at random.

    The flipped positions are drawn uniformly without replacement; each flipped label
    becomes one of the *other* classes present in ``y``, uniformly (for binary labels,
    the other class).  Works for any label type (ints, strings, floats, categoricals);
    the dtype of ``y`` is kept.

    Args:
        y: 1-D labels with at least two distinct classes.
        fraction: share of labels to flip, strictly between 0 and 1.
        random_state: seed or generator.

    Returns:
        ``(y_noisy, flipped_idx)``: a copy of ``y`` with the flips, and the sorted int64
        positions that were flipped.
    """
    f = _check_fraction(fraction)
    raw = y.to_numpy() if hasattr(y, "to_numpy") else y
    arr = np.asarray(raw)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise InvalidInput(f"y must be one-dimensional, got shape {arr.shape}")
    n = arr.shape[0]
    if n == 0:
        raise InvalidInput("y is empty")
    arr = check_labels(arr, n, "y")
    try:
        classes, codes = np.unique(arr, return_inverse=True)
    except TypeError as exc:  # e.g. ints mixed with strings in an object array
        raise InvalidInput(
            f"y mixes label types that cannot be compared: {exc}",
            hint="convert the labels to one type, e.g. y.astype(str)",
        ) from exc
    codes = codes.reshape(-1)
    if classes.size < 2:
        raise InvalidInput(
            f"y has a single class ({classes[0]!r}); flipping needs at least two",
        )
    n_flip = round(f * n)
    if n_flip == 0:
        raise InvalidInput(
            f"fraction {f} of {n} labels rounds to 0 flips",
            hint=f"use fraction >= {0.5 / n:.3g} or more labels",
        )
    rng = check_random_state(random_state)
    flipped = np.sort(rng.choice(n, size=n_flip, replace=False)).astype(np.int64)
    shift = rng.integers(1, classes.size, size=n_flip)  # 1..C-1: never the same class
    new_codes = (codes[flipped] + shift) % classes.size
    y_noisy = arr.copy()
    y_noisy[flipped] = classes[new_codes]
    return y_noisy, flipped


# -- detection ----------------------------------------------------------------


def two_means_split(values: Any) -> tuple[np.ndarray, float]:
    """Exact 1-D 2-means: the positions of the lower cluster and the split threshold.

    In one dimension an optimal 2-means clustering splits the sorted values into a
    prefix and a suffix (Grønlund et al. 2017), so the optimum is the split ``s`` that
    minimises the within-cluster sum of squares

    .. math:: \\mathrm{SSE}(s) = \\sum_{i<s} (v_{(i)} - \\bar v_{<s})^2
              + \\sum_{i\\ge s} (v_{(i)} - \\bar v_{\\ge s})^2,

    computed for every ``s`` from prefix sums in :math:`O(n \\log n)`.  Only splits
    between *distinct* values are allowed, so equal values always share a cluster, and
    the first minimiser wins.  If all values are equal there is no split: the lower
    cluster is empty and the threshold is ``-inf``.

    Returns:
        ``(low_positions, threshold)``: sorted positions of the low cluster, and the
        midpoint between the largest low and smallest high value.
    """
    v = as_values(values)
    order = np.argsort(v, kind="stable")
    s = v[order] - v.mean()  # centring reduces cancellation in sum(x^2) - sum(x)^2 / n
    n = s.size
    allowed = np.flatnonzero(s[1:] > s[:-1]) + 1  # split before position i, s[i-1] < s[i]
    if allowed.size == 0:
        return np.zeros(0, dtype=np.int64), float("-inf")
    c1 = np.concatenate([[0.0], np.cumsum(s)])
    c2 = np.concatenate([[0.0], np.cumsum(s * s)])
    left_n = allowed.astype(np.float64)
    right_n = n - left_n
    sse = (c2[allowed] - c1[allowed] ** 2 / left_n) + (
        (c2[n] - c2[allowed]) - (c1[n] - c1[allowed]) ** 2 / right_n
    )
    split = int(allowed[int(np.argmin(sse))])
    sorted_v = v[order]
    threshold = 0.5 * (sorted_v[split - 1] + sorted_v[split])
    return np.sort(order[:split]).astype(np.int64), float(threshold)


def _prf(predicted: np.ndarray, truth: np.ndarray) -> tuple[float, float, float]:
    """Precision, recall and F1 of boolean predictions (0 when undefined)."""
    tp = float(np.sum(predicted & truth))
    n_pred, n_true = float(predicted.sum()), float(truth.sum())
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_true if n_true else 0.0
    f1 = 2.0 * tp / (n_pred + n_true) if (n_pred + n_true) else 0.0
    return precision, recall, f1


def noisy_label_detection(values: Any, flipped_idx: Any, n: int | None = None) -> dict[str, Any]:
    """How well low values identify the flipped points.

    With :math:`T` the flipped set and :math:`P` a predicted set,
    precision :math:`= |P\\cap T|/|P|`, recall :math:`= |P\\cap T|/|T|`,
    F1 :math:`= 2|P\\cap T|/(|P|+|T|)` (0 when undefined).

    Args:
        values: a :class:`ValuationResult` or one value per training point (position i
            belongs to training row i).
        flipped_idx: positions of the flipped points (as returned by :func:`flip_labels`)
            or a boolean mask of length ``len(values)``.
        n: the number of training points, if you want it checked against ``values``.

    Returns:
        A dict with ``n_points``, ``n_flipped``, ``auroc`` (of :math:`-v` vs the flipped
        indicator, :func:`sklearn.metrics.roc_auc_score`), ``kmeans_f1``,
        ``kmeans_precision``, ``kmeans_recall``, ``kmeans_n_predicted``,
        ``kmeans_threshold`` (the 2-means rule, see :func:`two_means_split`),
        ``bottom_k_f1``, ``bottom_k_precision``, ``bottom_k_recall`` (the ``n_flipped``
        lowest values, ties broken by position), and the expectations under random
        values: ``random_auroc`` (0.5) and ``random_bottom_k_f1`` (``n_flipped / n``).
    """
    v = as_values(values)
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise InvalidInput(f"n must be a positive integer, got {n!r}")
        if int(n) != v.size:
            raise InvalidInput(
                f"values has {v.size} entries but n={int(n)} training points were given",
                hint="pass one value per training point",
            )
    truth = _check_flipped(flipped_idx, v.size)
    n_flipped = int(truth.sum())

    from sklearn.metrics import roc_auc_score

    auroc = float(roc_auc_score(truth.astype(np.int64), -v))

    low, threshold = two_means_split(v)
    km_pred = np.zeros(v.size, dtype=bool)
    km_pred[low] = True
    km_p, km_r, km_f1 = _prf(km_pred, truth)

    bottom = np.argsort(v, kind="stable")[:n_flipped]
    bk_pred = np.zeros(v.size, dtype=bool)
    bk_pred[bottom] = True
    bk_p, bk_r, bk_f1 = _prf(bk_pred, truth)

    return {
        "n_points": int(v.size),
        "n_flipped": n_flipped,
        "auroc": auroc,
        "kmeans_f1": km_f1,
        "kmeans_precision": km_p,
        "kmeans_recall": km_r,
        "kmeans_n_predicted": int(km_pred.sum()),
        "kmeans_threshold": threshold,
        "bottom_k_f1": bk_f1,
        "bottom_k_precision": bk_p,
        "bottom_k_recall": bk_r,
        "random_auroc": 0.5,
        "random_bottom_k_f1": n_flipped / v.size,
    }


# -- point removal -------------------------------------------------------------


def _area(fractions: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """Trapezoidal area under ``scores`` over ``fractions``, and area / width."""
    if fractions.size < 2:
        return 0.0, float(scores[0])
    widths = np.diff(fractions)
    area = float(np.sum(widths * 0.5 * (scores[1:] + scores[:-1])))
    return area, area / float(fractions[-1] - fractions[0])


def _fit_score(
    model: Any,
    x: np.ndarray,
    y: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    scorer: Callable[..., float],
    classifier: bool,
) -> tuple[float, bool]:
    """Score a clone of ``model`` trained on ``(x, y)``; ``(score, used_fallback)``.

    When a classifier's remaining training labels hold a single class, most estimators
    refuse to fit; the fallback is the constant predictor of that class
    (:class:`sklearn.dummy.DummyClassifier`), which is what any classifier trained on
    one class should predict.
    """
    from sklearn.base import clone

    if classifier and np.unique(y).size < 2:
        from sklearn.dummy import DummyClassifier

        est = DummyClassifier(strategy="most_frequent").fit(x, y)
        return float(scorer(est, x_test, y_test)), True
    est = clone(model).fit(x, y)
    return float(scorer(est, x_test, y_test)), False


def point_removal_curve(
    values: Any,
    model: Any,
    x_train: Any,
    y_train: Any,
    x_test: Any,
    y_test: Any,
    order: str = "high",
    fractions: Sequence[float] | np.ndarray = DEFAULT_FRACTIONS,
    scorer: str | Callable[..., float] = "accuracy",
    random_state: int | np.random.Generator | None = None,
    n_repeats: int = 5,
) -> dict[str, Any]:
    """Test score after removing the highest- (or lowest-, or random) valued points.

    For each fraction :math:`f`, the :math:`r = \\mathrm{round}(f n)` points first in
    the removal order are dropped (capped at :math:`n-1`: one point always remains), a
    fresh clone of ``model`` is trained on the rest and scored on the test set.
    ``order="high"`` removes by decreasing value, ``"low"`` by increasing value (ties
    by position), ``"random"`` averages ``n_repeats`` random orders drawn from
    ``random_state``.  If the points left have a single class, the score is that of the
    constant predictor of that class (flagged in ``fallback``).

    Args:
        values: a :class:`ValuationResult` or one value per training row.
        model: unfitted scikit-learn style estimator (cloned, never modified).
        x_train, y_train, x_test, y_test: the data the values were computed for.
        order: ``"high"``, ``"low"`` or ``"random"``.
        fractions: strictly increasing removal fractions in ``[0, 1)``.
        scorer: a scikit-learn scorer name or a callable ``scorer(estimator, X, y)``.
        random_state: seed or generator for the random order.
        n_repeats: number of random orders averaged for ``order="random"``.

    Returns:
        A dict with ``order``, ``scorer``, ``fractions``, ``n_removed``, ``scores``
        (mean over repeats for ``"random"``), ``scores_std`` (0 for deterministic
        orders), ``fallback`` (bool per fraction), ``auc`` (trapezoidal area under
        ``scores`` over ``fractions``) and ``normalized_auc`` (``auc`` divided by the
        width of the fraction range: the mean score).
    """
    if order not in ORDERS:
        raise InvalidInput(f"unknown order {order!r}", hint="use 'high', 'low' or 'random'")
    if isinstance(n_repeats, bool) or not isinstance(n_repeats, (int, np.integer)) or n_repeats < 1:
        raise InvalidInput(f"n_repeats must be an integer >= 1, got {n_repeats!r}")
    v = as_values(values)
    xtr = check_features(x_train, "x_train")
    ytr = check_labels(y_train, xtr.shape[0], "y_train")
    xte = check_features(x_test, "x_test")
    yte = check_labels(y_test, xte.shape[0], "y_test")
    check_same_width(xtr, xte)
    n = xtr.shape[0]
    if v.size != n:
        raise InvalidInput(
            f"values has {v.size} entries but x_train has {n} rows",
            hint="pass one value per training row, in the same order",
        )
    frac = _check_fractions(fractions)
    score_fn, _ = resolve_scorer(scorer)
    scorer_name = scorer if isinstance(scorer, str) else getattr(scorer, "__name__", "scorer")
    base = _check_model(model)
    from sklearn.base import is_classifier

    classifier = bool(is_classifier(base))
    n_removed = np.minimum(np.round(frac * n).astype(np.int64), n - 1)

    if order == "random":
        rng = check_random_state(random_state)
        orders = [rng.permutation(n) for _ in range(int(n_repeats))]
    elif order == "high":
        orders = [np.argsort(-v, kind="stable")]
    else:
        orders = [np.argsort(v, kind="stable")]

    table = np.empty((len(orders), frac.size))
    fallback = np.zeros(frac.size, dtype=bool)
    for r, perm in enumerate(orders):
        for j, cut in enumerate(n_removed):
            keep = np.sort(perm[cut:])
            table[r, j], used = _fit_score(
                base, xtr[keep], ytr[keep], xte, yte, score_fn, classifier
            )
            fallback[j] |= used
    scores = table.mean(axis=0)
    std = table.std(axis=0, ddof=1) if len(orders) > 1 else np.zeros(frac.size)
    auc, nauc = _area(frac, scores)
    return {
        "order": order,
        "scorer": scorer_name,
        "fractions": frac,
        "n_removed": n_removed,
        "scores": scores,
        "scores_std": std,
        "fallback": fallback,
        "auc": auc,
        "normalized_auc": nauc,
    }
