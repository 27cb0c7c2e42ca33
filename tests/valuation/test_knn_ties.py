"""The KNN tie rule: exact values under distance ties against brute-force enumeration.

The tie-averaged utility of a subset ``S`` is its expected KNN utility when the training
points at equal distance are ordered uniformly at random.  Only the tie group straddling
the ``K``-th place matters, and under a random order the members of it that make the
top ``K`` are a uniformly random subset of the free places, so the brute force below
averages the strict utility over every such subset and then enumerates all coalitions.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from databazaar.valuation import (
    exact_shapley,
    knn_regression_shapley,
    knn_shapley,
    threshold_knn_shapley,
)
from databazaar.valuation._neighbours import NeighbourKeys, distinct_rows, sorted_order


def brute_shapley(n: int, v) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Shapley values by enumerating all ``2^n`` coalitions (the library's brute force,
    checked against games with known values in test_exact.py)."""
    return exact_shapley(v, n).values


def tie_averaged(d: np.ndarray, k: int, score):  # type: ignore[no-untyped-def]
    """``v(S)`` = mean of ``score(top-K members)`` over the uniformly random tie orders."""

    def v(s: tuple[int, ...]) -> float:
        if not s:
            return score(())
        members = sorted(s, key=lambda j: d[j])
        if len(members) <= k:
            return score(tuple(members))
        cut = d[members[k - 1]]
        sure = tuple(j for j in members if d[j] < cut)
        boundary = [j for j in members if d[j] == cut]
        picks = list(itertools.combinations(boundary, k - len(sure)))
        return float(np.mean([score(sure + p) for p in picks]))

    return v


