"""Compiled inner loops of the exact KNN-Shapley family.

Every kernel walks the training points of one test point from the farthest to the
nearest (``order[r]`` lists training indices nearest first) and scatter-adds the value of
each point into ``acc`` (and its square into ``acc2``, for the spread over test points).
Positions whose distance keys are equal form a *tie group*; the sorting kernels value a
tie group as a whole, averaged over its internal orders (the tie rule of
:mod:`databazaar.valuation.knn`), so the order the sort leaves inside a group does not
matter and tied points with the same label get bit-identical values.  The kernels
release the GIL (``nogil=True``) so a thread pool runs them on all cores while the
radix sort of the next chunk, which also releases the GIL, runs beside.

Positions below are 1-based as in the papers: ``i = 1`` is the nearest neighbour.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(nogil=True, cache=True)
def _group_start(order, keys, r, hi):  # pragma: no cover - jit
    """First position of the tie group that ends at position ``hi - 1`` of row ``r``."""
    lo = hi - 1
    key = keys[r, order[r, lo]]
    while lo > 0 and keys[r, order[r, lo - 1]] == key:
        lo -= 1
    return lo


def position_weights(n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``f[p] = min(K, l)/l`` and ``w[p] = K/(l(l-1))`` for ``l = p + 1 > K`` (else 0).

    ``f(l)`` is the Shapley value of the game "the point at position ``l`` is among the
    ``K`` nearest of ``S``" to that point, ``-w(l)`` its value to each nearer point.
    """
    pos = np.arange(1, n + 1, dtype=np.float64)
    f = np.minimum(float(k), pos) / pos
    w = np.zeros(n)
    far = pos > k
    w[far] = k / (pos[far] * (pos[far] - 1.0))
    return f, w


@njit(nogil=True, cache=True)
def classification_accumulate(order, keys, y_train, y_test, k, acc, acc2, f, w):  # pragma: no cover
    """Tie-averaged exact KNN-Shapley (classification) for each row of ``order``.

    ``order[r]`` lists training indices nearest first; positions with equal ``keys`` form
    a tie group; ``f, w`` come from :func:`position_weights`.  A point of tie group
    ``G`` (positions ``a+1..a+g``, ``C_G`` correct labels) with ``c = 1[y = y_test]`` gets

    ``K phi = c mean_G f - sum_{G' farther} C_G' mean_G' w - (C_G - c) hat_G w``,

    ``hat_G w = sum_{j<g} j w(a+1+j) / (g (g-1))`` (see :mod:`databazaar.valuation.knn`).
    Without ties this is Jia et al.'s (2019) Theorem 1:
    ``K phi_i = c_i f(i) - sum_{l > i} c_l w(l)``.
    """
    m, n = order.shape
    inv_k = 1.0 / k
    for r in range(m):
        yt = y_test[r]
        tail = 0.0  # sum over farther groups of C_G' * mean_G' w
        p = n - 1
        idx = order[r, p]
        key = keys[r, idx]
        while p >= 0:
            nidx = idx
            nkey = key
            if p > 0:
                nidx = order[r, p - 1]
                nkey = keys[r, nidx]
            if p == 0 or nkey != key:  # a point without ties: Jia et al.'s step
                c = 1.0 if y_train[idx] == yt else 0.0
                s = (c * f[p] - tail) * inv_k
                acc[idx] += s
                acc2[idx] += s * s
                tail += c * w[p]
                p -= 1
                idx = nidx
                key = nkey
                continue
            lo = p - 1
            while lo > 0 and keys[r, order[r, lo - 1]] == key:
                lo -= 1
            g = p + 1 - lo
            cg = 0.0
            fsum = 0.0
            wsum = 0.0
            whut = 0.0
            for j in range(g):
                fsum += f[lo + j]
                wsum += w[lo + j]
                whut += j * w[lo + j]
                if y_train[order[r, lo + j]] == yt:
                    cg += 1.0
            fbar = fsum / g
            whut /= g * (g - 1.0)
            for j in range(g):
                gidx = order[r, lo + j]
                c = 1.0 if y_train[gidx] == yt else 0.0
                s = (c * fbar - tail - (cg - c) * whut) * inv_k
                acc[gidx] += s
                acc2[gidx] += s * s
            tail += cg * wsum / g
            p = lo - 1
            if p >= 0:
                idx = order[r, p]
                key = keys[r, idx]


