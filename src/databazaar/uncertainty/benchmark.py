"""How well uncertainty predicts quality: PRR, risk-coverage, bootstrap CIs, rank agreement.

**PRR** (prediction-rejection ratio) as UE-TS computes it through LM-Polygraph
(``ue_metrics/pred_rej_area.py``, ``utils2/cal_prr_score.py``; He et al., 2024, Sec. 3):

1. items whose uncertainty or metric is NaN are dropped; items with the same input text
   are merged (mean uncertainty, max metric), keeping first-seen order;
2. the metric is min-max normalised to [0, 1] (a constant metric to 0.5);
3. items are sorted by ascending uncertainty; the rejection-curve area is
   ``A(u) = (1/n) sum_k mean(q_(1..k))``, the mean quality of the ``k`` most certain
   items averaged over ``k = 1..n``;
4. ``PRR = (A(u) - A_random) / (A_oracle - A_random)`` with the oracle ranking
   ``u = -metric`` and ``A_random`` the mean of ``A`` over 1,000 random orders (NumPy's
   legacy generator seeded 42, the array ``0..n-1`` shuffled in place 1,000 times, as
   LM-Polygraph does, so the numbers agree to rounding).

1 is a perfect ranking, 0 is random, negative is worse than random. A constant metric
gives ``A_oracle = A_random`` and PRR is undefined: NaN here (LM-Polygraph returns the
raw area instead).

Also here: risk-coverage curves (El-Yaniv and Wiener, 2010), percentile-bootstrap CIs
of PRR over items, Kendall's tau between the UE-method rankings that two metrics (or two
metric groups) induce, with bootstrap CIs, and clustering of metrics by the Spearman
correlation of their per-item values (average linkage on ``1 - rho``).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from databazaar.core.errors import InvalidInput

N_RANDOM = 1000
RANDOM_SEED = 42


def normalize_target(target: Sequence[float] | np.ndarray) -> np.ndarray:
    """Min-max normalised metric (a constant one widened by 1 each way, i.e. 0.5)."""
    t = np.asarray(target, dtype=float)
    lo, hi = np.min(t), np.max(t)
    if np.isclose(lo, hi):
        lo, hi = lo - 1, hi + 1
    return (t - lo) / (hi - lo)


def rejection_area(uncertainty: Sequence[float] | np.ndarray, metric: Sequence[float]) -> float:
    """``A(u)``: area under the prediction-rejection curve (higher is better)."""
    q = normalize_target(metric)
    u = np.asarray(uncertainty, dtype=float)
    n = len(u)
    sorted_q = q[np.argsort(u)]
    scores = (np.cumsum(sorted_q) / np.arange(1, n + 1))[::-1]
    return float(np.sum(scores) / n)


@functools.lru_cache(maxsize=32)
def _random_orders(n: int, n_iter: int, seed: int) -> np.ndarray:
    """Row ``r``: item indices in ascending order of the ``r``-th random score vector."""
    rs = np.random.RandomState(seed)
    scores = np.arange(n)
    orders = np.empty((n_iter, n), dtype=np.int64)
    for r in range(n_iter):
        rs.shuffle(scores)
        orders[r] = np.argsort(scores)
    orders.setflags(write=False)
    return orders


def random_area(metric: Sequence[float], n_iter: int = N_RANDOM, seed: int = RANDOM_SEED) -> float:
    """Mean rejection area of ``n_iter`` random rankings (LM-Polygraph's shuffles)."""
    q = normalize_target(metric)
    n = len(q)
    sorted_q = q[_random_orders(n, n_iter, seed)]
    areas = np.sum((np.cumsum(sorted_q, axis=1) / np.arange(1, n + 1))[:, ::-1], axis=1) / n
    return float(np.mean(areas))


def merge_duplicates(
    uncertainty: Sequence[float], metric: Sequence[float], inputs: Sequence[str] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Drop NaN pairs, then merge items with the same input: mean uncertainty, max metric.

    Returns the merged uncertainty and metric and, per merged item, the index of its
    first occurrence in the original order.
    """
    u = np.asarray(uncertainty, dtype=float)
    m = np.asarray(metric, dtype=float)
    if u.shape != m.shape or u.ndim != 1:
        raise InvalidInput(
            f"PRR: {u.size} uncertainties but {m.size} metric values",
            hint="give one uncertainty and one metric value per item",
        )
    if inputs is not None and len(inputs) != len(u):
        raise InvalidInput(f"PRR: {len(u)} uncertainties but {len(inputs)} inputs")
    keep = np.flatnonzero(~np.isnan(u) & ~np.isnan(m))
    if inputs is None:
        return u[keep], m[keep], keep
    groups: dict[str, list[int]] = {}
    for i in keep:
        groups.setdefault(inputs[i], []).append(int(i))
    idx = [g for g in groups.values()]
    return (
        np.array([u[g].mean() for g in idx]),
        np.array([m[g].max() for g in idx]),
        np.array([g[0] for g in idx], dtype=np.int64),
    )


def prr(
    uncertainty: Sequence[float],
    metric: Sequence[float],
    inputs: Sequence[str] | None = None,
    *,
    n_iter: int = N_RANDOM,
    seed: int = RANDOM_SEED,
) -> float:
    """Normalised PRR ``(A(u) - A_random) / (A_oracle - A_random)`` (see module doc)."""
    u, m, _ = merge_duplicates(uncertainty, metric, inputs)
    if len(u) < 2:
        raise InvalidInput(f"PRR needs at least 2 scored items, got {len(u)}")
    return _normalized(u, m, n_iter, seed)


def _normalized(
    u: np.ndarray, m: np.ndarray, n_iter: int, seed: int, baselines: dict | None = None
) -> float:
    """Normalised PRR of merged items; ``baselines`` caches (oracle, random) per metric array."""
    key = id(m)
    if baselines is not None and key in baselines:
        oracle, rand = baselines[key][1:]
    else:
        oracle, rand = rejection_area(-m, m), random_area(m, n_iter, seed)
        if baselines is not None:
            baselines[key] = (m, oracle, rand)  # keeps m alive so its id stays unique
    if oracle == rand:
        return float("nan")
    return (rejection_area(u, m) - rand) / (oracle - rand)


def risk_coverage(uncertainty: Sequence[float], metric: Sequence[float]) -> dict[str, Any]:
    """Risk (``1 - mean normalised quality`` of the kept items) at each coverage ``k/n``,
    keeping the ``k`` least uncertain, and the area under that curve (AURC, lower better)."""
    q = normalize_target(metric)
    u = np.asarray(uncertainty, dtype=float)
    n = len(u)
    risk = 1.0 - np.cumsum(q[np.argsort(u, kind="stable")]) / np.arange(1, n + 1)
    coverage = np.arange(1, n + 1) / n
    return {"coverage": coverage, "risk": risk, "aurc": float(np.mean(risk))}


def prr_table(
    uncertainties: Mapping[str, Sequence[float]],
    metrics: Mapping[str, Sequence[float]],
    inputs: Sequence[str] | None = None,
) -> dict[str, dict[str, float]]:
    """``prr[method][metric]`` for every pair."""
    return {e: {g: prr(u, m, inputs) for g, m in metrics.items()} for e, u in uncertainties.items()}


def _merged(
    uncertainties: Mapping[str, Sequence[float]],
    metrics: Mapping[str, Sequence[float]],
    inputs: Sequence[str] | None,
) -> tuple[dict[tuple[str, str], tuple[np.ndarray, np.ndarray]], list[str], list[str]]:
    pairs: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
    for g, m in metrics.items():
        seen: list[np.ndarray] = []
        for e, u in uncertainties.items():
            mu, mm, _ = merge_duplicates(u, m, inputs)
            same = next((s for s in seen if s.shape == mm.shape and np.array_equal(s, mm)), None)
            if same is None:
                seen.append(mm)
            pairs[e, g] = (mu, mm if same is None else same)  # shared: baselines computed once
    return pairs, list(uncertainties), list(metrics)


def bootstrap_prr(
    uncertainties: Mapping[str, Sequence[float]],
    metrics: Mapping[str, Sequence[float]],
    inputs: Sequence[str] | None = None,
    *,
    groups: Mapping[str, str] | None = None,
    n_boot: int = 200,
    confidence: float = 0.95,
    random_state: int | None = 0,
) -> dict[str, Any]:
    """Percentile-bootstrap CIs of PRR, and of Kendall's tau between metric rankings.

    Items (after merging duplicates) are resampled with replacement ``n_boot`` times; in
    each resample PRR is recomputed for every (method, metric) and, from the PRR table,
    Kendall's tau-b between the method rankings of every pair of metrics and (with
    ``groups``: metric -> group, group score = mean PRR of its metrics) of every pair of
    groups. Returns the point table ``prr[method][metric]``, ``prr_ci[method][metric] =
    (lo, hi)``, ``tau`` / ``tau_ci`` per metric pair ``"a|b"`` and ``group_tau`` /
    ``group_tau_ci`` per group pair.
    """
    from scipy.stats import kendalltau

    if n_boot < 1:
        raise InvalidInput(f"n_boot must be at least 1, got {n_boot}")
    if not 0 < confidence < 1:
        raise InvalidInput(f"confidence must be in (0, 1), got {confidence}")
    pairs, methods, names = _merged(uncertainties, metrics, inputs)
    if len(methods) < 1 or len(names) < 1:
        raise InvalidInput("bootstrap_prr needs at least one method and one metric")
    cache: dict = {}
    point = np.array(
        [[_normalized(*pairs[e, g], N_RANDOM, RANDOM_SEED, cache) for g in names] for e in methods]
    )
    rng = np.random.default_rng(random_state)
    boots = np.full((n_boot, len(methods), len(names)), np.nan)
    for b in range(n_boot):
        draws: dict[int, np.ndarray] = {}
        resampled: dict[int, np.ndarray] = {}  # id(metric array) -> its resample
        cache = {}
        for j, g in enumerate(names):
            for i, e in enumerate(methods):
                u, m = pairs[e, g]
                n = len(u)
                if n not in draws:
                    draws[n] = rng.integers(0, n, size=n)
                idx = draws[n]
                if id(m) not in resampled:
                    resampled[id(m)] = m[idx]
                boots[b, i, j] = _normalized(u[idx], resampled[id(m)], N_RANDOM, RANDOM_SEED, cache)
    alpha = (1 - confidence) / 2

    def ci(x: np.ndarray) -> tuple[float, float]:
        x = x[~np.isnan(x)]
        if not len(x):
            return (float("nan"), float("nan"))
        lo, hi = np.quantile(x, [alpha, 1 - alpha])
        return (float(lo), float(hi))

    def tau(a: np.ndarray, b: np.ndarray) -> float:
        ok = ~np.isnan(a) & ~np.isnan(b)
        if ok.sum() < 2 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
            return float("nan")
        return float(kendalltau(a[ok], b[ok]).statistic)

    out: dict[str, Any] = {
        "prr": {
            e: {g: float(point[i, j]) for j, g in enumerate(names)} for i, e in enumerate(methods)
        },
        "prr_ci": {
            e: {g: ci(boots[:, i, j]) for j, g in enumerate(names)} for i, e in enumerate(methods)
        },
        "tau": {},
        "tau_ci": {},
        "n_boot": n_boot,
        "confidence": confidence,
    }
    for a in range(len(names)):
        for b in range(a + 1, len(names)):
            key = f"{names[a]}|{names[b]}"
            out["tau"][key] = tau(point[:, a], point[:, b])
            out["tau_ci"][key] = ci(np.array([tau(x[:, a], x[:, b]) for x in boots]))
    if groups:
        gnames = list(dict.fromkeys(groups[g] for g in names if g in groups))
        cols = {k: [j for j, g in enumerate(names) if groups.get(g) == k] for k in gnames}

        def gmean(table: np.ndarray, k: str) -> np.ndarray:
            with warnings.catch_warnings():  # a group whose PRRs are all NaN stays NaN
                warnings.simplefilter("ignore", RuntimeWarning)
                return np.nanmean(table[:, cols[k]], axis=1)

        out["group_prr"] = {
            k: {e: float(v) for e, v in zip(methods, gmean(point, k), strict=True)} for k in gnames
        }
        out["group_tau"], out["group_tau_ci"] = {}, {}
        for a in range(len(gnames)):
            for b in range(a + 1, len(gnames)):
                ka, kb = gnames[a], gnames[b]
                key = f"{ka}|{kb}"
                out["group_tau"][key] = tau(gmean(point, ka), gmean(point, kb))
                out["group_tau_ci"][key] = ci(
                    np.array([tau(gmean(x, ka), gmean(x, kb)) for x in boots])
                )
    return out


def cluster_metrics(
    metrics: Mapping[str, Sequence[float]], *, threshold: float = 0.5
) -> dict[str, Any]:
    """Spearman correlation between metrics over items, average-linkage clusters on
    ``1 - rho`` cut at ``threshold``, and the linkage matrix (for a dendrogram).

    Items where any metric is NaN are left out; a constant metric correlates 0 with all.
    """
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform
    from scipy.stats import spearmanr

    names = list(metrics)
    if len(names) < 2:
        raise InvalidInput("clustering needs at least 2 metrics")
    x = np.array([np.asarray(metrics[k], dtype=float) for k in names])
    x = x[:, ~np.isnan(x).any(axis=0)]
    if x.shape[1] < 3:
        raise InvalidInput("clustering needs at least 3 items where every metric is defined")
    rho = np.eye(len(names))
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            if np.ptp(x[i]) == 0 or np.ptp(x[j]) == 0:
                r = 0.0
            else:
                r = float(spearmanr(x[i], x[j]).statistic)
            rho[i, j] = rho[j, i] = r
    dist = np.clip(1.0 - rho, 0.0, 2.0)
    np.fill_diagonal(dist, 0.0)
    z = linkage(squareform(dist, checks=False), method="average")
    labels = fcluster(z, t=threshold, criterion="distance")
    return {
        "names": names,
        "spearman": rho,
        "linkage": z,
        "clusters": {n: int(c) for n, c in zip(names, labels, strict=True)},
    }
