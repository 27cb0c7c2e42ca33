r"""Monte Carlo valuation methods, each a small class over the one engine.

:class:`TMCShapley`
    Permutation sampling (Castro et al. 2009) with the truncation of Ghorbani & Zou
    (2019, Alg. 1): scan a random permutation :math:`\pi`, record the marginal
    :math:`u(P^\pi_i \cup i) - u(P^\pi_i)` of each point given its predecessors, and once
    :math:`|u(D) - u(P)| \le \text{tol}\cdot|u(D)|` held for ``truncation_patience``
    consecutive prefixes, record 0 for the rest of the permutation.  The value is the
    mean marginal; its stderr the sample standard deviation over permutations divided by
    :math:`\sqrt{m}`.  Without truncation each permutation's marginals sum to
    :math:`u(D) - u(\emptyset)` (efficiency holds exactly for the estimate).
:class:`BetaShapley`
    Beta(:math:`\alpha, \beta`)-Shapley (Kwon & Zou 2022) by importance-weighted
    permutation sampling.  In a uniform permutation the predecessors of a point form a
    coalition of size :math:`k` with probability :math:`1/n`, uniform among the
    :math:`\binom{n-1}{k}` coalitions, so weighting the marginal at position :math:`k` by
    :math:`n\binom{n-1}{k}\,w_{\alpha,\beta}(k, n)` makes its mean the semivalue with the
    per-coalition weight :math:`w_{\alpha,\beta}(k,n) = B(k+\beta, n-k-1+\alpha)/B(\alpha,
    \beta)` (see :mod:`databazaar.valuation.exact`).  Unbiased; ``weight_tol`` optionally
    stops scanning a permutation once every remaining weight is below it.
:class:`BanzhafMSR`
    Data Banzhaf with the maximum-sample-reuse estimator (Wang & Jia 2023, Alg. 1).
:class:`LeaveOneOut`
    :math:`u(D) - u(D \setminus i)`, exactly, with :math:`n + 1` evaluations.

Monte Carlo Asymmetric Data Shapley lives in :mod:`.ads` on the same engine.

Group mode: ``fit(utility, groups=ids_per_point)`` values groups instead of points:
players are the distinct group ids (sorted), a coalition of groups is the union of their
points, and the result holds one value per group with ``ids`` = the group ids.

References:
    Castro, J., Gómez, D. & Tejada, J. (2009). Polynomial calculation of the Shapley value
    based on sampling. Computers & Operations Research 36(5):1726-1730.
    Ghorbani, A. & Zou, J. (2019). Data Shapley: Equitable Valuation of Data for Machine
    Learning. ICML, PMLR 97:2242-2251.
    Kwon, Y. & Zou, J. (2022). Beta Shapley: a Unified and Noise-reduced Data Valuation
    Framework for Machine Learning. AISTATS, PMLR 151:8780-8802.
    Wang, J. T. & Jia, R. (2023). Data Banzhaf: A Robust Data Valuation Framework for
    Machine Learning. AISTATS, PMLR 206:6388-6421.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import betaln, gammaln

from databazaar.core.errors import InvalidInput
from databazaar.core.parallel import blas_limit
from databazaar.valuation._validate import is_nonneg_number, store_params
from databazaar.valuation.exact import check_alpha_beta
from databazaar.valuation.montecarlo.base import (
    ProgressFn,
    Valuation,
    check_truncation,
    result_from_stats,
)
from databazaar.valuation.montecarlo.engine import (
    Counters,
    counters,
    counters_delta,
    estimate_msr_values,
    merge_counters,
)
from databazaar.valuation.montecarlo.stopping import MaxSamples, StoppingCriterion
from databazaar.valuation.result import ValuationResult
from databazaar.valuation.utility import blas_threads_of, players_of

__all__ = [
    "BanzhafMSR",
    "BetaShapley",
    "LeaveOneOut",
    "TMCShapley",
    "beta_importance_weights",
]


def beta_importance_weights(n: int, alpha: float, beta: float) -> np.ndarray:
    r"""``iw[k] = n C(n-1,k) B(k+β, n-k-1+α) / B(α, β)`` for ``k = 0..n-1``.

    The factor turning a uniform-permutation marginal at position ``k`` into an unbiased
    Beta(α, β)-Shapley sample.  All ones for α = β = 1.
    """
    a, b = check_alpha_beta(alpha, beta)
    k = np.arange(n, dtype=np.float64)
    log_iw = (
        math.log(n)
        + gammaln(n)
        - gammaln(k + 1)
        - gammaln(n - k)
        + betaln(k + b, n - k - 1 + a)
        - betaln(a, b)
    )
    return np.exp(log_iw)


class TMCShapley(Valuation):
    r"""Truncated Monte Carlo Data Shapley (Ghorbani & Zou 2019).

    Args:
        truncation_tol: relative performance tolerance; a permutation is truncated once
            :math:`|u(D) - u(P)| \le` ``truncation_tol`` :math:`\cdot |u(D)|` held for
            ``truncation_patience`` consecutive prefixes :math:`P` (the remaining points
            get marginal 0).  ``0`` gives plain, unbiased permutation sampling.
        truncation_patience: consecutive prefixes within tolerance before truncating.
        stopping: a stopping criterion on permutations; default ``MaxSamples(100)``.
        n_jobs: parallel workers (``-1`` = all cores).
        backend: ``"processes"`` (default), ``"threads"`` or ``"ray"``
            (:mod:`databazaar.core.parallel`).
        random_state: int, ``None`` or :class:`numpy.random.Generator`.
        batch_size: permutations per task (default ``ceil(64 / n)``); results never
            depend on it.
        ray_address: Ray cluster address for ``backend="ray"``.

    Attributes:
        result_: :class:`ValuationResult` (``counts`` = permutations per point).
        values_: the values.

    Example:
        >>> from databazaar.valuation.utility import GameUtility
        >>> game = GameUtility(lambda s: float(len(s)) ** 2, 4)
        >>> TMCShapley(truncation_tol=0, stopping=MaxSamples(50), random_state=0).fit(game).values_
        array([4., 4., 4., 4.])
    """

    _method = "tmc-shapley"

    def __init__(
        self,
        truncation_tol: float = 0.01,
        truncation_patience: int = 5,
        **sampling: Any,
    ) -> None:
        super().__init__(**sampling)
        store_params(self, locals())

    def _fit(
        self, game: Any, ids: np.ndarray | None, progress: ProgressFn | None
    ) -> ValuationResult:
        tol, patience = check_truncation(self.truncation_tol, self.truncation_patience)
        stopping, batch_size = self._common_checks()
        stats = self._permutation_stats(
            game, stopping, batch_size, progress, truncation_tol=tol, truncation_patience=patience
        )
        params = self._params(stopping, {"truncation_tol": tol, "truncation_patience": patience})
        return result_from_stats(stats, ids, self._method, params)


class BetaShapley(TMCShapley):
    r"""Beta(alpha, beta)-Shapley (Kwon & Zou 2022) by importance-weighted permutations.

    Converges to :func:`~databazaar.valuation.exact.exact_semivalue` with
    :func:`~databazaar.valuation.exact.beta_shapley_weight`; Beta(1, 1) is Shapley.

    Args:
        alpha, beta: Beta distribution parameters (> 0).  ``alpha > beta`` emphasises
            small coalitions; the paper's default is Beta(16, 1).
        weight_tol: stop scanning a permutation at the first position after which every
            importance weight is below ``weight_tol`` (those marginals count as 0).
            Saves most utility evaluations for Beta(16, 1) on large data at a bias of
            at most ``weight_tol`` times the mean absolute marginal of the skipped
            positions; ``0`` (default) is unbiased.
        truncation_tol, truncation_patience: TMC truncation as in :class:`TMCShapley`;
            off by default (``truncation_tol=0``).
        stopping, n_jobs, backend, random_state, batch_size, ray_address: as in
            :class:`TMCShapley`.
    """

    _method = "beta-shapley"

    def __init__(
        self,
        alpha: float = 16.0,
        beta: float = 1.0,
        weight_tol: float = 0.0,
        truncation_tol: float = 0.0,
        **sampling: Any,
    ) -> None:
        super().__init__(truncation_tol=truncation_tol, **sampling)
        store_params(self, locals())

    def _fit(
        self, game: Any, ids: np.ndarray | None, progress: ProgressFn | None
    ) -> ValuationResult:
        a, b = check_alpha_beta(self.alpha, self.beta)
        tol, patience = check_truncation(self.truncation_tol, self.truncation_patience)
        wt = self.weight_tol
        if not is_nonneg_number(wt):
            raise InvalidInput(f"weight_tol must be a number >= 0, got {wt!r}")
        stopping, batch_size = self._common_checks()
        n = players_of(game)
        weights = beta_importance_weights(n, a, b)
        max_positions = None
        if wt > 0:
            suffix_max = np.maximum.accumulate(weights[::-1])[::-1]
            above = np.flatnonzero(suffix_max >= wt)
            max_positions = int(above[-1] + 1) if above.size else 0
        stats = self._permutation_stats(
            game,
            stopping,
            batch_size,
            progress,
            weights=weights,
            truncation_tol=tol,
            truncation_patience=patience,
            max_positions=max_positions,
        )
        params = self._params(
            stopping,
            {"alpha": a, "beta": b, "weight_tol": float(wt), "truncation_tol": tol},
        )
        return result_from_stats(stats, ids, self._method, params)


class BanzhafMSR(Valuation):
    r"""Data Banzhaf by maximum sample reuse (Wang & Jia 2023).

    Each sampled coalition contains every player independently with probability 1/2 and
    costs one utility evaluation, which updates every player's estimate:
    :math:`\hat\beta_i = \bar u_{S \ni i} - \bar u_{S \not\ni i}`.

    Args:
        stopping: a stopping criterion on coalitions; default ``MaxSamples(1000)``.
        n_jobs, backend, random_state, ray_address: as in :class:`TMCShapley`.
        batch_size: coalitions per task (default 64); results never depend on it.

    Attributes:
        result_: values, stderr :math:`\sqrt{s_{in}^2/m_{in} + s_{out}^2/m_{out}}` and
            ``counts`` = coalitions sampled.  A player that has not yet been both in and
            out of a sampled coalition gets value NaN and stderr ``inf``.
    """

    _method = "banzhaf-msr"

    def _default_stopping(self) -> StoppingCriterion:
        return MaxSamples(1000)

    def _fit(
        self, game: Any, ids: np.ndarray | None, progress: ProgressFn | None
    ) -> ValuationResult:
        stopping, batch_size = self._common_checks()
        stats, both = self._estimate(estimate_msr_values, game, stopping, batch_size, progress)
        if not both.all():
            warnings.warn(
                f"{int((~both).sum())} player(s) were never both inside and outside a sampled "
                "coalition; their Banzhaf value is NaN (sample more coalitions)",
                RuntimeWarning,
                stacklevel=3,
            )
        return result_from_stats(stats, ids, self._method, self._params(stopping, {}))


@dataclass
class _LooJob:
    game: Any
    n: int

    def __call__(self, players: np.ndarray) -> tuple[np.ndarray, Counters]:
        with blas_limit(blas_threads_of(self.game)):
            return self._run(players)

    def _run(self, players: np.ndarray) -> tuple[np.ndarray, Counters]:
        before = counters(self.game)
        everyone = np.arange(self.n)
        out = np.array([float(self.game(np.delete(everyone, int(i)))) for i in players])
        return out, counters_delta(self.game, before)


class LeaveOneOut(Valuation):
    r"""Leave-one-out values :math:`u(D) - u(D \setminus i)` (exact; :math:`n+1` evaluations).

    Args:
        n_jobs, backend, ray_address: parallelism over the :math:`n` refits.
    """

    _method = "loo"

    def __init__(
        self, n_jobs: int = 1, backend: str = "processes", ray_address: str | None = None
    ) -> None:
        store_params(self, locals())

    def _fit(
        self, game: Any, ids: np.ndarray | None, progress: ProgressFn | None
    ) -> ValuationResult:
        n = players_of(game)
        with blas_limit(blas_threads_of(game)):
            total = float(game(np.arange(n)))
        parallel = self._parallel()
        workers = parallel.workers
        chunks = [c for c in np.array_split(np.arange(n), max(1, min(n, 4 * workers))) if c.size]
        before = counters(game)
        outs = parallel.map(_LooJob(game, n), chunks)
        merge_counters(game, before, [o[1] for o in outs])
        without = np.concatenate([o[0] for o in outs])
        if progress is not None:
            progress(n)
        return ValuationResult(
            values=total - without,
            stderr=np.zeros(n),
            counts=np.ones(n, dtype=np.int64),
            ids=ids,
            method=self._method,
            params={},
        )
