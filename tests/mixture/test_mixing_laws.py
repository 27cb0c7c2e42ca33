"""Data Mixing Laws (Ye et al. 2024): the exponential law's fit, its minimum and the method."""

from __future__ import annotations

import numpy as np
import pytest

from databazaar.core.errors import InvalidInput
from databazaar.mixture import (
    DataMixingLaws,
    MixingLaw,
    ProxyResult,
    RegMix,
    fit_mixing_law,
    minimize_mixing_laws,
    sample_mixtures,
)

PLANTED = [
    MixingLaw(c=3.0, k=1.2, t=(-2.0, 0.5, 0.8, 0.7)),
    MixingLaw(c=2.5, k=0.8, t=(0.3, -1.5, 0.6, 0.6)),
    MixingLaw(c=3.2, k=0.5, t=(0.2, 0.2, -1.0, 0.6)),
    MixingLaw(c=2.0, k=1.0, t=(0.5, 0.5, 0.5, -1.5)),
]


def _mixtures(n: int = 16, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return sample_mixtures(rng, np.full(4, 0.25), n, concentration=1.0, min_weight=0.02)


def test_fit_recovers_planted_laws_exactly() -> None:
    r = _mixtures()
    for law in PLANTED:
        fit = fit_mixing_law(r, law(r))
        assert fit.c == pytest.approx(law.c, abs=1e-6)
        assert fit.k == pytest.approx(law.k, rel=1e-6)
        # the planted exponents already sum to zero, as the fit's do
        assert fit.t == pytest.approx(law.t, abs=1e-6)
        assert sum(fit.t) == pytest.approx(0.0, abs=1e-9)
        assert fit.rmse < 1e-8


def test_fit_absorbs_a_constant_shift_of_the_exponents_into_k() -> None:
    r = _mixtures()
    shifted = MixingLaw(c=3.0, k=1.2, t=(-1.0, 1.5, 1.8, 1.7))  # = PLANTED[0] with t + 1
    fit = fit_mixing_law(r, shifted(r))
    assert fit.t == pytest.approx(PLANTED[0].t, abs=1e-6)
    assert fit.k == pytest.approx(1.2 * np.e, rel=1e-6)
    assert fit(r) == pytest.approx(shifted(r), abs=1e-8)


def test_noisy_fit_predicts_held_out_mixtures() -> None:
    rng = np.random.default_rng(3)
    r, r_test = _mixtures(24, seed=4), _mixtures(200, seed=5)
    law = PLANTED[1]
    fit = fit_mixing_law(r, law(r) + rng.normal(0, 0.005, len(r)))
    err = np.abs(fit(r_test) - law(r_test))
    assert 0.002 < fit.rmse < 0.01
    assert float(err.mean()) < 0.01


def test_minimum_matches_a_dense_search_of_the_simplex() -> None:
    w = minimize_mixing_laws(PLANTED, lower=0.02)
    assert w.sum() == pytest.approx(1.0) and np.all(w >= 0.02 - 1e-12)
    grid = _mixtures(200_000, seed=9)
    grid = grid[np.all(grid >= 0.02, axis=1)]
    vals = np.mean([law(grid) for law in PLANTED], axis=0)
    best = float(np.mean([law(w) for law in PLANTED]))
    assert best <= float(vals.min()) + 1e-6
    assert w == pytest.approx(grid[vals.argmin()], abs=0.02)
    # the gradient used by the solver is the derivative of the law
    r0, e = np.array([0.4, 0.3, 0.2, 0.1]), 1e-6
    num = [
        (PLANTED[0](r0 + e * np.eye(4)[j]) - PLANTED[0](r0 - e * np.eye(4)[j])) / (2 * e)
        for j in range(4)
    ]
    assert PLANTED[0].gradient(r0) == pytest.approx(num, rel=1e-5)


@pytest.mark.parametrize(
    ("mixtures", "losses", "msg"),
    [
        (np.full((8, 1), 1.0), np.ones(8), r"\[n, m\] array with m >= 2"),
        (np.full((8, 4), 0.25), np.ones(7), "expected 8 losses"),
        (np.full((8, 4), 0.25), np.r_[np.ones(7), np.nan], "finite"),
        (np.full((8, 4), 0.3), np.ones(8), "sum to 1"),
        (np.full((5, 4), 0.25), np.ones(5), "at least 6 mixtures"),
    ],
)
def test_fit_errors(mixtures, losses, msg) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput, match=msg):
        fit_mixing_law(mixtures, losses)
    with pytest.raises(InvalidInput, match="init must hold 4"):
        fit_mixing_law(_mixtures(), PLANTED[0](_mixtures()), init=[0.0, 1.0])


