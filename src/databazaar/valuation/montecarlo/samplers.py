r"""Samplers: what a Monte Carlo valuation draws, and the random stream it draws it from.

Seeding (one rule for every Monte Carlo method)
    Sample ``j`` (a permutation or a coalition) is drawn from its own generator
    :func:`sample_rng` ``(entropy, j)`` = ``default_rng(SeedSequence(entropy,
    spawn_key=(j,)))``, the ``j``-th child of ``SeedSequence(random_state).spawn``, where
    :func:`seed_entropy` turns ``random_state`` into the root entropy.  Samples are
    independent of batching and of the worker that draws them, so the same
    ``random_state`` gives the same values for any ``n_jobs``, batch size and backend.

Samplers
    A sampler is a picklable callable ``sampler(rng, n)`` returning one sample over
    ``n`` players.  :class:`PermutationSampler` draws a uniform permutation (Castro et
    al. 2009); :class:`OrderedPermutationSampler` a uniform permutation consistent with
    an order of groups (shuffle each group, concatenate in order: a uniform draw from
    :math:`\Pi_\sigma` of Asymmetric Data Shapley); :class:`MSRSampler` a coalition
    containing each player independently with probability 1/2 (Wang & Jia 2023).

References:
    Castro, J., Gómez, D. & Tejada, J. (2009). Polynomial calculation of the Shapley value
    based on sampling. Computers & Operations Research 36(5):1726-1730.
    Wang, J. T. & Jia, R. (2023). Data Banzhaf: A Robust Data Valuation Framework for
    Machine Learning. AISTATS, PMLR 206:6388-6421.
    Zheng, Chang, Jia, Tan (2024). Towards Data Valuation via Asymmetric Data Shapley.
    arXiv:2411.00388.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from databazaar.core.errors import InvalidInput

__all__ = [
    "MSRSampler",
    "OrderedPermutationSampler",
    "PermutationSampler",
    "sample_rng",
    "seed_entropy",
    "spawn_seeds",
]


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


def spawn_seeds(random_state: Any, n: int) -> list[np.random.SeedSequence]:
    """``n`` independent child seeds of ``random_state`` (child ``j`` seeds sample ``j``)."""
    return np.random.SeedSequence(seed_entropy(random_state)).spawn(int(n))


@dataclass(frozen=True)
class PermutationSampler:
    """A uniformly random permutation of ``0..n-1``."""

    def __call__(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.permutation(n)


@dataclass(frozen=True)
class OrderedPermutationSampler:
    """A uniform permutation in which every group precedes the groups after it.

    ``members[t]`` are the players of group ``t``; together they partition ``0..n-1``.
    """

    members: Sequence[np.ndarray]

    def __call__(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return np.concatenate([rng.permutation(m) for m in self.members]).astype(np.int64)


@dataclass(frozen=True)
class MSRSampler:
    """A coalition mask: each player in independently with probability 1/2."""

    def __call__(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.random(n) < 0.5
