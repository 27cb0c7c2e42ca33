r"""Exact Asymmetric Data Shapley for the KNN utility (KNN-ADS).

The definition of ADS is in :mod:`databazaar.valuation.asymmetric`.

Exact KNN-ADS (our derivation; the papers give a case-split recursion with correction
terms whose cost is ``O(N log N + K² N)`` per test point, see docs/asymmetric.md).  The KNN
utility of one test point ``(x, y)`` is ``v(S) = (1/K) Σ_{j ≤ min(K, |S|)} c_{α_j(S)}``,
``c_p = 1[y_p = y]``, ``α_j(S)`` the ``j``-th nearest neighbour of ``x`` in ``S`` (distance
ties broken by the training index).  It is a sum of per-point games
``v(S) = Σ_p (c_p / K) g_p(S)`` with ``g_p(S) = 1[p ∈ S and fewer than K points of S are
closer than p]``, and each ``g_p`` restricted to ``U_t ∪ S`` has a closed-form Shapley
value on the players ``D_t``.  Let ``v_1, ..., v_n`` be group ``t`` sorted by distance and
``β_l`` the number of ``U_t`` points closer than ``v_l``, ``K'_l = K - β_l``:

* ``p = v_l`` (only ``v_l`` and the ``l - 1`` closer group points matter): if
  ``K'_l > 0``, ``v_l`` gets ``min(K'_l, l)/l`` and each closer group point gets
  ``-K'_l / (l (l - 1))`` when ``K'_l < l``;
* ``p = u ∈ U_t`` with ``a`` points of ``U_t`` and ``c`` points of ``D_t`` closer than
  it: when ``a < K ≤ a + c`` each of those ``c`` group points gets ``-1/c``.

Hence, for ``z = v_j``,

.. math::

    K φ(v_j) = c_{v_j} \frac{\min(K'_j, j)}{j}[K'_j > 0]
      - \sum_{l > j,\ 0 < K'_l < l} \frac{c_{v_l} K'_l}{l (l - 1)}
      - \sum_{u ∈ U_t:\ a_u < K ≤ a_u + c_u,\ v_j \text{ closer than } u} \frac{c_u}{c_u^{(t)}}

where ``c_u^{(t)}`` is the number of group-``t`` points closer than ``u``.  Only the first
``K`` points of each ``U_t`` contribute to the last sum, so one pass over the sorted
training points costs ``O(N log T + K T)`` per test point after the ``O(N log N)`` sort.
With ``T = 1`` this is exactly Jia et al.'s recursion; it is checked against brute-force
enumeration of ``Π_σ`` in the tests.

References:
    Zheng, Chang, Jia, Tan (2024). *Towards Data Valuation via Asymmetric Data Shapley.*
    arXiv:2411.00388.
    Jia et al. (2019). *Efficient task-specific data valuation for nearest neighbor
    algorithms.* PVLDB 12(11) (the KNN utility).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from databazaar.core.parallel import ParallelConfig
from databazaar.valuation._validate import (
    check_chunk_size,
    check_k,
    check_train_test,
    encode_classes,
)
from databazaar.valuation.groups import resolve_group_order
from databazaar.valuation.result import ValuationResult

__all__ = ["check_knn_data", "distinct_rows", "knn_asymmetric_shapley", "sorted_order"]

ProgressFn = Callable[[int], None]

#: Memory budget (distance keys + sort order) of one chunk of test points.
DEFAULT_CHUNK_BYTES = 64 * 2**20


@dataclass
class _KNNProblem:
    """Everything a worker needs for a chunk of test points (picklable)."""

    x_unique: np.ndarray  # distinct training rows (all rows when there are no duplicates)
    inverse: np.ndarray | None  # training row -> distinct row, None without duplicates
    sq_unique: np.ndarray
    x_test: np.ndarray
    y_train: np.ndarray  # int64 codes
    y_test: np.ndarray
    rank: np.ndarray
    offsets: np.ndarray
    n_groups: int
    k: int

    def order(self, rows: slice) -> np.ndarray:
        """Training indices of each test point, nearest first, ties by index."""
        keys = self.x_test[rows] @ self.x_unique.T
        keys *= -2.0
        keys += self.sq_unique
        if self.inverse is not None:
            # duplicated training rows share one column, so their distances tie exactly
            keys = keys[:, self.inverse]
        return sorted_order(keys)

    def run(self, rows: slice) -> tuple[np.ndarray, np.ndarray]:
        from databazaar.valuation import _ads_kernels as kern

        n = self.rank.shape[0]
        acc = np.zeros(n)
        acc2 = np.zeros(n)
        kern.ads_accumulate(
            self.order(rows),
            self.rank,
            self.y_train,
            self.y_test[rows],
            self.offsets,
            self.n_groups,
            self.k,
            acc,
            acc2,
        )
        return acc, acc2


def _knn_chunk(problem: _KNNProblem, rows: slice) -> tuple[np.ndarray, np.ndarray]:
    return problem.run(rows)


def distinct_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """``(distinct rows, inverse)``, or ``(x, None)`` when no row is repeated."""
    x_unique, inverse = np.unique(x, axis=0, return_inverse=True)
    if x_unique.shape[0] == x.shape[0]:
        return x, None
    return np.ascontiguousarray(x_unique), inverse.reshape(-1).astype(np.int64)


def sorted_order(keys: np.ndarray) -> np.ndarray:
    """Row-wise argsort of ``keys`` with ties broken by column index.

    A quicksort first; rows that contain equal keys are sorted again stably (ties are
    rare in continuous data, so most rows keep the cheaper sort).
    """
    order = np.argsort(keys, axis=1)
    sk = np.take_along_axis(keys, order, axis=1)
    tied = np.flatnonzero((sk[:, 1:] == sk[:, :-1]).any(axis=1))
    if tied.size:
        order[tied] = np.argsort(keys[tied], axis=1, kind="stable")
    return order.astype(np.int64, copy=False)


def check_knn_data(
    x_train: Any, y_train: Any, x_test: Any, y_test: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Validate a KNN valuation problem; returns features and label codes."""
    xtr, ytr, xte, yte = check_train_test(x_train, y_train, x_test, y_test)
    ytr_c, yte_c, _ = encode_classes(ytr, yte)
    return xtr, ytr_c, xte, yte_c


