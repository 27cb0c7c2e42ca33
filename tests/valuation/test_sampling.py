"""Monte Carlo estimators against exact enumeration, axioms, reproducibility, stopping,
group mode, the reusable permutation API and every error path."""

from __future__ import annotations

import itertools
import json
import math
import time
import warnings

import numpy as np
import pytest

from databazaar.core.errors import InvalidInput
from databazaar.valuation.exact import (
    beta_shapley_weight,
    exact_banzhaf,
    exact_loo,
    exact_semivalue,
    exact_shapley,
)
from databazaar.valuation.groups import GroupUtility
from databazaar.valuation.montecarlo import (
    BanzhafMSR,
    BetaShapley,
    LeaveOneOut,
    MaxSamples,
    MaxTime,
    SamplingState,
    StderrBelow,
    TMCShapley,
    beta_importance_weights,
    estimate_permutation_values,
    permutation_marginals,
    sample_rng,
    seed_entropy,
)
from databazaar.valuation.utility import GameUtility, Utility

GAME_NAMES = ["additive", "majority", "glove"]


def _exact(kind: str, game: GameUtility) -> np.ndarray:
    if kind == "shapley":
        return exact_shapley(game).values
    if kind == "banzhaf":
        return exact_banzhaf(game).values
    alpha, beta = {"beta16_1": (16, 1), "beta4_2": (4, 2)}[kind]
    return exact_semivalue(game, None, beta_shapley_weight(alpha, beta)).values


ESTIMATORS = {
    "tmc": ("shapley", lambda seed: TMCShapley(0.0, stopping=MaxSamples(600), random_state=seed)),
    "beta16_1": (
        "beta16_1",
        lambda seed: BetaShapley(16, 1, stopping=MaxSamples(600), random_state=seed),
    ),
    "beta4_2": (
        "beta4_2",
        lambda seed: BetaShapley(4, 2, stopping=MaxSamples(600), random_state=seed),
    ),
    "beta1_1": (
        "shapley",
        lambda seed: BetaShapley(1, 1, stopping=MaxSamples(600), random_state=seed),
    ),
    "msr": ("banzhaf", lambda seed: BanzhafMSR(stopping=MaxSamples(3000), random_state=seed)),
}


# -- agreement with brute force ------------------------------------------------------------


@pytest.mark.parametrize("game_name", GAME_NAMES)
@pytest.mark.parametrize("est_name", list(ESTIMATORS))
def test_estimators_match_exact_on_synthetic_games(
    games, within_stderr, game_name, est_name
) -> None:  # type: ignore[no-untyped-def]
    fn, n = games[game_name]
    game = GameUtility(fn, n)
    kind, make = ESTIMATORS[est_name]
    res = make(11).fit(game).result_
    within_stderr(res, _exact(kind, game), k=4.0)
    # and the stderr is small enough for that to mean something
    assert res.stderr.max() < 0.1


@pytest.mark.parametrize("est_name", list(ESTIMATORS))
def test_estimators_match_exact_on_a_real_utility(
    warm_logreg_utility, logreg_exact, within_stderr, est_name
) -> None:  # type: ignore[no-untyped-def]
    kind, make = ESTIMATORS[est_name]
    res = make(5).fit(warm_logreg_utility).result_
    within_stderr(res, logreg_exact[kind].values, k=4.0)


def test_loo_matches_exact(games, utility_factory) -> None:  # type: ignore[no-untyped-def]
    for name in GAME_NAMES:
        game = GameUtility(*games[name])
        res = LeaveOneOut().fit(game).result_
        np.testing.assert_allclose(res.values, exact_loo(game).values)
        assert (res.stderr == 0).all() and (res.counts == 1).all()
    u = utility_factory()
    np.testing.assert_allclose(LeaveOneOut().fit(u).values_, exact_loo(u).values)
    assert u.n_evaluations == u.n_players + 1


def test_tmc_truncation_is_exact_when_the_utility_saturates() -> None:
    # u = min(|S|, 2): after two points nothing changes, so truncation loses nothing
    n = 8
    plain = GameUtility(lambda s: float(min(len(s), 2)), n, cache=False)
    trunc = GameUtility(lambda s: float(min(len(s), 2)), n, cache=False)
    a = TMCShapley(0.0, stopping=MaxSamples(30), random_state=1).fit(plain).result_
    b = TMCShapley(0.01, 2, stopping=MaxSamples(30), random_state=1).fit(trunc).result_
    np.testing.assert_allclose(a.values, b.values, atol=1e-12)
    np.testing.assert_allclose(b.values.sum(), 2.0)
    assert trunc.n_evaluations < plain.n_evaluations / 2
    assert (b.counts == 30).all()  # truncated points still count (marginal 0)