@njit(nogil=True, cache=True)
def regression_accumulate(order, keys, y_train, y_test, k, acc, acc2, work):  # pragma: no cover
    """Tie-averaged exact Shapley values of the KNN regression utility, per test point.

    Utility (Jia et al. 2019, Sec. 4): ``v(S) = -((1/K) A(S) - y)^2``, ``A(S)`` the target
    sum of the ``K`` nearest points of ``S``, ``v(empty) = -y^2``.  Our derivation: with
    ``g_q(S) = 1[q in S, fewer than K points of S nearer than q]``,
    ``A = sum_q y_q g_q`` and ``g_p g_q = 1[p in S] g_q`` for ``p`` nearer than ``q``, so

    ``K^2 (v(S) + y^2) = sum_q e_q g_q(S) - 2 sum_{p < q} y_p y_q G_pq(S)``,
    ``e_q = y_q (2 y K - y_q)``, ``G_pq = 1[p in S] g_q``.

    For ``q`` at position ``l`` (1-based): the Shapley value of ``g_q`` is ``f(l) =
    min(K, l)/l`` to ``q`` and ``-w(l)``, ``w(l) = K/(l(l-1))`` for ``l > K``, to each
    nearer point; that of ``G_pq`` is ``a(l) = T(T+1)/(2l(l-1))``, ``T = min(l-1, K-1)``,
    to each of ``p`` and ``q`` and ``b(l) = -K(K-1)/(l(l-1)(l-2))`` for ``l > K`` (else 0)
    to every other nearer point.  Tie groups are averaged over their random internal
    order: means ``bar`` over a group's positions, ordered-pair means ``hat`` (weight
    ``j/(g(g-1))`` at the group's ``j``-th position) and ordered-triple means ``tilde``
    (weight ``j(j-1)/(g(g-1)(g-2))``).  For ``z`` in group ``G`` with target sums
    ``Y, Y2, E`` (of ``y, y^2, e``) and ``P`` the target sum of the nearer groups:

    ``K^2 phi(z) = e_z bar f - SW - (E - e_z) hat w - 2 y_z (bar a P + hat a (Y - y_z))
    - 2 y_z (SA + hat a (Y - y_z)) - 2 (SB1 - y_z SB2)
    - 2 (hat b P (Y - y_z) + tilde b ((Y - y_z)^2 - (Y2 - y_z^2)))``

    with suffix sums over the farther groups ``SW = sum E bar w``, ``SA = sum Y bar a``,
    ``SB1 = sum (bar b P' Y' + hat b (Y'^2 - Y2'))``, ``SB2 = sum bar b Y'``.  ``O(N)``
    per row after the sort; ``work`` is a float64 buffer of length ``N + 2``.
    """
    m, n = order.shape
    kk = float(k)
    for r in range(m):
        yt = y_test[r]
        work[0] = 0.0  # work[p] = target sum of positions < p
        for p in range(n):
            work[p + 1] = work[p] + y_train[order[r, p]]
        sw = 0.0
        sa = 0.0
        sb1 = 0.0
        sb2 = 0.0
        hi = n
        while hi > 0:
            lo = _group_start(order, keys, r, hi)
            g = hi - lo
            ysum = 0.0
            y2sum = 0.0
            esum = 0.0
            fbar = 0.0
            wbar = 0.0
            abar = 0.0
            bbar = 0.0
            what = 0.0
            ahat = 0.0
            bhat = 0.0
            btil = 0.0
            for j in range(g):
                ln = lo + j + 1.0
                yv = y_train[order[r, lo + j]]
                ysum += yv
                y2sum += yv * yv
                esum += yv * (2.0 * yt * kk - yv)
                f = (kk if kk < ln else ln) / ln
                w = kk / (ln * (ln - 1.0)) if ln > kk else 0.0
                a = 0.0
                if ln >= 2.0:
                    t = ln - 1.0 if ln - 1.0 < kk - 1.0 else kk - 1.0
                    a = t * (t + 1.0) / (2.0 * ln * (ln - 1.0))
                b = (
                    -kk * (kk - 1.0) / (ln * (ln - 1.0) * (ln - 2.0))
                    if ln > kk and ln > 2.0
                    else 0.0
                )
                fbar += f
                wbar += w
                abar += a
                bbar += b
                what += j * w
                ahat += j * a
                bhat += j * b
                btil += j * (j - 1.0) * b
            fbar /= g
            wbar /= g
            abar /= g
            bbar /= g
            if g >= 2:
                pairs = g * (g - 1.0)
                what /= pairs
                ahat /= pairs
                bhat /= pairs
                btil = btil / (pairs * (g - 2.0)) if g >= 3 else 0.0
            near = work[lo]
            for j in range(g):
                idx = order[r, lo + j]
                yz = y_train[idx]
                ez = yz * (2.0 * yt * kk - yz)
                rest = ysum - yz
                tot = ez * fbar - sw - (esum - ez) * what
                tot -= 2.0 * yz * (abar * near + ahat * rest)
                tot -= 2.0 * yz * (sa + ahat * rest)
                tot -= 2.0 * (sb1 - yz * sb2)
                tot -= 2.0 * (bhat * near * rest + btil * (rest * rest - (y2sum - yz * yz)))
                s = tot / (kk * kk)
                acc[idx] += s
                acc2[idx] += s * s
            sw += esum * wbar
            sa += ysum * abar
            sb1 += bbar * near * ysum + bhat * (ysum * ysum - y2sum)
            sb2 += bbar * ysum
            hi = lo


