r"""Compiled inner loops of exact KNN Asymmetric Data Shapley and of the KNN CI sampler.

Exact KNN-ADS per test point (see :mod:`databazaar.valuation.asymmetric` for the
derivation).  With the KNN utility of Jia et al. (2019),
``v(S) = (1/K) * sum_{p in S} c_p * 1[p is among the K nearest of S]``, the utility is a
sum of one game per training point ``p``.  For a point ``z`` of group ``t`` the ADS value
is the Shapley value of ``z`` in the game ``w_t(S) = v(U_t ∪ S)`` on the players of
group ``t`` (``U_t`` = all earlier groups), so by linearity it is the sum of the Shapley
values of the per-point games, each of which has a closed form:

* ``p = v_l``, the ``l``-th nearest point of group ``t`` with ``beta_l`` earlier-group
  points closer than it and ``K' = K - beta_l``: if ``K' <= 0`` the game is zero;
  otherwise ``v_l`` receives ``c_{v_l} min(K', l) / l`` and each of the ``l - 1`` closer
  group-``t`` points receives ``-c_{v_l} K' / (l (l - 1))`` when ``K' < l`` (else 0).
* ``p = u``, an earlier-group point with ``a`` earlier-group points closer than it and
  ``c`` group-``t`` points closer than it: if ``a < K <= a + c`` each of those ``c``
  points receives ``-c_u / c``; otherwise nothing.

All terms are ``c / K``-scaled below.  One pass over the sorted training points computes
``beta`` (a Fenwick tree over group ranks), the per-point terms and the difference array
of the earlier-group terms; a second pass turns suffix sums and prefix sums into values.
Cost per test point: ``O(N log T + K T)`` after the ``O(N log N)`` sort.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(nogil=True, cache=True)
def ads_accumulate(
    order, grank, y_train, y_test, offsets, n_groups, k, acc, acc2
):  # pragma: no cover
    """Add the exact KNN-ADS values of each row of ``order`` to ``acc`` (squares to ``acc2``).

    Args:
        order: ``(m, n)`` int64, training indices of each test point nearest first (ties
            already broken by index).
        grank: ``(n,)`` int64, position of each training point's group in the order.
        y_train, y_test: int64 label codes.
        offsets: ``(T + 1,)`` int64, cumulative group sizes in group order.
        n_groups: ``T``.
        k: ``K``.
        acc, acc2: ``(n,)`` float64 accumulators.
    """
    m, n = order.shape
    T = n_groups
    cnt = np.zeros(T, dtype=np.int64)
    fen = np.zeros(T + 1, dtype=np.int64)
    a_term = np.zeros(n)
    b_term = np.zeros(n)
    # group t owns the difference-array cells offsets[t] + t .. offsets[t + 1] + t
    c_diff = np.zeros(n + T)
    slot_point = np.zeros(n, dtype=np.int64)
    for r in range(m):
        yt = y_test[r]
        cnt[:] = 0
        fen[:] = 0
        c_diff[:] = 0.0
        for p in range(n):
            i = order[r, p]
            g = grank[i]
            ci = 1.0 if y_train[i] == yt else 0.0
            cnt[g] += 1
            rk = cnt[g]
            slot = offsets[g] + rk - 1
            slot_point[slot] = i
            # beta: earlier points whose group precedes g (Fenwick prefix over ranks < g)
            beta = 0
            j = g
            while j > 0:
                beta += fen[j]
                j -= j & (-j)
            kp = k - beta
            if kp > 0:
                a_term[slot] = ci * (kp if kp < rk else rk) / rk
                b_term[slot] = ci * kp / (rk * (rk - 1.0)) if kp < rk else 0.0
            else:
                a_term[slot] = 0.0
                b_term[slot] = 0.0
            # this point as an earlier-group point u of every later group t:
            # a = earlier points with group rank < t, c = earlier points of group t
            if ci != 0.0:
                a = 0
                j = g + 1
                while j > 0:
                    a += fen[j]
                    j -= j & (-j)
                t = g + 1
                while t < T and a < k:
                    c = cnt[t]
                    if c >= k - a:
                        w = ci / c
                        base = offsets[t] + t
                        c_diff[base] += w
                        c_diff[base + c] -= w
                    a += c
                    t += 1
            # insert rank g into the Fenwick tree (1-based index g + 1)
            j = g + 1
            while j <= T:
                fen[j] += 1
                j += j & (-j)
        # second pass: per group, prefix sums of the difference array, suffix sums of b
        for t in range(T):
            lo = offsets[t]
            hi = offsets[t + 1]
            run_c = 0.0
            for s in range(lo, hi):
                run_c += c_diff[s + t]
                a_term[s] -= run_c
            run_b = 0.0
            for s in range(hi - 1, lo - 1, -1):
                phi = (a_term[s] - run_b) / k
                run_b += b_term[s]
                idx = slot_point[s]
                acc[idx] += phi
                acc2[idx] += phi * phi


@njit(nogil=True, cache=True)
def knn_marginal(order, y_train, y_test, z, mask, k):  # pragma: no cover - jit
    """Mean over test rows of ``v(S ∪ {z}) - v(S)`` for the KNN utility.

    ``mask[i]`` marks the members of ``S`` (``z`` must not be one).  Each row walks its
    sorted order only until the ``K``-th member of ``S``: ``z`` enters the top ``K`` iff
    it comes first, and then evicts that member (nothing when ``|S| < K``).
    """
    m, n = order.shape
    total = 0.0
    for r in range(m):
        seen = 0
        z_seen = False
        evict = -1
        for p in range(n):
            i = order[r, p]
            if i == z:
                z_seen = True
            elif mask[i]:
                seen += 1
                if seen == k:
                    evict = i
                    break
        if not z_seen:
            continue
        yt = y_test[r]
        cz = 1.0 if y_train[z] == yt else 0.0
        if evict >= 0:
            total += cz - (1.0 if y_train[evict] == yt else 0.0)
        else:
            total += cz
    return total / (k * m)


@njit(nogil=True, cache=True)
def sample_subset(rng_u, pool, size, mask):  # pragma: no cover - jit
    """Mark a uniform random ``size``-subset of ``pool`` in ``mask`` (partial Fisher-Yates).

    ``rng_u`` holds at least ``size`` uniforms in ``[0, 1)``; ``pool`` is permuted in place.
    """
    n = pool.shape[0]
    for j in range(size):
        r = j + int(rng_u[j] * (n - j))
        if r >= n:
            r = n - 1
        tmp = pool[j]
        pool[j] = pool[r]
        pool[r] = tmp
        mask[pool[j]] = True


def warm_up() -> None:
    """Compile the kernels (cached on disk by numba afterwards)."""
    order = np.array([[0, 1, 2]], dtype=np.int64)
    grank = np.array([0, 1, 1], dtype=np.int64)
    y = np.array([0, 1, 0], dtype=np.int64)
    yt = np.array([0], dtype=np.int64)
    acc = np.zeros(3)
    acc2 = np.zeros(3)
    ads_accumulate(order, grank, y, yt, np.array([0, 1, 3], dtype=np.int64), 2, 2, acc, acc2)
    mask = np.zeros(3, dtype=np.bool_)
    knn_marginal(order, y, yt, 0, mask, 2)
    pool = np.arange(3, dtype=np.int64)
    sample_subset(np.zeros(3), pool, 2, mask)
