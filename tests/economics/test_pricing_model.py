"""Model-based pricing (Chen, Koutris, Kumar 2019): curve, arbitrage checker, noisy models."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_breast_cancer, make_regression

from databazaar.core.errors import InvalidInput
from databazaar.market.pricing import (
    NoisyLinearModel,
    NoisyModelPricing,
    NoisyModelSeller,
    PriceCurve,
    check_model_price_arbitrage,
    combine_models,
    mechanism_from_config,
)

GRID = [0.01, 0.02, 0.05, 0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 4.0]
CURVE = [[0.01, 5000], [0.1, 1500], [1.0, 400]]


def test_curve_values_exact() -> None:
    c = PriceCurve(CURVE)
    # q(x) = min_j P_j max(1, x / x_j): at the points the wished prices hold
    assert [c.price(v) for v in (0.01, 0.1, 1.0)] == [5000, 1500, 400]
    # variance 0.05 (x=20): min(5000, 1500 * 20/10, 400 * 20/1) = 3000
    assert c.price(0.05) == 3000
    # noisier than the noisiest point: the cheapest point's price
    assert c.price(4.0) == 400
    # less noise than the least noisy point: linear in precision, 5000 * 1000/100
    assert c.price(0.001) == 50000
    assert c.adjusted == []


def test_curve_lowers_points_that_would_allow_arbitrage() -> None:
    # two models at variance 1.0 (400 each) average to variance 0.5; 5000 would be arbitrage
    c = PriceCurve([[0.5, 5000], [1.0, 400]])
    assert c.price(0.5) == 800
    assert c.adjusted == [{"variance": 0.5, "wished_minor": 5000, "price_minor": 800}]
    found = check_model_price_arbitrage(lambda v: {0.5: 5000, 1.0: 400}[v], [0.5, 1.0])
    assert found is not None and found.kind == "subadditivity"
    assert found.purchases == (1.0, 1.0) and found.total_price == 800
    assert found.combined_variance == pytest.approx(0.5)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(1e-3, 1e3, allow_nan=False), st.integers(0, 100_000)),
        min_size=1,
        max_size=6,
        unique_by=lambda t: t[0],
    )
)
def test_every_constructed_curve_is_arbitrage_free(points: list[tuple[float, int]]) -> None:
    """Property: no multiset of cheaper noisy models reaches a dearer model's precision."""
    c = PriceCurve([list(p) for p in points])
    grid = sorted({p[0] for p in points} | {p[0] * 2 for p in points})
    assert check_model_price_arbitrage(c.price, grid, max_purchases=3) is None
    # and the curve never exceeds the wished points
    for v, wished in points:
        assert c.price(v) <= wished


@settings(max_examples=60, deadline=None)
@given(st.floats(1e-3, 10), st.floats(1e-3, 10))
def test_subadditive_in_precision(a: float, b: float) -> None:
    c = PriceCurve(CURVE)
    combined = 1.0 / (1.0 / a + 1.0 / b)
    # buying a and b and averaging gives `combined`; it must not be cheaper
    assert c.price(combined) <= c.price(a) + c.price(b)
    assert c.price(min(a, b)) >= c.price(max(a, b))


def test_checker_catches_non_monotone_and_linear_precision_premium() -> None:
    # price rising with noise: buy the better model and add noise
    found = check_model_price_arbitrage(lambda v: 100 * v, GRID)
    assert found is not None and found.kind == "monotonicity"
    assert found.extra_noise > 0
    # convex in precision (price ~ x^2) is monotone but not subadditive
    found = check_model_price_arbitrage(lambda v: (1 / v) ** 2, GRID)
    assert found is not None and found.kind == "subadditivity"
    assert found.total_price < found.target_price
    assert 1 / found.combined_variance >= 1 / found.target_variance - 1e-9
    assert sum(found.weights) == pytest.approx(1.0)
    # concave (sqrt) in precision is arbitrage-free
    assert check_model_price_arbitrage(lambda v: 1000 * (1 / v) ** 0.5, GRID) is None