@njit(nogil=True, cache=True)
def threshold_accumulate(sqdist, y_train, y_test, tau2, n_classes, acc, acc2):  # pragma: no cover
    """Threshold KNN-Shapley (Wang et al., NeurIPS 2023) for each row of ``sqdist``.

    Utility per test point: among the training points of ``S`` within radius ``tau`` the
    fraction with the test label, or ``1/C`` when there is none.  Points outside the
    radius are null players (value 0).  For the ``c`` in-radius points, ``c_a`` of them
    correct, point ``i`` with ``a_i = 1[y_i = y]`` gets
    ``(a_i - 1/C)/c + (a_i - (c_a - a_i)/(c - 1)) (H_c - 1)/c`` (``H_c`` the c-th harmonic
    number; the second term vanishes for ``c = 1``): no sorting, O(N) per test point.
    """
    m, n = sqdist.shape
    for r in range(m):
        yt = y_test[r]
        c = 0
        ca = 0
        for j in range(n):
            if sqdist[r, j] <= tau2:
                c += 1
                if y_train[j] == yt:
                    ca += 1
        if c == 0:
            continue
        h = 0.0
        for q in range(2, c + 1):
            h += 1.0 / q
        for j in range(n):
            if sqdist[r, j] <= tau2:
                a = 1.0 if y_train[j] == yt else 0.0
                s = (a - 1.0 / n_classes) / c
                if c >= 2:
                    s += (a - (ca - a) / (c - 1.0)) * h / c
                acc[j] += s
                acc2[j] += s * s


def warm_up() -> None:
    """Compile the kernels once (cached on disk by numba afterwards)."""
    order = np.array([[0, 1, 2]], dtype=np.int64)
    keys = np.array([[0.0, 1.0, 1.0]])
    y = np.array([0, 1, 0], dtype=np.int64)
    yt = np.array([0], dtype=np.int64)
    acc = np.zeros(3)
    acc2 = np.zeros(3)
    classification_accumulate(order, keys, y, yt, 2, acc, acc2, *position_weights(3, 2))
    regression_accumulate(
        order, keys, y.astype(np.float64), yt.astype(np.float64), 2, acc, acc2, np.zeros(5)
    )
    threshold_accumulate(np.zeros((1, 3)), y, yt, 1.0, 2, acc, acc2)
