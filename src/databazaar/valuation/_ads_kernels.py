r"""Compiled inner loop of exact KNN Asymmetric Data Shapley (the KNN CI oracle's loops
are in :mod:`databazaar.valuation._ci_kernels`).

Exact KNN-ADS per test point (derivation: :mod:`databazaar.valuation.knn_asymmetric`).
With the KNN utility of Jia et al. (2019),
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
of the earlier-group terms; a second pass turns prefix sums into values.
Cost per test point: ``O(N log T + K T)`` after the ``O(N log N)`` sort.

Ties (the rule of :mod:`databazaar.valuation.knn`): training points with equal distance
keys form a tie class, and the value is the average of the strict-order value over the
uniformly random orders of each class.  The formulas above are linear in the per-point
terms, so a class is valued by averaging ``F``, ``W`` and the eviction shares over the
joint law of how many tied points of the group (``i``) and of earlier groups (``j``)
precede a member: ``P(i, j) = C(a, i) C(b, j) / (C(a + b, i + j) (a + b + 1))`` for ``a``
and ``b`` such tied points.  Only ``j < K - beta`` matters, so a class of ``g`` group
points costs ``O(g K)``; an untied point costs what it did in the strict formula.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(nogil=True, cache=True)
def _log_binom(n, r):  # pragma: no cover - jit
    return math.lgamma(n + 1.0) - math.lgamma(r + 1.0) - math.lgamma(n - r + 1.0)


@njit(nogil=True, cache=True)
def _pred_prob(a, b, i, j):  # pragma: no cover - jit
    """P(a point has ``i`` of ``a`` and ``j`` of ``b`` other tied points before it)."""
    if a == 0 or b == 0:  # one kind only: the count before it is uniform
        return 1.0 / (a + b + 1.0)
    lp = _log_binom(a, i) + _log_binom(b, j) - _log_binom(a + b, i + j)
    return math.exp(lp) / (a + b + 1.0)


@njit(nogil=True, cache=True)
def _own_terms(l0, b0, g, h, k, out):  # pragma: no cover - jit
    """Tie-averaged ``F``, ``W`` and same-class ``W`` of a group member in its class.

    The member has ``g - 1`` tied group points and ``h`` tied earlier-group points; its
    group rank is ``l0 + 1 + i`` and ``beta = b0 + j`` with ``(i, j)`` the tied points
    before it.  ``out = (E F, E W, E[i/(g-1) W])`` with ``F = min(K', l)/l`` and
    ``W = K'/(l(l-1))`` for ``0 < K' = K - beta < l``.
    """
    out[0] = 0.0
    out[1] = 0.0
    out[2] = 0.0
    a = g - 1
    jmax = min(h, k - 1 - b0)
    for i in range(a + 1):
        ln = l0 + 1.0 + i
        for j in range(jmax + 1):
            pr = _pred_prob(a, h, i, j)
            kp = k - b0 - j
            out[0] += pr * (kp if kp < ln else ln) / ln
            if kp < ln:
                w = pr * kp / (ln * (ln - 1.0))
                out[1] += w
                if a > 0:
                    out[2] += w * i / a


@njit(nogil=True, cache=True)
def _evict_terms(l0, a0, g, h, k, out):  # pragma: no cover - jit
    """Tie-averaged eviction share of an earlier-group point ``u`` in a class.

    ``u`` has ``g`` tied group points and ``h - 1`` tied earlier-group points; with
    ``(i, j)`` of them before it, ``a = a0 + j`` earlier-group and ``c = l0 + i`` group
    points precede it, and each of those ``c`` loses ``1/c`` when ``a < K <= a + c``.
    ``out = (E[share], E[i/g share])``: the loss of a group point before the class, and
    of one tied with ``u``.
    """
    out[0] = 0.0
    out[1] = 0.0
    jmax = min(h - 1, k - 1 - a0)
    for i in range(g + 1):
        c = l0 + i
        if c == 0:
            continue
        for j in range(jmax + 1):
            if a0 + j + c >= k:
                pr = _pred_prob(g, h - 1, i, j) / c
                out[0] += pr
                if g > 0:
                    out[1] += pr * i / g


@njit(nogil=True, cache=True, inline="always")
def _strict_point(
    i, grank, y_train, yt, offsets, T, k, cnt, fen, a_term, c_diff, slot_point
):  # pragma: no cover - jit
    """A training point with no tie: its own terms, its range updates, then insert it."""
    t = grank[i]
    ci = 1.0 if y_train[i] == yt else 0.0
    l0 = cnt[t]
    slot = offsets[t] + l0
    slot_point[slot] = i
    b0 = 0
    j = t
    while j > 0:
        b0 += fen[j]
        j -= j & (-j)
    kp = k - b0
    a_term[slot] = 0.0
    if kp > 0:
        ln = l0 + 1.0
        a_term[slot] = ci * (kp if kp < ln else ln) / ln
        if ci != 0.0 and kp < ln and l0 > 0:
            w = ci * kp / (ln * (ln - 1.0))
            base = offsets[t] + t
            c_diff[base] -= w
            c_diff[base + l0] += w
    if ci != 0.0:
        # as an earlier-group point of every later group t2 (a: points before it in U_t2)
        a = b0 + l0
        t2 = t + 1
        while t2 < T and a < k:
            c = cnt[t2]
            if c > 0 and a + c >= k:
                base = offsets[t2] + t2
                c_diff[base] -= ci / c
                c_diff[base + c] += ci / c
            a += c
            t2 += 1
    cnt[t] += 1
    j = t + 1
    while j <= T:
        fen[j] += 1
        j += j & (-j)


@njit(nogil=True, cache=True)
def ads_accumulate(
    order, keys, grank, y_train, y_test, offsets, n_groups, k, acc, acc2
):  # pragma: no cover
    """Add the tie-averaged exact KNN-ADS values of each row of ``order`` to ``acc``.

    Args:
        order: ``(m, n)`` int64, training indices of each test point nearest first.
        keys: ``(m, n)`` float64 distance keys; equal keys form a tie class, valued at
            the expectation over its uniformly random internal orders.
        grank: ``(n,)`` int64, position of each training point's group in the order.
        y_train, y_test: int64 label codes.
        offsets: ``(T + 1,)`` int64, cumulative group sizes in group order.
        n_groups: ``T``.
        k: ``K``.
        acc, acc2: ``(n,)`` float64 accumulators (values and their squares).

    Per test row the tie classes are walked nearest first.  For group ``t`` and a class
    with ``g`` points of ``t`` and ``h`` of earlier groups, after ``l0`` points of ``t``
    and ``b0`` earlier-group points in nearer classes: each member ``z`` gets
    ``c_z E F - (C - c_z) E[i/(g-1) W] - M E[i/g share]`` (``C`` its correct tied group
    points, ``M`` the correct tied earlier-group points) and every group point in a
    nearer class loses ``C E W + M E[share]`` (a range update, turned into values by
    one prefix sum per group at the end).  Without ties this is the strict formula of
    :mod:`databazaar.valuation.knn_asymmetric`.
    """
    m, n = order.shape
    T = n_groups
    cnt = np.zeros(T, dtype=np.int64)  # group points in nearer classes
    fen = np.zeros(T + 1, dtype=np.int64)
    gq = np.zeros(T, dtype=np.int64)  # group points in the current class
    gc = np.zeros(T)  # ... of them with the test label
    used = np.zeros(T, dtype=np.int64)
    own = np.zeros(T)  # E F
    pair = np.zeros(T)  # E[i/(g-1) W]
    tied_loss = np.zeros(T)  # M E[i/g share]
    touched = np.zeros(T, dtype=np.int64)
    terms = np.zeros(3)
    a_term = np.zeros(n)
    # group t owns the difference-array cells offsets[t] + t .. offsets[t + 1] + t
    c_diff = np.zeros(n + T)
    slot_point = np.zeros(n, dtype=np.int64)
    for r in range(m):
        yt = y_test[r]
        cnt[:] = 0
        fen[:] = 0
        c_diff[:] = 0.0
        lo = 0
        key = keys[r, order[r, 0]]
        nkey = key
        while lo < n:
            hi = lo + 1
            while hi < n:  # each key is read once
                nkey = keys[r, order[r, hi]]
                if nkey != key:
                    break
                hi += 1
            if hi == lo + 1:  # no tie: the strict formula directly
                _strict_point(
                    order[r, lo],
                    grank,
                    y_train,
                    yt,
                    offsets,
                    T,
                    k,
                    cnt,
                    fen,
                    a_term,
                    c_diff,
                    slot_point,
                )
                lo = hi
                key = nkey
                continue
            # the class's groups, ascending
            nt = 0
            for p in range(lo, hi):
                i = order[r, p]
                t = grank[i]
                if gq[t] == 0:
                    q = nt
                    while q > 0 and touched[q - 1] > t:
                        touched[q] = touched[q - 1]
                        q -= 1
                    touched[q] = t
                    nt += 1
                gq[t] += 1
                if y_train[i] == yt:
                    gc[t] += 1.0
            tmin = touched[0]
            b0 = 0  # earlier-group points in nearer classes (groups < t)
            j = tmin
            while j > 0:
                b0 += fen[j]
                j -= j & (-j)
            h = 0  # class points of groups < t
            mm = 0.0  # ... with the test label
            q = 0
            t = tmin
            while t < T and b0 < k:
                g = gq[t]
                l0 = cnt[t]
                base = offsets[t] + t
                if g > 0:
                    _own_terms(l0, b0, g, h, k, terms)
                    own[t] = terms[0]
                    pair[t] = terms[2]
                    loss = gc[t] * terms[1]
                    if loss != 0.0 and l0 > 0:
                        c_diff[base] -= loss
                        c_diff[base + l0] += loss
                if h > 0 and mm != 0.0 and l0 + g > 0:
                    _evict_terms(l0, b0, g, h, k, terms)
                    if l0 > 0:
                        c_diff[base] -= mm * terms[0]
                        c_diff[base + l0] += mm * terms[0]
                    tied_loss[t] = mm * terms[1]
                if q < nt and touched[q] == t:
                    h += g
                    mm += gc[t]
                    q += 1
                b0 += cnt[t]
                t += 1
            for p in range(lo, hi):
                i = order[r, p]
                t = grank[i]
                slot = offsets[t] + cnt[t] + used[t]
                used[t] += 1
                slot_point[slot] = i
                ci = 1.0 if y_train[i] == yt else 0.0
                a_term[slot] = ci * own[t] - (gc[t] - ci) * pair[t] - tied_loss[t]
            for q in range(nt):
                t = touched[q]
                cnt[t] += gq[t]
                j = t + 1
                while j <= T:
                    fen[j] += gq[t]
                    j += j & (-j)
                gq[t] = 0
                gc[t] = 0.0
                used[t] = 0
                own[t] = 0.0
                pair[t] = 0.0
                tied_loss[t] = 0.0
            lo = hi
            key = nkey
        for t in range(T):
            run = 0.0
            for s in range(offsets[t], offsets[t + 1]):
                run += c_diff[s + t]
                phi = (a_term[s] + run) / k
                idx = slot_point[s]
                acc[idx] += phi
                acc2[idx] += phi * phi


def warm_up() -> None:
    """Compile the kernel (cached on disk by numba afterwards)."""
    order = np.array([[0, 1, 2]], dtype=np.int64)
    grank = np.array([0, 1, 1], dtype=np.int64)
    y = np.array([0, 1, 0], dtype=np.int64)
    yt = np.array([0], dtype=np.int64)
    acc = np.zeros(3)
    acc2 = np.zeros(3)
    keys = np.array([[0.0, 1.0, 1.0]])
    offsets = np.array([0, 1, 3], dtype=np.int64)
    ads_accumulate(order, keys, grank, y, yt, offsets, 2, 2, acc, acc2)