def tied_data(seed: int, n: int, n_test: int = 3, levels: int = 3):  # type: ignore[no-untyped-def]
    """Integer features on a small grid (many exact distance ties) with duplicated rows."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, levels, size=(n, 2)).astype(float)
    x[n - 2 :] = x[:2]  # two exact duplicates
    y = rng.integers(0, 3, n)
    y[n - 1] = y[1]  # one duplicate with the same label
    xt = rng.integers(0, levels, size=(n_test, 2)).astype(float)
    yt = rng.integers(0, 3, n_test)
    return x, y, xt, yt


def n_tied_rows(x: np.ndarray, xt: np.ndarray) -> int:
    d = ((xt[:, None, :] - x[None]) ** 2).sum(-1)
    return sum(len(np.unique(row)) < len(row) for row in d)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_classification_ties_match_brute_force(seed: int, k: int) -> None:
    n = 8 if seed % 2 else 6
    x, y, xt, yt = tied_data(seed, n)
    assert n_tied_rows(x, xt) == len(xt)  # every test point has exact ties
    expected = []
    for t, label in zip(xt, yt, strict=True):
        d = ((x - t) ** 2).sum(1)
        expected.append(
            brute_shapley(
                n, tie_averaged(d, k, lambda top, lab=label: np.sum(y[list(top)] == lab) / k)
            )
        )
    got = knn_shapley(x, y, xt, yt, k=k)
    np.testing.assert_allclose(got.values, np.mean(expected, 0), atol=1e-12)
    # efficiency: the values sum to the tie-averaged utility of the whole set
    assert got.values.sum() == pytest.approx(
        np.mean(
            [
                tie_averaged(
                    ((x - t) ** 2).sum(1), k, lambda top, lab=lab: np.sum(y[list(top)] == lab) / k
                )(tuple(range(n)))
                for t, lab in zip(xt, yt, strict=True)
            ]
        ),
        abs=1e-12,
    )


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_regression_ties_match_brute_force(seed: int, k: int) -> None:
    n = 8 if seed % 2 else 7
    x, y, xt, _ = tied_data(10 + seed, n)
    rng = np.random.default_rng(seed)
    y = np.round(rng.normal(size=n) * 3, 2)
    y[n - 1] = y[1]
    yt = np.round(rng.normal(size=len(xt)), 2)
    expected = []
    for t, target in zip(xt, yt, strict=True):
        d = ((x - t) ** 2).sum(1)

        def score(top, target=target):  # type: ignore[no-untyped-def]
            return -((y[list(top)].sum() / k - target) ** 2)

        expected.append(brute_shapley(n, tie_averaged(d, k, score)))
    got = knn_regression_shapley(x, y, xt, yt, k=k)
    np.testing.assert_allclose(got.values, np.mean(expected, 0), atol=1e-10)


@pytest.mark.parametrize("seed", range(3))
def test_threshold_needs_no_tie_rule(seed: int) -> None:
    """Threshold KNN depends on distances only through ``d <= tau``: no order, no ties."""
    x, y, xt, yt = tied_data(20 + seed, 8)
    for tau in (1.0, 1.5):
        n_classes = len(np.unique(np.concatenate([y, yt])))
        expected = []
        for t, lab in zip(xt, yt, strict=True):
            d = np.sqrt(((x - t) ** 2).sum(1))

            def v(s, d=d, lab=lab, tau=tau, c=n_classes):  # type: ignore[no-untyped-def]
                inside = [j for j in s if d[j] <= tau]
                return float(np.mean(y[inside] == lab)) if inside else 1.0 / c

            expected.append(brute_shapley(8, v))
        got = threshold_knn_shapley(x, y, xt, yt, tau=tau)
        np.testing.assert_allclose(got.values, np.mean(expected, 0), atol=1e-12)


def strict_values(x, y, t, label, k, rank):  # type: ignore[no-untyped-def]
    """Brute-force Shapley values when ties are broken by the total order ``rank``."""
    d = ((x - t) ** 2).sum(1)

    def v(s):  # type: ignore[no-untyped-def]
        top = sorted(s, key=lambda j: (d[j], rank[j]))[:k]
        return float(np.sum(y[top] == label)) / k

    return brute_shapley(len(y), v)


def test_rule_is_the_mean_over_tie_break_orders() -> None:
    """Shapley is linear in the utility: the tie rule's values are the average of the
    strict-order values over every order of the tied points (here 2! 3! 2! orders)."""
    x = np.array([[1.0, 0], [0, 1], [2, 0], [0, 2], [2, 0], [3, 0], [0, 3]])
    y = np.array([0, 1, 0, 0, 1, 1, 0])
    t, label = np.zeros(2), 0
    d = ((x - t) ** 2).sum(1)
    groups = [np.flatnonzero(d == v) for v in np.unique(d)]
    assert sorted(len(g) for g in groups) == [2, 2, 3]
    for k in (1, 2, 3, 4):
        runs = []
        for perms in itertools.product(*[itertools.permutations(g) for g in groups]):
            rank = np.empty(len(y))
            rank[np.concatenate(perms)] = np.arange(len(y))
            runs.append(strict_values(x, y, t, label, k, rank))
        assert len(runs) == 24
        got = knn_shapley(x, y, t[None], [label], k=k).values
        np.testing.assert_allclose(got, np.mean(runs, 0), atol=1e-12)
        # ... and the index order (what a stable sort gives) is one of them, not the rule
        by_index = strict_values(x, y, t, label, k, np.arange(len(y)))
        assert np.abs(by_index - got).max() > 1e-3 or k == 4


def big_tied_data(seed: int = 0, n: int = 1200, m: int = 60):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 4, size=(n, 3)).astype(float)  # 64 distinct rows: ties everywhere
    y = rng.integers(0, 3, n)
    xt = rng.integers(0, 4, size=(m, 3)).astype(float)
    yt = rng.integers(0, 3, m)
    return x, y, xt, yt


@pytest.mark.parametrize("method", ["classification", "regression", "threshold"])
def test_row_permutation_permutes_values(method: str) -> None:
    x, y, xt, yt = big_tied_data()
    perm = np.random.default_rng(1).permutation(len(y))

    def run(xs, ys):  # type: ignore[no-untyped-def]
        if method == "threshold":
            return threshold_knn_shapley(xs, ys, xt, yt, tau=1.5).values
        if method == "regression":
            return knn_regression_shapley(xs, ys.astype(float), xt, yt.astype(float), k=7).values
        return knn_shapley(xs, ys, xt, yt, k=7, n_jobs=2).values

    base = run(x, y)
    permuted = run(x[perm], y[perm])
    assert np.abs(permuted - base[perm]).max() <= 1e-12
    # identical rows with the same label get identical values
    key = [(*tuple(r), lab) for r, lab in zip(x, y, strict=True)]
    first: dict[tuple, int] = {}
    for i, kk in enumerate(key):
        j = first.setdefault(kk, i)
        assert base[i] == base[j]


def test_duplicates_share_keys_even_when_products_round() -> None:
    """Continuous features: duplicated rows get one key column, so they always tie."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 7))
    x[150:] = x[:150]
    xu, inv = distinct_rows(x)
    assert xu.shape == (150, 7) and inv is not None
    np.testing.assert_array_equal(xu[inv], x)
    keys = NeighbourKeys.of(x).keys(rng.normal(size=(5, 7)))
    np.testing.assert_array_equal(keys[:, :150], keys[:, 150:])
    y = rng.integers(0, 2, 300)
    y[150:] = y[:150]
    vals = knn_shapley(x, y, rng.normal(size=(20, 7)), rng.integers(0, 2, 20), k=5).values
    np.testing.assert_array_equal(vals[:150], vals[150:])
    # no duplicates: the input comes back untouched
    z = rng.normal(size=(50, 3))
    zu, zinv = distinct_rows(z)
    assert zu is z and zinv is None


