"""Exact KNN-Shapley against brute-force enumeration, axioms, pyDVL parity, errors."""

from __future__ import annotations

import itertools
import math
import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from databazaar.core.errors import InvalidInput
from databazaar.valuation import (
    KNNShapley,
    ThresholdKNNShapley,
    knn_regression_shapley,
    knn_shapley,
    threshold_knn_shapley,
)


def brute_shapley(n: int, v) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Shapley values by the subset formula: sum_S |S|!(n-|S|-1)!/n! (v(S+i) - v(S))."""
    phi = np.zeros(n)
    cache: dict[tuple[int, ...], float] = {}

    def val(s: tuple[int, ...]) -> float:
        if s not in cache:
            cache[s] = v(s)
        return cache[s]

    for i in range(n):
        others = [j for j in range(n) if j != i]
        for size in range(n):
            w = math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)
            for s in itertools.combinations(others, size):
                phi[i] += w * (val(tuple(sorted((*s, i)))) - val(s))
    return phi


def knn_cls_utility(xtr, ytr, t, yt, k):  # type: ignore[no-untyped-def]
    d = ((xtr - t) ** 2).sum(1)

    def v(s):  # type: ignore[no-untyped-def]
        if not s:
            return 0.0
        idx = np.array(s)
        near = idx[np.argsort(d[idx], kind="stable")][:k]
        return float(np.sum(ytr[near] == yt)) / k

    return v


def knn_reg_utility(xtr, ytr, t, yt, k):  # type: ignore[no-untyped-def]
    d = ((xtr - t) ** 2).sum(1)

    def v(s):  # type: ignore[no-untyped-def]
        if not s:
            return -(yt**2)
        idx = np.array(s)
        near = idx[np.argsort(d[idx], kind="stable")][:k]
        return -((ytr[near].sum() / k - yt) ** 2)

    return v


def threshold_utility(xtr, ytr, t, yt, tau, n_classes):  # type: ignore[no-untyped-def]
    d = np.sqrt(((xtr - t) ** 2).sum(1))

    def v(s):  # type: ignore[no-untyped-def]
        inside = [j for j in s if d[j] <= tau]
        if not inside:
            return 1.0 / n_classes
        return float(np.mean(ytr[inside] == yt))

    return v


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_classification_matches_brute_force(seed: int, k: int) -> None:
    rng = np.random.default_rng(seed)
    n = 7
    xtr, ytr = rng.normal(size=(n, 2)), rng.integers(0, 3, n)
    xte, yte = rng.normal(size=(3, 2)), rng.integers(0, 3, 3)
    expected = np.mean(
        [
            brute_shapley(n, knn_cls_utility(xtr, ytr, t, yt, k))
            for t, yt in zip(xte, yte, strict=False)
        ],
        0,
    )
    got = knn_shapley(xtr, ytr, xte, yte, k=k)
    np.testing.assert_allclose(got.values, expected, atol=1e-12)
    assert got.method == "knn-shapley" and got.params["k"] == k


@pytest.mark.filterwarnings("ignore:k=8 >= the 7 training rows")  # K > N is covered too
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("k", [1, 2, 3, 4, 8])
def test_regression_matches_brute_force(seed: int, k: int) -> None:
    rng = np.random.default_rng(100 + seed)
    n = 7
    xtr, ytr = rng.normal(size=(n, 3)), rng.normal(size=n) * 3
    xte, yte = rng.normal(size=(2, 3)), rng.normal(size=2)
    expected = np.mean(
        [
            brute_shapley(n, knn_reg_utility(xtr, ytr, t, yt, k))
            for t, yt in zip(xte, yte, strict=False)
        ],
        0,
    )
    got = knn_regression_shapley(xtr, ytr, xte, yte, k=k)
    np.testing.assert_allclose(got.values, expected, atol=1e-10)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("tau", [0.5, 1.0, 2.5])
def test_threshold_matches_brute_force(seed: int, tau: float) -> None:
    rng = np.random.default_rng(200 + seed)
    n = 7
    xtr, ytr = rng.normal(size=(n, 2)), rng.integers(0, 3, n)
    xte, yte = rng.normal(size=(3, 2)), rng.integers(0, 3, 3)
    n_classes = len(np.unique(np.concatenate([ytr, yte])))
    expected = np.mean(
        [
            brute_shapley(n, threshold_utility(xtr, ytr, t, yt, tau, n_classes))
            for t, yt in zip(xte, yte, strict=False)
        ],
        0,
    )
    got = threshold_knn_shapley(xtr, ytr, xte, yte, tau=tau)
    np.testing.assert_allclose(got.values, expected, atol=1e-12)


def test_efficiency_on_larger_set() -> None:
    """Sum of values = v(D) - v(empty): mean over test points of the K-NN accuracy."""
    rng = np.random.default_rng(3)
    xtr, ytr = rng.normal(size=(400, 4)), rng.integers(0, 2, 400)
    xte, yte = rng.normal(size=(50, 4)), rng.integers(0, 2, 50)
    k = 5
    d = ((xte[:, None, :] - xtr[None]) ** 2).sum(-1)
    near = np.argsort(d, axis=1)[:, :k]
    v_full = np.mean((ytr[near] == yte[:, None]).sum(1) / k)
    res = knn_shapley(xtr, ytr, xte, yte, k=k)
    assert res.values.sum() == pytest.approx(v_full, abs=1e-12)
    reg = knn_regression_shapley(xtr, ytr.astype(float), xte, yte.astype(float), k=k)
    v_reg = np.mean(-((ytr[near].sum(1) / k - yte) ** 2))
    assert reg.values.sum() == pytest.approx(v_reg - np.mean(-(yte.astype(float) ** 2)), abs=1e-10)


def test_null_player_and_symmetry() -> None:
    # two points far from every test point behind >K closer ones share value ~0 only if
    # the recursion says so; a point whose label never matches and is farthest gets 0.
    xtr = np.array([[0.0], [0.1], [0.2], [10.0]])
    ytr = np.array([1, 1, 1, 0])
    xte, yte = np.array([[0.0]]), np.array([1])
    res = knn_shapley(xtr, ytr, xte, yte, k=1)
    # brute force is the arbiter for the exact numbers
    np.testing.assert_allclose(
        res.values, brute_shapley(4, knn_cls_utility(xtr, ytr, xte[0], 1, 1)), atol=1e-12
    )
    # threshold variant: a point outside the radius is a null player
    thr = threshold_knn_shapley(xtr, ytr, xte, yte, tau=1.0)
    assert thr.values[3] == 0.0
    # symmetry: two in-radius points with the same label get the same threshold value
    assert thr.values[1] == pytest.approx(thr.values[2])


def test_any_label_type_and_pandas_input() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(60, 3))
    y = rng.integers(0, 3, 60)
    names = np.array(["cat", "dog", "emu"])[y]
    base = knn_shapley(x[:40], y[:40], x[40:], y[40:], k=3)
    frame = pd.DataFrame(x, columns=["a", "b", "c"])
    res = knn_shapley(frame[:40], pd.Series(names[:40]), frame[40:], list(names[40:]), k=3)
    np.testing.assert_allclose(res.values, base.values, atol=1e-15)
    # a test label never seen in training is simply never matched
    res2 = knn_shapley(x[:40], names[:40], x[40:42], ["zebra", "zebra"], k=3)
    np.testing.assert_array_equal(res2.values, np.zeros(40))


@pytest.mark.parametrize("n_jobs", [1, 2, -1])
@pytest.mark.parametrize("chunk_size", [None, 1, 7])
def test_chunking_and_threads_do_not_change_values(n_jobs: int, chunk_size: int | None) -> None:
    rng = np.random.default_rng(11)
    xtr, ytr = rng.normal(size=(300, 5)), rng.integers(0, 4, 300)
    xte, yte = rng.normal(size=(37, 5)), rng.integers(0, 4, 37)
    ref = knn_shapley(xtr, ytr, xte, yte, k=4, chunk_size=37)
    got = knn_shapley(xtr, ytr, xte, yte, k=4, n_jobs=n_jobs, chunk_size=chunk_size)
    np.testing.assert_allclose(got.values, ref.values, atol=1e-14)
    np.testing.assert_allclose(got.stderr, ref.stderr, atol=1e-12)


def test_progress_reports_every_test_point() -> None:
    rng = np.random.default_rng(1)
    seen: list[int] = []
    knn_shapley(
        rng.normal(size=(50, 2)),
        rng.integers(0, 2, 50),
        rng.normal(size=(23, 2)),
        rng.integers(0, 2, 23),
        chunk_size=5,
        n_jobs=2,
        progress=seen.append,
    )
    assert sum(seen) == 23 and len(seen) == 5


def test_stderr_is_spread_over_test_points() -> None:
    rng = np.random.default_rng(2)
    xtr, ytr = rng.normal(size=(30, 2)), rng.integers(0, 2, 30)
    xte, yte = rng.normal(size=(9, 2)), rng.integers(0, 2, 9)
    per_point = np.array([knn_shapley(xtr, ytr, xte[[j]], yte[[j]], k=3).values for j in range(9)])
    res = knn_shapley(xtr, ytr, xte, yte, k=3)
    np.testing.assert_allclose(res.values, per_point.mean(0), atol=1e-14)
    np.testing.assert_allclose(res.stderr, per_point.std(0, ddof=0) / np.sqrt(8), atol=1e-12)
    assert (res.counts == 9).all()


def test_group_mode_sums_member_values() -> None:
    rng = np.random.default_rng(4)
    xtr, ytr = rng.normal(size=(40, 2)), rng.integers(0, 2, 40)
    xte, yte = rng.normal(size=(10, 2)), rng.integers(0, 2, 10)
    groups = np.array(["s1", "s2", "s3", "s4"])[np.arange(40) % 4]
    pts = knn_shapley(xtr, ytr, xte, yte, k=3)
    grp = knn_shapley(xtr, ytr, xte, yte, k=3, groups=groups)
    assert list(grp.ids) == ["s1", "s2", "s3", "s4"]
    for g, val in zip(grp.ids, grp.values, strict=False):
        assert val == pytest.approx(pts.values[groups == g].sum(), abs=1e-14)


def test_estimators() -> None:
    rng = np.random.default_rng(6)
    xtr, ytr = rng.normal(size=(40, 2)), rng.integers(0, 2, 40)
    xte, yte = rng.normal(size=(10, 2)), rng.integers(0, 2, 10)
    est = KNNShapley(k=3).fit(xtr, ytr, xte, yte)
    np.testing.assert_array_equal(est.values_, knn_shapley(xtr, ytr, xte, yte, k=3).values)
    thr = ThresholdKNNShapley(tau=1.0).fit(xtr, ytr, xte, yte)
    assert thr.result_.method == "threshold-knn-shapley"


def test_noisy_labels_get_low_values() -> None:
    from sklearn.datasets import make_classification
    from sklearn.metrics import roc_auc_score

    x, y = make_classification(600, 10, n_informative=6, random_state=0, class_sep=1.5)
    rng = np.random.default_rng(0)
    flipped = rng.choice(500, 50, replace=False)
    ytr = y[:500].copy()
    ytr[flipped] = 1 - ytr[flipped]
    res = knn_shapley(x[:500], ytr, x[500:], y[500:], k=5)
    is_flipped = np.zeros(500, bool)
    is_flipped[flipped] = True
    assert roc_auc_score(is_flipped, -res.values) > 0.85


X = np.zeros((5, 2))
Y = np.array([0, 1, 0, 1, 0])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"x_train": np.array([[np.nan, 1.0]] * 5)}, "NaN"),
        ({"y_train": np.array([0, 1, 0])}, "same length"),
        ({"k": 0}, "k must be >= 1"),
        ({"k": 2.5}, "integer"),
        ({"x_test": np.zeros((0, 2)), "y_test": np.array([])}, "empty"),
        ({"x_test": np.zeros((2, 3)), "y_test": np.array([0, 1])}, "features"),
        ({"task": "ranking"}, "unknown task"),
        ({"backend": "spark"}, "unknown backend"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"x_train": np.array([["a", "b"]] * 5)}, "numeric"),
        ({"y_train": np.array([0.0, np.nan, 1.0, 0.0, 1.0])}, "NaN"),
    ],
)
def test_bad_input(kwargs: dict, message: str) -> None:
    args = {"x_train": X, "y_train": Y, "x_test": X[:2], "y_test": Y[:2], "k": 2}
    args.update(kwargs)
    with pytest.raises(InvalidInput, match=message):
        knn_shapley(**args)


def test_regression_needs_numeric_targets_and_tau_checked() -> None:
    with pytest.raises(InvalidInput, match="numeric"):
        knn_regression_shapley(X, np.array(list("abcde")), X[:1], [0.0])
    for tau in (0, -1, float("nan"), "wide", None):
        with pytest.raises(InvalidInput, match="tau"):
            threshold_knn_shapley(X, Y, X[:1], Y[:1], tau=tau)
    with pytest.raises(InvalidInput, match="tau is the radius of task='threshold'"):
        knn_shapley(X, Y, X[:1], Y[:1], tau=1.0)
    with pytest.raises(TypeError, match="unexpected keyword"):
        threshold_knn_shapley(X, Y, X[:1], Y[:1], tau=1.0, k_neighbours=3)
    # threshold_knn_shapley is knn_shapley's threshold task, keywords and all
    xs = np.arange(12.0).reshape(6, 2)
    ys = np.array([0, 1, 0, 1, 1, 0])
    got = threshold_knn_shapley(xs, ys, xs[:3], ys[:3], 4.0, groups=[0, 0, 1, 1, 2, 2])
    ref = knn_shapley(xs, ys, xs[:3], ys[:3], task="threshold", tau=4.0, groups=[0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(got.values, ref.values)
    assert got.method == "threshold-knn-shapley" and got.params["tau"] == 4.0


REPO = Path(__file__).resolve().parents[2]
PYDVL_SETUP = REPO / "benchmarks" / "peers" / "setup_pydvl.sh"


def pydvl_python() -> Path | None:
    """The pyDVL 0.10 peer interpreter (its own venv: pyDVL needs numpy < 2).

    ``DATABAZAAR_PYDVL_PYTHON`` names it (``scripts/test.sh`` builds the venv and sets it,
    so there the agreement test runs or fails, never skips); otherwise the default venv
    ``benchmarks/peers/.venv-pydvl`` is used when it exists.
    """
    named = os.environ.get("DATABAZAAR_PYDVL_PYTHON")
    if named:
        return Path(named)
    default = REPO / "benchmarks" / "peers" / ".venv-pydvl" / "bin" / "python"
    return default if default.exists() else None


def run_pydvl(tmp_path: Path, xtr, ytr, xte, yte, k: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    python = pydvl_python()
    if python is None:
        from ci_rules import skip_or_fail  # type: ignore[import-not-found]

        skip_or_fail(f"pyDVL peer venv missing: run bash {PYDVL_SETUP.relative_to(REPO)}")
    assert python.exists(), f"DATABAZAAR_PYDVL_PYTHON={python} does not exist"
    src, dst = tmp_path / "in.npz", tmp_path / "out.npz"
    np.savez(src, x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    script = REPO / "benchmarks" / "peers" / "pydvl_knn_shapley.py"
    proc = subprocess.run(
        [str(python), str(script), str(src), str(dst), "--k", str(k)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    with np.load(dst) as out:
        assert str(out["pydvl_version"]).startswith("0.10")
        return out["values"]


@pytest.mark.slow  # ~15 s: two pyDVL interpreters start
def test_equals_pydvl_on_untied_data(tmp_path: Path) -> None:
    """Same numbers as pyDVL 0.10's KNNShapleyValuation, run in its own venv."""
    rng = np.random.default_rng(7)
    xtr, ytr = rng.normal(size=(800, 32)), rng.integers(0, 3, 800)
    xte, yte = rng.normal(size=(60, 32)), rng.integers(0, 3, 60)
    theirs = run_pydvl(tmp_path, xtr, ytr, xte, yte, k=5)
    ours = knn_shapley(xtr, ytr, xte, yte, k=5, n_jobs=2)
    assert np.max(np.abs(ours.values - theirs)) <= 1e-12
    # with ties pyDVL follows scikit-learn's neighbour order; ours averages over it
    xi = rng.integers(0, 3, size=(400, 4)).astype(float)
    yi = rng.integers(0, 3, 400)
    ti = rng.integers(0, 3, size=(30, 4)).astype(float)
    theirs_tied = run_pydvl(tmp_path, xi, yi, ti, yi[:30], k=5)
    ours_tied = knn_shapley(xi, yi, ti, yi[:30], k=5).values
    assert np.abs(ours_tied - theirs_tied).max() > 1e-4
