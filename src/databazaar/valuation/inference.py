r"""Confidence intervals for Data Shapley values from the U-statistics view.

Reference:
    Wu, Liu, Li, Jia, Chang (2024). *Uncertainty Quantification of Data Shapley via
    Statistical Inference.* arXiv:2407.19373.  The paper writes Data Shapley as an
    infinite-order U-statistic, proves asymptotic normality of its Monte Carlo
    (incomplete U-statistic) estimator under deletion stability, and gives two variance
    estimators, *Double Monte Carlo* and *Pick-and-Freeze*.  Only the abstract and
    summaries of that paper were available to us; the estimators below are our own
    derivation of those two algorithms from standard infinite-order U-statistic theory
    (Hoeffding/Hájek projection; Mentch & Hooker 2016 for the nested estimator; Sobol's
    pick-and-freeze for the covariance one).  See docs/asymmetric.md.

Set-up.  The training set ``D = {z} ∪ {Z_1, ..., Z_{n-1}}`` with ``Z_i`` i.i.d. from ``P``,
the test set (hence the utility ``v``) fixed.  With ``h(S) = v(S ∪ {z}) - v(S)``,

.. math::

    φ_n(z) = \frac1n \sum_{k=0}^{n-1} U_k, \qquad
    U_k = \binom{n-1}{k}^{-1} \sum_{|S| = k,\ S ⊆ D∖z} h(S),

a mixture of U-statistics of every order (an infinite-order U-statistic as ``n`` grows).
Its target is the distributional value ``E_P[φ_n(z)]``.  The Hájek projection gives

.. math::

    φ_n(z) - E φ_n(z) ≈ \sum_{i=1}^{n-1} [r(Z_i) - E r],\qquad
    r(x) = \frac1n \sum_k \frac{k}{n-1} E[h(S) \mid x ∈ S, |S| = k]
         = \tfrac12\, E_{k ∝ k}\, E[h(S) \mid x ∈ S, |S| = k],

so ``Var φ_n(z) ≈ (n - 1) ζ / 4`` with ``ζ = Var_x(E[h(S) | x ∈ S])`` where ``|S| = k`` is
drawn with probability proportional to ``k`` (``k = 1..n-1``) and ``S`` is ``x`` plus a
uniform ``(k-1)``-subset of the other points.  ``ζ`` is the variance of a conditional
expectation, the quantity both algorithms estimate from the one observed data set:

*Double Monte Carlo* (nested): ``L`` anchor points ``x_l`` drawn without replacement from
``D ∖ z``; for each, ``M`` subsets containing it; ``ζ̂ = s²(row means) - mean(row
variances) / M`` (the inner Monte Carlo noise removed).  ``2 L M`` utility calls.

*Pick-and-Freeze*: ``B`` pairs ``(S, S')`` drawn independently given a shared, "frozen"
random point ``x``; ``ζ̂ = `` sample covariance of ``(h(S), h(S'))`` (given ``x`` the two
draws are independent, so their covariance is ``Var_x E[h | x]``).  ``4 B`` utility calls,
no nesting.

The interval is ``φ̂ ± z_{(1+c)/2} \sqrt{(n-1) ζ̂ / 4 + se_{MC}^2}``, where ``se_MC`` is the
Monte Carlo standard error of a sampled estimate (0 for exact KNN-Shapley).

Which to use (``method="default"`` = double Monte Carlo).  We could not read the
paper's own recommendation (only its abstract says it gives one).  Our analysis and
coverage study favour the nested estimator: the pick-and-freeze covariance has variance
of order ``Var(h)^2 / B`` while ``Var(h) >> ζ`` for data values, so it needs far more
utility calls for the same precision; the nested estimator removes the inner noise
explicitly, and for the KNN utility both its loops are exact.  Deviation from a naive
reading: the other members of each subset are drawn *with replacement* from
``D ∖ z`` (i.i.d. from the empirical distribution); drawing them without replacement
shrinks the projection by about ``(n - 1 - s) / (n - 2)`` (exact for a linear kernel),
which halved ``ζ̂`` in our tests.

When the intervals are calibrated.  The Hájek term is the first-order part of the
variance; the paper's normality result assumes *deletion stability* (one point changes
the utility by ``o(1)``).  A KNN prediction moves by up to ``1/K`` when one point is
removed, so ``K`` must grow with ``n``: with ``K = ceil(sqrt(n))`` the double Monte Carlo
95% intervals covered 0.942-0.958 for ``n = 50..1600`` (``benchmarks/results/
ci_coverage.md``); with ``K = 5`` fixed the first-order share of the variance falls from
0.90 to 0.80 and they covered 0.912-0.923 for ``n = 200..1600``.
:func:`shapley_variance` warns when ``2 K < sqrt(n)`` (:func:`deletion_stable`), and when
a sampled estimate of ``ζ`` comes out negative (Monte Carlo noise larger than the signal;
that point's data-sampling variance is set to 0).  ``method="jackknife"`` (exact
leave-one-out values, KNN only; not from the paper) is a reference.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from databazaar.core.errors import InvalidInput
from databazaar.core.parallel import ParallelConfig
from databazaar.valuation._validate import check_int_at_least, check_progress
from databazaar.valuation.montecarlo.samplers import spawn_seeds
from databazaar.valuation.result import ValuationResult

__all__ = [
    "METHODS",
    "UtilityMarginals",
    "VarianceOptions",
    "as_oracle",
    "deletion_stable",
    "shapley_confidence_intervals",
    "shapley_variance",
    "size_nodes",
]

#: Inner draws of double Monte Carlo for a utility without a closed-form inner expectation.
MODEL_INNER_DRAWS = 100

#: Variance estimators; ``"default"`` resolves per utility (see the module docstring).
METHODS = ("double_mc", "pick_and_freeze", "jackknife", "default")

ProgressFn = Callable[[int], None]


# -- marginal-contribution oracles ---------------------------------------------------------


class UtilityMarginals:
    """``h_z(S) = u(S ∪ {z}) - u(S)`` for any utility ``u(indices) -> float``."""

    cheap = False

    def __init__(self, utility: Any) -> None:
        from databazaar.valuation.utility import players_of

        if not callable(utility):
            raise InvalidInput("utility must be callable: u(indices) -> float")
        self.utility = utility
        self.n = int(players_of(utility))

    def draws(
        self, z: int, anchors: np.ndarray, n_inner: int, rng: np.random.Generator
    ) -> np.ndarray:
        """``H[l, j] = h_z(S_lj)``, ``S_lj`` = anchor ``l`` + a size-biased random subset."""
        n = self.n
        out = np.empty((anchors.shape[0], n_inner))
        others = np.setdiff1d(np.arange(n), [z])
        for a, x in enumerate(anchors):
            for j in range(n_inner):
                k = _size_biased(rng.random(), n)
                # the other members i.i.d. from D without z (a set utility keeps one copy)
                s = np.unique(np.concatenate([[x], rng.choice(others, size=k - 1)]))
                out[a, j] = float(self.utility(np.append(s, z))) - float(self.utility(s))
        return out


def as_oracle(obj: Any) -> Any:
    """A marginal-contribution oracle: ``obj`` itself if it has ``draws`` and ``n`` (such as
    :class:`UtilityMarginals` or the KNN oracle), else ``UtilityMarginals(obj)``."""
    if hasattr(obj, "draws") and hasattr(obj, "cheap"):
        return obj
    return UtilityMarginals(obj)


def size_nodes(n: int, max_sizes: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Sizes ``s = 1..n-1`` with ``P(s) = 2 s / (n (n - 1))``, or quantile nodes of it."""
    if n - 1 <= max_sizes:
        sizes = np.arange(1, n, dtype=np.int64)
        weights = sizes / sizes.sum()
        return sizes, weights.astype(np.float64)
    u = (np.arange(max_sizes) + 0.5) / max_sizes
    sizes = np.asarray(_size_biased(u, n), dtype=np.int64)
    return sizes, np.full(max_sizes, 1.0 / max_sizes)


