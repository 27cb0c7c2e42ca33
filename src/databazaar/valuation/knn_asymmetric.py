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
from databazaar.valuation._neighbours import (
    NeighbourKeys,
    check_knn_data,
    chunk_rows,
    chunks,
    sorted_order,
)
from databazaar.valuation._validate import check_k, warn_degenerate
from databazaar.valuation.groups import resolve_group_order
from databazaar.valuation.result import ValuationResult

__all__ = ["knn_asymmetric_shapley"]

ProgressFn = Callable[[int], None]

#: Memory budget (distance keys + sort order) of one chunk of test points.
DEFAULT_CHUNK_BYTES = 64 * 2**20


@dataclass
class _KNNProblem:
    """Everything a worker needs for a chunk of test points (picklable)."""

    nk: NeighbourKeys
    x_test: np.ndarray
    y_train: np.ndarray  # int64 codes
    y_test: np.ndarray
    rank: np.ndarray
    offsets: np.ndarray
    n_groups: int
    k: int

    def run(self, rows: slice) -> tuple[np.ndarray, np.ndarray]:
        from databazaar.valuation import _ads_kernels as kern

        n = self.rank.shape[0]
        acc = np.zeros(n)
        acc2 = np.zeros(n)
        keys = self.nk.keys(self.x_test[rows])
        kern.ads_accumulate(
            sorted_order(keys),
            keys,
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
    warn_degenerate(ytr, k)
    problem = _KNNProblem(
        NeighbourKeys.of(xtr),
        xte,
        ytr,
        yte,
        go.rank,
        go.offsets,
        go.n_groups,
        k,
    )
    rows = chunk_rows(
        n, m, parallel.workers, chunk_size, budget_bytes=DEFAULT_CHUNK_BYTES, bytes_per_cell=24
    )
    fn = functools.partial(_knn_chunk, problem)
    with parallel.thread_blas():
        # results come back in chunk order whatever the backend, so sums are reproducible
        outs = parallel.map(fn, chunks(m, rows), progress, weight=lambda c: c.stop - c.start)
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
        "ties": "expected utility under uniformly random tie-breaking",
        "utility": "KNN likelihood of the test label (Jia et al. 2019), v(empty) = 0",
    }
    return ValuationResult(values, stderr, counts, method="knn-asymmetric-shapley", params=params)
