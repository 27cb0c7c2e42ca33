"""Running statistics of a Monte Carlo valuation run.

:class:`RunningStats` keeps per-player running means and sums of squared deviations
(Welford's update; Chan, Golub & LeVeque 1983), skipping players without a sample;
:class:`MonteCarloStats` is the outcome of a run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["MonteCarloStats", "RunningStats"]


class RunningStats:
    """Per-player running mean and sum of squared deviations (Welford), NaN = no sample."""

    def __init__(self, n: int) -> None:
        self.count = np.zeros(n, dtype=np.int64)
        self.mean = np.zeros(n, dtype=np.float64)
        self.m2 = np.zeros(n, dtype=np.float64)

    def update(self, row: np.ndarray) -> None:
        ok = ~np.isnan(row)
        if ok.all():
            self.count += 1
            delta = row - self.mean
            self.mean += delta / self.count
            self.m2 += delta * (row - self.mean)
            return
        c = self.count[ok] + 1
        x = row[ok]
        delta = x - self.mean[ok]
        mean = self.mean[ok] + delta / c
        self.m2[ok] += delta * (x - mean)
        self.mean[ok] = mean
        self.count[ok] = c

    def variance(self) -> np.ndarray:
        """Unbiased sample variance (``inf`` where fewer than two samples)."""
        out = np.full(self.count.shape, np.inf)
        ok = self.count >= 2
        out[ok] = self.m2[ok] / (self.count[ok] - 1)
        return out

    def stderr(self) -> np.ndarray:
        """Standard error of the mean (``inf`` where fewer than two samples)."""
        out = np.full(self.count.shape, np.inf)
        ok = self.count >= 2
        out[ok] = np.sqrt(np.maximum(self.m2[ok], 0.0) / (self.count[ok] - 1) / self.count[ok])
        return out


@dataclass
class MonteCarloStats:
    """Outcome of a sampling loop: per-player estimates and how many samples they used."""

    values: np.ndarray
    stderr: np.ndarray
    counts: np.ndarray
    n_samples: int
    elapsed: float
