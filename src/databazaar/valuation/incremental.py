r"""Incremental utilities: the scores of every prefix of a permutation without refitting.

Permutation methods (TMC-Shapley, Beta Shapley, Monte Carlo ADS) evaluate
:math:`u(\pi_{:1}), u(\pi_{:2}), \dots` along a permutation, i.e. a model fitted on a
training set that grows by one point at a time.  For some models that sequence has an
exact incremental form, so one pass along the permutation replaces one cold fit per
prefix:

:class:`KNNPrefixScan` (``KNeighborsClassifier``, uniform weights, Euclidean metric)
    keeps, for every test point, its ``K`` nearest neighbours among the prefix and their
    label votes; adding a point costs :math:`O(K + C)` per test point.  Predictions are
    those of scikit-learn (majority vote, ties to the smallest class); a prefix with
    fewer than ``K`` points gets the utility's default score, as scikit-learn refuses to
    fit it.  Exact, except that scikit-learn's choice among training points at exactly
    equal distance is implementation-defined (here: the earlier training row).
:class:`GaussianNBPrefixScan` (``GaussianNB`` without fixed priors)
    per-class counts and running sums of :math:`x` and :math:`x^2` give every prefix's
    class priors, means and variances (plus scikit-learn's ``var_smoothing`` times the
    largest feature variance of the prefix) at once; the joint log-likelihoods of all
    prefixes come from three matrix products.  Exact up to floating-point rounding of
    the variances.

Both are used automatically by :class:`~databazaar.valuation.utility.Utility` (when its
scorer is accuracy and ``incremental=True``) through :func:`prefix_scanner`; any other
model keeps cold fits.  Values are then those of cold fits on the same permutations (the
tests check that they agree within one standard error, and exactly for KNN).

References:
    Ghorbani, A. & Zou, J. (2019). Data Shapley: Equitable Valuation of Data for Machine
    Learning. ICML (the permutation scan this speeds up).
    Chan, T. F., Golub, G. H. & LeVeque, R. J. (1983). Algorithms for computing the
    sample variance. The American Statistician 37(3) (running moments).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["GaussianNBPrefixScan", "KNNPrefixScan", "prefix_scanner"]

#: Largest test-by-train distance matrix (entries) a KNN scan keeps in memory.
MAX_DISTANCE_ENTRIES = 50_000_000


def prefix_scanner(
    model: Any, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray
) -> Any:
    """An exact incremental scan for ``model``, or ``None`` when there is none.

    The scan is a callable ``scan(order, default) -> scores`` with ``scores[j]`` the test
    accuracy of ``model`` fitted on training rows ``order[:j+1]``.  Labels that cannot
    be sorted together (mixed types) also get ``None``: cold fits handle them.
    """
    try:
        return _scanner(model, x_train, y_train, x_test, y_test)
    except TypeError:
        return None


def _scanner(
    model: Any, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray
) -> Any:
    from sklearn.naive_bayes import GaussianNB
    from sklearn.neighbors import KNeighborsClassifier

    if _unmodified(model, KNeighborsClassifier, ("fit", "predict", "predict_proba")):
        p = model.get_params()
        euclid = p["metric"] == "euclidean" or (p["metric"] == "minkowski" and p["p"] == 2)
        if (
            p["weights"] == "uniform"
            and euclid
            and not p["metric_params"]
            and x_test.shape[0] * x_train.shape[0] <= MAX_DISTANCE_ENTRIES
        ):
            return KNNPrefixScan(x_train, y_train, x_test, y_test, k=int(p["n_neighbors"]))
    if _unmodified(model, GaussianNB, ("fit", "predict", "_joint_log_likelihood")):
        p = model.get_params()
        if p["priors"] is None:
            scan = GaussianNBPrefixScan(x_train, y_train, x_test, y_test)
            scan.var_smoothing = float(p["var_smoothing"])
            return scan
    return None


def _unmodified(model: Any, cls: type, methods: tuple[str, ...]) -> bool:
    """``model`` is a ``cls`` whose listed methods are not overridden."""
    return isinstance(model, cls) and all(
        getattr(type(model), name) is getattr(cls, name) for name in methods
    )


def _encode(y_train: np.ndarray, y_test: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Class codes in sorted label order; test labels unseen in training get -1."""
    classes, ytr = np.unique(y_train, return_inverse=True)
    pos = np.searchsorted(classes, y_test)
    pos = np.clip(pos, 0, len(classes) - 1)
    yte = np.where(classes[pos] == y_test, pos, -1)
    return ytr.reshape(-1).astype(np.int64), yte.astype(np.int64), len(classes)


