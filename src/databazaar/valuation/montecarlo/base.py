"""The estimator base of every Monte Carlo valuation method.

:class:`Valuation` gives all methods one convention: parameters in ``__init__``, work in
``fit(utility, groups=None, progress=None)``, the answer in ``result_`` (a
:class:`~databazaar.valuation.result.ValuationResult`) and ``values_``.  ``progress`` is
an argument of ``fit`` only, never of ``__init__``.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from databazaar.core.errors import InvalidInput
from databazaar.core.parallel import ParallelConfig
from databazaar.valuation._validate import (
    check_progress,
    is_nonneg_number,
    is_pos_int,
    store_params,
)
from databazaar.valuation.montecarlo.engine import (
    as_game,
    counters,
    counters_delta,
    estimate_permutation_values,
)
from databazaar.valuation.montecarlo.stats import MonteCarloStats
from databazaar.valuation.montecarlo.stopping import MaxSamples, StoppingCriterion, check_criterion
from databazaar.valuation.result import ValuationResult

__all__ = ["Valuation", "check_truncation", "result_from_stats"]

ProgressFn = Callable[[int], None]


class Valuation(BaseEstimator):
    """The estimator base: one ``fit`` convention, one place for ``progress``.

    Subclasses store their parameters in ``__init__`` (scikit-learn style, so
    ``get_params``/``set_params``/``clone`` work) and implement
    ``_fit(game, ids, progress) -> ValuationResult``.

    Args (the sampling parameters every Monte Carlo method takes):
        stopping: a stopping criterion on samples; default per method.
        n_jobs: parallel workers (``-1`` = all cores).
        backend: ``"processes"`` (default), ``"threads"`` or ``"ray"``
            (:mod:`databazaar.core.parallel`).
        random_state: int, ``None`` or :class:`numpy.random.Generator`.
        batch_size: samples per parallel task; results never depend on it.
        ray_address: Ray cluster address for ``backend="ray"``.
    """

    _method = "unknown"

    def __init__(
        self,
        stopping: StoppingCriterion | None = None,
        n_jobs: int = 1,
        backend: str = "processes",
        random_state: Any = None,
        batch_size: int | None = None,
        ray_address: str | None = None,
    ) -> None:
        store_params(self, locals())

    @classmethod
    def _get_param_names(cls) -> list[str]:
        """The ``__init__`` parameters, including those a subclass passes on as ``**sampling``.

        scikit-learn's ``get_params``, ``set_params`` and ``clone`` read this list; a
        subclass whose ``__init__`` ends in ``**sampling`` (forwarded to
        :class:`Valuation`) takes the sampling parameters above as well.
        """
        names: set[str] = set()
        for klass in cls.__mro__:
            init = vars(klass).get("__init__")
            if init is None:
                continue
            params = inspect.signature(init).parameters.values()
            names.update(p.name for p in params if p.name != "self" and p.kind < p.VAR_KEYWORD)
            if not any(p.kind == p.VAR_KEYWORD for p in params):
                break
        return sorted(names)

    def fit(self, utility: Any, groups: Any = None, progress: ProgressFn | None = None) -> Any:
        """Estimate the values of the players of ``utility`` (or of groups of them).

        Args:
            utility: a :class:`~databazaar.valuation.utility.Utility`, a
                :class:`~databazaar.valuation.utility.GameUtility` or any callable
                ``u(indices) -> float`` with ``n_players``.
            groups: optional group id per training point; then players are the distinct
                group ids and the result has one value per group.
            progress: optional callable receiving the number of samples just folded
                (for a progress bar; the total is ``stopping.max_samples()``).

        Returns:
            ``self``, with ``result_`` and ``values_`` set.
        """
        self._parallel()
        check_progress(progress)
        game, ids = self._prepare(utility, groups)
        before = counters(game)
        result = self._fit(game, ids, progress)
        evals, _, errors = counters_delta(game, before)
        if evals > 0 and errors == evals:
            warnings.warn(
                f"all {evals} utility evaluations failed and returned the default score, so "
                f"every value is 0; last error: {getattr(game, 'last_error', None)}",
                RuntimeWarning,
                stacklevel=2,
            )
        self.result_ = result
        return self

    def _prepare(self, utility: Any, groups: Any) -> tuple[Any, Any]:
        """``(game, ids)`` handed to ``_fit``: by default groups become the players."""
        return as_game(utility, groups)

    def _fit(self, game: Any, ids: Any, progress: ProgressFn | None) -> ValuationResult:
        raise NotImplementedError

    @property
    def values_(self) -> np.ndarray:
        """The estimated values (``result_.values``)."""
        return self._fitted().values

    def _fitted(self) -> ValuationResult:
        result = getattr(self, "result_", None)
        if result is None:
            from sklearn.exceptions import NotFittedError

            raise NotFittedError(f"{type(self).__name__} is not fitted yet; call fit(utility)")
        return result

    def _common_checks(self) -> tuple[StoppingCriterion, int | None]:
        stopping = self.stopping if self.stopping is not None else self._default_stopping()
        check_criterion(stopping)
        bs = self.batch_size
        if bs is not None and not is_pos_int(bs):
            raise InvalidInput(f"batch_size must be an integer >= 1 or None, got {bs!r}")
        return stopping, None if bs is None else int(bs)

    def _default_stopping(self) -> StoppingCriterion:
        return MaxSamples(100)

    def _parallel(self) -> ParallelConfig:
        """The validated parallel setting of this estimator."""
        return ParallelConfig(self.n_jobs, self.backend, getattr(self, "ray_address", None))

    def _estimate(
        self,
        engine: Callable[..., Any],
        game: Any,
        stopping: StoppingCriterion,
        batch_size: int | None,
        progress: ProgressFn | None,
        **options: Any,
    ) -> Any:
        """Run an engine loop (:func:`estimate_permutation_values`, ...) with this
        estimator's seed and parallel setting.

        ``stopping`` and ``batch_size`` as returned by :meth:`_common_checks`; ``options``
        are the method-specific keyword arguments (truncation, weights, sampler, ...).
        """
        return engine(
            game,
            stopping=stopping,
            random_state=self.random_state,
            parallel=self._parallel(),
            batch_size=batch_size,
            progress=progress,
            **options,
        )

    def _permutation_stats(
        self,
        game: Any,
        stopping: StoppingCriterion,
        batch_size: int | None,
        progress: ProgressFn | None,
        **options: Any,
    ) -> MonteCarloStats:
        """:meth:`_estimate` with :func:`estimate_permutation_values`."""
        return self._estimate(
            estimate_permutation_values, game, stopping, batch_size, progress, **options
        )

    def _params(self, stopping: StoppingCriterion, extra: dict[str, Any]) -> dict[str, Any]:
        rs = self.random_state
        if not isinstance(rs, (int, type(None))):
            rs = str(rs)
        return {"stopping": repr(stopping), "random_state": rs, **extra}


def check_truncation(tol: Any, patience: Any) -> tuple[float, int]:
    if not is_nonneg_number(tol):
        raise InvalidInput(
            f"truncation_tol must be a number >= 0, got {tol!r}", hint="0 disables truncation"
        )
    if not is_pos_int(patience):
        raise InvalidInput(f"truncation_patience must be an integer >= 1, got {patience!r}")
    return float(tol), int(patience)


def result_from_stats(
    stats: MonteCarloStats, ids: np.ndarray | None, method: str, params: dict[str, Any]
) -> ValuationResult:
    return ValuationResult(
        values=stats.values,
        stderr=stats.stderr,
        counts=stats.counts,
        ids=ids,
        method=method,
        params={**params, "n_samples": stats.n_samples, "seconds": round(stats.elapsed, 4)},
    )
