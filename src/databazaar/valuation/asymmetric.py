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

Exact KNN-ADS: :mod:`databazaar.valuation.knn_asymmetric`.

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

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from databazaar.core.errors import InvalidInput
from databazaar.valuation._validate import store_params
from databazaar.valuation.groups import GroupOrder, group_result, resolve_group_order
from databazaar.valuation.knn_asymmetric import knn_asymmetric_shapley
from databazaar.valuation.montecarlo.ads import (
    MonteCarloADS,
    hoeffding_epsilon,
    mc_asymmetric_shapley,
    permutations_for,
)
from databazaar.valuation.montecarlo.stopping import StoppingCriterion

__all__ = [
    "AsymmetricShapley",
    "GroupOrder",
    "MonteCarloADS",
    "hoeffding_epsilon",
    "knn_asymmetric_shapley",
    "mc_asymmetric_shapley",
    "permutations_for",
    "resolve_group_order",
]

ProgressFn = Callable[[int], None]


class AsymmetricShapley(BaseEstimator):
    """Asymmetric Data Shapley, scikit-learn style (``get_params``/``set_params`` work).

    ``method="knn"``: ``fit(x_train, y_train, x_test, y_test, groups=..., order=...)``
    computes exact KNN-ADS.  ``method="mc"``: ``fit(utility, groups=..., order=...)`` runs
    MC-ADS with any :class:`~databazaar.valuation.utility.Utility` (``stopping``, when
    given, replaces ``MaxSamples(n_permutations)``).  ``backend`` is ``"threads"``,
    ``"processes"`` or ``"ray"``; ``None`` picks threads for ``"knn"`` (GIL-free
    kernels) and processes for ``"mc"`` (model fits).

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
        backend: str | None = None,
        random_state: Any = None,
        *,
        n_permutations: int = 200,
        stopping: StoppingCriterion | None = None,
        ray_address: str | None = None,
        chunk_size: int | None = None,
        utility_range: float = 1.0,
        delta: float = 0.05,
    ) -> None:
        store_params(self, locals())

    def fit(
        self,
        *args: Any,
        groups: Any = None,
        order: Sequence[Any] | None = None,
        progress: ProgressFn | None = None,
    ) -> AsymmetricShapley:
        """Compute the values; ``args`` depend on ``method`` (see the class docstring).

        ``progress`` is called with the number of test points (``"knn"``) or
        permutations (``"mc"``) finished.
        """
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
                backend=self.backend or "threads",
                ray_address=self.ray_address,
                chunk_size=self.chunk_size,
                progress=progress,
            )
        elif self.method == "mc":
            if len(args) != 1:
                raise InvalidInput("method='mc' needs fit(utility, groups=, order=)")
            res = mc_asymmetric_shapley(
                args[0],
                groups=groups,
                order=order,
                n_permutations=self.n_permutations,
                stopping=self.stopping,
                random_state=self.random_state,
                n_jobs=self.n_jobs,
                backend=self.backend or "processes",
                ray_address=self.ray_address,
                utility_range=self.utility_range,
                delta=self.delta,
                progress=progress,
            )
        else:
            raise InvalidInput(f"unknown method {self.method!r}", hint="use 'knn' or 'mc'")
        go_ids = res.params["order"]
        n = len(res)
        go = resolve_group_order(groups, go_ids if groups is not None else None, n)
        self.result_ = res
        self.order_ = go_ids
        self.group_result_ = group_result(res.values, go, res.counts, res.method, res.params)
        self.group_values_ = {
            g: float(v) for g, v in zip(go_ids, self.group_result_.values, strict=True)
        }
        return self

    @property
    def values_(self) -> np.ndarray:
        return self.result_.values
