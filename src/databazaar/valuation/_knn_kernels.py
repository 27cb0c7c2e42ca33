"""Compiled inner loops of the exact KNN-Shapley family.

Every kernel walks the training points of one test point from the farthest to the
nearest (``order[r]`` lists training indices nearest first) and scatter-adds the value of
each point into ``acc`` (and its square into ``acc2``, for the spread over test points).
The kernels release the GIL (``nogil=True``) so a thread pool runs them on all cores
while numpy's ``argsort`` of the next chunk, which also releases the GIL, runs beside.

Positions below are 1-based as in the papers: ``i = 1`` is the nearest neighbour.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(nogil=True, cache=True)
def classification_accumulate(order, y_train, y_test, k, acc, acc2):  # pragma: no cover - jit
    """Jia et al. (2019), Theorem 1, for each row of ``order``.

    With ``c_i = 1[y_(i) = y_test]`` for the i-th nearest training point:
    ``s_N = c_N / N`` and ``s_i = s_{i+1} + (c_i - c_{i+1}) / max(K, i)``
    (the paper's ``(c_i - c_{i+1}) / K * min(K, i) / i``).
    """
    m, n = order.shape
    for r in range(m):
        yt = y_test[r]
        idx = order[r, n - 1]
        c_next = 1.0 if y_train[idx] == yt else 0.0
        s = c_next / n
        acc[idx] += s
        acc2[idx] += s * s
        for p in range(n - 2, -1, -1):
            idx = order[r, p]
            c = 1.0 if y_train[idx] == yt else 0.0
            i = p + 1
            s += (c - c_next) / (k if k > i else i)
            acc[idx] += s
            acc2[idx] += s * s
            c_next = c


@njit(nogil=True, cache=True)
def regression_accumulate(order, y_train, y_test, k, acc, acc2, work):  # pragma: no cover - jit
    """Exact Shapley values of the unweighted KNN regression utility, per test point.

    Utility (Jia et al. 2019, Sec. 4): ``v(S) = -((1/K) sum_{j<=min(K,|S|)} y_(j)(S) - y)^2``
    with ``v(empty) = -y^2``.  Our derivation (verified against enumeration in the tests)
    uses the Shapley difference of adjacent points: for a coalition ``S`` without points
    ``i`` and ``i+1``, with ``m`` points of ``S`` nearer than ``i``, the two marginal
    utilities differ only when ``m < K``, by ``(y_{i+1} - y_i)/K * ((2A + y_i + y_{i+1})/K
    - 2y)`` where ``A`` is the target sum of the ``K-1`` nearest points of ``S``.  Under the
    Shapley weights the count of ``S`` in any fixed set of ``L`` points is uniform on
    ``0..L``, which gives

    ``s_i - s_{i+1} = (y_{i+1}-y_i)/K * [2 Q_i / K + P_i ((y_i + y_{i+1})/K - 2y)]``

    with ``P_i = min(K, i)/i`` and ``Q_i = pc_i * sum_{j<i} y_j + sum_{j>i+1} y_j f_j``,
    ``pc_i = (T+1)(T+2) / (2 i (i-1))``, ``T = min(K-2, i-2)`` (``1/2`` when ``i <= K``),
    ``f_j = (T+1)(T+2) / (2 (j-1)(j-2))``, ``T = min(K-2, j-3)``; both zero when ``K = 1``.
    The farthest point: ``s_N = -(y_N/(N K)) sum_{q=0}^{min(K,N)-1} (2 q ybar / K + y_N/K
    - 2y)`` with ``ybar`` the mean target of the other ``N-1`` points.
    ``work`` is a float64 buffer of length ``N + 2``.
    """
    m, n = order.shape
    for r in range(m):
        yt = y_test[r]
        total = 0.0
        for p in range(n):
            total += y_train[order[r, p]]
        # suffix sums of y_j * f_j over positions j (1-based) >= t, stored in work[t]
        work[n + 1] = 0.0
        work[n] = 0.0
        for j in range(n, 0, -1):
            f = 0.0
            if k >= 2 and j >= 3:
                t = k - 2 if k - 2 < j - 3 else j - 3
                f = (t + 1.0) * (t + 2.0) / (2.0 * (j - 1.0) * (j - 2.0))
            work[j - 1] = work[j] + y_train[order[r, j - 1]] * f
        # work[j-1] now holds sum_{q >= j} y_q f_q, i.e. work[t-1] = suffix from t
        y_n = y_train[order[r, n - 1]]
        ybar = (total - y_n) / (n - 1) if n > 1 else 0.0
        top = k if k < n else n
        s = 0.0
        for q in range(top):
            s += 2.0 * q * ybar / k + y_n / k - 2.0 * yt
        s *= -y_n / (n * k)
        idx = order[r, n - 1]
        acc[idx] += s
        acc2[idx] += s * s
        # prefix sum of targets of positions < i
        prefix = total - y_n
        y_next = y_n
        for p in range(n - 2, -1, -1):
            i = p + 1
            idx = order[r, p]
            y_i = y_train[idx]
            prefix -= y_i  # now sum over positions 1..i-1
            p_i = (k if k < i else i) / i
            pc = 0.0
            if k >= 2 and i >= 2:
                t = k - 2 if k - 2 < i - 2 else i - 2
                pc = (t + 1.0) * (t + 2.0) / (2.0 * i * (i - 1.0))
            far = work[i + 1] if i + 1 < n else 0.0  # positions >= i+2
            q_i = pc * prefix + far
            s += (y_next - y_i) / k * (2.0 * q_i / k + p_i * ((y_i + y_next) / k - 2.0 * yt))
            acc[idx] += s
            acc2[idx] += s * s
            y_next = y_i


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
    y = np.array([0, 1, 0], dtype=np.int64)
    yt = np.array([0], dtype=np.int64)
    acc = np.zeros(3)
    acc2 = np.zeros(3)
    classification_accumulate(order, y, yt, 2, acc, acc2)
    regression_accumulate(
        order, y.astype(np.float64), yt.astype(np.float64), 2, acc, acc2, np.zeros(5)
    )
    threshold_accumulate(np.zeros((1, 3)), y, yt, 1.0, 2, acc, acc2)
