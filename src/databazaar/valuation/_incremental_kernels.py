"""Compiled kernel of :class:`databazaar.valuation.incremental.KNNPrefixScan`."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def knn_prefix_accuracy(dist, order, y_train, y_test, k, n_classes, default, out):  # type: ignore[no-untyped-def]
    """``out[j]`` = accuracy of a K-NN majority vote trained on ``order[:j+1]``.

    Per test point the ``k`` nearest prefix points are kept sorted by (distance, row);
    a new point enters when it is closer than the current ``k``-th (or equally close and
    an earlier row).  The prediction is the class with most votes, ties to the smallest
    class code (scikit-learn's ``argmax`` of ``predict_proba``).  Prefixes with fewer
    than ``k`` points score ``default``.
    """
    m = dist.shape[0]
    nb_d = np.full((m, k), np.inf)
    nb_i = np.full((m, k), -1, dtype=np.int64)
    votes = np.zeros((m, n_classes), dtype=np.int64)
    correct = np.zeros(m, dtype=np.bool_)
    n_correct = 0
    for j in range(order.shape[0]):
        p = order[j]
        c = y_train[p]
        size = min(j, k)  # neighbours held before this point
        for t in range(m):
            d = dist[t, p]
            if size == k:
                last_d = nb_d[t, k - 1]
                if d > last_d or (d == last_d and p > nb_i[t, k - 1]):
                    continue
                votes[t, y_train[nb_i[t, k - 1]]] -= 1
                pos = k - 1
            else:
                pos = size
            while pos > 0 and (
                nb_d[t, pos - 1] > d or (nb_d[t, pos - 1] == d and nb_i[t, pos - 1] > p)
            ):
                nb_d[t, pos] = nb_d[t, pos - 1]
                nb_i[t, pos] = nb_i[t, pos - 1]
                pos -= 1
            nb_d[t, pos] = d
            nb_i[t, pos] = p
            votes[t, c] += 1
            best = 0
            for q in range(1, n_classes):
                if votes[t, q] > votes[t, best]:
                    best = q
            now = best == y_test[t]
            if now != correct[t]:
                n_correct += 1 if now else -1
                correct[t] = now
        out[j] = n_correct / m if j + 1 >= k else default
