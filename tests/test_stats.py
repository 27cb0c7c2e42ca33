"""The project's one bootstrap helper (databazaar.core.stats.bootstrap_ci)."""

from __future__ import annotations

import numpy as np
import pytest

from databazaar.core.errors import InvalidInput
from databazaar.core.stats import bootstrap_ci


def test_mean_interval_covers_the_mean_and_shrinks_with_n() -> None:
    rng = np.random.default_rng(0)
    small = rng.normal(1.0, 1.0, 20)
    big = rng.normal(1.0, 1.0, 2000)
    lo_s, hi_s = bootstrap_ci(small, rng=np.random.default_rng(1))
    lo_b, hi_b = bootstrap_ci(big, rng=np.random.default_rng(1))
    assert lo_s < small.mean() < hi_s and lo_b < big.mean() < hi_b
    assert (hi_b - lo_b) < (hi_s - lo_s) / 5
    # the normal-theory width 2 * 1.96 * sd / sqrt(n) for the big sample
    assert hi_b - lo_b == pytest.approx(2 * 1.96 * big.std() / np.sqrt(len(big)), rel=0.15)
    assert np.isnan(bootstrap_ci(np.array([]), rng=np.random.default_rng(0))).all()


def test_statistic_of_resampled_rows_and_infinite_values() -> None:
    x = np.array([1.0, 2.0, 3.0, 4.0])
    lo, hi = bootstrap_ci(x, statistic=np.max, rng=np.random.default_rng(0), n_boot=500)
    assert 2.0 <= lo <= hi == 4.0
    # a statistic that is "never" (inf) in most resamples gives an infinite upper end
    lo, hi = bootstrap_ci(
        np.arange(5),
        statistic=lambda idx: 0.5 if 0 in idx else float("inf"),
        rng=np.random.default_rng(0),
    )
    assert lo == 0.5 and hi == float("inf")


@pytest.mark.parametrize(
    ("kwargs", "msg"),
    [({"n_boot": 0}, "n_boot"), ({"confidence": 1.0}, "confidence")],
)
def test_errors(kwargs, msg) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput, match=msg):
        bootstrap_ci(np.ones(3), rng=np.random.default_rng(0), **kwargs)
    with pytest.raises(InvalidInput, match="nan"):
        bootstrap_ci(np.ones(3), rng=np.random.default_rng(0), statistic=lambda v: float("nan"))
