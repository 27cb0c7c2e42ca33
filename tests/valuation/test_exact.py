"""Exact semivalues by enumeration: closed forms, axioms, weights and errors."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from databazaar.core.errors import InvalidInput
from databazaar.valuation.exact import (
    MAX_PLAYERS,
    banzhaf_weight,
    beta_shapley_weight,
    coalition_values,
    exact_banzhaf,
    exact_beta_shapley,
    exact_loo,
    exact_semivalue,
    exact_shapley,
    shapley_weight,
)
from databazaar.valuation.groups import GroupUtility
from databazaar.valuation.utility import GameUtility


def unanimity(t: set[int]):  # type: ignore[no-untyped-def]
    return lambda s: float(t <= set(s))


def brute_force_shapley(f, n):  # type: ignore[no-untyped-def]
    """Average marginal over all n! orderings (the definition, independent code path)."""
    phi = np.zeros(n)
    perms = list(itertools.permutations(range(n)))
    for perm in perms:
        prefix: list[int] = []
        for p in perm:
            before = f(tuple(sorted(prefix)))
            prefix.append(p)
            phi[p] += f(tuple(sorted(prefix))) - before
    return phi / len(perms)


# -- closed forms --------------------------------------------------------------------------


def test_glove_game_shapley_and_banzhaf(glove_game) -> None:  # type: ignore[no-untyped-def]
    np.testing.assert_allclose(exact_shapley(glove_game).values, [2 / 3, 1 / 6, 1 / 6])
    np.testing.assert_allclose(exact_banzhaf(glove_game).values, [3 / 4, 1 / 4, 1 / 4])


@pytest.mark.parametrize("t", [{0}, {1, 3}, {0, 2, 4}, {0, 1, 2, 3, 4}])
def test_unanimity_games(t: set[int]) -> None:
    n = 5
    f = unanimity(t)
    expected_shapley = np.array([1 / len(t) if i in t else 0.0 for i in range(n)])
    np.testing.assert_allclose(exact_shapley(f, n).values, expected_shapley, atol=1e-12)
    expected_banzhaf = np.array([2.0 ** -(len(t) - 1) if i in t else 0.0 for i in range(n)])
    np.testing.assert_allclose(exact_banzhaf(f, n).values, expected_banzhaf, atol=1e-12)


@pytest.mark.parametrize(("alpha", "beta"), [(16, 1), (4, 2), (1, 4), (0.5, 0.5), (1, 1)])
def test_beta_shapley_on_unanimity_game_matches_closed_form(alpha: float, beta: float) -> None:
    # phi_i = sum over coalitions S ⊇ T∖i of w(|S|): C(n-|T|, k-|T|+1) coalitions of size k.
    n, t = 6, {1, 2, 4}
    w = beta_shapley_weight(alpha, beta)
    expected = sum(math.comb(n - len(t), k - (len(t) - 1)) * w(k, n) for k in range(len(t) - 1, n))
    res = exact_beta_shapley(unanimity(t), n, alpha, beta)
    np.testing.assert_allclose(res.values, [0, expected, expected, 0, expected, 0], atol=1e-12)
    assert res.params == {"alpha": float(alpha), "beta": float(beta)}


def test_additive_interaction_game(additive_game, additive_values) -> None:  # type: ignore[no-untyped-def]
    np.testing.assert_allclose(exact_shapley(additive_game).values, additive_values, atol=1e-12)
    np.testing.assert_allclose(exact_banzhaf(additive_game).values, additive_values, atol=1e-12)


def test_shapley_matches_definition_over_permutations(majority_game) -> None:  # type: ignore[no-untyped-def]
    f = GameUtility(lambda s: float(len(s) ** 2 + 3 * (0 in s) * (4 in s) - (2 in s)), 5)
    np.testing.assert_allclose(exact_shapley(f).values, brute_force_shapley(f, 5), atol=1e-12)
    small = GameUtility(lambda s: majority_game(s), 7)
    np.testing.assert_allclose(
        exact_shapley(small).values, brute_force_shapley(small, 7), atol=1e-12
    )


# -- weights ------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 7, 12, 40])
@pytest.mark.parametrize(
    "weight",
    [shapley_weight, banzhaf_weight, beta_shapley_weight(16, 1), beta_shapley_weight(0.5, 2)],
)
def test_semivalue_weights_sum_to_one(n: int, weight) -> None:  # type: ignore[no-untyped-def]
    total = sum(math.comb(n - 1, k) * weight(k, n) for k in range(n))
    assert total == pytest.approx(1.0, rel=1e-10)


def test_beta_one_one_is_shapley() -> None:
    w = beta_shapley_weight(1, 1)
    for n in (1, 4, 9):
        for k in range(n):
            assert w(k, n) == pytest.approx(shapley_weight(k, n), rel=1e-12)


def test_beta_16_1_emphasises_small_coalitions() -> None:
    w = beta_shapley_weight(16, 1)
    n = 10
    per_size = [math.comb(n - 1, k) * w(k, n) for k in range(n)]
    assert per_size == sorted(per_size, reverse=True)


# -- axioms -------------------------------------------------------------------------------


def test_efficiency_on_random_game() -> None:
    rng = np.random.default_rng(0)
    n = 7
    table = rng.normal(size=1 << n)
    f = GameUtility(lambda s: float(table[sum(1 << i for i in s)]), n)
    values = exact_shapley(f).values
    assert values.sum() == pytest.approx(table[-1] - table[0], abs=1e-12)


def test_null_player_gets_zero(additive_game, majority_game) -> None:  # type: ignore[no-untyped-def]
    for fn in (exact_shapley, exact_banzhaf, exact_loo):
        assert fn(additive_game).values[7] == pytest.approx(0.0, abs=1e-12)
        assert fn(majority_game).values[6] == pytest.approx(0.0, abs=1e-12)
    assert exact_beta_shapley(additive_game).values[7] == pytest.approx(0.0, abs=1e-12)


def test_symmetry_duplicated_training_points_get_equal_values(tiny_data) -> None:  # type: ignore[no-untyped-def]
    from sklearn.linear_model import LogisticRegression

    from databazaar.valuation.utility import Utility

    x_tr, y_tr, x_te, y_te = tiny_data
    x_tr, y_tr = x_tr[:6].copy(), y_tr[:6].copy()
    x_tr[5], y_tr[5] = x_tr[2], y_tr[2]  # point 5 duplicates point 2
    u = Utility(LogisticRegression(), x_tr, y_tr, x_te, y_te)
    sh = exact_shapley(u).values
    bz = exact_banzhaf(u).values
    assert sh[5] == pytest.approx(sh[2], abs=1e-12)
    assert bz[5] == pytest.approx(bz[2], abs=1e-12)
    # and efficiency on the real utility
    assert sh.sum() == pytest.approx(u(range(6)) - u([]), abs=1e-12)


def test_loo_definition(additive_game) -> None:  # type: ignore[no-untyped-def]
    n = additive_game.n_players
    everyone = tuple(range(n))
    total = additive_game(everyone)
    expected = [total - additive_game(everyone[:i] + everyone[i + 1 :]) for i in range(n)]
    res = exact_loo(additive_game)
    np.testing.assert_allclose(res.values, expected)
    assert res.method == "loo"
    assert (res.counts == 1).all()


# -- results, groups, tables ------------------------------------------------------------------


def test_result_metadata(glove_game) -> None:  # type: ignore[no-untyped-def]
    res = exact_shapley(glove_game)
    assert res.method == "exact-shapley"
    assert (res.stderr == 0).all()
    assert res.ids.tolist() == [0, 1, 2]
    assert (res.counts == 4).all()
    custom = exact_semivalue(glove_game, 3, banzhaf_weight, ids=["l", "r1", "r2"])
    assert custom.ids.tolist() == ["l", "r1", "r2"]
    assert custom.params == {"weight": "banzhaf_weight"}


def test_group_utility_is_the_group_game(additive_game) -> None:  # type: ignore[no-untyped-def]
    groups = ["a", "a", "b", "b", "c", "c", "d", "d"]  # pairs {0,1} {2,3} {4,5} {6,7}
    res = exact_shapley(GroupUtility(additive_game, groups))
    assert res.ids.tolist() == ["a", "b", "c", "d"]
    # groups absorb the interactions: a = .3+.1+.6, b = .5+.2-.4, c = .4, d = .25
    np.testing.assert_allclose(res.values, [1.0, 0.3, 0.4, 0.25], atol=1e-12)


def test_coalition_values_table_layout() -> None:
    table = coalition_values(lambda s: float(sum(10**i for i in s)), 3)
    assert table.tolist() == [0, 1, 10, 11, 100, 101, 110, 111]


# -- errors -------------------------------------------------------------------------------------


def test_too_many_players() -> None:
    with pytest.raises(InvalidInput, match="coalitions"):
        exact_shapley(lambda s: 0.0, MAX_PLAYERS + 1)


@pytest.mark.parametrize("n", [0, -2, 2.5, True])
def test_bad_player_count(n) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput, match="number of players"):
        exact_shapley(lambda s: 0.0, n)
    with pytest.raises(InvalidInput, match="number of players"):
        exact_loo(lambda s: 0.0, n)


def test_player_count_required_for_plain_functions() -> None:
    with pytest.raises(InvalidInput, match="how many players"):
        exact_shapley(lambda s: 0.0)


@pytest.mark.parametrize(("alpha", "beta"), [(0, 1), (-1, 1), (1, 0), (16, -0.5), (np.nan, 1)])
def test_bad_beta_parameters(alpha: float, beta: float) -> None:
    with pytest.raises(InvalidInput, match="must be"):
        beta_shapley_weight(alpha, beta)
    with pytest.raises(InvalidInput):
        exact_beta_shapley(lambda s: 0.0, 3, alpha, beta)


def test_non_finite_game_and_bad_weight() -> None:
    with pytest.raises(InvalidInput, match="NaN"):
        exact_shapley(lambda s: float("nan") if len(s) == 2 else 0.0, 3)
    with pytest.raises(InvalidInput, match="weight"):
        exact_semivalue(lambda s: 0.0, 3, weight=0.5)  # type: ignore[arg-type]


def test_ids_length_checked() -> None:
    with pytest.raises(InvalidInput, match="ids"):
        exact_shapley(lambda s: 0.0, 3, ids=[1, 2])
