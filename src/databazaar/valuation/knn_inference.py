r"""Exact KNN-Shapley values with U-statistic confidence intervals.

:class:`KNNMarginals` is the fast marginal-contribution oracle of the KNN utility (Jia et
al. 2019) used by :func:`~databazaar.valuation.inference.shapley_variance`: both loops of
the double Monte Carlo variance estimator are exact for it (every anchor, the inner
expectation in closed form), and exact leave-one-out values give the jackknife
reference.  The estimators themselves are in :mod:`databazaar.valuation.inference`.

References:
    Wu, Liu, Li, Jia, Chang (2024). Uncertainty Quantification of Data Shapley via
    Statistical Inference. arXiv:2407.19373.
    Jia et al. (2019). Efficient task-specific data valuation for nearest neighbor
    algorithms. PVLDB 12(11).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from databazaar.valuation._neighbours import (
    NeighbourKeys,
    check_knn_data,
    sorted_order,
    tie_classes,
)
from databazaar.valuation._validate import check_k
from databazaar.valuation.inference import (
    VarianceOptions,
    shapley_confidence_intervals,
    size_nodes,
)
from databazaar.valuation.knn import knn_shapley
from databazaar.valuation.result import ValuationResult

__all__ = ["KNNMarginals", "knn_marginals", "knn_shapley_ci"]


@dataclass
class KNNMarginals:
    """Fast ``h_z(S)`` for the KNN utility of Jia et al. (2019), averaged over test points.

    ``order[r]`` lists training indices by distance to test point ``r`` and ``tie[r, p]``
    numbers the tie class of position ``p`` (equal numbers for equal distance keys;
    ``None``: no ties, every position its own class).  Every method uses the tie rule of
    :mod:`databazaar.valuation.knn` (expected utility under uniformly random
    tie-breaking), like the values: tied points with the same label get identical
    results and permuting the training rows permutes them (docs/valuation.md, "Ties").
    Each evaluation walks a row only until the class that decides ``h``.
    """

    order: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray
    k: int
    tie: np.ndarray | None = None
    cheap = True

    def __post_init__(self) -> None:
        if self.tie is None:
            self.tie = np.tile(np.arange(self.n, dtype=np.int64), (self.order.shape[0], 1))

    @property
    def n(self) -> int:
        return int(self.order.shape[1])

    def draws(
        self,
        z: int,
        anchors: np.ndarray,
        n_inner: int,
        rng: np.random.Generator,
        pool: np.ndarray | None = None,
    ) -> np.ndarray:
        """``H[a, j] = h_z(S)``: anchor plus ``s - 1`` i.i.d. draws, ``P(s) ∝ s``.

        The draws pick from ``pool`` (default ``D ∖ {z}`` in index order); the same
        generator state with a relabelled pool draws the relabelled sets.
        """
        from databazaar.valuation import _ci_kernels as kern

        seed = int(rng.integers(0, 2**31 - 1))
        anchors = np.ascontiguousarray(anchors, dtype=np.int64)
        if pool is None:
            pool = np.delete(np.arange(self.n, dtype=np.int64), z)
        pool = np.ascontiguousarray(pool, dtype=np.int64)
        return kern.knn_draws(
            self.order,
            self.tie,
            self.y_train,
            self.y_test,
            int(z),
            self.k,
            anchors,
            pool,
            int(n_inner),
            seed,
        )

    def projection(self, z: int, max_sizes: int = 512) -> np.ndarray:
        """``E[h_z(S) | x ∈ S]`` for every anchor ``x`` in closed form (``P(s) ∝ s``).

        The size distribution is used exactly when ``n - 1 <= max_sizes`` and otherwise
        through ``max_sizes`` equal-probability quantile nodes.
        """
        from databazaar.valuation import _ci_kernels as kern

        sizes, weights = size_nodes(self.n, max_sizes)
        r = kern.knn_projection(
            self.order, self.tie, self.y_train, self.y_test, int(z), self.k, sizes, weights
        )
        return np.delete(r, z)

    def leave_one_out(self, z: int) -> np.ndarray:
        """Exact KNN-Shapley value of ``z`` with each other point removed (``n - 1`` values)."""
        from databazaar.valuation import _ci_kernels as kern

        out = kern.knn_leave_one_out(
            self.order, self.tie, self.y_train, self.y_test, int(z), self.k
        )
        return np.delete(out, z)


def knn_marginals(x_train: Any, y_train: Any, x_test: Any, y_test: Any, k: int = 5) -> KNNMarginals:
    """Build the fast KNN marginal oracle: sorts every test row once and numbers its tie
    classes (equal distance keys, :mod:`databazaar.valuation._neighbours`)."""
    k = check_k(k)
    xtr, ytr, xte, yte = check_knn_data(x_train, y_train, x_test, y_test)
    keys = NeighbourKeys.of(xtr).keys(xte)
    order = sorted_order(keys)
    return KNNMarginals(order, ytr, yte, k, tie_classes(keys, order))


def knn_shapley_ci(
    x_train: Any,
    y_train: Any,
    x_test: Any,
    y_test: Any,
    k: int = 5,
    confidence: float = 0.95,
    method: str = "default",
    random_state: Any = None,
    *,
    indices: Sequence[int] | np.ndarray | None = None,
    options: VarianceOptions | None = None,
    **keywords: Any,
) -> ValuationResult:
    """Exact KNN-Shapley values with U-statistic confidence intervals.

    The values are :func:`~databazaar.valuation.knn.knn_shapley`'s (exact, with its tie
    rule: the same numbers to the last bit); the intervals describe how a value would
    vary if the *other training points* were redrawn from the same distribution (the test
    set fixed).  See :func:`shapley_confidence_intervals` for the arguments; ``options``
    and ``keywords`` are the :class:`~databazaar.valuation.inference.VarianceOptions`
    (``n_jobs``, ``backend`` (threads by default), ``n_outer``, ``progress``, ...).
    Cost per point: ``O(M N)`` to scan the sorted rows plus ``O(M K Σ_s q_s)`` for the
    closed-form projection (``q_s`` = tie classes before the binomial tails saturate), so
    intervals for *all* points cost ``O(M N²)``: pass ``indices`` for large ``N``.
    """
    if random_state is not None:
        keywords["random_state"] = random_state
    opts = VarianceOptions.of(options, **keywords)
    res = knn_shapley(x_train, y_train, x_test, y_test, k=check_k(k), n_jobs=opts.n_jobs)
    oracle = knn_marginals(x_train, y_train, x_test, y_test, k)
    return shapley_confidence_intervals(
        res, oracle, confidence, method, indices=indices, include_stderr=False, options=opts
    )
