"""Shared fixtures for valuation tests: small games with known values and a tiny real
utility (logistic regression), plus helpers comparing Monte Carlo estimates with exact
values.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from databazaar.valuation.result import ValuationResult
from databazaar.valuation.utility import GameUtility, Utility

# -- synthetic games -------------------------------------------------------------------

#: Additive weights plus a positive pair interaction {0, 1} and a negative one {2, 3};
#: player 7 is a null player.  Shapley = Banzhaf = w_i + c/2 (0, 1), w_i - d/2 (2, 3).
ADD_W = np.array([0.3, 0.1, 0.5, 0.2, 0.4, 0.0, 0.25, 0.0])
ADD_C, ADD_D = 0.6, 0.4


def additive_interaction(s: tuple[int, ...]) -> float:
    members = set(s)
    value = float(sum(ADD_W[i] for i in members))
    if {0, 1} <= members:
        value += ADD_C
    if {2, 3} <= members:
        value -= ADD_D
    return value


def additive_interaction_values() -> np.ndarray:
    v = ADD_W.copy()
    v[[0, 1]] += ADD_C / 2
    v[[2, 3]] -= ADD_D / 2
    return v


#: Weighted majority game: a coalition wins (1) when its weight reaches the quota.
MAJ_W = np.array([4, 3, 2, 2, 1, 1, 0])
MAJ_QUOTA = 7


def weighted_majority(s: tuple[int, ...]) -> float:
    return float(MAJ_W[list(s)].sum() >= MAJ_QUOTA) if s else 0.0


def glove(s: tuple[int, ...]) -> float:
    """One left glove (player 0), two right gloves (1, 2): u = #matched pairs."""
    members = set(s)
    return float(min(len(members & {0}), len(members & {1, 2})))


@pytest.fixture
def additive_game() -> GameUtility:
    return GameUtility(additive_interaction, len(ADD_W))


@pytest.fixture
def majority_game() -> GameUtility:
    return GameUtility(weighted_majority, len(MAJ_W))


@pytest.fixture
def glove_game() -> GameUtility:
    return GameUtility(glove, 3)


GAMES: dict[str, tuple[Callable[[tuple[int, ...]], float], int]] = {
    "additive": (additive_interaction, len(ADD_W)),
    "majority": (weighted_majority, len(MAJ_W)),
    "glove": (glove, 3),
}


# -- a tiny real utility -----------------------------------------------------------------


def tiny_classification(n_train: int = 8, n_test: int = 60, seed: int = 3):
    """Two well-separated-ish classes; the first two training points have different labels."""
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_train + n_test,
        n_features=4,
        n_informative=3,
        n_redundant=0,
        flip_y=0.1,
        class_sep=1.0,
        random_state=seed,
    )
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def make_logreg_utility(n_train: int = 8, **kwargs) -> Utility:  # type: ignore[no-untyped-def]
    from sklearn.linear_model import LogisticRegression

    x_tr, y_tr, x_te, y_te = tiny_classification(n_train)
    return Utility(LogisticRegression(), x_tr, y_tr, x_te, y_te, **kwargs)


@pytest.fixture
def logreg_utility() -> Utility:
    return make_logreg_utility()


@pytest.fixture(scope="session")
def warm_logreg_utility() -> Utility:
    """The tiny real utility with every coalition already cached (do not count on its
    counters); Monte Carlo runs on it cost no model fits."""
    from databazaar.valuation.exact import coalition_values

    u = make_logreg_utility()
    coalition_values(u)
    return u


@pytest.fixture(scope="session")
def logreg_exact(warm_logreg_utility: Utility) -> dict[str, ValuationResult]:
    """Exact Shapley, Banzhaf, Beta(16,1) and Beta(4,2) of the tiny real utility."""
    from databazaar.valuation.exact import (
        banzhaf_weight,
        beta_shapley_weight,
        coalition_values,
        semivalue_from_table,
        shapley_weight,
    )

    u = warm_logreg_utility
    table = coalition_values(u)
    n = u.n_players
    out = {}
    for name, w in [
        ("shapley", shapley_weight),
        ("banzhaf", banzhaf_weight),
        ("beta16_1", beta_shapley_weight(16, 1)),
        ("beta4_2", beta_shapley_weight(4, 2)),
    ]:
        out[name] = ValuationResult(values=semivalue_from_table(table, n, w), method=name)
    out["table"] = table  # type: ignore[assignment]
    return out


# -- comparing estimates -----------------------------------------------------------------


def assert_within_stderr(
    estimate: ValuationResult, exact: np.ndarray, k: float = 4.0, atol: float = 1e-9
) -> None:
    """Every |estimate - exact| <= k * stderr + atol (MC within its standard error)."""
    err = np.abs(estimate.values - exact)
    bound = k * estimate.stderr + atol
    bad = np.flatnonzero(~(err <= bound))
    assert bad.size == 0, (
        f"players {bad.tolist()} off by {err[bad]} > {k} stderr ({estimate.stderr[bad]});"
        f"\n estimate {estimate.values}\n exact    {exact}"
    )


# -- fixtures exposing the helpers (tests import nothing from conftest) ----------------


@pytest.fixture(name="within_stderr")
def _within_stderr_fixture() -> Callable[..., None]:
    return assert_within_stderr


@pytest.fixture
def games() -> dict[str, tuple[Callable[[tuple[int, ...]], float], int]]:
    return dict(GAMES)


@pytest.fixture
def additive_values() -> np.ndarray:
    return additive_interaction_values()


@pytest.fixture
def utility_factory() -> Callable[..., Utility]:
    return make_logreg_utility


@pytest.fixture
def tiny_data() -> tuple[np.ndarray, ...]:
    return tiny_classification()