def _size_biased(u: Any, n: int) -> Any:
    """Inverse CDF of ``P(k) = 2k / (n (n-1))`` on ``k = 1..n-1``."""
    c = np.asarray(u, dtype=np.float64) * (n * (n - 1))
    k = np.ceil((-1.0 + np.sqrt(1.0 + 4.0 * c)) / 2.0)
    k = np.clip(k, 1, max(n - 1, 1)).astype(np.int64)
    return int(k) if np.ndim(k) == 0 else k


# -- the two variance estimators -----------------------------------------------------------


def _zeta_double_mc(h: np.ndarray) -> float:
    """Nested estimator: variance of anchor means minus the inner Monte Carlo noise."""
    n_outer, n_inner = h.shape
    if n_outer < 2 or n_inner < 2:
        raise InvalidInput("double Monte Carlo needs at least 2 anchors and 2 inner draws")
    means = h.mean(axis=1)
    inner = h.var(axis=1, ddof=1).mean()
    return _snap(float(means.var(ddof=1) - inner / n_inner), h)


def _zeta_pick_freeze(h: np.ndarray) -> float:
    """Covariance of two draws sharing one frozen point (columns 0 and 1)."""
    if h.shape[0] < 2:
        raise InvalidInput("pick-and-freeze needs at least 2 pairs")
    a, b = h[:, 0], h[:, 1]
    return _snap(float(np.sum((a - a.mean()) * (b - b.mean())) / (h.shape[0] - 1)), h)


