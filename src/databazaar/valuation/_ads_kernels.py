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


@njit(nogil=True, cache=True)
def knn_marginal(order, y_train, y_test, z, mask, k):  # pragma: no cover - jit
    """Mean over test rows of ``v(S ∪ {z}) - v(S)`` for the KNN utility.

    ``mask[i]`` marks the members of ``S`` (``z`` must not be one).  Each row walks its
    sorted order only until the ``K``-th member of ``S``: ``z`` enters the top ``K`` iff
    it comes first, and then evicts that member (nothing when ``|S| < K``).  A set is the
    multiset with multiplicities 0/1, so this is :func:`knn_marginal_counts` on ``mask``.
    """
    return knn_marginal_counts(order, y_train, y_test, z, mask, k)


@njit(nogil=True, cache=True)
def knn_marginal_counts(order, y_train, y_test, z, mult, k):  # pragma: no cover - jit
    """``knn_marginal`` for a multiset ``S``: ``mult[i]`` copies of training point ``i``.

    Copies are separate neighbours at the same distance; the ``K``-th member is the point
    whose copies make the running count reach ``K``.
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
            elif mult[i] > 0:
                seen += mult[i]
                if seen >= k:
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
def knn_draws(order, y_train, y_test, z, k, anchors, n_inner, seed):  # pragma: no cover - jit
    """``H[a, j] = h_z(S)`` with ``S`` = ``anchors[a]`` plus ``s - 1`` i.i.d. draws.

    ``s`` is drawn with ``P(s) = 2 s / (n (n - 1))`` on ``1..n-1`` (inverse CDF); the
    other members are drawn uniformly *with replacement* from ``D ∖ {z}`` (so they are
    i.i.d. from the empirical distribution, as the U-statistic projection assumes, and the
    anchor may appear twice).  Numba's generator is seeded with ``seed`` so a call is
    reproducible whatever thread runs it.
    """
    np.random.seed(seed)  # noqa: NPY002 - numba's per-thread generator
    n = order.shape[1]
    n_anchor = anchors.shape[0]
    out = np.empty((n_anchor, n_inner))
    mult = np.zeros(n, dtype=np.int64)
    drawn = np.empty(n, dtype=np.int64)
    total = n * (n - 1.0)
    for a in range(n_anchor):
        x = anchors[a]
        for j in range(n_inner):
            u = np.random.random() * total  # noqa: NPY002
            s = int(np.ceil((-1.0 + np.sqrt(1.0 + 4.0 * u)) / 2.0))
            if s < 1:
                s = 1
            if s > n - 1:
                s = n - 1
            for t in range(s - 1):
                r = int(np.random.random() * (n - 1))  # noqa: NPY002
                if r >= n - 1:
                    r = n - 2
                if r >= z:
                    r += 1  # skip z
                drawn[t] = r
                mult[r] += 1
            mult[x] += 1
            out[a, j] = knn_marginal_counts(order, y_train, y_test, z, mult, k)
            for t in range(s - 1):
                mult[drawn[t]] = 0
            mult[x] = 0
    return out


@njit(nogil=True, cache=True)
def _binom_sf2(trials, prob, k, out):  # pragma: no cover - jit
    """``out[0] = P(Bin >= k)``, ``out[1] = P(Bin >= k - 1)`` for ``Bin(trials, prob)``."""
    if prob >= 1.0:
        out[0] = 1.0 if trials >= k else 0.0
        out[1] = 1.0 if trials >= k - 1 else 0.0
        return
    if prob <= 0.0:
        out[0] = 1.0 if k <= 0 else 0.0
        out[1] = 1.0 if k - 1 <= 0 else 0.0
        return
    pmf = (1.0 - prob) ** trials
    ratio = prob / (1.0 - prob)
    cdf_km2 = 0.0  # P(Bin <= k - 2)
    cdf_km1 = 0.0  # P(Bin <= k - 1)
    for i in range(min(k, trials + 1)):
        if i <= k - 2:
            cdf_km2 += pmf
        cdf_km1 += pmf
        pmf *= (trials - i) / (i + 1.0) * ratio
    out[0] = max(0.0, 1.0 - cdf_km1)
    out[1] = max(0.0, 1.0 - cdf_km2) if k - 1 > 0 else 1.0


@njit(nogil=True, cache=True)
def knn_projection(order, y_train, y_test, z, k, sizes, weights):  # pragma: no cover - jit
    """``r(x) = E_{s}[E[h_z(S) | x ∈ S, |S| = s]]`` for every ``x``, in closed form.

    ``S`` is the anchor ``x`` plus ``s - 1`` i.i.d. uniform draws from ``D ∖ {z}`` and
    ``s`` takes the values ``sizes`` with probabilities ``weights``.  For one test row,
    let ``q = 1..n-1`` index ``D ∖ {z}`` nearest first, ``b`` the number of those closer
    than ``z`` and ``G_τ(q) = P(Bin(s - 1, q / (n - 1)) >= τ)``.  With the anchor at
    ``p``, ``z`` enters the top ``K`` with probability ``1 - G_{K - [p <= b]}(b)`` and the
    evicted ``K``-th member sits at ``q > b`` with probability ``G(q) - G(q - 1)``, where
    ``G`` uses threshold ``K - 1`` from ``p`` on and ``K`` before.  Anchors at ``p <= b``
    share one value; past the position where both ``G`` have reached 1 all anchors share
    another; only the positions in between are evaluated one by one (prefix and suffix
    sums), so a size costs ``O(K (q_sat - b))`` rather than ``O(K n)``.
    """
    m, n = order.shape
    nq = n - 1
    r = np.zeros(n)
    pts = np.empty(nq, dtype=np.int64)
    lab = np.empty(nq + 2)
    gk = np.empty(nq + 1)  # G_K(q)
    gk1 = np.empty(nq + 1)  # G_{K-1}(q)
    pre = np.empty(nq + 2)  # pre[q] = sum_{b < q' <= q} c_q' (G_K(q') - G_K(q' - 1))
    suf = np.empty(nq + 2)  # suf[q] = sum_{q' >= q} c_q' (G_{K-1}(q') - G_{K-1}(q' - 1))
    diff = np.zeros(nq + 2)  # range additions over anchor positions 1..nq
    acc = np.zeros(nq + 2)  # individual anchor values
    tmp = np.empty(2)
    one = 1.0 - 1e-15
    for row in range(m):
        yt = y_test[row]
        cz = 1.0 if y_train[z] == yt else 0.0
        b = 0
        c = 0
        for p in range(n):
            i = order[row, p]
            if i == z:
                b = c
            else:
                pts[c] = i
                lab[c + 1] = 1.0 if y_train[i] == yt else 0.0
                c += 1
        diff[:] = 0.0
        acc[:] = 0.0
        for si in range(sizes.shape[0]):
            s = sizes[si]
            w = weights[si] / (k * m)
            _binom_sf2(s - 1, b / nq, k, tmp)
            gk[b] = tmp[0]
            gk1[b] = tmp[1]
            # positions b+1..qmax until both G have saturated at 1
            qmax = b
            while qmax < nq and (gk[qmax] < one or gk1[qmax] < one):
                qmax += 1
                _binom_sf2(s - 1, qmax / nq, k, tmp)
                gk[qmax] = tmp[0]
                gk1[qmax] = tmp[1]
            pre[b] = 0.0
            for q in range(b + 1, qmax + 1):
                pre[q] = pre[q - 1] + lab[q] * (gk[q] - gk[q - 1])
            suf[qmax + 1] = 0.0
            for q in range(qmax, b, -1):
                suf[q] = suf[q + 1] + lab[q] * (gk1[q] - gk1[q - 1])
            early = cz * (1.0 - gk1[b]) - suf[b + 1]
            enter_late = cz * (1.0 - gk[b])
            if b >= 1:
                diff[1] += w * early
                diff[b + 1] -= w * early
            for q in range(b + 1, qmax + 1):
                evict = pre[q - 1] + lab[q] * (gk1[q] - gk[q - 1]) + suf[q + 1]
                acc[q] += w * (enter_late - evict)
            if qmax < nq:
                tail = enter_late - pre[qmax]
                diff[qmax + 1] += w * tail
                diff[nq + 1] -= w * tail
        run = 0.0
        for q in range(1, nq + 1):
            run += diff[q]
            r[pts[q - 1]] += run + acc[q]
    return r


@njit(nogil=True, cache=True)
def knn_leave_one_out(order, y_train, y_test, z, k):  # pragma: no cover - jit
    """``out[i]`` = exact KNN-Shapley value of ``z`` in ``D ∖ {i}`` (``out[z]`` = value in D).

    For one test row with ``z`` at rank ``r`` (1-based), ``f(l) = K / (l (l - 1))`` for
    ``l > K`` (else 0) and ``c_l`` the label matches by rank, the value is
    ``K φ = c_z min(K, r) / r - Σ_{l > r} c_l f(l)``.  Removing the point at rank ``ρ``
    shifts every later rank down by one: for ``ρ < r`` the value becomes
    ``c_z min(K, r-1)/(r-1) - Σ_{l > r} c_l f(l - 1)``, for ``ρ > r`` it is
    ``c_z min(K, r)/r - Σ_{r < l < ρ} c_l f(l) - Σ_{l > ρ} c_l f(l - 1)``.
    Prefix and suffix sums give all ``N`` removals in ``O(N)`` per test row.
    """
    m, n = order.shape
    out = np.zeros(n)
    c = np.empty(n + 2)
    pre = np.empty(n + 2)  # pre[l] = sum_{r < l' <= l} c f(l')
    suf = np.empty(n + 2)  # suf[l] = sum_{l' >= l} c f(l' - 1)
    for row in range(m):
        yt = y_test[row]
        r = 0
        for p in range(n):
            i = order[row, p]
            c[p + 1] = 1.0 if y_train[i] == yt else 0.0
            if i == z:
                r = p + 1
        cz = c[r]
        suf[n + 1] = 0.0
        for q in range(n, 0, -1):
            qm = q - 1
            f_shift = k / (qm * (qm - 1.0)) if qm > k else 0.0
            suf[q] = suf[q + 1] + c[q] * f_shift
        pre[r] = 0.0
        for q in range(r + 1, n + 1):
            f = k / (q * (q - 1.0)) if q > k else 0.0
            pre[q] = pre[q - 1] + c[q] * f
        full = cz * min(k, r) / r - pre[n]
        out[z] += full / (k * m)
        if r > 1:
            early = cz * min(k, r - 1) / (r - 1) - suf[r + 1]
        else:
            early = 0.0
        for p in range(n):
            rho = p + 1
            if rho == r:
                continue
            i = order[row, p]
            if rho < r:
                val = early
            else:
                val = cz * min(k, r) / r - pre[rho - 1] - suf[rho + 1]
            out[i] += val / (k * m)
    return out


def warm_up() -> None:
    """Compile the kernels (cached on disk by numba afterwards)."""
    order = np.array([[0, 1, 2]], dtype=np.int64)
    grank = np.array([0, 1, 1], dtype=np.int64)
    y = np.array([0, 1, 0], dtype=np.int64)
    yt = np.array([0], dtype=np.int64)
    acc = np.zeros(3)
    acc2 = np.zeros(3)
    keys = np.array([[0.0, 1.0, 1.0]])
    offsets = np.array([0, 1, 3], dtype=np.int64)
    ads_accumulate(order, keys, grank, y, yt, offsets, 2, 2, acc, acc2)
    mask = np.zeros(3, dtype=np.bool_)
    knn_marginal(order, y, yt, 0, mask, 2)
    knn_draws(order, y, yt, 0, 2, np.array([1], dtype=np.int64), 2, 0)
    knn_leave_one_out(order, y, yt, 0, 2)
    knn_projection(order, y, yt, 0, 2, np.array([1, 2], dtype=np.int64), np.array([0.5, 0.5]))
