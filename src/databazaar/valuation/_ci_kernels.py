r"""Compiled loops of the KNN marginal-contribution oracle behind the KNN confidence
intervals (:class:`databazaar.valuation.knn_inference.KNNMarginals`).

``order[r]`` lists the training indices of test row ``r`` nearest first, ties broken by
training index (the oracle feeds only the variance estimate; the values themselves use
the tie rule of :mod:`databazaar.valuation.knn`).  The KNN utility is Jia et al.'s
(2019): ``v(S) = (1/K) * #label matches among the K nearest points of S``.
"""

from __future__ import annotations

import numpy as np
from numba import njit


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
    y = np.array([0, 1, 0], dtype=np.int64)
    yt = np.array([0], dtype=np.int64)
    mask = np.zeros(3, dtype=np.bool_)
    knn_marginal(order, y, yt, 0, mask, 2)
    knn_draws(order, y, yt, 0, 2, np.array([1], dtype=np.int64), 2, 0)
    knn_leave_one_out(order, y, yt, 0, 2)
    knn_projection(order, y, yt, 0, 2, np.array([1, 2], dtype=np.int64), np.array([0.5, 0.5]))
