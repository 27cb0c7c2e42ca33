r"""The one Monte Carlo engine behind every sampled valuation method.

A run draws samples (permutations or coalitions, :mod:`.samplers`), evaluates the
utility on them in parallel batches (:class:`~databazaar.core.parallel.ParallelConfig`),
and folds the per-sample results in sample order into running statistics, checking the
stopping criterion (:mod:`.stopping`) after every sample.  So the same ``random_state``
gives bit-identical values for any ``n_jobs``, batch size and backend, as long as the
utility itself is deterministic.

:func:`permutation_marginals`
    scans one permutation: the marginal :math:`u(P^\pi_i \cup i) - u(P^\pi_i)` of each
    player given its predecessors, with the truncation of Ghorbani & Zou (2019, Alg. 1).
:func:`estimate_permutation_values`
    the full loop for permutation methods (TMC, Beta Shapley, Monte Carlo ADS): the
    (optionally importance-weighted) mean marginal of every player and its stderr.
:func:`estimate_msr_values`
    the loop for maximum-sample-reuse Banzhaf: per-player means of the utility over the
    sampled coalitions that contain and that do not contain the player.

References:
    Ghorbani, A. & Zou, J. (2019). Data Shapley: Equitable Valuation of Data for Machine
    Learning. ICML, PMLR 97:2242-2251.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from databazaar.core.errors import InvalidInput
from databazaar.core.parallel import ParallelConfig, blas_limit
from databazaar.valuation._validate import is_pos_int
from databazaar.valuation.groups import GroupUtility
from databazaar.valuation.montecarlo.samplers import (
    MSRSampler,
    PermutationSampler,
    sample_rng,
    seed_entropy,
)
from databazaar.valuation.montecarlo.stats import MonteCarloStats, RunningStats
from databazaar.valuation.montecarlo.stopping import (
    SamplingState,
    StoppingCriterion,
    check_criterion,
)
from databazaar.valuation.utility import blas_threads_of, players_of

__all__ = [
    "MonteCarloStats",
    "RunningStats",
    "as_game",
    "estimate_msr_values",
    "estimate_permutation_values",
    "permutation_marginals",
]

ProgressFn = Callable[[int], None]


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

    When ``game`` has ``prefix_scores(order)`` returning the utilities of all prefixes
    (an exact incremental model, :mod:`databazaar.valuation.incremental`), they come
    from one pass instead of one fit per prefix; ``None`` from it means "refit".

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
    # one incremental pass where the utility offers it (exact; see valuation.incremental)
    stop = limit if u_total is None or limit < n else n - 1
    scan = getattr(game, "prefix_scores", None)
    scores = scan(coalition[: nb + stop]) if scan is not None and stop > 0 else None
    for j in range(limit):
        if j == n - 1 and u_total is not None:
            cur = float(u_total)
        elif scores is not None:
            cur = float(scores[nb + j])
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


@dataclass
class _PermutationJob:
    """Picklable worker: permutations ``start..stop-1`` → marginal rows in player order."""

    game: Any
    n: int
    entropy: int
    sampler: Callable[[np.random.Generator, int], np.ndarray]
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
        before = counters(self.game)
        rows = np.full((stop - start, self.n), np.nan)
        for r, j in enumerate(range(start, stop)):
            rng = sample_rng(self.entropy, j)
            perm = np.asarray(self.sampler(rng, self.n), dtype=np.int64)
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
        return rows, counters_delta(self.game, before)


@dataclass
class _SubsetJob:
    """Picklable worker: MSR coalitions ``start..stop-1`` → (membership masks, utilities)."""

    game: Any
    n: int
    entropy: int
    sampler: Callable[[np.random.Generator, int], np.ndarray]

    def __call__(self, task: tuple[int, int]) -> tuple[tuple[np.ndarray, np.ndarray], Counters]:
        with blas_limit(blas_threads_of(self.game)):
            return self._run(task)

    def _run(self, task: tuple[int, int]) -> tuple[tuple[np.ndarray, np.ndarray], Counters]:
        start, stop = task
        before = counters(self.game)
        masks = np.empty((stop - start, self.n), dtype=bool)
        values = np.empty(stop - start)
        for r, j in enumerate(range(start, stop)):
            mask = self.sampler(sample_rng(self.entropy, j), self.n)
            masks[r] = mask
            values[r] = float(self.game(np.flatnonzero(mask)))
        return (masks, values), counters_delta(self.game, before)


_COUNTERS = ("n_evaluations", "n_cache_hits", "n_errors")
Counters = tuple[int, int, int]


def counters(game: Any) -> Counters:
    """The utility's ``(n_evaluations, n_cache_hits, n_errors)`` (0 when absent)."""
    e, h, x = (int(getattr(game, name, 0) or 0) for name in _COUNTERS)
    return e, h, x


def counters_delta(game: Any, before: Counters) -> Counters:
    after = counters(game)
    return after[0] - before[0], after[1] - before[1], after[2] - before[2]


def merge_counters(game: Any, before: Counters, deltas: Sequence[Counters]) -> None:
    """Account for work done on copies of ``game`` (process and Ray workers).

    When the workers used ``game`` itself (in-process or threads) its counters already
    moved and are left alone; otherwise the workers' deltas are added.
    """
    if counters(game) != before:
        return
    for name, base, add in zip(_COUNTERS, before, zip(*deltas, strict=True), strict=False):
        if hasattr(game, name):
            try:
                setattr(game, name, base + sum(add))
            except AttributeError:  # read-only on a user object
                pass


