"""U-statistic confidence intervals: closed forms against enumeration, estimators, errors."""

from __future__ import annotations

import itertools
import math
import warnings
from collections import Counter
from collections.abc import Iterator

import numpy as np
import pytest

from ci_rules import require  # type: ignore[import-not-found]
from databazaar.core.errors import InvalidInput
from databazaar.valuation import _ci_kernels as kern
from databazaar.valuation.inference import (
    MODEL_INNER_DRAWS,
    UtilityMarginals,
    VarianceOptions,
    _size_biased,
    _zeta_double_mc,
    _zeta_pick_freeze,
    shapley_confidence_intervals,
    shapley_variance,
    size_nodes,
)
from databazaar.valuation.knn import knn_shapley
from databazaar.valuation.knn_asymmetric import knn_asymmetric_shapley
from databazaar.valuation.knn_inference import KNNMarginals, knn_marginals, knn_shapley_ci
from databazaar.valuation.result import ValuationResult
from databazaar.valuation.utility import GameUtility


def _data(seed: int, n: int, m: int = 3, ties: bool = False):
    rng = np.random.default_rng(seed)
    if ties:
        x = rng.integers(0, 3, size=(n, 1)).astype(float)
    else:
        x = rng.normal(size=(n, 2))
    xt = rng.normal(size=(m, x.shape[1]))
    return x, rng.integers(0, 2, n), xt, rng.integers(0, 2, m)


def _brute_marginal(x, y, xt, yt, z, members, k) -> float:
    """Mean over test points of v(S + z) - v(S) for a multiset S (list of indices), with
    the tie rule: the strict utility averaged over every choice of the members of the
    class at the K-th place (copies are separate tied members) that fill its free places."""
    d = ((xt[:, None, :] - x[None, :, :]) ** 2).sum(-1)

    def v(items, r):
        items = sorted(items, key=lambda i: d[r, i])

        def score(sel):
            return sum(1.0 for i in sel if y[i] == yt[r]) / k

        if len(items) <= k:
            return score(items)
        cut = d[r, items[k - 1]]
        sure = [i for i in items if d[r, i] < cut]
        boundary = [i for i in items if d[r, i] == cut]
        picks = itertools.combinations(boundary, k - len(sure))
        return float(np.mean([score(sure + list(p)) for p in picks]))

    return float(np.mean([v([*members, z], r) - v(members, r) for r in range(len(yt))]))


