"""DP releases: empirical noise matches epsilon; policy and epsilon validation."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from databazaar.core.errors import InvalidInput
from databazaar.market.privacy import (
    check_columns,
    diffprivlib_tools,
    epsilon_micro,
    noise_std,
    release,
)

FRAME = pd.DataFrame(
    {
        "age": np.r_[np.arange(500) % 90, [np.nan] * 500],
        "city": ["oslo", "rome", "lima", "oslo"] * 250,
    }
)
POLICY = check_columns(
    {"age": {"bounds": [0, 100], "bins": 5}, "city": {"categories": ["oslo", "rome", "lima"]}}
)


@pytest.mark.parametrize("eps", [0.2, 1.0])
def test_count_noise_matches_epsilon(eps: float) -> None:
    """Empirical std of 1500 DP counts vs the geometric mechanism's sqrt(2a)/(1-a)."""
    draws = np.array(
        [release(FRAME, "count", "age", eps, POLICY, random_state=i)["value"] for i in range(1500)]
    )
    noise = draws - 500
    expected = math.sqrt(2 * math.exp(-eps)) / (1 - math.exp(-eps))
    assert noise_std("count", eps) == pytest.approx(expected)
    assert abs(noise.mean()) < 4 * expected / math.sqrt(1500)
    assert noise.std() == pytest.approx(expected, rel=0.1)
    # and it is not the noise of another epsilon: half the epsilon is ~twice the noise
    assert noise.std() < 0.75 * noise_std("count", eps / 2)


def test_mean_noise_matches_epsilon() -> None:
    eps = 0.5
    frame = pd.DataFrame({"age": np.full(200, 50.0)})  # far from both bounds: no truncation
    draws = np.array(
        [release(frame, "mean", "age", eps, POLICY, random_state=i)["value"] for i in range(1500)]
    )
    expected = math.sqrt(2) * 100 / (200 * eps)  # Laplace scale (u - l) / (n eps)
    assert release(frame, "mean", "age", eps, POLICY, random_state=0)["noise_std"] == pytest.approx(
        expected
    )
    assert draws.std() == pytest.approx(expected, rel=0.1)
    assert abs(draws.mean() - 50.0) < 4 * expected / math.sqrt(1500)


def test_histograms_and_sum() -> None:
    hist = release(FRAME, "histogram", "age", 5.0, POLICY, random_state=0)
    assert hist["edges"] == [0.0, 20.0, 40.0, 60.0, 80.0, 100.0]
    true = np.histogram(np.clip(FRAME["age"].dropna(), 0, 100), bins=5, range=(0, 100))[0]
    assert np.abs(np.array(hist["counts"]) - true).max() <= 6
    cat = release(FRAME, "histogram", "city", 5.0, POLICY, random_state=0)
    assert cat["categories"] == ["oslo", "rome", "lima"]
    assert np.abs(np.array(cat["counts"]) - [500, 250, 250]).max() <= 6
    rows = release(FRAME, "count", None, 5.0, {}, random_state=0)["value"]
    assert abs(rows - 1000) <= 6


def test_sum_noise_matches_epsilon() -> None:
    """A DP sum over [0, 100] adds Laplace noise of scale 100 / eps (sd sqrt(2) 100 / eps)."""
    eps = 5.0
    truth = FRAME["age"].sum()  # the missing values count as nothing
    draws = np.array(
        [release(FRAME, "sum", "age", eps, POLICY, random_state=i)["value"] for i in range(1500)]
    )
    expected = math.sqrt(2) * 100 / eps  # 28.3
    assert (draws - truth).std() == pytest.approx(expected, rel=0.1)
    assert abs(draws.mean() - truth) < 4 * expected / math.sqrt(1500)


def test_epsilon_and_policy_validation() -> None:
    assert epsilon_micro(0.25) == 250_000 and epsilon_micro("1") == 1_000_000
    for bad, match in [
        (0, "between"),
        (-1, "between"),
        (1e9, "between"),
        (True, "positive"),
        ("x", "positive"),
        (0.1234567, "6 decimals"),
        (float("nan"), "between"),
    ]:
        with pytest.raises(InvalidInput, match=match):
            epsilon_micro(bad)
    for cols, match in [
        ({"a": {"bounds": [1]}}, "bounds"),
        ({"a": {"bounds": [0, float("inf")]}}, "bounds"),
        ({"a": {"bounds": [0, 1], "bins": 0}}, "bins"),
        ({"a": {"categories": []}}, "categories"),
        ({"a": {"categories": ["x", "x"]}}, "repeat"),
        ({"a": {"categories": ["x"], "bounds": [0, 1]}}, "not both"),
        ({"a": {"clip": 1}}, "policy of"),
        ([1], "columns must map"),
        ({"": {"bounds": [0, 1]}}, "non-empty"),
    ]:
        with pytest.raises(InvalidInput, match=match):
            check_columns(cols)
    with pytest.raises(InvalidInput, match="unknown statistic"):
        release(FRAME, "median", "age", 1.0, POLICY)
    with pytest.raises(InvalidInput, match="needs a column"):
        release(FRAME, "mean", None, 1.0, POLICY)
    with pytest.raises(InvalidInput, match="categorical"):
        release(FRAME, "mean", "city", 1.0, POLICY)
    with pytest.raises(InvalidInput, match="no numeric values"):
        release(pd.DataFrame({"age": ["x"]}), "mean", "age", 1.0, POLICY)
    with pytest.raises(InvalidInput, match="no closed-form"):
        noise_std("sum", 1.0)
    assert hasattr(diffprivlib_tools(), "histogram")