def test_minimize_errors() -> None:
    with pytest.raises(InvalidInput, match="no mixing laws"):
        minimize_mixing_laws([])
    with pytest.raises(InvalidInput, match="one exponent per domain"):
        minimize_mixing_laws([PLANTED[0], MixingLaw(c=1, k=1, t=(1.0, -1.0))])
    with pytest.raises(InvalidInput, match="lower bound"):
        minimize_mixing_laws(PLANTED, lower=0.3)


def _runs(domains: list[str], mixes: np.ndarray, laws: list[MixingLaw]) -> list[ProxyResult]:
    return [
        ProxyResult(
            quantities=(w * 1000).tolist(),
            losses={d: float(law(w)) for d, law in zip(domains, laws, strict=True)},
            seed=0,
            steps=10,
        )
        for w in mixes
    ]


def test_fit_runs_on_finished_runs_and_its_errors() -> None:
    doms = ["a", "b", "c", "d"]
    mixes = _mixtures()
    dml = DataMixingLaws(1000.0, n_runs=16).fit_runs(doms, mixes, _runs(doms, mixes, PLANTED))
    w = np.array([dml.weights_[d] for d in doms])
    assert w == pytest.approx(minimize_mixing_laws(PLANTED, lower=0.02), abs=1e-4)
    assert dml.laws_["b"].t == pytest.approx(PLANTED[1].t, abs=1e-6)
    assert dml.r2_loo_ == pytest.approx(1.0, abs=1e-6)
    assert dml.losses_.shape == (16, 4)
    res = dml.result_
    assert res.method == "dml" and res.budget == 1000.0 and len(res.runs) == 16
    assert res.details["predicted_average_loss"] <= res.details["best_run_average_loss"] + 1e-9
    with pytest.raises(InvalidInput, match=r"mixtures must be \[16 runs, 3 domains\]"):
        DataMixingLaws(1000.0).fit_runs(doms[:3], mixes, _runs(doms, mixes, PLANTED))
    bad = _runs(doms, mixes, PLANTED)
    del bad[3].losses["c"]
    with pytest.raises(InvalidInput, match="lack losses for domain"):
        DataMixingLaws(1000.0).fit_runs(doms, mixes, bad)
    with pytest.raises(InvalidInput, match="n_runs must be at least 7 for 4 domains"):
        DataMixingLaws(1000.0).fit_runs(doms, mixes[:6], _runs(doms, mixes[:6], PLANTED))


def test_dml_trains_its_own_runs_like_regmix(mix_data, proxy) -> None:  # type: ignore[no-untyped-def]
    data = mix_data[1]
    budget = 16 * 8 * 3
    dml = DataMixingLaws(budget, n_runs=6, proxy=proxy, seed=2).fit(data)
    rm = RegMix(budget, n_runs=6, proxy=proxy, seed=2, n_candidates=200, top_k=5).fit(data)
    # same seed, same random mixtures and the same proxy losses as RegMix's runs
    assert dml.mixtures_ == pytest.approx(rm.mixtures_)
    assert dml.losses_.mean(axis=1) == pytest.approx(rm.losses_)
    w = np.array([dml.weights_[d] for d in data.domains])
    assert w.sum() == pytest.approx(1.0) and np.all(w >= 0.02 - 1e-9)
    assert np.isfinite(dml.r2_loo_)
    # the fitted laws reproduce the measured per-domain losses to within their rmse
    for i, d in enumerate(data.domains):
        law = dml.laws_[d]
        resid = law(dml.mixtures_) - dml.losses_[:, i]
        assert float(np.sqrt(np.mean(resid**2))) == pytest.approx(law.rmse, rel=1e-6)
    with pytest.raises(InvalidInput, match="budget must be a positive"):
        DataMixingLaws(0.0, n_runs=6, proxy=proxy).fit(data)
    with pytest.raises(InvalidInput, match="concentration"):
        DataMixingLaws(budget, n_runs=6, concentration=-1.0, proxy=proxy).fit(data)