def test_sorted_order_and_tie_classes() -> None:
    from databazaar.valuation._neighbours import tie_classes

    keys = np.array([[2.0, 1.0, 2.0, 1.0, 0.5]])
    order = sorted_order(keys)
    np.testing.assert_array_equal(order[0], [4, 1, 3, 0, 2])
    np.testing.assert_array_equal(tie_classes(keys, order)[0], [0, 1, 1, 2, 2])
    with pytest.raises(ValueError, match="2-D"):
        sorted_order(keys[0])


def test_radix_sorted_order_equals_stable_argsort() -> None:
    """The radix sort gives exactly numpy's stable order: negatives, ties, signed zeros,
    huge and tiny magnitudes, infinities, NaN, and non-contiguous input."""
    rng = np.random.default_rng(14)
    n = 3000
    cont = rng.normal(scale=1e3, size=(4, n))  # continuous, both signs
    few = rng.integers(-5, 6, size=(4, n)).astype(np.float64)  # many exact ties
    few[few == 0] = rng.choice([0.0, -0.0], size=int((few == 0).sum()))
    wild = rng.choice(
        [
            -1e308, -1e-300, -5e-324, -0.0, 0.0, 5e-324, 1e-300, 1e308,
            -np.inf, np.inf, -3.5, 3.5, 2.0**52, -(2.0**52), 1.0 + 2.0**-52,
        ],
        size=(4, n),
    )  # fmt: skip
    scaled = rng.normal(size=(4, n)) * 10.0 ** rng.integers(-300, 300, size=(4, n))
    keys = np.concatenate([cont, few, wild, scaled, np.full((1, n), 7.0)])
    np.testing.assert_array_equal(sorted_order(keys), np.argsort(keys, axis=1, kind="stable"))
    assert sorted_order(keys).dtype == np.int64
    with_nan = cont.copy()
    with_nan[:, ::7] = np.nan
    with_nan[0, 3] = -np.nan
    np.testing.assert_array_equal(
        sorted_order(with_nan), np.argsort(with_nan, axis=1, kind="stable")
    )
    view = keys[:, ::2]  # a strided view is sorted like its copy
    np.testing.assert_array_equal(sorted_order(view), np.argsort(view, axis=1, kind="stable"))
    assert sorted_order(np.empty((2, 0))).shape == (2, 0)
    small = few[:, :40]  # short rows take numpy's stable sort: the same order
    np.testing.assert_array_equal(sorted_order(small), np.argsort(small, axis=1, kind="stable"))


def ads_brute(x, y, xt, yt, k, rank):  # type: ignore[no-untyped-def]
    """ADS by its decomposition: for ``z`` in group ``t``, the Shapley value of ``z`` in
    ``w_t(S) = v(U_t + S)`` over the players of group ``t``, ``v`` the tie-averaged
    KNN utility, averaged over the test points."""
    n = len(y)
    out = np.zeros(n)
    for t, lab in zip(xt, yt, strict=True):
        d = ((x - t) ** 2).sum(1)
        v = tie_averaged(d, k, lambda top, lab=lab: np.sum(y[list(top)] == lab) / k)
        for g in np.unique(rank):
            members = list(np.flatnonzero(rank == g))
            earlier = tuple(np.flatnonzero(rank < g))

            def w(s, members=members, earlier=earlier, v=v):  # type: ignore[no-untyped-def]
                return v(tuple(sorted(earlier + tuple(members[i] for i in s))))

            out[members] += brute_shapley(len(members), w)
    return out / len(yt)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_asymmetric_ties_match_brute_force(seed: int, k: int) -> None:
    from databazaar.valuation import knn_asymmetric_shapley

    n = 8 if seed % 2 else 7
    x, y, xt, yt = tied_data(30 + seed, n, levels=2 + seed % 2)
    rank = np.random.default_rng(seed).integers(0, 1 + seed % 3 + 1, n)  # 2-3 groups
    rank[n - 2 :] = np.array([1, 1]) if seed % 2 else np.array([0, 1])  # copies later
    expected = ads_brute(x, y, xt, yt, k, rank)
    got = knn_asymmetric_shapley(x, y, xt, yt, groups=rank, order=sorted(set(rank)), k=k)
    np.testing.assert_allclose(got.values, expected, atol=1e-12)
    # one group: ADS is Data Shapley, the same numbers as knn_shapley
    one = knn_asymmetric_shapley(x, y, xt, yt, k=k).values
    np.testing.assert_allclose(one, knn_shapley(x, y, xt, yt, k=k).values, atol=1e-14)