class _PrefixScan:
    """Training and test data with class codes in sorted label order."""

    def __init__(
        self, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray
    ) -> None:
        self.y_train, self.y_test, self.n_classes = _encode(y_train, y_test)
        self.x_train = np.asarray(x_train, dtype=np.float64)
        self.x_test = np.asarray(x_test, dtype=np.float64)


class KNNPrefixScan(_PrefixScan):
    """Exact test accuracy of a uniform-weight KNN classifier on every prefix."""

    def __init__(
        self,
        x_train: np.ndarray,
        y_train: np.ndarray,
        x_test: np.ndarray,
        y_test: np.ndarray,
        k: int = 5,
    ) -> None:
        super().__init__(x_train, y_train, x_test, y_test)
        self.k = k
        xtr, xte = self.x_train, self.x_test
        # squared Euclidean distances, exact differences (the order is what matters)
        dist = np.empty((xte.shape[0], xtr.shape[0]))
        for s in range(0, xte.shape[0], 256):
            diff = xte[s : s + 256, None, :] - xtr[None, :, :]
            dist[s : s + 256] = np.einsum("tnd,tnd->tn", diff, diff)
        self.dist = np.ascontiguousarray(dist)

    def __call__(self, order: np.ndarray, default: float) -> np.ndarray:
        from databazaar.valuation._incremental_kernels import knn_prefix_accuracy

        out = np.empty(order.shape[0])
        knn_prefix_accuracy(
            self.dist,
            np.ascontiguousarray(order, dtype=np.int64),
            self.y_train,
            self.y_test,
            self.k,
            self.n_classes,
            float(default),
            out,
        )
        return out


class GaussianNBPrefixScan(_PrefixScan):
    """Test accuracy of scikit-learn's ``GaussianNB`` on every prefix, from running sums.

    ``var_smoothing`` is scikit-learn's (default ``1e-9``).
    """

    var_smoothing = 1e-9

    def __call__(self, order: np.ndarray, default: float) -> np.ndarray:
        scores = np.empty(order.shape[0])
        step = max(1, 2_000_000 // max(1, self.n_classes * self.x_train.shape[1] * 4))
        state = _Moments(self.n_classes, self.x_train.shape[1])
        for s in range(0, order.shape[0], step):
            scores[s : s + step] = self._block(order[s : s + step], state)
        return scores

    def _block(self, order: np.ndarray, state: _Moments) -> np.ndarray:
        x = self.x_train[order]
        onehot = np.zeros((order.shape[0], self.n_classes))
        onehot[np.arange(order.shape[0]), self.y_train[order]] = 1.0
        cnt, s1, s2, a1, a2 = state.advance(onehot, x)
        n = cnt.sum(axis=1)  # prefix sizes
        present = cnt > 0
        safe = np.where(present, cnt, 1.0)[:, :, None]
        mean = s1 / safe
        var = np.maximum(s2 / safe - mean * mean, 0.0)
        overall = np.maximum(a2 / n[:, None] - (a1 / n[:, None]) ** 2, 0.0)
        var += (self.var_smoothing * overall.max(axis=1))[:, None, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            prior = np.log(safe[:, :, 0] / n[:, None])
            inv = 1.0 / var
            # sum_f (x_f - mu_f)^2 / var_f = x^2 . inv - 2 x . (mu inv) + sum mu^2 inv
            xt = self.x_test
            quad = (
                np.einsum("td,lcd->ltc", xt * xt, inv)
                - 2.0 * np.einsum("td,lcd->ltc", xt, mean * inv)
                + np.einsum("lcd->lc", mean * mean * inv)[:, None, :]
            )
            jll = (prior - 0.5 * np.log(2.0 * np.pi * var).sum(axis=2))[:, None, :] - 0.5 * quad
        jll = np.where(np.isnan(jll), np.inf, jll)  # scikit-learn's argmax picks a NaN first
        jll = np.where(present[:, None, :], jll, -np.inf)
        pred = jll.argmax(axis=2)
        return (pred == self.y_test[None, :]).mean(axis=1)


class _Moments:
    """Running per-class and overall sums of ``x`` and ``x**2`` along a permutation."""

    def __init__(self, n_classes: int, d: int) -> None:
        self.cnt = np.zeros(n_classes)
        self.s1 = np.zeros((n_classes, d))
        self.s2 = np.zeros((n_classes, d))

    def advance(self, onehot: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, ...]:
        cnt = self.cnt + np.cumsum(onehot, axis=0)
        s1 = self.s1 + np.cumsum(onehot[:, :, None] * x[:, None, :], axis=0)
        s2 = self.s2 + np.cumsum(onehot[:, :, None] * (x * x)[:, None, :], axis=0)
        self.cnt, self.s1, self.s2 = cnt[-1], s1[-1], s2[-1]
        return cnt, s1, s2, s1.sum(axis=1), s2.sum(axis=1)