def test_tmc_with_default_truncation_on_a_real_utility(warm_logreg_utility, logreg_exact) -> None:  # type: ignore[no-untyped-def]
    u = warm_logreg_utility
    res = TMCShapley(stopping=MaxSamples(300), random_state=2).fit(u).result_
    # truncation biases a little; the ranking of the clearly distinct values survives
    assert np.corrcoef(res.values, logreg_exact["shapley"].values)[0, 1] > 0.9
    assert res.params["truncation_tol"] == 0.01


# -- axioms ---------------------------------------------------------------------------------


def test_tmc_efficiency_is_exact_without_truncation(utility_factory, games) -> None:  # type: ignore[no-untyped-def]
    u = utility_factory()
    res = TMCShapley(0.0, stopping=MaxSamples(25), random_state=0).fit(u).result_
    assert res.values.sum() == pytest.approx(u(range(u.n_players)) - u([]), abs=1e-12)
    game = GameUtility(*games["majority"])
    res = TMCShapley(0.0, stopping=MaxSamples(7), random_state=0).fit(game).result_
    assert res.values.sum() == pytest.approx(1.0, abs=1e-12)


def test_null_players_get_exactly_zero(additive_game, majority_game) -> None:  # type: ignore[no-untyped-def]
    for est in (
        TMCShapley(0.0, stopping=MaxSamples(50), random_state=3),
        BetaShapley(stopping=MaxSamples(50), random_state=3),
        LeaveOneOut(),
    ):
        assert est.fit(additive_game).values_[7] == 0.0
        assert est.fit(majority_game).values_[6] == 0.0
    msr = BanzhafMSR(stopping=MaxSamples(400), random_state=3).fit(additive_game).result_
    assert abs(msr.values[7]) <= 4 * msr.stderr[7]


def test_additive_players_have_zero_stderr(additive_game) -> None:  # type: ignore[no-untyped-def]
    res = TMCShapley(0.0, stopping=MaxSamples(20), random_state=0).fit(additive_game).result_
    np.testing.assert_allclose(res.values[4:], [0.4, 0.0, 0.25, 0.0], atol=1e-12)
    np.testing.assert_allclose(res.stderr[4:], 0.0, atol=1e-12)


def test_beta_importance_weights() -> None:
    np.testing.assert_allclose(beta_importance_weights(6, 1, 1), np.ones(6))
    n = 9
    iw = beta_importance_weights(n, 16, 1)
    # the mean over positions (uniform in a random permutation) is the total weight, 1
    assert iw.mean() == pytest.approx(1.0)
    assert (np.diff(iw) < 0).all()
    w = beta_shapley_weight(16, 1)
    assert iw[3] == pytest.approx(n * math.comb(n - 1, 3) * w(3, n))


def test_beta_weight_tol_skips_evaluations_with_small_bias() -> None:
    n = 12
    weights = np.linspace(0.1, 1.0, n)

    def make() -> GameUtility:
        return GameUtility(lambda s: float(np.sqrt(weights[list(s)].sum())), n, cache=False)

    exact = exact_semivalue(make(), n, beta_shapley_weight(16, 1)).values
    full, cut = make(), make()
    a = BetaShapley(16, 1, stopping=MaxSamples(300), random_state=4).fit(full).result_
    b = (
        BetaShapley(16, 1, weight_tol=0.05, stopping=MaxSamples(300), random_state=4)
        .fit(cut)
        .result_
    )
    assert cut.n_evaluations < 0.7 * full.n_evaluations
    # same permutations; only the skipped, tiny-weight positions differ
    assert np.abs(b.values - a.values).max() < 0.01
    assert (np.abs(a.values - exact) <= 4 * a.stderr).all()
    assert b.params["weight_tol"] == 0.05


