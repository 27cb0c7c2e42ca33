"""PRR exactly as UE-TS defines it (hand-computed and brute-force numbers), risk-coverage,
bootstrap CIs, Kendall's tau between metric rankings and metric clustering."""

from __future__ import annotations

import math

import numpy as np
import pytest

from databazaar.core.errors import InvalidInput
from databazaar.uncertainty.benchmark import (
    bootstrap_prr,
    cluster_metrics,
    merge_duplicates,
    normalize_target,
    prr,
    random_area,
    rejection_area,
    risk_coverage,
)


def brute_area(u: list[float], q: list[float]) -> float:
    """Mean over k of the mean normalised quality of the k least uncertain items."""
    lo, hi = min(q), max(q)
    qn = [(x - lo) / (hi - lo) for x in q]
    order = sorted(range(len(u)), key=lambda i: u[i])
    return sum(sum(qn[i] for i in order[:k]) / k for k in range(1, len(u) + 1)) / len(u)


def polygraph_style_random(q: np.ndarray, n_iter: int = 1000, seed: int = 42) -> float:
    """The random baseline written as LM-Polygraph's get_random_scores loop."""
    rs = np.random.RandomState(seed)
    scores = np.arange(len(q))
    vals = []
    for _ in range(n_iter):
        rs.shuffle(scores)
        vals.append(brute_area(list(scores), list(q)))
    return float(np.mean(vals))


def test_rejection_area_by_hand() -> None:
    u, q = [0.1, 0.4, 0.3, 0.2], [1.0, 0.0, 0.5, 0.8]
    # sorted by u: q = 1, .8, .5, 0 -> running means 1, .9, .7667, .575
    assert rejection_area(u, q) == pytest.approx((1 + 0.9 + 2.3 / 3 + 0.575) / 4, abs=1e-15)
    assert prr(u, q) == pytest.approx(1.0, abs=1e-12)  # the oracle order
    assert prr([-x for x in u], q) < 0  # the reverse order is worse than random
    assert normalize_target([2.0, 2.0]).tolist() == [0.5, 0.5]


def test_prr_matches_brute_force_on_random_data() -> None:
    rng = np.random.default_rng(5)
    q = rng.random(40)
    u = -q + rng.normal(0, 0.4, 40)
    rand = polygraph_style_random(q, n_iter=200)
    assert random_area(q, n_iter=200) == pytest.approx(rand, abs=1e-12)
    oracle = brute_area(list(-q), list(q))
    want = (brute_area(list(u), list(q)) - random_area(q)) / (oracle - random_area(q))
    assert prr(u, q) == pytest.approx(want, abs=1e-12)
    assert 0.3 < prr(u, q) < 1.0
    # the random baseline estimates E[A_random] = mean of the normalised metric
    assert random_area(q) == pytest.approx(normalize_target(q).mean(), abs=0.01)


def test_duplicates_merge_and_nans() -> None:
    u = [0.1, 0.3, 0.2, np.nan, 0.5]
    m = [0.2, 0.9, 0.4, 1.0, 0.0]
    inputs = ["a", "b", "a", "c", "d"]
    mu, mm, first = merge_duplicates(u, m, inputs)
    assert mu.tolist() == pytest.approx([0.15, 0.3, 0.5])  # a: mean of .1, .2
    assert mm.tolist() == [0.4, 0.9, 0.0]  # a: max of .2, .4; c dropped (NaN)
    assert first.tolist() == [0, 1, 4]
    assert prr(u, m, inputs) == pytest.approx(prr([0.15, 0.3, 0.5], [0.4, 0.9, 0.0]))


def test_degenerate_and_bad_input() -> None:
    assert math.isnan(prr([0.1, 0.2, 0.3], [1.0, 1.0, 1.0]))  # constant metric: undefined
    with pytest.raises(InvalidInput, match="PRR: 3 uncertainties but 2 metric values"):
        prr([1, 2, 3], [1, 2])
    with pytest.raises(InvalidInput, match="PRR: 2 uncertainties but 1 inputs"):
        prr([1, 2], [1, 2], ["a"])
    with pytest.raises(InvalidInput, match="at least 2 scored items"):
        prr([1, np.nan], [1, 2])


def test_risk_coverage() -> None:
    rc = risk_coverage([0.3, 0.1, 0.2], [0.0, 1.0, 0.5])
    assert rc["coverage"].tolist() == pytest.approx([1 / 3, 2 / 3, 1])
    assert rc["risk"].tolist() == pytest.approx([0.0, 0.25, 0.5])
    assert rc["aurc"] == pytest.approx(0.25)


def test_bootstrap_cis_and_rank_agreement() -> None:
    rng = np.random.default_rng(0)
    n = 80
    q = rng.random(n)
    uncs = {
        "good": -q + rng.normal(0, 0.2, n),
        "ok": -q + rng.normal(0, 0.6, n),
        "noise": rng.random(n),
    }
    metrics = {"q": q, "q_copy": q.copy(), "anti": 1 - q}
    groups = {"q": "relevance", "q_copy": "relevance", "anti": "fluency"}
    b = bootstrap_prr(uncs, metrics, groups=groups, n_boot=60, random_state=1)
    for e in uncs:
        for g in metrics:
            lo, hi = b["prr_ci"][e][g]
            assert lo <= b["prr"][e][g] <= hi
            assert b["prr"][e][g] == pytest.approx(prr(uncs[e], metrics[g]))
    assert b["prr"]["good"]["q"] > b["prr"]["ok"]["q"] > b["prr"]["noise"]["q"]
    assert b["tau"]["q|q_copy"] == pytest.approx(1.0)
    assert b["tau"]["q|anti"] == pytest.approx(-1.0)  # the ranking flips
    assert b["group_tau"]["relevance|fluency"] == pytest.approx(-1.0)
    lo, hi = b["group_tau_ci"]["relevance|fluency"]
    assert hi < 1.0
    with pytest.raises(InvalidInput, match="n_boot"):
        bootstrap_prr(uncs, metrics, n_boot=0)


def test_cluster_metrics() -> None:
    rng = np.random.default_rng(2)
    a = rng.random(50)
    b = rng.random(50)
    res = cluster_metrics({"a1": a, "a2": a + 0.01 * rng.random(50), "b1": b, "b2": b**2})
    c = res["clusters"]
    assert c["a1"] == c["a2"] and c["b1"] == c["b2"] and c["a1"] != c["b1"]
    assert res["spearman"][2, 3] == pytest.approx(1.0)
    with pytest.raises(InvalidInput, match="at least 2 metrics"):
        cluster_metrics({"a": a})