def _drive(
    job: Callable[[tuple[int, int]], tuple[Any, Counters]],
    update: Callable[[Any, int], None],
    stderr_fn: Callable[[], np.ndarray],
    game: Any,
    stopping: StoppingCriterion,
    *,
    parallel: ParallelConfig | None,
    batch_size: int,
    progress: ProgressFn | None,
) -> tuple[int, float]:
    """Dispatch batches of samples round by round and fold them in sample order.

    ``update(batch_output, r)`` folds sample ``r`` of a batch into the running
    statistics; ``stderr_fn()`` gives the per-player stderr the stopping criterion sees.
    Returns ``(samples folded, seconds)``.
    """
    parallel = parallel or ParallelConfig()
    fold = _Folder(update, stderr_fn, stopping)
    stopping.reset()
    t0 = time.monotonic()
    bound = stopping.max_samples()
    workers = parallel.workers
    # several tasks per worker and round keep workers busy when tasks differ in cost
    per_round = 1 if workers == 1 and parallel.backend != "ray" else 4 * workers
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
        before = counters(game)
        outs = parallel.map(job, tasks)
        merge_counters(game, before, [o[1] for o in outs])
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
    sampler: Callable[[np.random.Generator, int], np.ndarray] | None = None,
    weights: np.ndarray | None = None,
    truncation_tol: float = 0.0,
    truncation_patience: int = 5,
    max_positions: int | None = None,
    parallel: ParallelConfig | None = None,
    batch_size: int | None = None,
    progress: ProgressFn | None = None,
) -> MonteCarloStats:
    """Mean (optionally importance-weighted) marginal of every player over sampled permutations.

    The sampling loop behind :class:`TMCShapley` and :class:`BetaShapley`, reusable with
    any permutation distribution.  Permutation ``j`` is
    ``sampler(sample_rng(entropy, j), n)`` (default: :class:`PermutationSampler`); it may omit
    players (they get no sample from it).  The marginal at position ``k`` is multiplied by
    ``weights[k]`` when given.  Runs in parallel over batches of permutations, folds them
    in order, and stops when ``stopping`` says so; reproducible for a fixed
    ``random_state`` whatever the parallel setting and ``batch_size`` (permutations per
    task, default ``ceil(64 / n)``).

    Returns:
        :class:`MonteCarloStats` with per-player mean, stderr and sample counts.
    """
    n = players_of(game)
    entropy = seed_entropy(random_state)
    batch_size = _check_batch(stopping, batch_size, max(1, math.ceil(64 / max(n, 1))))
    with blas_limit(blas_threads_of(game)):
        u_empty = float(game(np.empty(0, dtype=np.int64)))
        u_total = float(game(np.arange(n)))
    job = _PermutationJob(
        game=game,
        n=n,
        entropy=entropy,
        sampler=sampler or PermutationSampler(),
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

    n_samples, elapsed = _drive(
        job,
        update,
        stats.stderr,
        game,
        stopping,
        parallel=parallel,
        batch_size=batch_size,
        progress=progress,
    )
    values = np.where(stats.count > 0, stats.mean, np.nan)
    return MonteCarloStats(values, stats.stderr(), stats.count.copy(), n_samples, elapsed)


def estimate_msr_values(
    game: Any,
    *,
    stopping: StoppingCriterion,
    random_state: Any = None,
    parallel: ParallelConfig | None = None,
    batch_size: int | None = None,
    progress: ProgressFn | None = None,
) -> tuple[MonteCarloStats, np.ndarray]:
    r"""Maximum-sample-reuse Banzhaf estimate (Wang & Jia 2023, Alg. 1).

    Coalition ``j`` is ``MSRSampler()(sample_rng(entropy, j), n)``; each costs one
    utility evaluation and updates every player: :math:`\hat\beta_i = \bar u_{S \ni i}
    - \bar u_{S \not\ni i}`, stderr :math:`\sqrt{s^2_{in}/m_{in} + s^2_{out}/m_{out}}`.

    Returns:
        ``(stats, both)``: values are NaN (stderr ``inf``) where ``both`` is False, i.e.
        for players not yet sampled both inside and outside a coalition.
    """
    n = players_of(game)
    entropy = seed_entropy(random_state)
    batch_size = _check_batch(stopping, batch_size, 64)
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

    job = _SubsetJob(game, n, entropy, MSRSampler())
    n_samples, elapsed = _drive(
        job,
        update,
        stderr,
        game,
        stopping,
        parallel=parallel,
        batch_size=batch_size,
        progress=progress,
    )
    both = (inside.count > 0) & (outside.count > 0)
    values = np.where(both, inside.mean - outside.mean, np.nan)
    stats = MonteCarloStats(values, stderr(), np.full(n, n_samples), n_samples, elapsed)
    return stats, both


def _check_batch(stopping: Any, batch_size: Any, default: int) -> int:
    check_criterion(stopping)
    if batch_size is None:
        return default
    if not is_pos_int(batch_size):
        raise InvalidInput(f"batch_size must be an integer >= 1 or None, got {batch_size!r}")
    return int(batch_size)