# -- reproducibility -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda **kw: TMCShapley(0.01, stopping=MaxSamples(12), **kw),
        lambda **kw: BetaShapley(4, 2, stopping=MaxSamples(12), **kw),
        lambda **kw: BanzhafMSR(stopping=MaxSamples(60), **kw),
    ],
    ids=["tmc", "beta", "msr"],
)
def test_same_seed_same_values_for_any_n_jobs_backend_and_batch_size(make, utility_factory) -> None:  # type: ignore[no-untyped-def]
    ref = make(random_state=7).fit(utility_factory()).result_
    again = make(random_state=7).fit(utility_factory()).result_
    other = make(random_state=8).fit(utility_factory()).result_
    two = make(random_state=7, n_jobs=2).fit(utility_factory()).result_
    threads = make(random_state=7, n_jobs=2, backend="threads", batch_size=1)
    threads_res = threads.fit(utility_factory()).result_
    for res in (again, two, threads_res):
        assert np.array_equal(res.values, ref.values)
        assert np.array_equal(res.stderr, ref.stderr, equal_nan=True)
    assert not np.array_equal(other.values, ref.values)


def test_stderr_stopping_is_reproducible_across_n_jobs(additive_game) -> None:  # type: ignore[no-untyped-def]
    stop = StderrBelow(0.02, min_samples=10) | MaxSamples(5000)
    a = TMCShapley(0.0, stopping=stop, random_state=1).fit(GameUtility(additive_game.fn, 8))
    b = TMCShapley(0.0, stopping=stop, random_state=1, n_jobs=2, backend="threads", batch_size=3)
    b.fit(GameUtility(additive_game.fn, 8))
    assert a.result_.params["n_samples"] == b.result_.params["n_samples"]
    assert np.array_equal(a.values_, b.values_)


def test_random_state_forms() -> None:
    assert seed_entropy(5) == 5
    assert seed_entropy(np.int64(5)) == 5
    assert seed_entropy(None) != seed_entropy(None)
    g1, g2 = np.random.default_rng(0), np.random.default_rng(0)
    assert seed_entropy(g1) == seed_entropy(g2)
    # sample j's stream is child j of SeedSequence(entropy).spawn
    child = np.random.SeedSequence(42).spawn(4)[3]
    assert sample_rng(42, 3).random() == np.random.default_rng(child).random()
    game = GameUtility(lambda s: float(len(s) ** 1.5), 5)
    a = TMCShapley(0.0, stopping=MaxSamples(5), random_state=np.random.default_rng(9)).fit(game)
    b = TMCShapley(0.0, stopping=MaxSamples(5), random_state=np.random.default_rng(9)).fit(game)
    assert np.array_equal(a.values_, b.values_)


# -- stopping -----------------------------------------------------------------------------------


def _state(n_samples: int, stderr=(0.5, 0.1), elapsed: float = 0.0) -> SamplingState:  # type: ignore[no-untyped-def]
    return SamplingState(n_samples, elapsed, lambda: np.asarray(stderr, dtype=float))


def test_stopping_criteria_and_composition() -> None:
    assert MaxSamples(3)(_state(3)) and not MaxSamples(3)(_state(2))
    assert StderrBelow(0.6, min_samples=5)(_state(5)) and not StderrBelow(0.6, 5)(_state(4))
    assert not StderrBelow(0.3, min_samples=2)(_state(10))
    assert not StderrBelow(1.0, min_samples=2)(_state(10, stderr=(np.inf, 0.0)))
    assert not StderrBelow(1.0, min_samples=2)(_state(10, stderr=(np.nan, 0.0)))
    assert MaxTime(1.0)(_state(0, elapsed=1.5)) and not MaxTime(1.0)(_state(0, elapsed=0.5))
    either = MaxSamples(10) | StderrBelow(0.6, min_samples=2)
    both = MaxSamples(10) & StderrBelow(0.6, min_samples=2)
    assert either(_state(3)) and not both(_state(3)) and both(_state(10))
    assert either.max_samples() == 10 and math.isinf(both.max_samples())
    assert (MaxSamples(10) | MaxSamples(4)).max_samples() == 4
    assert (MaxSamples(10) & MaxSamples(4)).max_samples() == 10
    assert math.isinf((StderrBelow(0.1) | MaxTime(3)).max_samples())
    assert repr(either) == "(MaxSamples(10) | StderrBelow(0.6, min_samples=2))"


def test_max_samples_is_exact_for_every_batching(majority_game) -> None:  # type: ignore[no-untyped-def]
    for bs in (1, 3, 64):
        res = TMCShapley(stopping=MaxSamples(7), batch_size=bs, random_state=0).fit(majority_game)
        assert res.result_.params["n_samples"] == 7
        assert (res.result_.counts == 7).all()
    msr = BanzhafMSR(stopping=MaxSamples(50), random_state=0).fit(majority_game).result_
    assert msr.params["n_samples"] == 50 and (msr.counts == 50).all()