def _snap(zeta: float, h: np.ndarray) -> float:
    """Round-off of an exactly zero variance (constant ``h``) to 0, so it is not reported
    as a negative estimate."""
    return 0.0 if abs(zeta) <= 1e-9 * float(np.mean(h * h)) else zeta


def _point_variance(
    oracle: Any,
    method: str,
    n_outer: int,
    n_inner: int | None,
    n_pairs: int,
    task: tuple[int, Any],
) -> tuple[float, float]:
    """``(variance of φ_n(z) over redraws of D∖z, raw ζ̂)`` for one point."""
    z, seed = task
    rng = np.random.default_rng(seed)
    n = oracle.n
    others = np.setdiff1d(np.arange(n, dtype=np.int64), [z])
    # the exact parts are summed in sorted order, so a permutation of the training rows
    # (or a duplicate of z) that permutes the terms gives a bit-identical variance
    if method == "jackknife":
        loo = np.sort(oracle.leave_one_out(z))
        m = loo.size
        return float((m - 1) / m * np.sum((loo - loo.mean()) ** 2)), float("nan")
    if method == "double_mc" and n_inner is None:
        # both loops exact: every anchor, inner expectation in closed form (KNN only)
        zeta = float(np.var(np.sort(oracle.projection(z)), ddof=1))
    elif method == "double_mc":
        anchors = rng.choice(others, size=min(n_outer, others.size), replace=False)
        zeta = _zeta_double_mc(oracle.draws(z, anchors, n_inner, rng))
    else:
        anchors = rng.choice(others, size=n_pairs, replace=True)
        zeta = _zeta_pick_freeze(oracle.draws(z, anchors, 2, rng))
    return max(0.0, (n - 1) * zeta / 4.0), zeta


def _resolve_method(method: str, cheap: bool) -> str:
    if method not in METHODS:
        raise InvalidInput(f"unknown CI method {method!r}", hint=f"use one of {', '.join(METHODS)}")
    if method == "default":
        return "double_mc"
    return method


def _check_confidence(confidence: Any) -> float:
    try:
        c = float(confidence)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"confidence must be a number in (0, 1), got {confidence!r}") from exc
    if not (0.0 < c < 1.0):
        raise InvalidInput(f"confidence must lie in (0, 1), got {confidence!r}", hint="e.g. 0.95")
    return c


@dataclass(frozen=True)
class VarianceOptions:
    """Budget and parallel setting of the variance estimate, one object for
    :func:`shapley_variance`, :func:`shapley_confidence_intervals` and
    :func:`~databazaar.valuation.knn_inference.knn_shapley_ci`.  Each takes it as
    ``options=`` and its fields as keywords (``n_outer=50``), keywords replacing fields.

    Attributes:
        n_outer, n_inner: anchors and inner draws of double Monte Carlo
            (``2 n_outer n_inner`` utility calls per point).  ``n_inner=None`` means,
            for the KNN utility, both loops exact (every anchor, inner expectation in
            closed form, ``KNNMarginals.projection``); for other utilities
            :data:`MODEL_INNER_DRAWS`.
        n_pairs: pairs of pick-and-freeze (``4 n_pairs`` utility calls per point).
        random_state: seeds are spawned per point, so results do not depend on the
            backend or ``n_jobs``.
        n_jobs, backend, ray_address: the parallel setting
            (:class:`~databazaar.core.parallel.ParallelConfig`); ``backend=None`` runs
            the compiled KNN oracle in threads and model utilities in processes.
        progress: optional ``progress(n_points_done)`` callback; points are then
            processed in blocks of 16 (same results).
    """

    n_outer: int = 100
    n_inner: int | None = None
    n_pairs: int = 2000
    random_state: Any = None
    n_jobs: int = 1
    backend: str | None = None
    ray_address: str | None = None
    progress: ProgressFn | None = None

    @classmethod
    def of(cls, options: VarianceOptions | None = None, **keywords: Any) -> VarianceOptions:
        """``options`` (default: every default) with ``keywords`` replacing its fields."""
        if options is not None and not isinstance(options, cls):
            raise InvalidInput(f"options must be a VarianceOptions, got {type(options).__name__}")
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(keywords) - set(names))
        if unknown:
            raise InvalidInput(
                f"unknown variance option(s): {', '.join(unknown)}", hint=f"use {', '.join(names)}"
            )
        return replace(options or cls(), **keywords)


