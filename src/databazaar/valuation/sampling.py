r"""Monte Carlo semivalues over any utility: TMC-Shapley, Beta Shapley, Data Banzhaf (MSR)
and leave-one-out.

Every estimator is a scikit-learn style object: parameters in ``__init__``, work in
``fit(utility, groups=None, progress=None)``, the answer in ``result_`` (a
:class:`~databazaar.valuation.result.ValuationResult`) and ``values_``.  ``utility`` is a
:class:`~databazaar.valuation.utility.Utility` (a scikit-learn model, a scorer and a test
set), a :class:`~databazaar.valuation.utility.GameUtility` or anything with
``n_players`` and ``u(indices) -> float``.

Methods
-------
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
    Data Banzhaf with the maximum-sample-reuse estimator (Wang & Jia 2023, Alg. 1): draw
    coalitions that contain each point independently with probability 1/2, evaluate
    each once, and estimate :math:`\hat\beta_i = \bar u_{S \ni i} - \bar u_{S \not\ni i}`.
    The stderr is :math:`\sqrt{s^2_{in}/m_{in} + s^2_{out}/m_{out}}`.
:class:`LeaveOneOut`
    :math:`u(D) - u(D \setminus i)`, exactly, with :math:`n + 1` evaluations.

Stopping
--------
:class:`MaxSamples` (permutations for the permutation methods, coalitions for MSR),
:class:`StderrBelow` (the largest stderr over all points) and :class:`MaxTime` combine with
``|`` (stop when either holds) and ``&`` (when both hold).  A criterion is checked after
every sample, so where a run stops never depends on batching or parallelism.

Reproducibility
---------------
Sample ``j`` (a permutation or a coalition) is drawn from its own generator
``default_rng(SeedSequence(entropy, spawn_key=(j,)))``, i.e. the ``j``-th child of
``SeedSequence(random_state).spawn``; samples are grouped into batches of consecutive
indices, batches run through :func:`~databazaar.valuation.parallel.parallel_map`, and the
main process folds the per-sample results in sample order.  So the same ``random_state``
gives bit-identical values for any ``n_jobs``, ``batch_size`` and backend (joblib or Ray),
as long as the utility itself is deterministic.

Group mode
----------
``fit(utility, groups=ids_per_point)`` values groups instead of points: players are the
distinct group ids (sorted), a coalition of groups is the union of their points, and the
result holds one value per group with ``ids`` = the group ids.

Internal API reused by other modules
------------------------------------
:func:`permutation_marginals` scans one permutation (optionally on top of a fixed base
coalition) and :func:`estimate_permutation_values` runs the full parallel, reproducible
sampling loop for any permutation generator (e.g. group-constrained permutations for
Monte Carlo Asymmetric Shapley); :func:`sample_rng` gives the generator of sample ``j``.

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
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import betaln, gammaln
from sklearn.base import BaseEstimator

from databazaar.core.errors import InvalidInput
from databazaar.valuation._validate import check_progress
from databazaar.valuation.exact import check_alpha_beta
from databazaar.valuation.parallel import (
    check_backend,
    check_n_jobs,
    effective_n_jobs,
    parallel_map,
)
from databazaar.valuation.result import ValuationResult
from databazaar.valuation.utility import GroupUtility, blas_limit, blas_threads_of, players_of

__all__ = [
    "BanzhafMSR",
    "BetaShapley",
    "LeaveOneOut",
    "MaxSamples",
    "MaxTime",
    "MonteCarloStats",
    "RunningStats",
    "SamplingState",
    "StderrBelow",
    "StoppingCriterion",
    "TMCShapley",
    "as_game",
    "beta_importance_weights",
    "estimate_permutation_values",
    "permutation_marginals",
    "sample_rng",
    "seed_entropy",
]

ProgressFn = Callable[[int], None]


# =========================================================================================
# Random streams
# =========================================================================================


def seed_entropy(random_state: Any) -> int:
    """The root entropy of a run: ``random_state`` itself for an int, fresh for ``None``.

    A :class:`numpy.random.Generator` contributes one draw (so it advances).
    """
    if random_state is None:
        return int(np.random.SeedSequence().entropy)  # type: ignore[arg-type]
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2**63 - 1))
    if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool):
        if random_state < 0:
            raise InvalidInput(f"random_state must be >= 0, got {random_state}")
        return int(random_state)
    raise InvalidInput(
        f"random_state must be None, a non-negative int or a numpy Generator, got {random_state!r}"
    )


def sample_rng(entropy: int, j: int) -> np.random.Generator:
    """Generator of sample ``j``: child ``j`` of ``SeedSequence(entropy)`` (as ``spawn``)."""
    return np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(int(j),)))


# =========================================================================================
# Stopping criteria
# =========================================================================================


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
        _check_criterion(other)
        return _Or(self, other)

    def __and__(self, other: StoppingCriterion) -> StoppingCriterion:
        _check_criterion(other)
        return _And(self, other)


def _check_criterion(obj: Any, name: str = "stopping") -> StoppingCriterion:
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
    """Two criteria joined by ``|`` or ``&``."""

    def __init__(self, a: StoppingCriterion, b: StoppingCriterion) -> None:
        self.a, self.b = a, b

    def reset(self) -> None:
        self.a.reset()
        self.b.reset()


class _Or(_Combined):
    def __call__(self, state: SamplingState) -> bool:
        return self.a(state) or self.b(state)

    def max_samples(self) -> float:
        return min(self.a.max_samples(), self.b.max_samples())

    def __repr__(self) -> str:
        return f"({self.a!r} | {self.b!r})"


class _And(_Combined):
    def __call__(self, state: SamplingState) -> bool:
        return self.a(state) and self.b(state)

    def max_samples(self) -> float:
        return max(self.a.max_samples(), self.b.max_samples())

    def __repr__(self) -> str:
        return f"({self.a!r} & {self.b!r})"


# =========================================================================================
# Games, permutations, marginals
# =========================================================================================


def as_game(utility: Any, groups: Any = None) -> tuple[Any, np.ndarray | None]:
    """``(game, ids)``: the utility itself (ids ``None``) or its :class:`GroupUtility`."""
    if not callable(utility):
        raise InvalidInput(
            f"utility must be callable u(indices) -> float, got {type(utility).__name__}",
            hint="build one with Utility(model, x_train, y_train, x_test, y_test)",
        )
    players_of(utility)  # raises a clear error when the player count is unknown
    if groups is None:
        return utility, None
    game = GroupUtility(utility, groups)
    return game, game.ids


def permutation_marginals(
    game: Callable[[Any], float],
    permutation: Sequence[int] | np.ndarray,
    *,
    u_start: float | None = None,
    u_total: float | None = None,
    base: Sequence[int] | np.ndarray | None = None,
    truncation_tol: float = 0.0,
    truncation_patience: int = 5,
    max_positions: int | None = None,
) -> np.ndarray:
    r"""Marginal contributions along one permutation (Ghorbani & Zou 2019, Alg. 1 inner loop).

    Returns ``m`` with ``m[j] = game(base ∪ π[:j+1]) - game(base ∪ π[:j])`` in
    *permutation order*.

    Args:
        game: set function on player positions.
        permutation: the order in which players join (need not contain every player).
        u_start: ``game(base)`` if already known (else computed).
        u_total: ``game(base ∪ all of permutation)`` if known.  Used as the truncation
            reference and to skip evaluating the last prefix.  Required when
            ``truncation_tol > 0``.
        base: players present before the permutation starts (e.g. the earlier groups
            :math:`U_t` of an asymmetric-Shapley ordering); default none.
        truncation_tol: relative performance tolerance; 0 disables truncation.  Once
            :math:`|u_{total} - u(P)| \le` ``truncation_tol`` :math:`\cdot |u_{total}|`
            for ``truncation_patience`` consecutive prefixes ``P``, the remaining
            marginals are 0 and not evaluated.
        truncation_patience: consecutive in-tolerance prefixes before truncating.
        max_positions: evaluate only the first ``max_positions`` positions; later
            marginals are 0 (used by :class:`BetaShapley` ``weight_tol``).
    """
    perm = np.asarray(permutation, dtype=np.int64).reshape(-1)
    base_arr = np.empty(0, dtype=np.int64) if base is None else np.asarray(base, dtype=np.int64)
    n = perm.shape[0]
    out = np.zeros(n, dtype=np.float64)
    if n == 0:
        return out
    if truncation_tol > 0 and u_total is None:
        raise InvalidInput("truncation needs u_total, the utility of the full coalition")
    prev = float(game(base_arr)) if u_start is None else float(u_start)
    limit = n if max_positions is None else max(0, min(n, int(max_positions)))
    streak = 0
    coalition = np.concatenate([base_arr, perm])
    nb = base_arr.shape[0]
    tol = float(truncation_tol) * (abs(u_total) if u_total is not None else 0.0)
    for j in range(limit):
        if j == n - 1 and u_total is not None:
            cur = float(u_total)
        else:
            cur = float(game(coalition[: nb + j + 1]))
        out[j] = cur - prev
        prev = cur
        if truncation_tol > 0:
            if abs(u_total - cur) <= tol:  # type: ignore[operator]
                streak += 1
                if streak >= truncation_patience:
                    break
            else:
                streak = 0
    return out


def _uniform_permutation(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.permutation(n)


@dataclass
class _PermutationJob:
    """Picklable worker: permutations ``start..stop-1`` → marginal rows in player order."""

    game: Any
    n: int
    entropy: int
    make_permutation: Callable[[np.random.Generator, int], np.ndarray]
    u_empty: float
    u_total: float
    truncation_tol: float
    truncation_patience: int
    weights: np.ndarray | None
    max_positions: int | None

    def __call__(self, task: tuple[int, int]) -> tuple[np.ndarray, Counters]:
        with blas_limit(blas_threads_of(self.game)):
            return self._run(task)

    def _run(self, task: tuple[int, int]) -> tuple[np.ndarray, Counters]:
        start, stop = task
        before = _counters(self.game)
        rows = np.full((stop - start, self.n), np.nan)
        for r, j in enumerate(range(start, stop)):
            rng = sample_rng(self.entropy, j)
            perm = np.asarray(self.make_permutation(rng, self.n), dtype=np.int64)
            full = perm.shape[0] == self.n
            marg = permutation_marginals(
                self.game,
                perm,
                u_start=self.u_empty,
                u_total=self.u_total if full else None,
                truncation_tol=self.truncation_tol if full else 0.0,
                truncation_patience=self.truncation_patience,
                max_positions=self.max_positions,
            )
            if self.weights is not None:
                marg = marg * self.weights[: marg.shape[0]]
            rows[r, perm] = marg
        return rows, _delta(self.game, before)


@dataclass
class _SubsetJob:
    """Picklable worker: MSR coalitions ``start..stop-1`` → (membership masks, utilities)."""

    game: Any
    n: int
    entropy: int

    def __call__(self, task: tuple[int, int]) -> tuple[tuple[np.ndarray, np.ndarray], Counters]:
        with blas_limit(blas_threads_of(self.game)):
            return self._run(task)

    def _run(self, task: tuple[int, int]) -> tuple[tuple[np.ndarray, np.ndarray], Counters]:
        start, stop = task
        before = _counters(self.game)
        masks = np.empty((stop - start, self.n), dtype=bool)
        values = np.empty(stop - start)
        for r, j in enumerate(range(start, stop)):
            mask = sample_rng(self.entropy, j).random(self.n) < 0.5
            masks[r] = mask
            values[r] = float(self.game(np.flatnonzero(mask)))
        return (masks, values), _delta(self.game, before)


_COUNTERS = ("n_evaluations", "n_cache_hits", "n_errors")
Counters = tuple[int, int, int]


def _counters(game: Any) -> Counters:
    """The utility's ``(n_evaluations, n_cache_hits, n_errors)`` (0 when absent)."""
    e, h, x = (int(getattr(game, name, 0) or 0) for name in _COUNTERS)
    return e, h, x