def test_stderr_below_stops_when_reached(additive_game) -> None:  # type: ignore[no-untyped-def]
    res = TMCShapley(
        0.0, stopping=StderrBelow(0.03, min_samples=10) | MaxSamples(20_000), random_state=0
    )
    out = res.fit(additive_game).result_
    assert out.stderr.max() <= 0.03
    assert 10 <= out.params["n_samples"] < 20_000
    # one sample fewer would not have been enough (it stops at the first chance)
    shorter = TMCShapley(0.0, stopping=MaxSamples(out.params["n_samples"] - 1), random_state=0)
    assert shorter.fit(additive_game).result_.stderr.max() > 0.03


def test_max_time_stops_a_slow_run() -> None:
    def slow(s):  # type: ignore[no-untyped-def]
        time.sleep(0.002)
        return float(len(s))

    game = GameUtility(slow, 6, cache=False)
    t0 = time.monotonic()
    res = TMCShapley(0.0, stopping=MaxTime(0.3), random_state=0).fit(game).result_
    assert time.monotonic() - t0 < 3.0
    assert res.params["n_samples"] >= 1


def test_progress_reports_every_sample(majority_game) -> None:  # type: ignore[no-untyped-def]
    seen: list[int] = []
    TMCShapley(stopping=MaxSamples(9), batch_size=2, random_state=0).fit(
        majority_game, progress=seen.append
    )
    assert sum(seen) == 9
    seen.clear()
    BanzhafMSR(stopping=StderrBelow(0.2, 5) | MaxSamples(100), random_state=0).fit(
        majority_game, progress=seen.append
    )
    assert 5 <= sum(seen) <= 100
    seen.clear()
    LeaveOneOut().fit(majority_game, progress=seen.append)
    assert sum(seen) == 7


# -- group mode ----------------------------------------------------------------------------------


def test_group_mode_matches_exact_group_game(additive_game, within_stderr) -> None:  # type: ignore[no-untyped-def]
    groups = np.array(["b", "b", "a", "a", "c", "c", "d", "d"])
    exact_sh = exact_shapley(GroupUtility(additive_game, groups))
    exact_bz = exact_banzhaf(GroupUtility(additive_game, groups))
    assert exact_sh.ids.tolist() == ["a", "b", "c", "d"]
    tmc = TMCShapley(0.0, stopping=MaxSamples(200), random_state=0).fit(
        additive_game, groups=groups
    )
    assert tmc.result_.ids.tolist() == ["a", "b", "c", "d"]
    within_stderr(tmc.result_, exact_sh.values)
    assert tmc.result_.values.sum() == pytest.approx(additive_game(range(8)))
    msr = BanzhafMSR(stopping=MaxSamples(2000), random_state=0).fit(additive_game, groups=groups)
    within_stderr(msr.result_, exact_bz.values)
    loo = LeaveOneOut().fit(additive_game, groups=groups)
    np.testing.assert_allclose(loo.values_, exact_loo(GroupUtility(additive_game, groups)).values)
    assert loo.result_.ids.tolist() == ["a", "b", "c", "d"]


def test_group_mode_on_a_real_utility(warm_logreg_utility, within_stderr) -> None:  # type: ignore[no-untyped-def]
    groups = [10, 10, 20, 20, 30, 30, 40, 40]
    u = warm_logreg_utility
    exact = exact_shapley(GroupUtility(u, groups))
    res = BetaShapley(1, 1, stopping=MaxSamples(200), random_state=0).fit(u, groups=groups)
    assert res.result_.ids.tolist() == [10, 20, 30, 40]
    within_stderr(res.result_, exact.values)


# -- results --------------------------------------------------------------------------------------


def test_result_metadata_and_persistence(majority_game, tmp_path) -> None:  # type: ignore[no-untyped-def]
    est = BetaShapley(16, 1, stopping=StderrBelow(0.05) | MaxSamples(40), random_state=3)
    res = est.fit(majority_game).result_
    assert res.method == "beta-shapley"
    assert res.params["alpha"] == 16.0 and res.params["random_state"] == 3
    json.dumps(res.params)
    path = res.save(tmp_path / "v.csv")
    back = type(res).load(path)
    np.testing.assert_allclose(back.values, res.values)
    assert back.params["stopping"] == repr(est.stopping)
    assert est.get_params()["alpha"] == 16
    from sklearn.base import clone

    assert clone(est).get_params()["stopping"] is not None


