r"""Monte Carlo Asymmetric Data Shapley (MC-ADS) for any utility, on the one engine.

Sample :math:`\pi` uniformly from :math:`\Pi_\sigma` (the permutations consistent with the
group order: shuffle each group, concatenate the groups in order,
:class:`~databazaar.valuation.montecarlo.samplers.OrderedPermutationSampler`), scan it and
record each point's marginal contribution; average over ``m`` permutations.  The
estimate is unbiased and, because the marginals of a group telescope within every
permutation, satisfies group efficiency exactly.  Sampling, seeding, parallelism and
stopping are those of every other Monte Carlo method
(:func:`~databazaar.valuation.montecarlo.engine.estimate_permutation_values`).

Finite-sample bound (Hoeffding + union bound): if ``u`` takes values in an interval of
length ``r`` every marginal lies in ``[-r, r]``, so with probability at least ``1 - δ``

.. math::

    \max_z |\hat φ(z) - φ(z)| ≤ ε = r \sqrt{2 \ln(2N/δ) / m},

i.e. ``m = ⌈2 r² ln(2N/δ) / ε²⌉`` permutations suffice (:func:`permutations_for`); ``ε``
for the permutations actually drawn is reported in ``params["hoeffding_epsilon"]``.

References:
    Zheng, Chang, Jia, Tan (2024). Towards Data Valuation via Asymmetric Data Shapley.
    arXiv:2411.00388.
    Frye, Rowat, Feige (2020). Asymmetric Shapley values. NeurIPS.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from databazaar.core.errors import InvalidInput
from databazaar.valuation._validate import check_int_at_least, store_params
from databazaar.valuation.groups import resolve_group_order
from databazaar.valuation.montecarlo.base import ProgressFn, Valuation, result_from_stats
from databazaar.valuation.montecarlo.samplers import OrderedPermutationSampler
from databazaar.valuation.montecarlo.stopping import MaxSamples, StoppingCriterion
from databazaar.valuation.result import ValuationResult
from databazaar.valuation.utility import players_of

__all__ = ["MonteCarloADS", "hoeffding_epsilon", "mc_asymmetric_shapley", "permutations_for"]


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


class MonteCarloADS(Valuation):
    """Monte Carlo Asymmetric Data Shapley: ``fit(utility, groups=..., progress=...)``.

    Unlike the other methods, ``groups`` does not make groups the players: it gives the
    ordered partition that ADS respects, and the result holds one value per *point*
    (group values, the sums, are in ``params["group_values"]``).

    Args:
        order: the group ids in precedence order (earliest first); default the sorted
            distinct ids.
        stopping: a stopping criterion on permutations; default ``MaxSamples(200)``.
        utility_range: length ``r`` of the interval the utility takes values in (1 for
            accuracy), for the reported Hoeffding bound.
        delta: failure probability of the reported bound.
        n_jobs, backend, random_state, batch_size, ray_address: as in
            :class:`~databazaar.valuation.montecarlo.methods.TMCShapley`.
    """

    _method = "mc-asymmetric-shapley"

    def __init__(
        self,
        order: Sequence[Any] | None = None,
        utility_range: float = 1.0,
        delta: float = 0.05,
        **sampling: Any,
    ) -> None:
        super().__init__(**sampling)
        store_params(self, locals())

    def _default_stopping(self) -> StoppingCriterion:
        return MaxSamples(200)

    def _prepare(self, utility: Any, groups: Any) -> tuple[Any, Any]:
        players_of(utility)
        if not callable(utility):
            raise InvalidInput("utility must be callable: u(indices) -> float")
        return utility, groups

    def _fit(self, game: Any, groups: Any, progress: ProgressFn | None) -> ValuationResult:
        if not (0.0 < float(self.delta) < 1.0):
            raise InvalidInput(f"delta must lie in (0, 1), got {self.delta}")
        r = self.utility_range
        if not (np.isfinite(r) and r > 0):
            raise InvalidInput(f"utility_range must be a positive number, got {r}")
        stopping, batch_size = self._common_checks()
        n = players_of(game)
        go = resolve_group_order(groups, self.order, n)
        stats = self._permutation_stats(
            game, stopping, batch_size, progress, sampler=OrderedPermutationSampler(go.members)
        )
        m = stats.n_samples
        params: dict[str, Any] = {
            **self._params(stopping, {}),
            "order": go.json_ids(),
            "group_sizes": go.sizes.tolist(),
            "group_values": [float(stats.values[mem].sum()) for mem in go.members],
            "utility_range": float(r),
            "delta": float(self.delta),
            "hoeffding_epsilon": hoeffding_epsilon(n, m, float(r), float(self.delta)),
            "bound": "P(max_i |estimate_i - ADS_i| > hoeffding_epsilon) <= delta "
            "(Hoeffding + union bound, marginals in [-r, r])",
        }
        return result_from_stats(stats, None, self._method, params)


#: Arguments of :func:`mc_asymmetric_shapley` that are not :class:`MonteCarloADS` settings.
_NOT_SETTINGS = ("utility", "groups", "n_permutations", "progress")


def mc_asymmetric_shapley(
    utility: Any,
    groups: Any = None,
    order: Sequence[Any] | None = None,
    n_permutations: int = 200,
    *,
    stopping: StoppingCriterion | None = None,
    random_state: Any = None,
    n_jobs: int = 1,
    backend: str = "processes",
    ray_address: str | None = None,
    utility_range: float = 1.0,
    delta: float = 0.05,
    progress: ProgressFn | None = None,
) -> ValuationResult:
    """:class:`MonteCarloADS` as a function: ``n_permutations`` or any ``stopping``.

    ``stopping`` (e.g. ``MaxSamples(500) | StderrBelow(0.01)``) replaces
    ``MaxSamples(n_permutations)`` when given.  The same ``random_state`` gives the same
    values for every backend and ``n_jobs``.
    """
    if stopping is None:
        stopping = MaxSamples(check_int_at_least(n_permutations, "n_permutations"))
    settings = {k: v for k, v in locals().items() if k not in _NOT_SETTINGS}
    est = MonteCarloADS(**settings)
    return est.fit(utility, groups=groups, progress=progress).result_
