"""Stopping criteria for Monte Carlo valuation, combinable with ``|`` and ``&``.

A criterion is called after every folded sample with a :class:`SamplingState` (samples so
far, elapsed seconds, per-player stderr) and returns True to stop.  ``a | b`` stops when
either criterion does, ``a & b`` when both do.  Because the engine checks after every
sample, where a run stops never depends on batching or parallelism (except
:class:`MaxTime`, which depends on machine speed).

The composition follows pyDVL's ``valuation/stopping.py`` (Semmler, Mirabent et al.,
*pyDVL: The Python Data Valuation Library*, 2023).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from databazaar.core.errors import InvalidInput

__all__ = [
    "MaxSamples",
    "MaxTime",
    "SamplingState",
    "StderrBelow",
    "StoppingCriterion",
    "check_criterion",
]


@dataclass
class SamplingState:
    """What a stopping criterion sees: samples so far, elapsed seconds, per-player stderr."""

    n_samples: int
    elapsed: float
    stderr_fn: Callable[[], np.ndarray]
    _stderr: np.ndarray | None = field(default=None, repr=False)

    @property
    def stderr(self) -> np.ndarray:
        if self._stderr is None:
            self._stderr = self.stderr_fn()
        return self._stderr


class StoppingCriterion(ABC):
    """Decides when a Monte Carlo run has enough samples.

    Criteria combine: ``a | b`` stops when either does, ``a & b`` when both do.
    """

    @abstractmethod
    def __call__(self, state: SamplingState) -> bool:
        """True when sampling should stop."""

    def reset(self) -> None:  # noqa: B027 - optional hook
        """Called once at the start of every ``fit``."""

    def max_samples(self) -> float:
        """An upper bound on the samples this criterion allows (``inf`` if none)."""
        return math.inf

    def __or__(self, other: StoppingCriterion) -> StoppingCriterion:
        check_criterion(other)
        return _Combined(self, other, "|")

    def __and__(self, other: StoppingCriterion) -> StoppingCriterion:
        check_criterion(other)
        return _Combined(self, other, "&")


def check_criterion(obj: Any, name: str = "stopping") -> StoppingCriterion:
    if not isinstance(obj, StoppingCriterion):
        raise InvalidInput(
            f"{name} must be a stopping criterion, got {obj!r}",
            hint="use MaxSamples(n), StderrBelow(t), MaxTime(s), combined with | or &",
        )
    return obj


class MaxSamples(StoppingCriterion):
    """Stop after ``n`` samples (permutations, or coalitions for MSR)."""

    def __init__(self, n: int) -> None:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise InvalidInput(f"MaxSamples needs an integer n >= 1, got {n!r}")
        self.n = int(n)

    def __call__(self, state: SamplingState) -> bool:
        return state.n_samples >= self.n

    def max_samples(self) -> float:
        return float(self.n)

    def __repr__(self) -> str:
        return f"MaxSamples({self.n})"


class StderrBelow(StoppingCriterion):
    """Stop when every player's standard error is at most ``threshold``.

    Not before ``min_samples`` samples, so that a few identical early marginals (stderr
    0) do not stop the run.  Combine with :class:`MaxSamples` or :class:`MaxTime` to bound
    the cost when the target may be out of reach.
    """

    def __init__(self, threshold: float, min_samples: int = 20) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.number)):
            raise InvalidInput(f"StderrBelow threshold must be a number > 0, got {threshold!r}")
        if not np.isfinite(threshold) or threshold <= 0:
            raise InvalidInput(f"StderrBelow threshold must be > 0, got {threshold!r}")
        if isinstance(min_samples, bool) or not isinstance(min_samples, (int, np.integer)):
            raise InvalidInput(f"min_samples must be an integer >= 2, got {min_samples!r}")
        if min_samples < 2:
            raise InvalidInput(
                f"min_samples must be >= 2 (a stderr needs two samples), got {min_samples}"
            )
        self.threshold = float(threshold)
        self.min_samples = int(min_samples)

    def __call__(self, state: SamplingState) -> bool:
        if state.n_samples < self.min_samples:
            return False
        se = state.stderr
        return bool(se.size == 0 or np.nanmax(np.where(np.isnan(se), np.inf, se)) <= self.threshold)

    def __repr__(self) -> str:
        return f"StderrBelow({self.threshold:g}, min_samples={self.min_samples})"


class MaxTime(StoppingCriterion):
    """Stop once ``seconds`` of wall time have passed since ``fit`` started.

    Where a timed run stops depends on machine speed, so it is not reproducible.
    """

    def __init__(self, seconds: float) -> None:
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float, np.number)):
            raise InvalidInput(f"MaxTime needs a number of seconds > 0, got {seconds!r}")
        if not np.isfinite(seconds) or seconds <= 0:
            raise InvalidInput(f"MaxTime needs seconds > 0, got {seconds!r}")
        self.seconds = float(seconds)

    def __call__(self, state: SamplingState) -> bool:
        return state.elapsed >= self.seconds

    def __repr__(self) -> str:
        return f"MaxTime({self.seconds:g})"


class _Combined(StoppingCriterion):
    """Two criteria joined by ``|`` (stop when either does) or ``&`` (when both do)."""

    def __init__(self, a: StoppingCriterion, b: StoppingCriterion, op: str) -> None:
        self.a, self.b, self.op = a, b, op

    def reset(self) -> None:
        self.a.reset()
        self.b.reset()

    def __call__(self, state: SamplingState) -> bool:
        if self.op == "|":
            return self.a(state) or self.b(state)
        return self.a(state) and self.b(state)

    def max_samples(self) -> float:
        pick = min if self.op == "|" else max
        return pick(self.a.max_samples(), self.b.max_samples())

    def __repr__(self) -> str:
        return f"({self.a!r} {self.op} {self.b!r})"
