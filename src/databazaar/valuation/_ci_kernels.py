r"""Compiled loops of the KNN marginal-contribution oracle behind the KNN confidence
intervals (:class:`databazaar.valuation.knn_inference.KNNMarginals`).

``order[r]`` lists the training indices of test row ``r`` nearest first and ``tie[r, p]``
numbers the tie class of position ``p`` (equal numbers = equal distance keys), so the
oracle uses the tie rule of :mod:`databazaar.valuation.knn`: the KNN utility of Jia et
al. (2019), ``v(S) = (1/K) * #label matches among the K nearest points of S``, averaged
over uniformly random orders of tied points.  A (multi)set ``S`` then only matters
through its counts per tie class, and for ``z`` in class ``t`` with ``A`` members of ``S``
in nearer classes, ``m`` in class ``t`` (``C`` of them correct) and ``c_z = 1[y_z = y]``:

.. math::

    K h_z(S) = \begin{cases}
      0 & A \ge K \\
      \frac{K - A}{m + 1}\,\bigl(c_z - C/m\bigr) & A < K \le A + m \\
      c_z - C_j / m_j & A + m < K,\ \text{the } K\text{-th member of } S
                        \text{ in class } j \\
      c_z & |S| < K
    \end{cases}

(``m_j`` members of ``S`` in class ``j``, ``C_j`` correct: the evicted member is a
uniformly random one of them).  Every kernel values tie classes as wholes, so tied
points with the same label get bit-identical results and the row order of the training
data does not matter; on untied data (every class one point) the formulas are the
index-order ones.  Sets are multisets with multiplicities: copies are tied points.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(nogil=True, cache=True)
def knn_marginal(order, tie, y_train, y_test, z, mask, k):  # pragma: no cover - jit
    """Mean over test rows of ``v(S ∪ {z}) - v(S)`` for the tie-averaged KNN utility.

    ``mask[i]`` marks the members of ``S`` (``z`` must not be one).  A set is the
    multiset with multiplicities 0/1, so this is :func:`knn_marginal_counts` on ``mask``.
    """
    return knn_marginal_counts(order, tie, y_train, y_test, z, mask, k)


@njit(nogil=True, cache=True)
def knn_marginal_counts(order, tie, y_train, y_test, z, mult, k):  # pragma: no cover - jit
    """``knn_marginal`` for a multiset ``S``: ``mult[i]`` copies of training point ``i``.

    Each row is walked class by class (the module formula) only until the class that
    decides ``h``: the first class past ``A >= K``, ``z``'s class, or the class holding
    the ``K``-th member of ``S`` behind it, so a row costs ``O(position reached)``.
    """
    m, n = order.shape
    total = 0.0
    for r in range(m):
        yt = y_test[r]
        cz = 1.0 if y_train[z] == yt else 0.0
        before = 0  # members of S in classes nearer than z's
        need = 0  # once z's class is passed: the place (among later members) evicted
        val = cz  # z enters and nothing is evicted unless a class below decides otherwise
        cnt = 0
        cor = 0
        has_z = False
        for p in range(n):
            i = order[r, p]
            if i == z:
                has_z = True
            elif mult[i] > 0:
                cnt += mult[i]
                if y_train[i] == yt:
                    cor += mult[i]
            if cnt == 0 and (need > 0 or not has_z):
                continue  # no member of S in this class so far: nothing to decide
            if p + 1 < n and tie[r, p + 1] == tie[r, p]:
                continue  # the class goes on
            if need > 0:
                if cnt >= need:
                    val = cz - cor / cnt
                    break
                need -= cnt
            elif has_z:
                free = k - before
                if cnt >= free:
                    val = free / (cnt + 1.0) * (cz - cor / cnt)
                    break
                need = free - cnt
            else:
                before += cnt
                if before >= k:
                    val = 0.0
                    break
            cnt = 0
            cor = 0
        total += val
    return total / (k * m)


@njit(nogil=True, cache=True)
def knn_draws(order, tie, y_train, y_test, z, k, anchors, pool, n_inner, seed):  # pragma: no cover
    """``H[a, j] = h_z(S)`` with ``S`` = ``anchors[a]`` plus ``s - 1`` i.i.d. draws.

    ``s`` is drawn with ``P(s) = 2 s / (n (n - 1))`` on ``1..n-1`` (inverse CDF); the
    other members are drawn uniformly *with replacement* from ``pool`` (``D ∖ {z}``, so
    they are i.i.d. from the empirical distribution, as the U-statistic projection
    assumes, and the anchor may appear twice).  Numba's generator is seeded with ``seed``
    so a call is reproducible whatever thread runs it; the ``j``-th uniform number picks
    ``pool[j-th index]``, so a relabelled pool gives the same sets relabelled.
    """
    np.random.seed(seed)  # noqa: NPY002 - numba's per-thread generator
    n = order.shape[1]
    n_pool = pool.shape[0]
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
                r = int(np.random.random() * n_pool)  # noqa: NPY002
                if r >= n_pool:
                    r = n_pool - 1
                drawn[t] = pool[r]
                mult[pool[r]] += 1
            mult[x] += 1
            out[a, j] = knn_marginal_counts(order, tie, y_train, y_test, z, mult, k)
            for t in range(s - 1):
                mult[drawn[t]] = 0
            mult[x] = 0
    return out


@njit(nogil=True, cache=True)
def _binom_tails(trials, prob, k, out):  # pragma: no cover - jit
    """``out = [P(Bin >= k), P(Bin >= k - 1), P(Bin = k - 1)]`` for ``Bin(trials, prob)``,
    ``k >= 1``."""
    if prob >= 1.0:
        out[0] = 1.0 if trials >= k else 0.0
        out[1] = 1.0 if trials >= k - 1 else 0.0
        out[2] = 1.0 if trials == k - 1 else 0.0
        return
    if prob <= 0.0:
        out[0] = 0.0
        out[1] = 1.0 if k == 1 else 0.0
        out[2] = 1.0 if k == 1 else 0.0
        return
    pmf = (1.0 - prob) ** trials
    ratio = prob / (1.0 - prob)
    cdf_km2 = 0.0  # P(Bin <= k - 2)
    cdf_km1 = 0.0  # P(Bin <= k - 1)
    out[2] = 0.0
    for i in range(min(k, trials + 1)):
        if i <= k - 2:
            cdf_km2 += pmf
        else:
            out[2] = pmf
        cdf_km1 += pmf
        pmf *= (trials - i) / (i + 1.0) * ratio
    out[0] = max(0.0, 1.0 - cdf_km1)
    out[1] = max(0.0, 1.0 - cdf_km2) if k - 1 > 0 else 1.0


@njit(nogil=True, cache=True)
def _binom_head(trials, prob, length, out):  # pragma: no cover - jit
    """``out[i] = P(Bin(trials, prob) = i)`` for ``i < length``."""
    for i in range(length):
        out[i] = 0.0
    if prob <= 0.0:
        if length > 0:
            out[0] = 1.0
        return
    if prob >= 1.0:
        if trials < length:
            out[trials] = 1.0
        return
    pmf = (1.0 - prob) ** trials
    ratio = prob / (1.0 - prob)
    for i in range(min(length, trials + 1)):
        out[i] = pmf
        pmf *= (trials - i) / (i + 1.0) * ratio


@njit(nogil=True, cache=True)
def _short_fill(trials, pb, pbg, kappa, tau, buf):  # pragma: no cover - jit
    """``E[(κ - A)^+ ; W >= τ]`` for nested counts of ``trials`` uniform draws: ``A`` of
    them in the nearer classes (probability ``pb``), ``W`` in those and ``z``'s class
    (``pbg``); needs ``τ - 1 <= κ``.  ``O(κ)``:  ``E[(κ - A)^+] - Σ_{w < τ} P(W = w)
    (κ - w pb / pbg)``, since ``W <= κ`` gives ``(κ - A)^+ = κ - A`` and
    ``E[A | W = w] = w pb / pbg``."""
    if trials < tau or kappa <= 0:
        return 0.0
    _binom_head(trials, pb, kappa, buf)
    total = 0.0
    for a in range(kappa):
        total += (kappa - a) * buf[a]
    _binom_head(trials, pbg, tau, buf)
    rho = pb / pbg
    for w in range(tau):
        total -= buf[w] * (kappa - w * rho)
    return max(total, 0.0)


@njit(nogil=True, cache=True)
def _row_classes(order, tie, y_train, yt, z, row, start, size, cor):  # pragma: no cover - jit
    """Tie classes of sorted row ``row``: first position, size and number of label
    matches of each (nearest first); returns ``(number of classes, class of z)``."""
    n = order.shape[1]
    n_cls = 0
    t = 0
    p = 0
    while p < n:
        q = p
        c = 0.0
        while q < n and tie[row, q] == tie[row, p]:
            if y_train[order[row, q]] == yt:
                c += 1.0
            if order[row, q] == z:
                t = n_cls
            q += 1
        start[n_cls] = p
        size[n_cls] = q - p
        cor[n_cls] = c
        n_cls += 1
        p = q
    return n_cls, t


@njit(nogil=True, cache=True)
def knn_projection(order, tie, y_train, y_test, z, k, sizes, weights):  # pragma: no cover - jit
    """``r(x) = E_{s}[E[h_z(S) | x ∈ S, |S| = s]]`` for every ``x``, in closed form.

    ``S`` is the anchor ``x`` plus ``T = s - 1`` i.i.d. uniform draws from ``D ∖ {z}`` and
    ``s`` takes the values ``sizes`` with probabilities ``weights``.  Per test row, with
    the ``n - 1`` other points in order, ``b`` of them in classes nearer than ``z``'s,
    ``g`` in ``z``'s class (``C_t`` correct, ``p_t = C_t / g``), later classes ``j`` ending
    at cumulative count ``e_j`` (``e_0 = b + g``) with ``n_j`` points and mean label
    ``p_j``, and ``G^T_τ(q) = P(Bin(T, q / (n - 1)) >= τ)``, the module formula gives

    - anchor in a nearer class: ``c_z (1 - G^T_{K-1}(e_0)) + (c_z - p_t) Φ_β - E_β``;
    - anchor in ``z``'s class: ``c_z (1 - G^T_{K-1}(e_0)) + (c_z - p_t) Φ_τ - (c_x - p_t) Ψ
      - E_β``;
    - anchor in later class ``j``: ``c_z (1 - G^T_K(e_0)) + (c_z - p_t) Φ_λ - E_λ(j)
      - (c_x - p_j) Λ_j``,

    where ``E_β = Σ_j p_j (G^T_{K-1}(e_j) - G^T_{K-1}(e_{j-1}))`` and ``E_λ(j)`` uses
    threshold ``K`` before class ``j``, ``K - 1`` after it and ``G^T_{K-1}(e_j) -
    G^T_K(e_{j-1})`` for it (the expected label of the evicted member when it is a draw);
    ``Λ_j = E[1/m_j ; K-th member in j] = (G^s_K(e_j) - G^s_K(e_{j-1})) / (s n_j / (n-1))``
    is the chance that the evicted member is the anchor itself.  The class-``t`` terms
    ``Φ = E[(K - A)/(m + 1); A < K <= A + m]`` and ``Ψ = E[(K - A)/(m (m + 1)); ...]``
    follow from ``C(T, μ) / (μ + 1) = C(T + 1, μ + 1) / (T + 1)`` (one and two extra
    draws in class ``t``): ``Φ_λ = F_K(s, K + 1) / (s π_g)``, ``Φ_β = F_{K-1}(s, K) /
    (s π_g)``, ``Ψ = F_K(s + 1, K + 1) / (s (s + 1) π_g²)``, ``Φ_τ = F_K(s, K) / (s π_g)
    - Ψ`` with ``π_g = g / (n - 1)`` and ``F`` = :func:`_short_fill`.  ``G`` is evaluated
    at class ends only until both thresholds saturate (beyond, every anchor shares one
    value), so a size costs ``O(K (classes before saturation + 1))``, at most the
    index-order cost ``O(K (q_sat - b))``.  Values are formed per (class, label), so tied
    anchors with the same label get bit-identical results.
    """
    m, n = order.shape
    nq = n - 1
    r = np.zeros(n)
    cstart = np.empty(n, dtype=np.int64)  # tie classes of the row (z included)
    csize = np.empty(n, dtype=np.int64)
    ccor = np.empty(n)
    ends = np.empty(n + 1)  # ends[j] = e_j (others in classes up to later class j)
    size = np.empty(n + 1)  # n_j
    pj = np.empty(n + 1)  # mean label of class j
    mixed = np.zeros(n + 1, dtype=np.bool_)
    gk = np.empty(n + 1)  # G^T_K(e_j)
    gk1 = np.empty(n + 1)  # G^T_{K-1}(e_j)
    gs = np.empty(n + 1)  # G^s_K(e_j)
    pre = np.empty(n + 2)  # pre[j] = sum_{j' <= j} p_j' (G^T_K(e_j') - G^T_K(e_j'-1))
    suf = np.empty(n + 2)  # suf[j] = sum_{j' >= j} p_j' (G^T_{K-1}(e_j') - G^T_{K-1}(e_j'-1))
    base = np.empty(n + 2)  # per later class: value without the label term
    slope = np.empty(n + 2)  # per later class: coefficient of c_x
    diff = np.empty(n + 2)  # range additions over later classes (saturated tails)
    tmp = np.empty(3)
    buf = np.empty(k + 2)
    one = 1.0 - 1e-15
    for row in range(m):
        yt = y_test[row]
        cz = 1.0 if y_train[z] == yt else 0.0
        n_cls, t = _row_classes(order, tie, y_train, yt, z, row, cstart, csize, ccor)
        b = cstart[t]
        g = csize[t] - 1
        pt = (ccor[t] - cz) / g if g > 0 else 0.0
        n_late = n_cls - 1 - t
        ends[0] = b + g
        for j in range(1, n_late + 1):
            c = t + j
            size[j] = csize[c]
            ends[j] = ends[j - 1] + csize[c]
            pj[j] = ccor[c] / csize[c]
            mixed[j] = 0.0 < ccor[c] < csize[c]
        base_b = 0.0
        base_t = 0.0
        slope_t = 0.0
        for j in range(n_late + 2):
            base[j] = 0.0
            slope[j] = 0.0
            diff[j] = 0.0
        for si in range(sizes.shape[0]):
            s = sizes[si]
            trials = s - 1
            w = weights[si] / (k * m)
            j_sat = 0
            while True:
                prob = ends[j_sat] / nq
                _binom_tails(trials, prob, k, tmp)
                gk[j_sat] = tmp[0]
                gk1[j_sat] = tmp[1]
                gs[j_sat] = tmp[0] + prob * tmp[2]
                if j_sat == n_late or (gk[j_sat] >= one and gk1[j_sat] >= one):
                    break
                j_sat += 1
            pre[0] = 0.0
            for j in range(1, j_sat + 1):
                pre[j] = pre[j - 1] + pj[j] * (gk[j] - gk[j - 1])
            suf[j_sat + 1] = 0.0
            for j in range(j_sat, 0, -1):
                suf[j] = suf[j + 1] + pj[j] * (gk1[j] - gk1[j - 1])
            phi_b = 0.0
            phi_t = 0.0
            phi_l = 0.0
            psi = 0.0
            if g > 0:
                pb = b / nq
                pbg = (b + g) / nq
                pg = g / nq
                phi_l = _short_fill(s, pb, pbg, k, k + 1, buf) / (s * pg)
                phi_b = _short_fill(s, pb, pbg, k - 1, k, buf) / (s * pg)
                psi = _short_fill(s + 1, pb, pbg, k, k + 1, buf) / (s * (s + 1.0) * pg * pg)
                phi_t = _short_fill(s, pb, pbg, k, k, buf) / (s * pg) - psi
            enter1 = cz * (1.0 - gk1[0]) - suf[1]
            base_b += w * (enter1 + (cz - pt) * phi_b)
            base_t += w * (enter1 + (cz - pt) * phi_t + pt * psi)
            slope_t -= w * psi
            late = cz * (1.0 - gk[0]) + (cz - pt) * phi_l
            for j in range(1, j_sat + 1):
                evict = pre[j - 1] + pj[j] * (gk1[j] - gk[j - 1]) + suf[j + 1]
                lam = 0.0
                if mixed[j]:
                    lam = (gs[j] - gs[j - 1]) * nq / (s * size[j])
                base[j] += w * (late - evict + pj[j] * lam)
                slope[j] -= w * lam
            if j_sat < n_late:
                diff[j_sat + 1] += w * (late - pre[j_sat])
        run = 0.0
        for c in range(n_cls):
            j = c - t
            if j > 0:
                run += diff[j]
            for p in range(cstart[c], cstart[c] + csize[c]):
                i = order[row, p]
                cx = 1.0 if y_train[i] == yt else 0.0
                if j < 0:
                    r[i] += base_b
                elif j == 0:
                    if i != z:
                        r[i] += base_t + cx * slope_t
                else:
                    r[i] += (base[j] + run) + cx * slope[j]
    return r


@njit(nogil=True, cache=True)
def _mean_f(a, g, k):  # pragma: no cover - jit
    """Mean of ``f(l) = min(K, l)/l`` over positions ``l = a+1..a+g``."""
    tot = 0.0
    for l in range(a + 1, a + g + 1):  # noqa: E741
        tot += min(k, l) / l
    return tot / g


@njit(nogil=True, cache=True)
def _mean_w(a, g, w):  # pragma: no cover - jit
    """Mean of ``w[l]`` (``= K/(l(l-1))`` for ``l > K``, else 0) over ``l = a+1..a+g``."""
    if g == 1:
        return w[a + 1]
    tot = 0.0
    for l in range(a + g, a, -1):  # noqa: E741 - far (small) terms first
        tot += w[l]
    return tot / g


@njit(nogil=True, cache=True)
def _hat_w(a, g, k):  # pragma: no cover - jit
    """``Σ_{j<g} j w(a+1+j) / (g (g-1))``: eviction weight of a tied point behind ``z``."""
    if g < 2:
        return 0.0
    tot = 0.0
    for j in range(g - 1, 0, -1):
        l = a + 1 + j  # noqa: E741
        if l > k:
            tot += j * k / (l * (l - 1.0))
    return tot / (g * (g - 1.0))


@njit(nogil=True, cache=True)
def knn_leave_one_out(order, tie, y_train, y_test, z, k):  # pragma: no cover - jit
    """``out[i]`` = exact KNN-Shapley value of ``z`` in ``D ∖ {i}`` (``out[z]`` = value in D).

    The tie-rule value (:mod:`databazaar.valuation.knn`) of ``z`` in class ``G``
    (positions ``a+1..a+g``, ``C_G`` correct) is ``K φ = c_z mean_G f - Σ_{G' farther}
    C_G' mean_G' w - (C_G - c_z) hat_G w``.  Removing a point of a nearer class moves
    every later class one position forward (``a -> a - 1``); removing a point of ``G``
    shrinks ``G`` to ``g - 1`` points and moves the later classes; removing a point of a
    later class ``G''`` shrinks ``G''`` and moves the classes behind it.  Each case is a
    function of the removed point's class and label only; prefix and suffix sums over
    classes give all ``N`` removals in ``O(N)`` per test row.
    """
    m, n = order.shape
    out = np.zeros(n)
    start = np.empty(n + 1, dtype=np.int64)
    size = np.empty(n + 1, dtype=np.int64)
    cor = np.empty(n + 1)
    vals = np.empty(2 * n + 2)  # [2c + label]: value when such a point of class c is removed
    w = np.zeros(n + 1)  # w[l] = K / (l (l - 1)) for l > K
    for l in range(k + 1, n + 1):  # noqa: E741
        w[l] = k / (l * (l - 1.0))
    for row in range(m):
        yt = y_test[row]
        cz = 1.0 if y_train[z] == yt else 0.0
        n_cls, t = _row_classes(order, tie, y_train, yt, z, row, start, size, cor)
        a = start[t]
        g = size[t]
        cg = cor[t]
        # suffix sums over the classes behind each class, unshifted and shifted forward
        far_sh = 0.0
        for c_i in range(n_cls - 1, t, -1):
            vals[2 * c_i] = far_sh  # for now: the shifted suffix behind class c_i
            if cor[c_i] > 0.0:
                far_sh += cor[c_i] * _mean_w(start[c_i] - 1, size[c_i], w)
        head = cz * _mean_f(a, g, k) - (cg - cz) * _hat_w(a, g, k)
        between = 0.0
        for c_i in range(t + 1, n_cls):
            shrunk = _mean_w(start[c_i], size[c_i] - 1, w) if size[c_i] > 1 else 0.0
            rest = head - between - vals[2 * c_i]
            vals[2 * c_i] = rest - cor[c_i] * shrunk
            vals[2 * c_i + 1] = rest - (cor[c_i] - 1.0) * shrunk
            if cor[c_i] > 0.0:
                between += cor[c_i] * _mean_w(start[c_i], size[c_i], w)
        full = head - between
        out[z] += full / (k * m)
        early = 0.0
        if a > 0:
            early = cz * _mean_f(a - 1, g, k) - far_sh - (cg - cz) * _hat_w(a - 1, g, k)
        same0 = 0.0
        same1 = 0.0
        if g > 1:
            f_s = cz * _mean_f(a, g - 1, k) - far_sh
            h_s = _hat_w(a, g - 1, k)
            same0 = f_s - (cg - cz) * h_s
            same1 = f_s - (cg - 1.0 - cz) * h_s
        for c_i in range(t):
            vals[2 * c_i] = early
            vals[2 * c_i + 1] = early
        vals[2 * t] = same0
        vals[2 * t + 1] = same1
        c_i = 0
        for p in range(n):
            if p > 0 and tie[row, p] != tie[row, p - 1]:
                c_i += 1
            i = order[row, p]
            if i != z:
                out[i] += vals[2 * c_i + (1 if y_train[i] == yt else 0)] / (k * m)
    return out


def warm_up() -> None:
    """Compile the kernels (cached on disk by numba afterwards)."""
    order = np.array([[0, 1, 2]], dtype=np.int64)
    tie = np.array([[0, 1, 1]], dtype=np.int64)
    y = np.array([0, 1, 0], dtype=np.int64)
    yt = np.array([0], dtype=np.int64)
    mask = np.zeros(3, dtype=np.bool_)
    pool = np.array([1, 2], dtype=np.int64)
    knn_marginal(order, tie, y, yt, 0, mask, 2)
    knn_draws(order, tie, y, yt, 0, 2, np.array([1], dtype=np.int64), pool, 2, 0)
    knn_leave_one_out(order, tie, y, yt, 0, 2)
    knn_projection(order, tie, y, yt, 0, 2, np.array([1, 2], dtype=np.int64), np.array([0.5, 0.5]))
