"""Exact KNN-Shapley: classification, regression and threshold variants.

References:
    Jia, Dao, Wang, Hubis, Gurel, Li, Zhang, Spanos, Song (2019). *Efficient task-specific
    data valuation for nearest neighbor algorithms.* PVLDB 12(11). Theorem 1 (unweighted
    KNN classifier) and the regression case.
    Wang, Zhu, Wang, Jia, Mittal (2023). *Threshold KNN-Shapley: a linear-time and
    privacy-friendly approach to data valuation.* NeurIPS.

The utility of a training subset ``S`` for one test point is a function of the labels
of its nearest neighbours in ``S``; the value of a training point is the average of its
exact Shapley values over the test points (linearity).  One sort per test point gives
all values, so the cost is ``O(M N log N)`` for ``M`` test and ``N`` training points.

Ties.  Training points at exactly the same distance from a test point (equal float64
keys, see :mod:`databazaar.valuation._neighbours`) form a tie class, and the utility of
``S`` is its expected value when tied points are ordered uniformly at random:
``v(S) = E_π[v_π(S)]``; only the class straddling the ``K``-th place matters, and it fills
the ``r`` free places with its mean label score (``r C_b / n_b``).  Tied points are then
interchangeable, so the values satisfy the symmetry axiom (identical rows with the same
label get identical values, and the values do not depend on the row order), and because
Shapley values are linear in the utility they equal the average of the strict-order
values over all orders of the tied points.  For classification, with
``f(l) = min(K, l)/l`` and ``w(l) = K/(l(l-1))`` for ``l > K`` (else 0), a point in tie
class ``G`` (positions ``a+1..a+g``, ``C_G`` correct labels) gets

``K φ(z) = c_z mean_G f - Σ_{G' farther} C_G' mean_G' w - (C_G - c_z) Σ_{j<g} j w(a+1+j)/(g(g-1))``,

which is Jia et al.'s Theorem 1 when there are no ties (``g = 1``), at the same cost.
pyDVL and scikit-learn instead keep the one order their sort leaves tied neighbours in,
so on tied data their values depend on the row order (docs/valuation.md, "Ties").
Threshold KNN-Shapley needs no rule: it only asks whether ``d <= tau``.

How it runs: test points are processed in chunks.  For a chunk, squared distances up to
a per-row constant (``|x|^2 - 2 t.x``, in float64 so the order agrees with
scikit-learn's exact neighbours) are computed by one matrix product, a compiled radix sort
(:func:`~databazaar.valuation._neighbours.sorted_order`) orders each row, and a
compiled kernel (cached on disk by numba) values each tie class and scatter-adds the
values.  Chunks go to worker threads (the sort and the kernels release the GIL), processes or Ray
tasks through :class:`~databazaar.core.parallel.ParallelConfig`, so memory stays bounded
by ``chunk_size x N`` per worker whatever ``M`` is.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from databazaar.core.errors import InvalidInput
from databazaar.core.parallel import ParallelConfig, check_backend
from databazaar.valuation._neighbours import NeighbourKeys, chunk_rows, chunks, sorted_order
from databazaar.valuation._validate import (
    check_groups,
    check_k,
    check_train_test,
    encode_classes,
    warn_degenerate,
)
from databazaar.valuation.result import ValuationResult

ProgressFn = Callable[[int], None]

#: Memory budget for the distance keys and sort order of one chunk, per worker.
DEFAULT_CHUNK_BYTES = 128 * 2**20

_TASKS = ("classification", "regression", "threshold")


def _resolve_jobs(n_jobs: int | None) -> int:
    if n_jobs is None or n_jobs == 0:
        return 1
    if not isinstance(n_jobs, (int, np.integer)) or isinstance(n_jobs, bool):
        raise InvalidInput(f"n_jobs must be an integer, got {n_jobs!r}")
    cpus = os.cpu_count() or 1
    if n_jobs < 0:
        return max(1, cpus + 1 + int(n_jobs))
    return int(n_jobs)


@dataclass
class _Problem:
    nk: NeighbourKeys
    x_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray
    kind: str  # classification | regression | threshold
    k: int = 0
    tau2: float = 0.0
    n_classes: int = 2
    weights: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def n_train(self) -> int:
        return self.nk.n_train

    def accumulate(self, rows: slice, acc: np.ndarray, acc2: np.ndarray) -> None:
        from databazaar.valuation import _knn_kernels as kern

        yte = self.y_test[rows]
        if self.kind == "threshold":
            sqdist = self.nk.squared_distances(self.x_test[rows])
            kern.threshold_accumulate(
                sqdist, self.y_train, yte, self.tau2, self.n_classes, acc, acc2
            )
            return
        keys = self.nk.keys(self.x_test[rows])
        order = sorted_order(keys)
        if self.kind == "classification":
            f, w = self.weights or kern.position_weights(self.n_train, self.k)
            kern.classification_accumulate(order, keys, self.y_train, yte, self.k, acc, acc2, f, w)
        else:
            work = np.empty(self.n_train + 2)
            kern.regression_accumulate(order, keys, self.y_train, yte, self.k, acc, acc2, work)


def _chunk_values(problem: _Problem, part: list[slice]) -> tuple[np.ndarray, np.ndarray]:
    n = problem.n_train
    acc = np.zeros(n)
    acc2 = np.zeros(n)
    for sl in part:
        problem.accumulate(sl, acc, acc2)
    return acc, acc2


def _finish(
    problem: _Problem,
    run: tuple[ParallelConfig, int | None, ProgressFn | None],
    *,
    groups: Any,
    method: str,
    params: dict[str, Any],
) -> ValuationResult:
    """Values of ``problem``; ``run`` is (parallel setting, chunk size, progress)."""
    parallel, chunk_size, progress = run
    n_train = problem.n_train
    n_test = problem.x_test.shape[0]
    rows = chunk_rows(
        n_train, n_test, parallel.n_jobs, chunk_size, budget_bytes=DEFAULT_CHUNK_BYTES
    )
    parts = chunks(n_test, rows)
    # a few chunks per task and a few tasks per worker at a time: memory stays at about
    # two accumulators per worker whatever M is, and sums run in chunk order whatever the
    # backend, so results are reproducible
    per_task = max(1, -(-len(parts) // (8 * parallel.workers)))
    tasks = [parts[i : i + per_task] for i in range(0, len(parts), per_task)]
    acc = np.zeros(n_train)
    acc2 = np.zeros(n_train)
    step = 2 * parallel.workers
    with parallel.thread_blas():
        for start in range(0, len(tasks), step):
            outs = parallel.map(
                functools.partial(_chunk_values, problem),
                tasks[start : start + step],
                progress,
                weight=lambda part: sum(sl.stop - sl.start for sl in part),
            )
            for a, b in outs:
                acc += a
                acc2 += b
    values = acc / n_test
    # spread of the per-test-point values: the standard error of the mean over test points
    var = np.maximum(acc2 / n_test - values**2, 0.0)
    stderr = np.sqrt(var / max(n_test - 1, 1)) if n_test > 1 else np.zeros(n_train)
    counts = np.full(n_train, n_test, dtype=np.int64)
    params = {**params, "n_train": n_train, "n_test": n_test}
    if groups is None:
        return ValuationResult(values, stderr, counts, method=method, params=params)
    ids, inv = check_groups(groups, n_train)
    gvalues = np.bincount(inv, weights=values, minlength=len(ids))
    gcounts = np.bincount(inv, minlength=len(ids)).astype(np.int64) * n_test
    params["group_mode"] = "sum of member values"
    return ValuationResult(gvalues, None, gcounts, ids=ids, method=method, params=params)


def _parallel(n_jobs: int | None, backend: str, ray_address: str | None) -> ParallelConfig:
    check_backend(backend)
    return ParallelConfig(_resolve_jobs(n_jobs), backend, ray_address)


def knn_shapley(
    x_train: Any,
    y_train: Any,
    x_test: Any,
    y_test: Any,
    k: int = 5,
    *,
    task: str = "classification",
    tau: float | None = None,
    groups: Any = None,
    n_jobs: int | None = 1,
    chunk_size: int | None = None,
    backend: str = "threads",
    ray_address: str | None = None,
    progress: ProgressFn | None = None,
) -> ValuationResult:
    """Exact KNN-Shapley values of every training point.

    Args:
        x_train, y_train: training features (array or DataFrame) and labels of any type
            (numeric targets for ``task="regression"``).
        x_test, y_test: the test (validation) set the values are measured on.
        k: number of neighbours, ``>= 1`` (not used by ``task="threshold"``).
        task: ``"classification"`` (Jia et al. 2019, Theorem 1: utility is the fraction
            of the K nearest neighbours with the test label), ``"regression"`` (utility
            is minus the squared error of the mean target of the K nearest neighbours)
            or ``"threshold"`` (Threshold KNN-Shapley, :func:`threshold_knn_shapley`).
        tau: the radius of ``task="threshold"`` (and only of it).
        groups: optional group id per training point; returns one value per group, the
            sum of its members' values.
        n_jobs: worker threads (``-1`` for all cores) or Ray CPUs for a local Ray.
        chunk_size: test points per chunk; default fits ~128 MiB per worker.
        backend: ``"threads"`` (default), ``"processes"`` or ``"ray"``
            (:mod:`databazaar.core.parallel`).
        ray_address: address of an existing Ray cluster (``backend="ray"``).
        progress: called with the number of test points finished after each chunk.

    Returns:
        A :class:`ValuationResult` whose ``values`` average the per-test-point Shapley
        values and whose ``stderr`` is their standard error over the test points.
    """
    if task not in _TASKS:
        raise InvalidInput(f"unknown task {task!r}", hint=f"use one of {', '.join(_TASKS)}")
    if tau is not None and task != "threshold":
        raise InvalidInput(
            f"tau is the radius of task='threshold', not of task={task!r}",
            hint="drop tau, or pass task='threshold' (threshold_knn_shapley)",
        )
    parallel = _parallel(n_jobs, backend, ray_address)
    run = (parallel, chunk_size, progress)
    if task == "threshold":
        return _threshold(x_train, y_train, x_test, y_test, tau, groups, run)
    k = check_k(k)
    regression = task == "regression"
    xtr, ytr, xte, yte = check_train_test(x_train, y_train, x_test, y_test, numeric_y=regression)
    warn_degenerate(ytr, k, classes=not regression)
    if regression:
        ytr_enc, yte_enc = ytr.astype(np.float64), yte.astype(np.float64)
    else:
        ytr_enc, yte_enc, _ = encode_classes(ytr, yte)
    problem = _Problem(NeighbourKeys.of(xtr), xte, ytr_enc, yte_enc, task, k=k)
    if not regression:
        from databazaar.valuation._knn_kernels import position_weights

        problem.weights = position_weights(xtr.shape[0], k)
    return _finish(
        problem,
        run,
        groups=groups,
        method="knn-shapley" if not regression else "knn-shapley-regression",
        params={"k": k, "task": task},
    )


def _threshold(
    x_train: Any,
    y_train: Any,
    x_test: Any,
    y_test: Any,
    tau: Any,
    groups: Any,
    run: tuple[ParallelConfig, int | None, ProgressFn | None],
) -> ValuationResult:
    try:
        tau_f = float(tau)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"tau must be a positive number, got {tau!r}") from exc
    if not np.isfinite(tau_f) or tau_f <= 0:
        raise InvalidInput(f"tau must be a positive finite number, got {tau!r}")
    xtr, ytr, xte, yte = check_train_test(x_train, y_train, x_test, y_test)
    warn_degenerate(ytr)
    ytr_enc, yte_enc, n_classes = encode_classes(ytr, yte)
    problem = _Problem(
        NeighbourKeys.of(xtr),
        xte,
        ytr_enc,
        yte_enc,
        "threshold",
        tau2=tau_f * tau_f,
        n_classes=max(n_classes, 1),
    )
    return _finish(
        problem,
        run,
        groups=groups,
        method="threshold-knn-shapley",
        params={"tau": tau_f, "n_classes": n_classes},
    )


def knn_regression_shapley(
    x_train: Any, y_train: Any, x_test: Any, y_test: Any, k: int = 5, **kwargs: Any
) -> ValuationResult:
    """Exact KNN-Shapley for KNN regression; see :func:`knn_shapley`."""
    return knn_shapley(x_train, y_train, x_test, y_test, k, task="regression", **kwargs)


def threshold_knn_shapley(
    x_train: Any, y_train: Any, x_test: Any, y_test: Any, tau: float, **kwargs: Any
) -> ValuationResult:
    """Exact Threshold KNN-Shapley (Wang et al. 2023): neighbours are all training points
    within Euclidean distance ``tau`` of the test point; ``O(N)`` per test point, no sort.

    The number of classes ``C`` (for the ``1/C`` score of an empty neighbourhood) counts
    the distinct labels in the training and test sets together.  The keywords
    (``groups``, ``n_jobs``, ``chunk_size``, ``backend``, ``ray_address``, ``progress``)
    are :func:`knn_shapley`'s; this is ``knn_shapley(..., task="threshold", tau=tau)``.
    """
    return knn_shapley(x_train, y_train, x_test, y_test, task="threshold", tau=tau, **kwargs)


class _KNNEstimator:
    """Shared scikit-learn-style wrapper: parameters in ``__init__``, work in ``fit``."""

    def __init__(
        self,
        *,
        n_jobs: int | None = 1,
        chunk_size: int | None = None,
        backend: str = "threads",
        ray_address: str | None = None,
    ) -> None:
        self.n_jobs = n_jobs
        self.chunk_size = chunk_size
        self.backend = backend
        self.ray_address = ray_address

    def _compute(self, *data: Any, **kwargs: Any) -> ValuationResult:
        raise NotImplementedError

    def fit(
        self,
        x_train: Any,
        y_train: Any,
        x_test: Any,
        y_test: Any,
        groups: Any = None,
        progress: ProgressFn | None = None,
    ):  # type: ignore[no-untyped-def]
        """Value the training points on the test set; sets ``result_`` and ``values_``."""
        self.result_ = self._compute(
            x_train,
            y_train,
            x_test,
            y_test,
            groups=groups,
            n_jobs=self.n_jobs,
            chunk_size=self.chunk_size,
            backend=self.backend,
            ray_address=self.ray_address,
            progress=progress,
        )
        self.values_ = self.result_.values
        return self


class KNNShapley(_KNNEstimator):
    """Estimator form of :func:`knn_shapley` (scikit-learn conventions).

    >>> est = KNNShapley(k=5).fit(x_train, y_train, x_test, y_test)  # doctest: +SKIP
    >>> est.values_[:3], est.result_.to_frame().head()                 # doctest: +SKIP
    """

    def __init__(self, k: int = 5, *, task: str = "classification", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.k = k
        self.task = task

    def _compute(self, xtr: Any, ytr: Any, xte: Any, yte: Any, **kwargs: Any) -> ValuationResult:
        return knn_shapley(xtr, ytr, xte, yte, self.k, task=self.task, **kwargs)


class ThresholdKNNShapley(_KNNEstimator):
    """Estimator form of :func:`threshold_knn_shapley`."""

    def __init__(self, tau: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tau = tau

    def _compute(self, xtr: Any, ytr: Any, xte: Any, yte: Any, **kwargs: Any) -> ValuationResult:
        return threshold_knn_shapley(xtr, ytr, xte, yte, self.tau, **kwargs)