def _chunk_rows(n_train: int, chunk_size: int | None) -> int:
    if chunk_size is not None:
        return check_chunk_size(chunk_size)
    return int(max(1, min(256, DEFAULT_CHUNK_BYTES // (24 * max(n_train, 1)))))


def knn_asymmetric_shapley(
    x_train: Any,
    y_train: Any,
    x_test: Any,
    y_test: Any,
    groups: Any = None,
    order: Sequence[Any] | None = None,
    k: int = 5,
    *,
    n_jobs: int = 1,
    backend: str = "threads",
    ray_address: str | None = None,
    chunk_size: int | None = None,
    progress: ProgressFn | None = None,
) -> ValuationResult:
    """Exact KNN Asymmetric Data Shapley value of every training point.

    Args:
        x_train, y_train: training features and labels (any label type).
        x_test, y_test: the test set the KNN utility is measured on.
        groups: one group id per training point (array, list or pandas column); ``None``
            puts all points in one group, which gives exact KNN-Shapley.
        order: the group ids in precedence order (earliest first); defaults to the
            sorted distinct ids.
        k: number of neighbours ``K >= 1``.
        n_jobs: parallel workers over chunks of test points.
        backend: ``"threads"`` (default), ``"processes"`` or ``"ray"``
            (:mod:`databazaar.core.parallel`); results do not depend on it.
        ray_address: an existing Ray cluster for ``backend="ray"``.
        chunk_size: test points per chunk (default: ~64 MiB of distances per chunk).
        progress: called with the number of test points finished after each chunk.

    Returns:
        :class:`ValuationResult` with one value per training point (the average over
        test points), ``stderr`` = standard error over test points, and in ``params`` the
        group order, group sizes and group values (sums).  Cost: ``O(M N log N)`` for the
        sorts plus ``O(M (N log T + K T))`` for the values.

    Raises:
        InvalidInput: bad features/labels, ``k < 1``, or an inconsistent group order.
    """
    k = check_k(k)
    parallel = ParallelConfig(n_jobs, backend, ray_address)
    xtr, ytr, xte, yte = check_knn_data(x_train, y_train, x_test, y_test)
    n, m = xtr.shape[0], xte.shape[0]
    go = resolve_group_order(groups, order, n)
    x_unique, inverse = distinct_rows(xtr)
    problem = _KNNProblem(
        x_unique,
        inverse,
        np.einsum("ij,ij->i", x_unique, x_unique),
        xte,
        ytr,
        yte,
        go.rank,
        go.offsets,
        go.n_groups,
        k,
    )
    rows = _chunk_rows(n, chunk_size)
    chunks = [slice(s, min(s + rows, m)) for s in range(0, m, rows)]
    fn = functools.partial(_knn_chunk, problem)
    with parallel.thread_blas():
        # results come back in chunk order whatever the backend, so sums are reproducible
        outs = parallel.map(fn, chunks, progress, weight=lambda c: c.stop - c.start)
    acc = np.sum([a for a, _ in outs], axis=0)
    acc2 = np.sum([b for _, b in outs], axis=0)
    values = acc / m
    var = np.maximum(acc2 / m - values**2, 0.0)
    stderr = np.sqrt(var / (m - 1)) if m > 1 else np.zeros(n)
    counts = np.full(n, m, dtype=np.int64)
    gvals = [float(values[mem].sum()) for mem in go.members]
    params: dict[str, Any] = {
        "k": k,
        "order": go.json_ids(),
        "group_sizes": go.sizes.tolist(),
        "group_values": gvals,
        "n_train": n,
        "n_test": m,
        "tie_break": "distance, then training index",
        "utility": "KNN likelihood of the test label (Jia et al. 2019), v(empty) = 0",
    }
    return ValuationResult(values, stderr, counts, method="knn-asymmetric-shapley", params=params)
