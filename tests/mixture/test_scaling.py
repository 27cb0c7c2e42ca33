"""Power-law fit, budget-simplex solver and the AutoScale rule (no training)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from databazaar.core.errors import InvalidInput
from databazaar.mixture.scaling import (
    PowerLaw,
    autoscale_predict,
    fit_power_law,
    solve_budget_simplex,
    surrogate_loss,
)


@pytest.mark.parametrize(
    ("a", "b", "c"), [(0.5, 0.8, 2.0), (0.05, 0.3, 4.1), (2.0, 1.5, 0.7), (-0.1, 0.6, 3.0)]
)
def test_power_law_fit_recovers_known_parameters(a: float, b: float, c: float) -> None:
    rng = np.random.default_rng(0)
    x = np.geomspace(0.2, 5.0, 9)
    y = (x + a) ** (-b) + c + rng.normal(0, 1e-5, x.size)
    law = fit_power_law(x, y)
    assert law.a == pytest.approx(a, abs=0.02)
    assert law.b == pytest.approx(b, rel=0.02)
    assert law.c == pytest.approx(c, abs=0.02)
    assert law.rmse < 3e-5


def test_power_law_three_points_interpolates_exactly() -> None:
    # DDO's design: one point below, the reference, one above
    truth = PowerLaw(0.3, 0.15, 4.0)
    x = [1 / 3, 1.0, 3.0]
    y = [float(truth(v)) for v in x]
    law = fit_power_law(x, y)
    assert np.allclose([law(v) for v in x], y, atol=1e-7)
    assert law.rmse < 1e-7


def test_power_law_fit_on_increasing_data_is_flat() -> None:
    law = fit_power_law([0.3, 1, 3], [5.0, 5.1, 5.2])
    assert law.b >= 0
    vals = law(np.array([0.3, 1.0, 3.0]))
    assert np.all(np.diff(vals) <= 1e-12)  # never increasing


def test_power_law_derivative_and_slope_inverse() -> None:
    law = PowerLaw(0.4, 0.7, 1.0)
    x = 1.7
    h = 1e-6
    num = (law(x + h) - law(x - h)) / (2 * h)
    assert law.derivative(x) == pytest.approx(num, rel=1e-6)
    assert law.x_at_slope(float(law.derivative(x))) == pytest.approx(x, rel=1e-9)
    assert PowerLaw(0.0, 0.0, 1.0).x_at_slope(-1.0) == float("inf")


@pytest.mark.parametrize(
    ("x", "y", "msg"),
    [
        ([1, 2], [1, 2], "at least 3 points"),
        ([1, 2, 3], [1, 2], "equal length"),
        ([0, 1, 2], [1, 2, 3], "positive"),
        ([1, 2, np.nan], [1, 2, 3], "finite"),
        ([1, 1, 2], [1, 2, 3], "distinct"),
    ],
)
def test_power_law_fit_rejects_bad_input(x: list[float], y: list[float], msg: str) -> None:
    with pytest.raises(InvalidInput, match=msg):
        fit_power_law(x, y)


LAWS3 = [PowerLaw(0.2, 0.5, 1.0), PowerLaw(0.05, 0.15, 2.0), PowerLaw(1.0, 1.2, 0.5)]


def _grid_optimum(laws, r, lo, hi, step=0.0025):  # type: ignore[no-untyped-def]
    best = (np.inf, None)
    ticks = np.arange(0, 1 + step / 2, step)
    for w0, w1 in itertools.product(ticks, ticks):
        w2 = 1 - w0 - w1
        w = np.array([w0, w1, w2])
        if w2 < -1e-12 or np.any(w < lo - 1e-12) or np.any(w > hi + 1e-12):
            continue
        val = surrogate_loss(laws, r, np.clip(w, 1e-12, None))
        if val < best[0]:
            best = (val, w)
    return best


@pytest.mark.parametrize(
    ("r", "lo", "hi"),
    [
        ([1 / 3, 1 / 3, 1 / 3], 0.0, 1.0),
        ([1 / 3, 1 / 3, 1 / 3], 0.1, 0.6),
        ([0.5, 0.3, 0.2], [0.1, 0.06, 0.04], [0.9, 0.9, 0.3]),
    ],
)
def test_simplex_solver_matches_brute_force_grid(r, lo, hi) -> None:  # type: ignore[no-untyped-def]
    r = np.asarray(r)
    w = solve_budget_simplex(LAWS3, r, lower=lo, upper=hi)
    lo_a = np.broadcast_to(lo, 3)
    hi_a = np.broadcast_to(hi, 3)
    # constraints
    assert w.sum() == pytest.approx(1.0, abs=1e-9)
    assert np.all(w >= lo_a - 1e-9) and np.all(w <= hi_a + 1e-9)
    # optimality against the grid: never worse, and the grid's argmin is next to ours
    val = surrogate_loss(LAWS3, r, w)
    gval, gw = _grid_optimum(LAWS3, r, lo_a, hi_a)
    assert val <= gval + 1e-9
    assert np.abs(w - gw).max() <= 0.01


def test_simplex_solver_kkt_equal_marginals() -> None:
    r = np.full(3, 1 / 3)
    w = solve_budget_simplex(LAWS3, r)
    grads = [law.derivative(wi / ri) / ri for law, wi, ri in zip(LAWS3, w, r, strict=True)]
    interior = (w > 1e-6) & (w < 1 - 1e-6)
    assert interior.all()
    assert np.ptp(np.array(grads)) < 1e-6 * abs(grads[0])


def test_simplex_solver_flat_domain_goes_to_lower_bound() -> None:
    laws = [PowerLaw(0.2, 0.5, 1.0), PowerLaw(0.0, 0.0, 2.0), PowerLaw(0.1, 0.8, 1.0)]
    w = solve_budget_simplex(laws, np.full(3, 1 / 3), lower=0.05, upper=1.0)
    assert w[1] == pytest.approx(0.05, abs=1e-9)
    assert w.sum() == pytest.approx(1.0)


def test_simplex_solver_flat_domains_absorb_remainder_when_others_capped() -> None:
    laws = [PowerLaw(0.2, 0.5, 1.0), PowerLaw(0.0, 0.0, 2.0)]
    w = solve_budget_simplex(laws, [0.5, 0.5], lower=0.0, upper=[0.3, 1.0])
    assert w == pytest.approx([0.3, 0.7])


@pytest.mark.parametrize(
    ("kwargs", "msg"),
    [
        ({"lower": 0.5}, "infeasible"),
        ({"upper": 0.2}, "infeasible"),
        ({"lower": -0.1}, "bounds"),
        ({"lower": 0.3, "upper": 0.2}, "bounds"),
    ],
)
def test_simplex_solver_rejects_bad_bounds(kwargs, msg) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput, match=msg):
        solve_budget_simplex(LAWS3, np.full(3, 1 / 3), **kwargs)


def test_simplex_solver_rejects_bad_reference() -> None:
    with pytest.raises(InvalidInput, match="reference"):
        solve_budget_simplex(LAWS3, [0.5, 0.5])
    with pytest.raises(InvalidInput, match="reference"):
        solve_budget_simplex(LAWS3, [0.5, 0.5, 0.0])


def test_autoscale_rule_hand_computed_example() -> None:
    # N1* = (10, 20, 30) at 60 tokens, N2* = (40, 40, 40) at 120 tokens.
    # One step: N3* = N2* * N2*/N1* = (160, 80, 53.33...), total 293.33...
    q1, q2 = [10.0, 20.0, 30.0], [40.0, 40.0, 40.0]
    out = autoscale_predict(q1, q2)
    assert out["t"] == 1.0
    assert out["quantities"] == pytest.approx([160.0, 80.0, 160.0 / 3])
    assert out["budget"] == pytest.approx(880.0 / 3)
    assert out["weights"] == pytest.approx([160 / (880 / 3), 80 / (880 / 3), (160 / 3) / (880 / 3)])
    # the same point reached by asking for its budget explicitly
    again = autoscale_predict(q1, q2, 880.0 / 3)
    assert again["t"] == pytest.approx(1.0, abs=1e-9)
    # two steps: N4* = N2* * (N2*/N1*)^2 = (640, 160, 71.11...)
    two = autoscale_predict(q1, q2, 640 + 160 + 640 / 9)
    assert two["t"] == pytest.approx(2.0, abs=1e-9)
    assert two["quantities"] == pytest.approx([640.0, 160.0, 640 / 9])
    # half a step (the paper's sqrt interpolation): N2* * sqrt(N2*/N1*)
    half_q = np.array([40 * 2.0, 40 * np.sqrt(2.0), 40 * np.sqrt(4 / 3)])
    half = autoscale_predict(q1, q2, float(half_q.sum()))
    assert half["t"] == pytest.approx(0.5, abs=1e-9)
    assert half["quantities"] == pytest.approx(half_q)


def test_autoscale_rule_reproduces_reference_repo_numbers() -> None:
    # Multipliers vs uniform from the public AutoScale example (7 domains, 0.3B and 1.2B
    # tokens): one step predicts quantities summing to ~5.0B.
    n03 = np.array([1.55818971, 0.2, 1.1645966, 1.42333261, 1.49550525, 0.68184781, 0.47652801])
    n12 = np.array([1.63121445, 0.2, 1.30180479, 1.21425702, 1.83266187, 0.62006189, 0.2])
    out = autoscale_predict(n03 / 7 * 0.3, n12 / 7 * 1.2)
    assert out["budget"] == pytest.approx(5.0005, abs=1e-3)
    assert out["quantities"][0] == pytest.approx(1.17096789, rel=1e-6)


@pytest.mark.parametrize(
    ("q1", "q2", "target", "msg"),
    [
        ([1, 1], [2, 2], 3.0, "at least the larger"),
        ([2, 2], [1, 1], None, "larger than the first"),
        ([1, 0], [2, 2], None, "positive"),
        ([1, 1], [2, 2, 2], None, "equal-length"),
    ],
)
def test_autoscale_rule_rejects_bad_input(q1, q2, target, msg) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput, match=msg):
        autoscale_predict(q1, q2, target)