def _delta(game: Any, before: Counters) -> Counters:
    after = _counters(game)
    return after[0] - before[0], after[1] - before[1], after[2] - before[2]


def _merge_counters(game: Any, before: Counters, deltas: Sequence[Counters]) -> None:
    """Account for work done on copies of ``game`` (process and Ray workers).

    When the workers used ``game`` itself (in-process or threads) its counters already
    moved and are left alone; otherwise the workers' deltas are added.
    """
    if _counters(game) != before:
        return
    for name, base, add in zip(_COUNTERS, before, zip(*deltas, strict=True), strict=False):
        if hasattr(game, name):
            try:
                setattr(game, name, base + sum(add))
            except AttributeError:  # read-only on a user object
                pass


@dataclass
class MonteCarloStats:
    """Outcome of a sampling loop: per-player estimates and how many samples they used."""

    values: np.ndarray
    stderr: np.ndarray
    counts: np.ndarray
    n_samples: int
    elapsed: float


def _drive(
    job: Callable[[tuple[int, int]], tuple[Any, Counters]],
    fold: _Folder,
    game: Any,
    stopping: StoppingCriterion,
    *,
    n_jobs: int,
    backend: str,
    ray_address: str | None,
    batch_size: int,
    progress: ProgressFn | None,
) -> tuple[int, float]:
    """Dispatch batches of samples round by round and fold them in sample order.

    ``fold(batch_output)`` folds a batch sample by sample and returns how many samples it
    used before the stopping criterion fired (``-1`` if it did not).
    """
    stopping.reset()
    t0 = time.monotonic()
    bound = stopping.max_samples()
    workers = effective_n_jobs(n_jobs, backend)
    # several tasks per worker and round keep workers busy when tasks differ in cost
    per_round = 1 if workers == 1 and backend != "ray" else 4 * workers
    next_sample = 0
    while True:
        tasks: list[tuple[int, int]] = []
        for _ in range(per_round):
            if next_sample >= bound:
                break
            stop = int(min(next_sample + batch_size, bound))
            tasks.append((next_sample, stop))
            next_sample = stop
        if not tasks:
            break
        before = _counters(game)
        outs = parallel_map(job, tasks, n_jobs=n_jobs, backend=backend, ray_address=ray_address)
        _merge_counters(game, before, [o[1] for o in outs])
        for out in outs:
            used = fold(out[0])
            if progress is not None:
                progress(used if used >= 0 else _batch_len(out[0]))
            if used >= 0:
                return fold.n_samples, time.monotonic() - t0
    return fold.n_samples, time.monotonic() - t0