def _tiny_tied(seed: int, n: int):
    """Integer features on a 2x2 grid (ties everywhere), a duplicated row, three labels."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 2, size=(n, 2)).astype(float)
    x[-1] = x[0]
    y = rng.integers(0, 3, n)
    if seed % 2:
        y[-1] = y[0]
    return x, y, rng.integers(0, 2, size=(2, 2)).astype(float), rng.integers(0, 3, 2)


# -- compiled pieces against brute force ------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_knn_marginal_matches_brute_force(seed):
    x, y, xt, yt = _data(seed, 9, ties=bool(seed % 2))
    k = 1 + seed % 5
    o = knn_marginals(x, y, xt, yt, k)
    rng = np.random.default_rng(seed)
    for _ in range(20):
        z = int(rng.integers(0, 9))
        mult = rng.integers(0, 3, size=9)
        mult[z] = 0
        members = [i for i in range(9) for _ in range(mult[i])]
        expected = _brute_marginal(x, y, xt, yt, z, members, k)
        got = kern.knn_marginal_counts(
            o.order, o.tie, o.y_train, o.y_test, z, mult.astype(np.int64), k
        )
        assert got == pytest.approx(expected, abs=1e-12)
        mask = mult > 0
        dedup = _brute_marginal(x, y, xt, yt, z, list(np.flatnonzero(mask)), k)
        got = kern.knn_marginal(o.order, o.tie, o.y_train, o.y_test, z, mask, k)
        assert got == pytest.approx(dedup, abs=1e-12)


def _enumerated_projection(x, y, xt, yt, z, k) -> np.ndarray:
    """``E_s E[h_z(anchor + s - 1 i.i.d. draws)]`` by enumerating every multiset of draws
    with its multinomial probability."""
    n = len(y)
    others = [i for i in range(n) if i != z]
    sizes, weights = size_nodes(n)
    out = np.full(n, np.nan)
    cache: dict[tuple[int, ...], float] = {}
    for a in others:
        total = 0.0
        for s, w in zip(sizes, weights, strict=True):
            acc = 0.0
            for draw in itertools.combinations_with_replacement(others, int(s) - 1):
                ways = math.factorial(int(s) - 1)
                for c in Counter(draw).values():
                    ways //= math.factorial(c)
                members = tuple(sorted((a, *draw)))
                if members not in cache:  # the same multiset recurs for other anchors
                    cache[members] = _brute_marginal(x, y, xt, yt, z, list(members), k)
                acc += ways * cache[members]
            total += w * acc / len(others) ** (int(s) - 1)
        out[a] = total
    return out


@pytest.mark.parametrize("seed", range(8))
def test_projection_equals_enumeration_of_multisets(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 7))
    k = 1 + seed % 5
    x, y, xt, yt = _data(seed, n, m=2, ties=True) if seed < 4 else _tiny_tied(seed, n)
    o = knn_marginals(x, y, xt, yt, k)
    z = int(rng.integers(0, n))
    got = np.insert(o.projection(z), z, np.nan)
    np.testing.assert_allclose(got, _enumerated_projection(x, y, xt, yt, z, k), atol=1e-12)


@pytest.mark.parametrize(("seed", "k"), [(1, 2), (2, 5)])
def test_projection_equals_enumeration_n8(seed, k):
    """N = 8 with a duplicated row: every class case (mixed class of z, mixed later
    classes, K beyond the class) against the enumeration of all 1,716 draw multisets."""
    x, y, xt, yt = _tiny_tied(seed, 8)
    o = knn_marginals(x, y, xt, yt, k)
    got = np.insert(o.projection(0), 0, np.nan)
    np.testing.assert_allclose(got, _enumerated_projection(x, y, xt, yt, 0, k), atol=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_leave_one_out_values(seed):
    """Each leave-one-out value is the tie-rule KNN-Shapley value of z without point i
    (``knn_shapley``, itself checked against enumeration in test_knn_ties.py)."""
    x, y, xt, yt = _data(seed, 10, ties=bool(seed % 2)) if seed < 3 else _tiny_tied(seed, 10)
    k = 1 + seed % 5
    o = knn_marginals(x, y, xt, yt, k)
    z = seed
    loo = np.insert(o.leave_one_out(z), z, np.nan)
    full = kern.knn_leave_one_out(o.order, o.tie, o.y_train, o.y_test, z, k)[z]
    assert full == pytest.approx(knn_shapley(x, y, xt, yt, k=k).values[z], abs=1e-14)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a reduced set may hold one class
        for i in range(10):
            if i == z:
                continue
            keep = np.delete(np.arange(10), i)
            ref = knn_shapley(x[keep], y[keep], xt, yt, k=k).values[list(keep).index(z)]
            assert loo[i] == pytest.approx(ref, abs=1e-14)


def test_size_distribution():
    n = 7
    u = (np.arange(100000) + 0.5) / 100000
    s = _size_biased(u, n)
    freq = np.bincount(s, minlength=n)[1:] / s.size
    np.testing.assert_allclose(freq, np.arange(1, n) / (n * (n - 1) / 2), atol=1e-4)
    sizes, w = size_nodes(500, 64)
    assert sizes.size == 64 and w.sum() == pytest.approx(1.0)
    assert sizes.min() >= 1 and sizes.max() <= 499


def test_knn_draws_average_to_projection():
    x, y, xt, yt = _data(3, 12)
    o = knn_marginals(x, y, xt, yt, 2)
    anchors = np.array([1, 4, 7], dtype=np.int64)
    h = o.draws(0, anchors, 40000, np.random.default_rng(0))
    exact = np.insert(o.projection(0), 0, np.nan)[anchors]
    se = h.std(axis=1, ddof=1) / np.sqrt(h.shape[1])
    assert np.all(np.abs(h.mean(axis=1) - exact) < 5 * se + 1e-12)


# -- the two estimators -----------------------------------------------------------------------


def test_double_mc_and_pick_freeze_estimate_variance_of_conditional_mean():
    rng = np.random.default_rng(0)
    a = rng.normal(size=4000)  # conditional means, variance 1
    nested = a[:, None] + 3.0 * rng.normal(size=(4000, 30))
    assert _zeta_double_mc(nested) == pytest.approx(1.0, abs=0.1)
    pairs = a[:, None] + 3.0 * rng.normal(size=(4000, 2))
    assert _zeta_pick_freeze(pairs) == pytest.approx(1.0, abs=0.25)
    # without the inner-noise correction the nested estimate would be ~1.3
    assert nested.mean(axis=1).var(ddof=1) > 1.2


def test_additive_game_has_zero_sampling_variance():
    w = np.array([0.3, 0.1, 0.5, 0.2, 0.4, 0.0])
    u = GameUtility(lambda s: float(w[list(s)].sum()), 6)
    res = ValuationResult(w.copy(), stderr=np.full(6, 0.01), method="tmc-shapley")
    for method in ("double_mc", "pick_and_freeze"):
        ci = shapley_confidence_intervals(
            res, u, 0.9, method, n_outer=5, n_inner=4, n_pairs=20, random_state=1
        )
        # h(S) = w_z for every S: no data variance, only the Monte Carlo stderr
        np.testing.assert_allclose(ci.stderr, 0.01, atol=1e-12)
        np.testing.assert_allclose(ci.ci_high - ci.values, 1.6448536269514722 * 0.01)
        assert ci.confidence == 0.9 and ci.params["ci_method"] == method
    exact = ValuationResult(w.copy(), method="knn-shapley")
    ci = shapley_confidence_intervals(exact, u, n_outer=3, n_inner=3, random_state=0)
    np.testing.assert_allclose(ci.ci_low, w)  # exact method, no stderr added


def test_generic_utility_intervals_are_reproducible():
    f = np.array([0.9, 0.2, 0.5, 0.7, 0.1, 0.3, 0.6])
    u = GameUtility(lambda s: float(f[list(s)].max()) if s else 0.0, 7)
    res = ValuationResult(np.zeros(7), stderr=np.zeros(7), method="tmc-shapley")
    kw = {"n_outer": 6, "n_inner": 5, "random_state": 4, "indices": [0, 3]}
    a = shapley_confidence_intervals(res, u, **kw)
    b = shapley_confidence_intervals(res, u, **kw, n_jobs=2, backend="threads")
    np.testing.assert_array_equal(a.ci_low, b.ci_low)
    assert np.isnan(a.ci_low[1]) and not np.isnan(a.ci_low[0])
    assert a.params["ci_method"] == "pick_and_freeze" or a.params["ci_method"] == "double_mc"


# -- knn_shapley_ci -------------------------------------------------------------------------


def test_knn_shapley_ci_values_and_bounds():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(60, 2)), rng.integers(0, 2, 60)
    xt, yt = rng.normal(size=(15, 2)), rng.integers(0, 2, 15)
    res = knn_shapley_ci(x, y, xt, yt, k=3, confidence=0.95, random_state=0)
    ref = knn_asymmetric_shapley(x, y, xt, yt, k=3)
    np.testing.assert_allclose(res.values, ref.values)
    assert res.method == "knn-shapley" and res.confidence == 0.95
    assert res.params["ci_method"] == "double_mc"
    assert np.all(res.ci_low <= res.values) and np.all(res.values <= res.ci_high)
    o = knn_marginals(x, y, xt, yt, 3)
    var5 = (60 - 1) * np.var(o.projection(5), ddof=1) / 4
    assert res.ci_high[5] - res.values[5] == pytest.approx(1.959963984540054 * np.sqrt(var5))
    jk = knn_shapley_ci(x, y, xt, yt, k=3, method="jackknife", indices=[2])
    loo = o.leave_one_out(2)
    var = (loo.size - 1) / loo.size * np.sum((loo - loo.mean()) ** 2)
    assert jk.stderr[2] == pytest.approx(np.sqrt(var))
    pf = knn_shapley_ci(x, y, xt, yt, k=3, method="pick_and_freeze", n_pairs=500, indices=[2])
    assert np.isfinite(pf.ci_low[2]) and np.isnan(pf.ci_low[0])
    frame = res.to_frame()
    assert {"ci_low", "ci_high"} <= set(frame.columns)


def test_knn_ci_monte_carlo_double_mc_near_exact():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(40, 2)), rng.integers(0, 2, 40)
    xt, yt = rng.normal(size=(10, 2)), rng.integers(0, 2, 10)
    o = knn_marginals(x, y, xt, yt, 2)
    exact, _ = shapley_variance(o, [0], method="double_mc")
    mc, _ = shapley_variance(o, [0], method="double_mc", n_outer=39, n_inner=3000, random_state=0)
    assert mc[0] == pytest.approx(exact[0], rel=0.35)


# -- errors -------------------------------------------------------------------------------


def test_errors():
    x, y, xt, yt = _data(0, 8)
    with pytest.raises(InvalidInput, match="unknown CI method"):
        knn_shapley_ci(x, y, xt, yt, k=2, method="bootstrap")
    for bad in (0, 1, 1.5, "high", -0.1):
        with pytest.raises(InvalidInput, match="confidence"):
            knn_shapley_ci(x, y, xt, yt, k=2, confidence=bad)
    with pytest.raises(InvalidInput, match="k must"):
        knn_shapley_ci(x, y, xt, yt, k=0)
    u = GameUtility(lambda s: float(len(s)), 8)
    res = ValuationResult(np.zeros(8))
    with pytest.raises(InvalidInput, match="jackknife"):
        shapley_confidence_intervals(res, u, method="jackknife")
    with pytest.raises(InvalidInput, match="players"):
        shapley_confidence_intervals(ValuationResult(np.zeros(5)), u)
    with pytest.raises(InvalidInput, match="ValuationResult"):
        shapley_confidence_intervals(np.zeros(8), u)  # type: ignore[arg-type]
    ads = ValuationResult(np.zeros(8), method="knn-asymmetric-shapley")
    with pytest.raises(InvalidInput, match="point-level Data Shapley"):
        shapley_confidence_intervals(ads, u)
    with pytest.raises(InvalidInput, match="n_pairs"):
        shapley_confidence_intervals(res, u, method="pick_and_freeze", n_pairs=1)
    with pytest.raises(InvalidInput, match="n_inner"):
        shapley_confidence_intervals(res, u, method="double_mc", n_inner=1)
    with pytest.raises(InvalidInput, match="indices"):
        shapley_confidence_intervals(res, u, indices=[8])
    with pytest.raises(InvalidInput, match="at least 3"):
        shapley_variance(GameUtility(lambda s: 0.0, 2))
    with pytest.raises(InvalidInput, match="callable"):
        UtilityMarginals(3)
    bad = x.copy()
    bad[0, 0] = np.inf
    with pytest.raises(InvalidInput, match="NaN or infinity"):
        knn_shapley_ci(bad, y, xt, yt, k=2)
    assert isinstance(knn_marginals(x, y, xt, yt, 2), KNNMarginals)
    with pytest.raises(InvalidInput, match=r"unknown variance option.*n_outr"):
        knn_shapley_ci(x, y, xt, yt, k=2, n_outr=5)
    with pytest.raises(InvalidInput, match="unknown variance option"):
        shapley_variance(u, chunk_size=4)
    with pytest.raises(InvalidInput, match="VarianceOptions"):
        shapley_confidence_intervals(res, u, options={"n_outer": 5})  # type: ignore[arg-type]


def test_variance_options_object_and_keywords_agree():
    """One options object serves every interval function; keywords replace its fields."""
    f = np.array([0.9, 0.2, 0.5, 0.7, 0.1, 0.3, 0.6])
    u = GameUtility(lambda s: float(f[list(s)].max()) if s else 0.0, 7)
    res = ValuationResult(np.zeros(7), stderr=np.zeros(7), method="tmc-shapley")
    opts = VarianceOptions(n_outer=6, n_inner=5, random_state=4, backend="threads")
    a = shapley_confidence_intervals(res, u, options=opts, indices=[0, 3])
    b = shapley_confidence_intervals(
        res, u, n_outer=6, n_inner=5, random_state=4, backend="threads", indices=[0, 3]
    )
    c = shapley_confidence_intervals(
        res,
        u,
        options=VarianceOptions(n_outer=6, n_inner=9),
        n_inner=5,
        random_state=4,
        indices=[0, 3],
    )
    np.testing.assert_array_equal(a.ci_low, b.ci_low)
    np.testing.assert_array_equal(a.ci_low, c.ci_low)
    assert a.params["ci_samples"] == {"n_outer": 6, "n_inner": 5}
    # a model utility without n_inner uses the documented default inner budget
    d = shapley_confidence_intervals(res, u, n_outer=3, random_state=0, indices=[1])
    assert d.params["ci_samples"] == {"n_outer": 3, "n_inner": MODEL_INNER_DRAWS}
    x, y, xt, yt = _data(2, 30)
    o = knn_marginals(x, y, xt, yt, 3)
    var_kw, _ = shapley_variance(o, [1, 2], method="jackknife", n_jobs=2)
    var_obj, _ = shapley_variance(o, [1, 2], method="jackknife", options=VarianceOptions(n_jobs=2))
    np.testing.assert_array_equal(var_kw, var_obj)
    ci = knn_shapley_ci(x, y, xt, yt, k=3, indices=[1], options=VarianceOptions(random_state=1))
    assert ci.params["ci_samples"] == {"exact": "all anchors, closed-form inner expectation"}


# -- Ray ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_ray() -> Iterator[object]:
    ray = require("ray", "pip install -e '.[distributed]'")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()


@pytest.mark.slow
def test_ray_matches_joblib_for_intervals(local_ray):  # type: ignore[no-untyped-def]
    x, y, xt, yt = _data(5, 30, m=6)
    kw = {"k": 3, "method": "pick_and_freeze", "n_pairs": 200, "random_state": 11}
    ref = knn_shapley_ci(x, y, xt, yt, **kw)
    on_ray = knn_shapley_ci(x, y, xt, yt, **kw, backend="ray", n_jobs=2)
    np.testing.assert_array_equal(on_ray.ci_low, ref.ci_low)
    np.testing.assert_array_equal(on_ray.ci_high, ref.ci_high)


# -- calibration regime and warnings --------------------------------------------------------


def test_deletion_stable_rule():
    from databazaar.valuation.inference import deletion_stable

    assert deletion_stable(5, 100) and not deletion_stable(5, 101)
    assert deletion_stable(20, 1600) and not deletion_stable(19, 1600)


def test_small_k_warns_and_stable_k_does_not():
    import warnings

    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(60, 2)), rng.integers(0, 2, 60)
    xt, yt = rng.normal(size=(10, 2)), rng.integers(0, 2, 10)
    with pytest.warns(UserWarning, match=r"K=2 neighbours on N=60 points is not deletion-stable"):
        knn_shapley_ci(x, y, xt, yt, k=2, indices=[0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        knn_shapley_ci(x, y, xt, yt, k=4, indices=[0])  # 2K = 8 >= sqrt(60)
        knn_shapley_ci(x, y, xt, yt, k=2, method="jackknife", indices=[0])


def test_negative_variance_estimates_are_reported():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 2)), rng.integers(0, 2, 40)
    xt, yt = rng.normal(size=(5, 2)), rng.integers(0, 2, 5)
    o = knn_marginals(x, y, xt, yt, 4)
    with pytest.warns(RuntimeWarning, match=r"of 40 variance estimates \(pick_and_freeze\)"):
        var, _ = shapley_variance(o, method="pick_and_freeze", n_pairs=3, random_state=0)
    assert np.all(var >= 0.0) and np.any(var == 0.0)


def _two_classes(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    y = rng.integers(0, 2, n)
    x = rng.normal(size=(n, 2))
    x[:, 0] += np.where(y == 1, 1.0, -1.0)
    return x, y


@pytest.mark.slow
def test_double_mc_variance_matches_sampling_variance_when_deletion_stable():
    """The claim behind the default: with K ~ sqrt(N) the estimated variance of a value
    matches its variance over redraws of the other training points (here within 15%)."""
    n, k = 200, 15
    rng = np.random.default_rng(11)
    xt, yt = _two_classes(50, rng)
    xz, yz = np.array([[0.3, 0.2]]), np.array([1])
    vals, estimates = [], []
    for r in range(400):
        x, y = _two_classes(n - 1, rng)
        xx, yy = np.vstack([xz, x]), np.concatenate([yz, y])
        vals.append(knn_asymmetric_shapley(xx, yy, xt, yt, k=k).values[0])
        if r < 40:
            ci = knn_shapley_ci(xx, yy, xt, yt, k=k, indices=[0])
            estimates.append(ci.stderr[0] ** 2)
    ratio = np.mean(estimates) / np.var(vals, ddof=1)
    assert 0.85 <= ratio <= 1.15, ratio


def test_progress_reports_every_point_and_changes_nothing():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(40, 2)), rng.integers(0, 2, 40)
    xt, yt = rng.normal(size=(6, 2)), rng.integers(0, 2, 6)
    o = knn_marginals(x, y, xt, yt, 4)
    calls: list[int] = []
    kw = {"method": "double_mc", "n_outer": 5, "n_inner": 6, "random_state": 3}
    with_bar, _ = shapley_variance(o, progress=calls.append, **kw)
    plain, _ = shapley_variance(o, **kw)
    np.testing.assert_array_equal(with_bar, plain)
    assert calls == [1] * 40
    with pytest.raises(InvalidInput, match="progress must be a callable"):
        shapley_variance(o, progress=5, **kw)