def shapley_variance(
    oracle: Any,
    indices: Sequence[int] | np.ndarray | None = None,
    *,
    method: str = "default",
    options: VarianceOptions | None = None,
    **keywords: Any,
) -> tuple[np.ndarray, str]:
    """Variance of ``φ_n(z)`` over redraws of the other training points, per point.

    Args:
        oracle: :class:`~databazaar.valuation.knn_inference.KNNMarginals`,
            :class:`UtilityMarginals` or a utility (wrapped).
        indices: points to estimate (default: all); the others get NaN.
        method: ``"double_mc"``, ``"pick_and_freeze"``, ``"jackknife"`` (KNN only) or
            ``"default"`` (double Monte Carlo).
        options, **keywords: the budget and parallel setting, a :class:`VarianceOptions`
            and/or its fields (``n_outer``, ``n_inner``, ``n_pairs``, ``random_state``,
            ``n_jobs``, ``backend``, ``ray_address``, ``progress``).

    Returns:
        ``(variance per point, resolved method)``.
    """
    opts = VarianceOptions.of(options, **keywords)
    oracle = as_oracle(oracle)
    method = _resolve_method(method, oracle.cheap)
    if method == "jackknife" and not hasattr(oracle, "leave_one_out"):
        raise InvalidInput(
            "method='jackknife' needs exact leave-one-out values, available for the KNN "
            "utility only",
            hint="use 'double_mc' or 'pick_and_freeze' with a model utility",
        )
    n_outer = check_int_at_least(opts.n_outer, "n_outer", 2)
    n_inner = opts.n_inner
    if n_inner is None and not oracle.cheap:
        n_inner = MODEL_INNER_DRAWS
    if n_inner is not None:
        n_inner = check_int_at_least(n_inner, "n_inner", 2)
    n_pairs = check_int_at_least(opts.n_pairs, "n_pairs", 2)
    backend = opts.backend or ("threads" if oracle.cheap else "processes")
    parallel = ParallelConfig(opts.n_jobs, backend, opts.ray_address)
    n = oracle.n
    if n < 3:
        raise InvalidInput(f"confidence intervals need at least 3 training points, got {n}")
    idx = np.arange(n) if indices is None else np.asarray(indices, dtype=np.int64).reshape(-1)
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise InvalidInput(f"indices must lie in [0, {n})")
    seeds = spawn_seeds(opts.random_state, idx.size)
    check_progress(opts.progress)
    fn = functools.partial(_point_variance, oracle, method, n_outer, n_inner, n_pairs)
    tasks = list(zip(idx.tolist(), seeds, strict=True))
    out = parallel.map(fn, tasks, opts.progress)
    var = np.full(n, np.nan)
    var[idx] = [v for v, _ in out]
    zetas = np.array([zeta for _, zeta in out], dtype=np.float64)
    clipped = int(np.sum(zetas < 0.0))
    if clipped:
        more = (
            "n_pairs"
            if method == "pick_and_freeze"
            else "n_outer and n_inner (--ci-samples on the command line)"
        )
        warnings.warn(
            f"{clipped} of {idx.size} variance estimates ({method}) came out negative, so "
            "their Monte Carlo noise exceeds the data-sampling variance; those points get "
            f"a data-sampling variance of 0 (an interval of Monte Carlo error only); raise "
            f"{more}",
            RuntimeWarning,
            stacklevel=2,
        )
    if getattr(oracle, "k", None) is not None and method != "jackknife":
        _warn_if_not_deletion_stable(oracle.k, n)
    return var, method


def deletion_stable(k: int, n: int) -> bool:
    """Whether a KNN utility with ``k`` neighbours on ``n`` points is in the regime the
    U-statistic intervals are calibrated for: ``k >= sqrt(n) / 2``.

    The paper's asymptotic normality needs *deletion stability* (removing one point
    changes the utility by ``o(1)``). One deletion moves a KNN prediction by up to
    ``1/k``, so ``k`` must grow with ``n``; ``k ≈ sqrt(n)`` is the consistent KNN rule.
    """
    return 2 * k >= math.sqrt(n)