def _batch_len(batch: Any) -> int:
    return int(batch[0].shape[0]) if isinstance(batch, tuple) else int(batch.shape[0])


class _Folder:
    """Folds per-sample rows into running stats, checking the stopping rule after each."""

    def __init__(
        self,
        update: Callable[[Any, int], None],
        stderr_fn: Callable[[], np.ndarray],
        stopping: StoppingCriterion,
    ) -> None:
        self.update = update
        self.stderr_fn = stderr_fn
        self.stopping = stopping
        self.n_samples = 0
        self.t0 = time.monotonic()

    def __call__(self, batch: Any) -> int:
        size = _batch_len(batch)
        for r in range(size):
            self.update(batch, r)
            self.n_samples += 1
            state = SamplingState(self.n_samples, time.monotonic() - self.t0, self.stderr_fn)
            if self.stopping(state):
                return r + 1
        return -1


def estimate_permutation_values(
    game: Any,
    *,
    stopping: StoppingCriterion,
    random_state: Any = None,
    make_permutation: Callable[[np.random.Generator, int], np.ndarray] | None = None,
    weights: np.ndarray | None = None,
    truncation_tol: float = 0.0,
    truncation_patience: int = 5,
    max_positions: int | None = None,
    n_jobs: int = 1,
    backend: str = "joblib",
    ray_address: str | None = None,
    batch_size: int | None = None,
    progress: ProgressFn | None = None,
) -> MonteCarloStats:
    """Mean (optionally importance-weighted) marginal of every player over sampled permutations.

    The sampling loop behind :class:`TMCShapley` and :class:`BetaShapley`, reusable with
    any permutation distribution.  Permutation ``j`` is
    ``make_permutation(sample_rng(entropy, j), n)`` (default: uniform); it may omit
    players (they get no sample from it).  The marginal at position ``k`` is multiplied by
    ``weights[k]`` when given.  Runs in parallel over batches of permutations, folds them
    in order, and stops when ``stopping`` says so; reproducible for a fixed
    ``random_state`` whatever ``n_jobs``/``backend``/``batch_size``.

    Returns:
        :class:`MonteCarloStats` with per-player mean, stderr and sample counts.
    """
    _check_criterion(stopping)
    check_backend(backend)
    check_n_jobs(n_jobs)
    if batch_size is not None and not _is_pos_int(batch_size):
        raise InvalidInput(f"batch_size must be an integer >= 1 or None, got {batch_size!r}")
    n = players_of(game)
    entropy = seed_entropy(random_state)
    if batch_size is None:
        batch_size = max(1, math.ceil(64 / max(n, 1)))
    with blas_limit(blas_threads_of(game)):
        u_empty = float(game(np.empty(0, dtype=np.int64)))
        u_total = float(game(np.arange(n)))
    job = _PermutationJob(
        game=game,
        n=n,
        entropy=entropy,
        make_permutation=make_permutation or _uniform_permutation,
        u_empty=u_empty,
        u_total=u_total,
        truncation_tol=float(truncation_tol),
        truncation_patience=int(truncation_patience),
        weights=None if weights is None else np.asarray(weights, dtype=np.float64),
        max_positions=max_positions,
    )
    stats = RunningStats(n)

    def update(batch: np.ndarray, r: int) -> None:
        stats.update(batch[r])

    folder = _Folder(update, stats.stderr, stopping)
    n_samples, elapsed = _drive(
        job,
        folder,
        game,
        stopping,
        n_jobs=n_jobs,
        backend=backend,
        ray_address=ray_address,
        batch_size=batch_size,
        progress=progress,
    )
    values = np.where(stats.count > 0, stats.mean, np.nan)
    return MonteCarloStats(values, stats.stderr(), stats.count.copy(), n_samples, elapsed)


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