def test_values_before_fit_raise() -> None:
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        _ = TMCShapley().values_


def test_counters_add_up_across_worker_processes(utility_factory) -> None:  # type: ignore[no-untyped-def]
    seq, par = utility_factory(), utility_factory()
    TMCShapley(0.0, stopping=MaxSamples(6), random_state=0).fit(seq)
    TMCShapley(0.0, stopping=MaxSamples(6), random_state=0, n_jobs=2, batch_size=1).fit(par)
    assert seq.n_evaluations > 0
    # each worker process has its own cache, so parallel runs may evaluate a bit more
    assert seq.n_evaluations <= par.n_evaluations <= seq.n_evaluations + 6 * 8
    assert par.n_errors >= seq.n_errors > 0


def test_msr_with_too_few_samples_warns_and_gives_nan(majority_game) -> None:  # type: ignore[no-untyped-def]
    with pytest.warns(RuntimeWarning, match="never both inside and outside"):
        res = BanzhafMSR(stopping=MaxSamples(1), random_state=0).fit(majority_game).result_
    assert np.isnan(res.values).all() and np.isinf(res.stderr).all()


def test_all_failing_utility_warns(tiny_data) -> None:  # type: ignore[no-untyped-def]
    x_tr, y_tr, x_te, y_te = tiny_data

    class Broken:
        def fit(self, x, y):  # type: ignore[no-untyped-def]
            raise RuntimeError("broken model")

        def get_params(self, deep=True):  # type: ignore[no-untyped-def]
            return {}

    u = Utility(Broken(), x_tr, y_tr, x_te, y_te)
    with pytest.warns(RuntimeWarning, match="broken model"):
        res = TMCShapley(stopping=MaxSamples(2), random_state=0).fit(u).result_
    assert (res.values == 0).all()


# -- the reusable permutation API (used by Monte Carlo asymmetric Shapley) ----------------------


def test_permutation_marginals() -> None:
    game = GameUtility(lambda s: float(len(s) ** 2), 6)
    m = permutation_marginals(game, [4, 2, 0])
    np.testing.assert_allclose(m, [1, 3, 5])
    m = permutation_marginals(game, [4, 2, 0], base=[1, 5])
    np.testing.assert_allclose(m, [5, 7, 9])  # 4->9->16->25 starting from |base| = 2
    m = permutation_marginals(game, [4, 2, 0], max_positions=2)
    np.testing.assert_allclose(m, [1, 3, 0])
    sat = GameUtility(lambda s: float(min(len(s), 2)), 6, cache=False)
    m = permutation_marginals(
        sat, np.arange(6), u_start=0.0, u_total=2.0, truncation_tol=0.01, truncation_patience=2
    )
    np.testing.assert_allclose(m, [1, 1, 0, 0, 0, 0])
    assert sat.n_evaluations == 3  # sizes 1, 2, 3; then truncated
    assert permutation_marginals(game, []).shape == (0,)
    with pytest.raises(InvalidInput, match="u_total"):
        permutation_marginals(game, [0, 1], truncation_tol=0.1)


def test_group_constrained_permutations_give_asymmetric_shapley() -> None:
    # players 0-2 come before 3-5 (an ordering of two groups); brute force over all
    # consistent permutations against the sampling loop with a constrained generator
    w = np.array([1.0, 2.0, 0.5, 1.0, 2.0, 0.5])
    game = GameUtility(lambda s: float(np.sqrt(w[list(s)].sum())) if s else 0.0, 6)
    first, second = [0, 1, 2], [3, 4, 5]
    exact = np.zeros(6)
    perms = [p + q for p in itertools.permutations(first) for q in itertools.permutations(second)]
    for perm in perms:
        exact[list(perm)] += permutation_marginals(game, perm)
    exact /= len(perms)

    def ordered(rng: np.random.Generator, n: int) -> np.ndarray:
        return np.concatenate([rng.permutation(first), rng.permutation(second)])

    stats = estimate_permutation_values(
        game, stopping=MaxSamples(400), random_state=0, sampler=ordered
    )
    assert stats.n_samples == 400
    assert (np.abs(stats.values - exact) <= 4 * stats.stderr + 1e-9).all()
    # group efficiency holds for every sample, so for the estimate too
    assert stats.values[first].sum() == pytest.approx(game(first) - game([]))
    assert stats.values[second].sum() == pytest.approx(game(range(6)) - game(first))