def test_asymmetric_row_permutation_and_identical_rows() -> None:
    from databazaar.valuation import knn_asymmetric_shapley

    x, y, xt, yt = big_tied_data(seed=4)
    groups = np.random.default_rng(2).integers(0, 3, len(y))
    perm = np.random.default_rng(5).permutation(len(y))
    base = knn_asymmetric_shapley(x, y, xt, yt, groups=groups, order=[2, 0, 1], k=6).values
    moved = knn_asymmetric_shapley(
        x[perm], y[perm], xt, yt, groups=groups[perm], order=[2, 0, 1], k=6, n_jobs=2
    ).values
    assert np.abs(moved - base[perm]).max() <= 1e-12
    seen: dict[tuple, int] = {}
    for i in range(len(y)):
        j = seen.setdefault((*x[i], y[i], groups[i]), i)
        assert base[i] == base[j]


def test_ci_values_are_knn_shapley_values() -> None:
    from databazaar.valuation.knn_inference import knn_shapley_ci

    x, y, xt, yt = big_tied_data(seed=6, n=300, m=20)
    ci = knn_shapley_ci(x, y, xt, yt, k=9, indices=[0, 1, 2], random_state=0)
    np.testing.assert_array_equal(ci.values, knn_shapley(x, y, xt, yt, k=9).values)
    assert np.isfinite(ci.ci_low[:3]).all() and np.isnan(ci.ci_low[3:]).all()


def test_ci_widths_follow_the_tie_rule() -> None:
    """The variance parts use the tie rule too: permuting the 1,200 tied training rows
    permutes the values and the interval widths, and duplicated rows with the same label
    get identical widths.

    Tolerances: the exact parts (closed-form projection and jackknife) are formed per
    tie class and label, so they permute bit for bit, and the variance sums its terms in
    sorted order: the standard errors (hence half-widths, ``z_{0.975}`` times them) are
    compared with ``==``.  The values are ``knn_shapley``'s (<= 1e-12, summation order).
    The Monte Carlo draws index the pool ``D - {z}``; with the pool relabelled by the
    same permutation one seed draws the same sets, so those draws agree bit for bit too.
    """
    from databazaar.valuation.knn_inference import knn_marginals, knn_shapley_ci

    x, y, xt, yt = big_tied_data(seed=7)
    n = len(y)
    perm = np.random.default_rng(8).permutation(n)
    inv = np.argsort(perm)  # row i of the data is row inv[i] of the permuted data
    first: dict[tuple, int] = {}
    pairs = []
    for i in range(n):
        j = first.setdefault((*x[i], y[i]), i)
        if j != i and len(pairs) < 2 and all(j != a for a, _ in pairs):
            pairs.append((j, i))
    idx = np.array([p for pair in pairs for p in pair])
    for method in ("default", "jackknife"):
        a = knn_shapley_ci(x, y, xt, yt, k=9, method=method, indices=idx)
        b = knn_shapley_ci(x[perm], y[perm], xt, yt, k=9, method=method, indices=inv[idx])
        assert np.abs(b.values - a.values[perm]).max() <= 1e-12
        np.testing.assert_array_equal(b.stderr[inv[idx]], a.stderr[idx])
        for i, j in pairs:
            assert a.stderr[i] == a.stderr[j] > 0
    o = knn_marginals(x, y, xt, yt, 9)
    moved = knn_marginals(x[perm], y[perm], xt, yt, 9)
    z, twin = pairs[0]
    anchors = np.array([3, 50, 700, twin])
    pool = np.delete(np.arange(n), z)
    h = o.draws(z, anchors, 64, np.random.default_rng(3))
    h_perm = moved.draws(int(inv[z]), inv[anchors], 64, np.random.default_rng(3), pool=inv[pool])
    np.testing.assert_array_equal(h_perm, h)
    # swapping the two duplicates maps the data set to itself: same draws for the twin
    swap = np.arange(n)
    swap[[z, twin]] = [twin, z]
    h_twin = o.draws(twin, swap[anchors], 64, np.random.default_rng(3), pool=swap[pool])
    np.testing.assert_array_equal(h_twin, h)