# =========================================================================================
# Estimators
# =========================================================================================


class _Valuation(BaseEstimator):
    """Shared ``fit`` plumbing; subclasses implement ``_fit(game, ids, progress)``."""

    _method = "unknown"

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
        check_backend(self.backend)
        check_n_jobs(self.n_jobs)
        check_progress(progress)
        game, ids = as_game(utility, groups)
        before = _counters(game)
        result = self._fit(game, ids, progress)
        evals, _, errors = _delta(game, before)
        if evals > 0 and errors == evals:
            warnings.warn(
                f"all {evals} utility evaluations failed and returned the default score, so "
                f"every value is 0; last error: {getattr(game, 'last_error', None)}",
                RuntimeWarning,
                stacklevel=2,
            )
        self.result_ = result
        return self

    def _fit(
        self, game: Any, ids: np.ndarray | None, progress: ProgressFn | None
    ) -> ValuationResult:
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

    def _set_sampling_params(
        self,
        stopping: StoppingCriterion | None,
        n_jobs: int,
        backend: str,
        random_state: Any,
        batch_size: int | None,
        ray_address: str | None,
    ) -> None:
        """Store the constructor arguments shared by the sampling estimators as given."""
        self.stopping = stopping
        self.n_jobs = n_jobs
        self.backend = backend
        self.random_state = random_state
        self.batch_size = batch_size
        self.ray_address = ray_address

    def _common_checks(self) -> tuple[StoppingCriterion, int | None]:
        stopping = self.stopping if self.stopping is not None else self._default_stopping()
        _check_criterion(stopping)
        bs = self.batch_size
        if bs is not None and not _is_pos_int(bs):
            raise InvalidInput(f"batch_size must be an integer >= 1 or None, got {bs!r}")
        return stopping, None if bs is None else int(bs)

    def _default_stopping(self) -> StoppingCriterion:
        return MaxSamples(100)

    def _permutation_stats(
        self,
        game: Any,
        stopping: StoppingCriterion,
        batch_size: int | None,
        progress: ProgressFn | None,
        **options: Any,
    ) -> MonteCarloStats:
        """:func:`estimate_permutation_values` with this estimator's sampling settings.

        ``stopping`` and ``batch_size`` as returned by :meth:`_common_checks`; ``options``
        are the estimator-specific keyword arguments (truncation, weights, ...).
        """
        return estimate_permutation_values(
            game,
            stopping=stopping,
            random_state=self.random_state,
            n_jobs=self.n_jobs,
            backend=self.backend,
            ray_address=self.ray_address,
            batch_size=batch_size,
            progress=progress,
            **options,
        )

    def _params(self, stopping: StoppingCriterion, extra: dict[str, Any]) -> dict[str, Any]:
        rs = self.random_state
        if not isinstance(rs, (int, type(None))):
            rs = str(rs)
        return {"stopping": repr(stopping), "random_state": rs, **extra}