def test_attack_is_real_averaging_noisy_models() -> None:
    """Averaging k independently noised models really has variance delta/k."""
    x, y = make_regression(n_samples=200, n_features=5, noise=1.0, random_state=0)
    seller = NoisyModelSeller("regression", alpha=1.0, random_state=0).fit(x, y)
    rng = np.random.default_rng(1)
    errs = []
    for _ in range(300):
        thetas = [
            np.concatenate([np.ravel(p["coef"]), p["intercept"]])
            for p in (seller.release(1.0, rng) for _ in range(4))
        ]
        theta, var = combine_models(thetas, [1.0] * 4)
        assert var == pytest.approx(0.25)
        errs.append(theta - seller.theta_)
    assert np.var(np.concatenate(errs)) == pytest.approx(0.25, rel=0.1)


def test_noisy_models_trade_accuracy_for_noise() -> None:
    data = load_breast_cancer()
    x, y = data.data, data.target
    seller = NoisyModelSeller("classification", random_state=0).fit(x, y, list(data.feature_names))
    exact = NoisyLinearModel(seller.release(1e-12, 0))
    assert np.mean(exact.predict(x) == y) > 0.97
    low = seller.expected_error(0.001, x, y, n_draws=10)
    high = seller.expected_error(10.0, x, y, n_draws=10)
    assert low < 0.05 < high
    payload = seller.release(0.5, 3)
    assert payload["variance"] == 0.5 and len(payload["features"]) == 30
    noisy = NoisyLinearModel(payload)
    assert noisy.predict(x).shape == y.shape
    # the noise has VARIANCE 0.5 (std 0.707): 200 releases x 30 coefficients pin the
    # sample variance to +-1.8% (one sd), so rel=0.06 tells 0.5 from a std of 0.5 (0.25)
    rng = np.random.default_rng(11)
    diffs = np.concatenate(
        [np.ravel(seller.release(0.5, rng)["coef"]) - np.ravel(seller.coef_) for _ in range(200)]
    )
    assert diffs.size == 6000
    assert np.var(diffs) == pytest.approx(0.5, rel=0.06)
    assert abs(np.mean(diffs)) < 4 * np.sqrt(0.5 / diffs.size)  # unbiased


def test_regression_expected_error_formula() -> None:
    x, y = make_regression(n_samples=300, n_features=4, noise=2.0, random_state=1)
    seller = NoisyModelSeller("regression", random_state=0).fit(x, y)
    rng = np.random.default_rng(0)
    mc = np.mean(
        [
            np.mean((NoisyLinearModel(seller.release(0.3, rng)).predict(x) - y) ** 2)
            for _ in range(400)
        ]
    )
    assert seller.expected_error(0.3, x, y) == pytest.approx(mc, rel=0.05)


def test_model_pricing_quotes_and_errors() -> None:
    mp = NoisyModelPricing(CURVE, label_column="target", task="classification", min_variance=0.005)
    q = mp.quote({"variance": 0.1})
    assert q.price_minor == 1500 and q.deliverable == "model"
    assert q.details["precision"] == pytest.approx(10.0)
    assert mechanism_from_config("model", mp.config()).config() == mp.config()
    with pytest.raises(InvalidInput, match="least noise"):
        mp.quote({"variance": 0.001})
    with pytest.raises(InvalidInput, match="needs the noise"):
        mp.quote({})
    with pytest.raises(InvalidInput, match="positive number"):
        mp.quote({"variance": "big"})
    with pytest.raises(InvalidInput, match="between"):
        mp.quote({"variance": -1.0})
    with pytest.raises(InvalidInput, match="same variance"):
        PriceCurve([[1, 5], [1.0, 6]])
    with pytest.raises(InvalidInput, match="at least one"):
        PriceCurve([])
    with pytest.raises(InvalidInput, match="unknown task"):
        NoisyModelPricing(CURVE, task="ranking")
    with pytest.raises(InvalidInput, match="fit the seller"):
        NoisyModelSeller().release(1.0)
    with pytest.raises(InvalidInput, match="two classes"):
        NoisyModelSeller().fit(np.ones((5, 2)), np.zeros(5))
    with pytest.raises(InvalidInput, match="at least two distinct"):
        check_model_price_arbitrage(lambda v: 1, [1.0])
    with pytest.raises(InvalidInput, match="payload"):
        NoisyLinearModel({"task": "regression"})
