r"""Asymmetric Data Shapley (ADS): exact for KNN, Monte Carlo for any utility.

References:
    Zheng, Chang, Jia, Tan (2024). *Towards Data Valuation via Asymmetric Data Shapley.*
    arXiv:2411.00388.  Extended as Zheng, Huang, Chang, Jia, Tan (2025). *Rethinking Data
    Value: Asymmetric Data Shapley for Structure-Aware Valuation in Data Markets and ML
    Pipelines.* arXiv:2511.12863.
    Jia et al. (2019). *Efficient task-specific data valuation for nearest neighbor
    algorithms.* PVLDB 12(11) (the KNN utility).
    Frye, Rowat, Feige (2020). *Asymmetric Shapley values.* NeurIPS (the game-theoretic
    origin).

Definition.  The training set is partitioned into ordered groups ``σ = (D_1, ..., D_T)``
(originals before their augmentations, earlier stages before later ones, seller tiers...).
``Π_σ`` is the set of permutations in which every point of ``D_s`` precedes every point of
``D_t`` for ``s < t``; ``|Π_σ| = ∏_t |D_t|!``.  The ADS value of ``z`` is its marginal
contribution averaged uniformly over ``Π_σ``:

.. math::

    φ_σ(z) = \frac{1}{|Π_σ|} \sum_{π ∈ Π_σ} [v(P_π(z) ∪ \{z\}) - v(P_π(z))].

Equivalently, for ``z ∈ D_t`` with ``U_t = D_1 ∪ ... ∪ D_{t-1}``, ``φ_σ(z)`` is the
ordinary Shapley value of ``z`` in the game ``w_t(S) = v(U_t ∪ S)`` on the players
``D_t``.  Properties: efficiency ``Σ_z φ = v(D) - v(∅)``; *group efficiency*
``Σ_{z ∈ D_t} φ(z) = v(U_t ∪ D_t) - v(U_t)``; linearity; symmetry within a group; values
of earlier groups do not depend on later groups; ``T = 1`` is Data Shapley.

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

MC-ADS (any utility).  Sample ``π`` uniformly from ``Π_σ`` by shuffling each group and
concatenating the groups in order; scan ``π`` and record each point's marginal
contribution; average over ``m`` permutations.  The estimate is unbiased and, because the
marginals of a group telescope within every permutation, satisfies group efficiency
exactly.  Finite-sample bound (Hoeffding + union bound): if ``u`` takes values in an
interval of length ``r`` every marginal lies in ``[-r, r]``, so with probability at least
``1 - δ``

.. math::

    \max_z |\hat φ(z) - φ(z)| ≤ ε = r \sqrt{2 \ln(2N/δ) / m},

i.e. ``m = ⌈2 r² ln(2N/δ) / ε²⌉`` permutations (``N m`` utility calls) suffice; ``ε`` is
reported in ``params["hoeffding_epsilon"]``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from databazaar.core.errors import InvalidInput
from databazaar.valuation._validate import (
    check_chunk_size,
    check_k,
    check_random_state,
    check_train_test,
    encode_classes,
)
from databazaar.valuation.parallel import check_backend, check_n_jobs, parallel_map
from databazaar.valuation.result import ValuationResult

__all__ = [
    "AsymmetricShapley",
    "GroupOrder",
    "knn_asymmetric_shapley",
    "mc_asymmetric_shapley",
    "resolve_group_order",
]

ProgressFn = Callable[[int], None]

#: Memory budget (distance keys + sort order) of one chunk of test points.
DEFAULT_CHUNK_BYTES = 64 * 2**20
#: Permutations per Monte Carlo task (fixed, so results do not depend on ``n_jobs``).
DEFAULT_PERMUTATIONS_PER_TASK = 8


# -- groups and their order ---------------------------------------------------------------


@dataclass(frozen=True)
class GroupOrder:
    """A partition of ``0..n-1`` into ordered groups.

    Attributes:
        ids: group ids in order (``ids[0]`` comes first).
        rank: ``(n,)`` position of each point's group in ``ids``.
        members: indices of each group's points, in order of ``ids``.
    """

    ids: tuple[Any, ...]
    rank: np.ndarray
    members: tuple[np.ndarray, ...]

    @property
    def n_groups(self) -> int:
        return len(self.ids)

    @property
    def sizes(self) -> np.ndarray:
        return np.array([m.size for m in self.members], dtype=np.int64)

    @property
    def offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)

    def json_ids(self) -> list[Any]:
        return [_json_scalar(g) for g in self.ids]


def _json_scalar(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    return str(x)


def _is_missing(v: Any) -> bool:
    if v is None:
        return True
    try:
        return bool(v != v)  # NaN
    except (TypeError, ValueError):
        return False


def resolve_group_order(groups: Any, order: Sequence[Any] | None, n: int) -> GroupOrder:
    """Check ``groups`` (one id per point) and ``order`` (every id exactly once).

    ``groups=None`` puts every point in one group (ADS is then Data Shapley).  ``order``
    defaults to the sorted distinct ids.  Ids in ``order`` may also be given as strings
    matching ``str(id)`` (as a command line passes them).

    Raises:
        InvalidInput: wrong length, missing group ids, an id in ``order`` that no point
            has, a group missing from ``order``, or a repeated id in ``order``.
    """
    if groups is None:
        if order is not None and len(list(order)) > 1:
            raise InvalidInput(
                "order lists several groups but no groups were given",
                hint="pass groups=<one group id per training point>",
            )
        gid = next(iter(order)) if order is not None and len(list(order)) == 1 else 0
        return GroupOrder((gid,), np.zeros(n, dtype=np.int64), (np.arange(n, dtype=np.int64),))
    arr = np.asarray(groups.to_numpy() if hasattr(groups, "to_numpy") else groups)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.shape != (n,):
        raise InvalidInput(
            f"groups has shape {arr.shape}, expected ({n},): one group id per training point"
        )
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        first = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise InvalidInput(f"groups contains NaN or infinity (first at row {first})")
    if arr.dtype == object:
        bad = [i for i, v in enumerate(arr) if _is_missing(v)]
        if bad:
            raise InvalidInput(f"groups contains missing ids (None or NaN), first at row {bad[0]}")
    try:
        uniq, inv = np.unique(arr, return_inverse=True)
    except TypeError as exc:
        raise InvalidInput(f"group ids cannot be compared: {exc}", hint="use one id type") from exc
    inv = inv.reshape(-1)
    if order is None:
        ordered = list(uniq)
    else:
        if isinstance(order, (str, bytes)):
            raise InvalidInput(
                f"order must be a list of group ids, got the string {order!r}",
                hint="pass e.g. order=['original', 'augmented']",
            )
        ordered = list(order)
        if len(ordered) == 0:
            raise InvalidInput("order is empty", hint="list every group id once")
    index = {g: i for i, g in enumerate(uniq.tolist())}
    by_str = {str(g): i for i, g in enumerate(uniq.tolist())}
    if len(by_str) != len(index):
        by_str = {}
    pos: list[int] = []
    unknown: list[Any] = []
    for g in ordered:
        key = g.item() if isinstance(g, np.generic) else g
        try:
            hit = index.get(key)
        except TypeError:
            hit = None
        if hit is None:
            hit = by_str.get(str(key))
        if hit is None:
            unknown.append(key)
        else:
            pos.append(hit)
    if unknown:
        raise InvalidInput(
            f"order names group(s) {unknown!r} that no training point belongs to",
            hint=f"known groups: {[_json_scalar(g) for g in uniq.tolist()]}",
        )
    if len(set(pos)) != len(pos):
        dup = sorted({_json_scalar(uniq[p]) for p in pos if pos.count(p) > 1}, key=str)
        raise InvalidInput(
            f"order lists group(s) {dup!r} more than once", hint="list each group once"
        )
    missing = [_json_scalar(uniq[i]) for i in range(len(uniq)) if i not in set(pos)]
    if missing:
        raise InvalidInput(
            f"group(s) {missing!r} are missing from order",
            hint="order must list every group id exactly once",
        )
    rank_of_unique = np.empty(len(uniq), dtype=np.int64)
    rank_of_unique[np.asarray(pos, dtype=np.int64)] = np.arange(len(pos), dtype=np.int64)
    rank = rank_of_unique[inv]
    members = tuple(np.flatnonzero(rank == t).astype(np.int64) for t in range(len(pos)))
    return GroupOrder(tuple(uniq[p] for p in pos), rank, members)


def _group_result(
    values: np.ndarray, order: GroupOrder, counts: np.ndarray | None, method: str, params: dict
) -> ValuationResult:
    gvals = np.array([values[m].sum() for m in order.members])
    # every member of a group has the same sample count (test points or permutations)
    gcounts = None if counts is None else np.array([counts[m].max() for m in order.members])
    ids = np.empty(order.n_groups, dtype=object)
    ids[:] = [_json_scalar(g) for g in order.ids]
    return ValuationResult(
        gvals,
        None,
        gcounts,
        ids=ids,
        method=method,
        params={**params, "group_mode": "sum of member values"},
    )


# -- exact KNN-ADS ------------------------------------------------------------------------


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


def _blas_limit(backend: str, n_jobs: int) -> Any:
    """One BLAS thread per worker thread, so threads do not oversubscribe the cores."""
    import contextlib

    if backend == "threading" and n_jobs != 1:
        from threadpoolctl import threadpool_limits

        return threadpool_limits(limits=1, user_api="blas")
    return contextlib.nullcontext()


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
    backend: str = "joblib",
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
        backend: a :func:`~databazaar.valuation.parallel.parallel_map` backend
            (``"joblib"``, ``"threading"``, ``"ray"``...); results do not depend on it.
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
    backend = check_backend(backend)
    n_jobs = check_n_jobs(n_jobs)
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
    acc = np.zeros(n)
    acc2 = np.zeros(n)
    fn = functools.partial(_knn_chunk, problem)
    # results come back in chunk order whatever the backend, so sums are reproducible
    batch = max(1, 4 * max(n_jobs, 1)) if progress is not None else len(chunks)
    with _blas_limit(backend, n_jobs):
        for start in range(0, len(chunks), batch):
            part = chunks[start : start + batch]
            for a, b in parallel_map(
                fn, part, n_jobs=n_jobs, backend=backend, ray_address=ray_address
            ):
                acc += a
                acc2 += b
            if progress is not None:
                progress(sum(c.stop - c.start for c in part))
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


# -- Monte Carlo ADS ----------------------------------------------------------------------


def _n_players(utility: Any) -> int:
    n = getattr(utility, "n_players", None)
    if n is None:
        try:
            n = len(utility)
        except TypeError:
            n = None
    if n is None or isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise InvalidInput(
            "utility must be callable on index arrays and expose n_players",
            hint="use databazaar.valuation.Utility(model, x_train, y_train, x_test, y_test)",
        )
    if not callable(utility):
        raise InvalidInput("utility must be callable: u(indices) -> float")
    return int(n)


def _mc_block(
    utility: Any,
    members: tuple[np.ndarray, ...],
    empty_value: float,
    task: tuple[np.random.SeedSequence, int],
) -> tuple[np.ndarray, np.ndarray]:
    """Sum and sum of squares of marginals over ``n_perm`` order-consistent permutations."""
    from databazaar.valuation.sampling import permutation_marginals

    seed, n_perm = task
    rng = np.random.default_rng(seed)
    n = int(sum(m.size for m in members))
    s1 = np.zeros(n)
    s2 = np.zeros(n)
    for _ in range(n_perm):
        # a uniform draw from Π_σ: shuffle every group, concatenate the groups in order
        perm = np.concatenate([rng.permutation(m) for m in members])
        marg = permutation_marginals(utility, perm, u_start=empty_value)
        s1[perm] += marg
        s2[perm] += marg * marg
    return s1, s2


def hoeffding_epsilon(n: int, n_permutations: int, utility_range: float, delta: float) -> float:
    """``ε`` with ``P(max_z |φ̂(z) - φ(z)| > ε) ≤ δ`` (Hoeffding + union over ``n`` points)."""
    return float(utility_range * math.sqrt(2.0 * math.log(2.0 * n / delta) / n_permutations))


def permutations_for(
    n: int, epsilon: float, utility_range: float = 1.0, delta: float = 0.05
) -> int:
    """Permutations that guarantee ``max_z |φ̂ - φ| ≤ ε`` with probability ``1 - δ``."""
    if epsilon <= 0:
        raise InvalidInput(f"epsilon must be > 0, got {epsilon}")
    return math.ceil(2.0 * utility_range**2 * math.log(2.0 * n / delta) / epsilon**2)


def _seed_sequence(random_state: Any) -> np.random.SeedSequence:
    if isinstance(random_state, np.random.SeedSequence):
        return random_state
    if isinstance(random_state, np.random.Generator):
        return np.random.SeedSequence(int(random_state.integers(2**63)))
    check_random_state(random_state)
    return np.random.SeedSequence(None if random_state is None else int(random_state))


def mc_asymmetric_shapley(
    utility: Any,
    groups: Any = None,
    order: Sequence[Any] | None = None,
    n_permutations: int = 200,
    *,
    random_state: Any = None,
    n_jobs: int = 1,
    backend: str = "joblib",
    ray_address: str | None = None,
    utility_range: float = 1.0,
    delta: float = 0.05,
    progress: ProgressFn | None = None,
) -> ValuationResult:
    """Monte Carlo Asymmetric Data Shapley (MC-ADS) for any utility.

    Args:
        utility: a :class:`~databazaar.valuation.utility.Utility` or any callable
            ``u(indices) -> float`` with ``n_players``.
        groups, order: group id per point and the precedence order (see
            :func:`knn_asymmetric_shapley`).
        n_permutations: number of sampled order-consistent permutations ``m``; each costs
            ``N`` utility calls.  :func:`permutations_for` gives ``m`` for a target ``ε``.
        random_state: seed; the same seed gives the same values for every backend and
            ``n_jobs`` (permutations are drawn in fixed blocks from spawned seeds).
        n_jobs, backend, ray_address: see :func:`~databazaar.valuation.parallel.parallel_map`.
        utility_range: length ``r`` of the interval the utility takes values in (1 for
            accuracy), used for the reported Hoeffding bound.
        delta: failure probability of the reported bound.
        progress: called with the number of permutations finished.

    Returns:
        :class:`ValuationResult` with the mean marginals, their standard errors,
        ``counts = m`` and ``params["hoeffding_epsilon"]`` =
        ``r * sqrt(2 ln(2N/δ) / m)``: with probability ``≥ 1 - δ`` every value is within
        that distance of the exact ADS value.
    """
    n = _n_players(utility)
    if isinstance(n_permutations, bool) or not isinstance(n_permutations, (int, np.integer)):
        raise InvalidInput(f"n_permutations must be an integer >= 1, got {n_permutations!r}")
    if n_permutations < 1:
        raise InvalidInput(f"n_permutations must be >= 1, got {n_permutations}")
    if not (0.0 < float(delta) < 1.0):
        raise InvalidInput(f"delta must lie in (0, 1), got {delta}")
    if not (np.isfinite(utility_range) and utility_range > 0):
        raise InvalidInput(f"utility_range must be a positive number, got {utility_range}")
    backend = check_backend(backend)
    n_jobs = check_n_jobs(n_jobs)
    go = resolve_group_order(groups, order, n)
    m = int(n_permutations)
    per = DEFAULT_PERMUTATIONS_PER_TASK
    sizes = [per] * (m // per) + ([m % per] if m % per else [])
    seeds = _seed_sequence(random_state).spawn(len(sizes))
    empty_value = float(utility(np.empty(0, dtype=np.int64)))
    fn = functools.partial(_mc_block, utility, go.members, empty_value)
    tasks = list(zip(seeds, sizes, strict=True))
    s1 = np.zeros(n)
    s2 = np.zeros(n)
    batch = max(1, 4 * max(n_jobs, 1)) if progress is not None else len(tasks)
    for start in range(0, len(tasks), batch):
        part = tasks[start : start + batch]
        for a, b in parallel_map(fn, part, n_jobs=n_jobs, backend=backend, ray_address=ray_address):
            s1 += a
            s2 += b
        if progress is not None:
            progress(sum(t[1] for t in part))
    values = s1 / m
    var = np.maximum(s2 / m - values**2, 0.0) * (m / (m - 1) if m > 1 else 0.0)
    stderr = np.sqrt(var / m)
    counts = np.full(n, m, dtype=np.int64)
    eps = hoeffding_epsilon(n, m, float(utility_range), float(delta))
    params: dict[str, Any] = {
        "n_permutations": m,
        "order": go.json_ids(),
        "group_sizes": go.sizes.tolist(),
        "group_values": [float(values[mem].sum()) for mem in go.members],
        "utility_range": float(utility_range),
        "delta": float(delta),
        "hoeffding_epsilon": eps,
        "bound": "P(max_i |estimate_i - ADS_i| > hoeffding_epsilon) <= delta "
        "(Hoeffding + union bound, marginals in [-r, r])",
        "n_utility_calls": m * n + 1,
    }
    return ValuationResult(values, stderr, counts, method="mc-asymmetric-shapley", params=params)


# -- estimator ----------------------------------------------------------------------------


class AsymmetricShapley(BaseEstimator):
    """Asymmetric Data Shapley, scikit-learn style (``get_params``/``set_params`` work).

    ``method="knn"``: ``fit(x_train, y_train, x_test, y_test, groups=..., order=...)``
    computes exact KNN-ADS.  ``method="mc"``: ``fit(utility, groups=..., order=...)`` runs
    MC-ADS with any :class:`~databazaar.valuation.utility.Utility`.

    Attributes (after ``fit``):
        result_: point-level :class:`ValuationResult`.
        group_result_: group-level :class:`ValuationResult` (ids = group ids in order,
            values = sums of member values, which equal ``v(U_t ∪ D_t) - v(U_t)``).
        group_values_: ``{group id: value}`` in order.
        order_: the group ids in order.

    Example:
        >>> import numpy as np
        >>> x = np.array([[0.0], [0.1], [0.1], [3.0]]); y = np.array([0, 0, 0, 1])
        >>> ads = AsymmetricShapley(k=1).fit(x, y, [[0.05]], [0], groups=[0, 0, 1, 1],
        ...                                  order=[0, 1])
        >>> ads.group_values_
        {0: 1.0, 1: 0.0}
    """

    def __init__(
        self,
        k: int = 5,
        method: str = "knn",
        order: Sequence[Any] | None = None,
        n_jobs: int = 1,
        backend: str = "joblib",
        random_state: Any = None,
        *,
        n_permutations: int = 200,
        ray_address: str | None = None,
        chunk_size: int | None = None,
        utility_range: float = 1.0,
        delta: float = 0.05,
        progress: ProgressFn | None = None,
    ) -> None:
        self.k = k
        self.method = method
        self.order = order
        self.n_jobs = n_jobs
        self.backend = backend
        self.random_state = random_state
        self.n_permutations = n_permutations
        self.ray_address = ray_address
        self.chunk_size = chunk_size
        self.utility_range = utility_range
        self.delta = delta
        self.progress = progress

    def fit(
        self, *args: Any, groups: Any = None, order: Sequence[Any] | None = None
    ) -> AsymmetricShapley:
        order = self.order if order is None else order
        if self.method == "knn":
            if len(args) != 4:
                raise InvalidInput(
                    "method='knn' needs fit(x_train, y_train, x_test, y_test, groups=, order=)"
                )
            res = knn_asymmetric_shapley(
                *args,
                groups=groups,
                order=order,
                k=self.k,
                n_jobs=self.n_jobs,
                backend=self.backend,
                ray_address=self.ray_address,
                chunk_size=self.chunk_size,
                progress=self.progress,
            )
        elif self.method == "mc":
            if len(args) != 1:
                raise InvalidInput("method='mc' needs fit(utility, groups=, order=)")
            res = mc_asymmetric_shapley(
                args[0],
                groups=groups,
                order=order,
                n_permutations=self.n_permutations,
                random_state=self.random_state,
                n_jobs=self.n_jobs,
                backend=self.backend,
                ray_address=self.ray_address,
                utility_range=self.utility_range,
                delta=self.delta,
                progress=self.progress,
            )
        else:
            raise InvalidInput(f"unknown method {self.method!r}", hint="use 'knn' or 'mc'")
        go_ids = res.params["order"]
        n = len(res)
        go = resolve_group_order(groups, go_ids if groups is not None else None, n)
        self.result_ = res
        self.order_ = go_ids
        self.group_result_ = _group_result(res.values, go, res.counts, res.method, res.params)
        self.group_values_ = {
            g: float(v) for g, v in zip(go_ids, self.group_result_.values, strict=True)
        }
        return self

    @property
    def values_(self) -> np.ndarray:
        return self.result_.values