def _warn_if_not_deletion_stable(k: int, n: int) -> None:
    if deletion_stable(k, n):
        return
    warnings.warn(
        f"K={k} neighbours on N={n} points is not deletion-stable (one point can move a "
        "prediction by 1/K whatever N is), the condition the U-statistic intervals rest "
        "on: the first-order variance they use then misses part of the sampling variance "
        "and 95% intervals covered 0.91-0.92 for N=200..1600 in our study (benchmarks/"
        f"results/ci_coverage.md, K=5). Use K >= sqrt(N)/2 (K={math.ceil(math.sqrt(n) / 2)} here) "
        "for calibrated intervals",
        UserWarning,
        stacklevel=3,
    )


def shapley_confidence_intervals(
    result: ValuationResult,
    utility: Any,
    confidence: float = 0.95,
    method: str = "default",
    *,
    indices: Sequence[int] | np.ndarray | None = None,
    include_stderr: bool | None = None,
    options: VarianceOptions | None = None,
    **keywords: Any,
) -> ValuationResult:
    """Add U-statistic confidence intervals to a Data Shapley result.

    Args:
        result: point-level values (exact KNN-Shapley or a Monte Carlo estimate such as
            TMC-Shapley) of the players of ``utility``.
        utility: the utility the values were computed with: a
            :class:`~databazaar.valuation.utility.Utility`, any ``u(indices)`` with
            ``n_players``, or a :class:`~databazaar.valuation.knn_inference.KNNMarginals`.
        confidence: the interval's level.
        method: ``"double_mc"`` (the default), ``"pick_and_freeze"``, ``"jackknife"``
            (KNN only) or ``"default"``.
        indices: points to compute intervals for (default all; others get NaN bounds).
        include_stderr: add ``result.stderr**2`` (the Monte Carlo error of a sampled
            estimate) to the variance; default: yes unless the method is exact KNN.
        options, **keywords: the budget and parallel setting (:class:`VarianceOptions`
            and/or its fields), as in :func:`shapley_variance`.

    Returns:
        A copy of ``result`` with ``ci_low``, ``ci_high``, ``confidence`` set and
        ``stderr`` = the standard error used for the interval.
    """
    from scipy.special import ndtri

    if not isinstance(result, ValuationResult):
        raise InvalidInput("result must be a ValuationResult")
    if "asymmetric" in result.method or "group_mode" in result.params:
        raise InvalidInput(
            f"confidence intervals are derived for point-level Data Shapley values, not for "
            f"{result.method!r} results",
            hint="pass a knn-shapley or Monte Carlo Data Shapley result of single points",
        )
    conf = _check_confidence(confidence)
    oracle = as_oracle(utility)
    if oracle.n != len(result):
        raise InvalidInput(
            f"the result has {len(result)} values but the utility has {oracle.n} players",
            hint="pass point-level values of the same training set",
        )
    opts = VarianceOptions.of(options, **keywords)
    var, resolved = shapley_variance(oracle, indices, method=method, options=opts)
    if include_stderr is None:
        include_stderr = not result.method.startswith("knn")
    mc_stderr = np.asarray(result.stderr, dtype=np.float64)
    total = var + (mc_stderr**2 if include_stderr else 0.0)
    se = np.sqrt(total)
    q = float(ndtri(0.5 + conf / 2.0))
    params = {
        **result.params,
        "ci_method": resolved,
        "ci_confidence": conf,
        "ci_variance": "Hajek projection of the Shapley U-statistic over redraws of the "
        "training data (Wu et al. 2024)" + (" + Monte Carlo stderr^2" if include_stderr else ""),
        "ci_samples": (
            {"n_outer": opts.n_outer, "n_inner": opts.n_inner or MODEL_INNER_DRAWS}
            if resolved == "double_mc" and (opts.n_inner is not None or not oracle.cheap)
            else (
                {"exact": "all anchors, closed-form inner expectation"}
                if resolved == "double_mc"
                else {"n_pairs": opts.n_pairs}
            )
        ),
    }
    return ValuationResult(
        values=result.values.copy(),
        stderr=np.where(np.isnan(se), mc_stderr, se),
        counts=result.counts,
        ids=result.ids,
        method=result.method,
        params=params,
        ci_low=result.values - q * se,
        ci_high=result.values + q * se,
        confidence=conf,
    )