def _is_nonneg_number(x: Any) -> bool:
    return (
        not isinstance(x, bool)
        and isinstance(x, (int, float, np.number))
        and bool(np.isfinite(x))
        and x >= 0
    )


def _is_pos_int(x: Any) -> bool:
    return not isinstance(x, bool) and isinstance(x, (int, np.integer)) and x >= 1


def _check_truncation(tol: Any, patience: Any) -> tuple[float, int]:
    if not _is_nonneg_number(tol):
        raise InvalidInput(
            f"truncation_tol must be a number >= 0, got {tol!r}", hint="0 disables truncation"
        )
    if not _is_pos_int(patience):
        raise InvalidInput(f"truncation_patience must be an integer >= 1, got {patience!r}")
    return float(tol), int(patience)


def _result_from_stats(
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


class TMCShapley(_Valuation):
    r"""Truncated Monte Carlo Data Shapley (Ghorbani & Zou 2019).

    Args:
        truncation_tol: relative performance tolerance; a permutation is truncated once
            :math:`|u(D) - u(P)| \le` ``truncation_tol`` :math:`\cdot |u(D)|` held for
            ``truncation_patience`` consecutive prefixes :math:`P` (the remaining points
            get marginal 0).  ``0`` gives plain, unbiased permutation sampling.
        truncation_patience: consecutive prefixes within tolerance before truncating.
        stopping: a stopping criterion on permutations; default ``MaxSamples(100)``.
        n_jobs: parallel workers (``-1`` = all cores).
        backend: ``"joblib"`` (default), ``"loky"``, ``"threading"``, ``"ray"``.
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
        stopping: StoppingCriterion | None = None,
        n_jobs: int = 1,
        backend: str = "joblib",
        random_state: Any = None,
        batch_size: int | None = None,
        ray_address: str | None = None,
    ) -> None:
        self.truncation_tol = truncation_tol
        self.truncation_patience = truncation_patience
        self._set_sampling_params(stopping, n_jobs, backend, random_state, batch_size, ray_address)

    def _fit(
        self, game: Any, ids: np.ndarray | None, progress: ProgressFn | None
    ) -> ValuationResult:
        tol, patience = _check_truncation(self.truncation_tol, self.truncation_patience)
        stopping, batch_size = self._common_checks()
        stats = self._permutation_stats(
            game, stopping, batch_size, progress, truncation_tol=tol, truncation_patience=patience
        )
        params = self._params(stopping, {"truncation_tol": tol, "truncation_patience": patience})
        return _result_from_stats(stats, ids, self._method, params)


class BetaShapley(_Valuation):
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
            off by default.
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
        truncation_patience: int = 5,
        stopping: StoppingCriterion | None = None,
        n_jobs: int = 1,
        backend: str = "joblib",
        random_state: Any = None,
        batch_size: int | None = None,
        ray_address: str | None = None,
    ) -> None:
        self.alpha = alpha
        self.beta = beta
        self.weight_tol = weight_tol
        self.truncation_tol = truncation_tol
        self.truncation_patience = truncation_patience
        self._set_sampling_params(stopping, n_jobs, backend, random_state, batch_size, ray_address)

    def _fit(
        self, game: Any, ids: np.ndarray | None, progress: ProgressFn | None
    ) -> ValuationResult:
        a, b = check_alpha_beta(self.alpha, self.beta)
        tol, patience = _check_truncation(self.truncation_tol, self.truncation_patience)
        wt = self.weight_tol
        if not _is_nonneg_number(wt):
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
        return _result_from_stats(stats, ids, self._method, params)


class BanzhafMSR(_Valuation):
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

    def __init__(
        self,
        stopping: StoppingCriterion | None = None,
        n_jobs: int = 1,
        backend: str = "joblib",
        random_state: Any = None,
        batch_size: int | None = None,
        ray_address: str | None = None,
    ) -> None:
        self._set_sampling_params(stopping, n_jobs, backend, random_state, batch_size, ray_address)

    def _default_stopping(self) -> StoppingCriterion:
        return MaxSamples(1000)

    def _fit(
        self, game: Any, ids: np.ndarray | None, progress: ProgressFn | None
    ) -> ValuationResult:
        stopping, batch_size = self._common_checks()
        n = players_of(game)
        entropy = seed_entropy(self.random_state)
        inside, outside = RunningStats(n), RunningStats(n)

        def stderr() -> np.ndarray:
            return np.sqrt(
                inside.variance() / np.maximum(inside.count, 1)
                + outside.variance() / np.maximum(outside.count, 1)
            )

        def update(batch: tuple[np.ndarray, np.ndarray], r: int) -> None:
            masks, values = batch
            mask, u = masks[r], values[r]
            inside.update(np.where(mask, u, np.nan))
            outside.update(np.where(mask, np.nan, u))

        folder = _Folder(update, stderr, stopping)
        n_samples, elapsed = _drive(
            _SubsetJob(game, n, entropy),
            folder,
            game,
            stopping,
            n_jobs=self.n_jobs,
            backend=self.backend,
            ray_address=self.ray_address,
            batch_size=batch_size or 64,
            progress=progress,
        )
        both = (inside.count > 0) & (outside.count > 0)
        if not both.all():
            warnings.warn(
                f"{int((~both).sum())} player(s) were never both inside and outside a sampled "
                "coalition; their Banzhaf value is NaN (sample more coalitions)",
                RuntimeWarning,
                stacklevel=3,
            )
        values = np.where(both, inside.mean - outside.mean, np.nan)
        stats = MonteCarloStats(values, stderr(), np.full(n, n_samples), n_samples, elapsed)
        return _result_from_stats(stats, ids, self._method, self._params(stopping, {}))


@dataclass
class _LooJob:
    game: Any
    n: int

    def __call__(self, players: np.ndarray) -> tuple[np.ndarray, Counters]:
        with blas_limit(blas_threads_of(self.game)):
            return self._run(players)

    def _run(self, players: np.ndarray) -> tuple[np.ndarray, Counters]:
        before = _counters(self.game)
        everyone = np.arange(self.n)
        out = np.array([float(self.game(np.delete(everyone, int(i)))) for i in players])
        return out, _delta(self.game, before)


class LeaveOneOut(_Valuation):
    r"""Leave-one-out values :math:`u(D) - u(D \setminus i)` (exact; :math:`n+1` evaluations).

    Args:
        n_jobs, backend, ray_address: parallelism over the :math:`n` refits.
    """

    _method = "loo"

    def __init__(
        self, n_jobs: int = 1, backend: str = "joblib", ray_address: str | None = None
    ) -> None:
        self.n_jobs = n_jobs
        self.backend = backend
        self.ray_address = ray_address

    def _fit(
        self, game: Any, ids: np.ndarray | None, progress: ProgressFn | None
    ) -> ValuationResult:
        n = players_of(game)
        with blas_limit(blas_threads_of(game)):
            total = float(game(np.arange(n)))
        workers = effective_n_jobs(self.n_jobs, self.backend)
        chunks = [c for c in np.array_split(np.arange(n), max(1, min(n, 4 * workers))) if c.size]
        before = _counters(game)
        outs = parallel_map(
            _LooJob(game, n),
            chunks,
            n_jobs=self.n_jobs,
            backend=self.backend,
            ray_address=self.ray_address,
        )
        _merge_counters(game, before, [o[1] for o in outs])
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