def test_partial_permutations_leave_other_players_unsampled() -> None:
    game = GameUtility(lambda s: float(len(s)), 4)
    stats = estimate_permutation_values(
        game,
        stopping=MaxSamples(5),
        random_state=0,
        sampler=lambda rng, n: rng.permutation([0, 1]),
    )
    assert stats.counts.tolist() == [5, 5, 0, 0]
    assert np.isnan(stats.values[2:]).all()
    np.testing.assert_allclose(stats.values[:2], [1.0, 1.0])


# -- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: TMCShapley(stopping=5),
        lambda: TMCShapley(stopping="max"),
        lambda: TMCShapley(truncation_tol=-0.1),
        lambda: TMCShapley(truncation_tol=float("nan")),
        lambda: TMCShapley(truncation_patience=0),
        lambda: TMCShapley(backend="dask-cluster"),
        lambda: TMCShapley(n_jobs=0),
        lambda: TMCShapley(batch_size=0),
        lambda: TMCShapley(random_state=-1),
        lambda: TMCShapley(random_state="seed"),
        lambda: BetaShapley(alpha=0),
        lambda: BetaShapley(alpha=-2),
        lambda: BetaShapley(beta=0),
        lambda: BetaShapley(weight_tol=-1),
        lambda: BanzhafMSR(stopping=None, backend="spark"),
        lambda: LeaveOneOut(backend="nope"),
        lambda: LeaveOneOut(n_jobs=1.5),
    ],
)
def test_bad_parameters_raise_on_fit(make, majority_game) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput):
        make().fit(majority_game)


@pytest.mark.parametrize(
    "build",
    [
        lambda: MaxSamples(0),
        lambda: MaxSamples(2.5),
        lambda: StderrBelow(0),
        lambda: StderrBelow(-1),
        lambda: StderrBelow(0.1, min_samples=1),
        lambda: StderrBelow("low"),
        lambda: MaxTime(0),
        lambda: MaxTime(-3),
        lambda: MaxSamples(3) | 5,
        lambda: MaxSamples(3) & "x",
    ],
)
def test_bad_stopping_criteria(build) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput):
        build()


def test_bad_utility_and_groups(majority_game) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput, match="callable"):
        TMCShapley().fit("not a utility")
    with pytest.raises(InvalidInput, match="how many players"):
        TMCShapley().fit(lambda s: 0.0)
    with pytest.raises(InvalidInput, match="groups has shape"):
        TMCShapley().fit(majority_game, groups=[1, 2, 3])
    with pytest.raises(InvalidInput, match="progress"):
        TMCShapley().fit(majority_game, progress=3)


def test_quiet_by_default(majority_game, utility_factory, capfd) -> None:  # type: ignore[no-untyped-def]
    """No warning, no output (no progress bar) unless asked for; the work is still done."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tmc = TMCShapley(stopping=MaxSamples(5), random_state=0).fit(utility_factory())
        msr = BanzhafMSR(stopping=MaxSamples(50), random_state=0).fit(majority_game)
    assert [str(w.message) for w in caught] == []
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
    assert tmc.result_.counts.min() >= 5 and msr.result_.counts.sum() > 0


def test_estimators_keep_scikit_learn_params_through_sampling_kwargs() -> None:
    from sklearn.base import clone

    from databazaar.valuation.montecarlo import MonteCarloADS

    beta = BetaShapley(4.0, 1.0, truncation_patience=3, n_jobs=2, stopping=MaxSamples(7))
    params = beta.get_params()
    assert params["alpha"] == 4.0 and params["truncation_patience"] == 3
    assert params["n_jobs"] == 2 and params["truncation_tol"] == 0.0
    assert set(params) == {
        "alpha", "beta", "weight_tol", "truncation_tol", "truncation_patience", "stopping",
        "n_jobs", "backend", "random_state", "batch_size", "ray_address",
    }  # fmt: skip
    twin = clone(beta)
    assert repr(twin.get_params()["stopping"]) == "MaxSamples(7)" and twin.n_jobs == 2
    assert set(LeaveOneOut().get_params()) == {"n_jobs", "backend", "ray_address"}
    assert "order" in MonteCarloADS().get_params()
    assert BanzhafMSR().set_params(n_jobs=3).n_jobs == 3
    with pytest.raises(TypeError, match="bogus"):
        TMCShapley(bogus=1)
