"""Percentile-bootstrap confidence intervals (Efron & Tibshirani, 1993), the project's one copy.

:func:`bootstrap_ci` resamples the rows of ``values`` with replacement and returns the
percentile interval of a statistic: the mean by default (vectorised), or any function
of the resampled rows, e.g. a paired statistic computed from resampled seed indices.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from databazaar.core.errors import InvalidInput


def bootstrap_ci(
    values: np.ndarray,
    *,
    n_boot: int = 1000,
    confidence: float = 0.95,
    rng: np.random.Generator,
    statistic: Callable[[Any], float] | None = None,
) -> tuple[float, float]:
    """Percentile-bootstrap interval of ``statistic`` (default: the mean) of ``values``.

    Rows (axis 0) of ``values`` are resampled ``n_boot`` times. A ``statistic`` gets the
    resampled rows and returns one number; it may return ``inf`` (e.g. "never reached"),
    in which case the interval uses the empirical quantile without interpolation so an
    end can be ``inf``. Empty ``values`` give ``(nan, nan)``. Raises :class:`InvalidInput`
    for ``n_boot < 1``, a confidence outside ``(0, 1)`` or a ``nan`` statistic.
    """
    if n_boot < 1:
        raise InvalidInput(f"n_boot must be at least 1, got {n_boot}")
    if not 0 < confidence < 1:
        raise InvalidInput(f"confidence must be in (0, 1), got {confidence}")
    values = np.asarray(values)
    n = len(values)
    if n == 0:
        return (float("nan"), float("nan"))
    idx = rng.integers(0, n, size=(n_boot, n))
    alpha = (1.0 - confidence) / 2.0
    if statistic is None:
        means = values[idx].mean(axis=1)
        lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
        return float(lo), float(hi)
    stats = np.array([float(statistic(values[i])) for i in idx])
    if np.any(np.isnan(stats)):
        raise InvalidInput("the bootstrap statistic returned nan")
    if np.all(np.isfinite(stats)):
        lo, hi = np.quantile(stats, [alpha, 1.0 - alpha])
    else:
        lo, hi = np.quantile(stats, [alpha, 1.0 - alpha], method="inverted_cdf")
    return float(lo), float(hi)
