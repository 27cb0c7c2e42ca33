"""DDO, AutoScale, DoReMi, RegMix and the public API on a small real training setup."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from databazaar.core.errors import InvalidInput, NotFound
from databazaar.lm import load_model
from databazaar.mixture import (
    DDO,
    METHODS,
    AutoScale,
    DoReMi,
    MixtureResult,
    PowerLaw,
    ProxyResult,
    RegMix,
    autoscale_predict,
    ddo_jobs,
    fit_ddo,
    optimize_mixture,
    plot_ddo_fits,
    plot_weights_by_budget,
    proxy_runs_needed,
    run_proxies,
    solve_budget_simplex,
    train_with_weights,
    uniform_weights,
)

BUDGET = 16 * 8 * 6  # 6 steps of 8 blocks of 16 tokens at the reference mixture


@pytest.fixture(scope="module")
def ddo_fit(mix_data, proxy):  # type: ignore[no-untyped-def]
    return DDO(BUDGET, proxy=proxy, seed=0, backend="processes", n_jobs=1).fit(mix_data[1])


# ------------------------------------------------------------------------ DDO


def test_ddo_job_design() -> None:
    jobs = ddo_jobs(["a", "b"], np.array([30.0, 60.0]), (1 / 3, 3.0))
    assert [t for t, _ in jobs] == ["reference", "a*0.333333", "a*3", "b*0.333333", "b*3"]
    assert jobs[2][1] == [90.0, 60.0] and jobs[3][1] == pytest.approx([30.0, 20.0])


def test_fit_ddo_recovers_planted_power_laws() -> None:
    """Runs whose average loss is an exact separable sum of known laws give their optimum."""
    truth = [PowerLaw(0.1, 0.6, 1.0), PowerLaw(0.3, 0.2, 1.5), PowerLaw(0.05, 1.1, 0.8)]
    doms = ["a", "b", "c"]
    r = np.full(3, 1 / 3)
    factors = (1 / 3, 3.0)
    base = sum(float(law(1.0)) for law in truth)

    def run(x: np.ndarray) -> ProxyResult:
        avg = base + sum(float(law(xi) - law(1.0)) for law, xi in zip(truth, x, strict=True))
        return ProxyResult(quantities=list(x), losses={"all": avg}, seed=0, steps=1)

    runs = [run(np.ones(3))]
    for i in range(3):
        for s in factors:
            x = np.ones(3)
            x[i] = s
            runs.append(run(x))
    sol = fit_ddo(doms, r, factors, runs, bounds=(0.2, 3.0))
    for law, t in zip(sol["laws"], truth, strict=True):
        for x in (1 / 3, 1.0, 3.0):  # three points pin the law down exactly
            assert float(law(x)) - float(law(1.0)) == pytest.approx(
                float(t(x)) - float(t(1.0)), abs=1e-7
            )
        assert law.rmse < 1e-7
    lo, hi = 0.2 * r, np.minimum(1, 3 * r)
    assert sol["weights"] == pytest.approx(
        solve_budget_simplex(sol["laws"], r, lower=lo, upper=hi), abs=1e-9
    )
    # three points fix each law on [1/3, 3] but not its exact parameters, so the optimum
    # is close to (not identical with) the optimum of the planted laws
    expected = solve_budget_simplex(truth, r, lower=lo, upper=hi)
    assert sol["weights"] == pytest.approx(expected, abs=1e-2)
    assert sol["weights"].sum() == pytest.approx(1.0)
    assert sol["predicted_average_loss"] <= sol["reference_average_loss"] + 1e-12
    with pytest.raises(InvalidInput, match="expected 7 runs"):
        fit_ddo(doms, r, factors, runs[:3])
    with pytest.raises(InvalidInput, match="bounds on x"):
        fit_ddo(doms, r, factors, runs, bounds=(1.5, 3.0))


def test_ddo_end_to_end(ddo_fit, mix_data, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = mix_data[1]
    d = ddo_fit
    assert len(d.runs_) == 1 + 2 * 3
    assert d.runs_[0].tag == "reference"
    assert d.runs_[0].quantities == pytest.approx([BUDGET / 3] * 3)
    assert d.runs_[2].tag == "code*3" and d.runs_[2].quantities[0] == pytest.approx(BUDGET)
    w = np.array([d.weights_[k] for k in data.domains])
    assert w.sum() == pytest.approx(1.0)
    x = w / (1 / 3)
    assert np.all(x >= 0.2 - 1e-9) and np.all(x <= 3.0 + 1e-9)
    assert set(d.laws_) == set(data.domains)
    for law in d.laws_.values():
        assert law.b >= 0 and np.isfinite(law.c)
    det = d.result_.details
    assert det["predicted_average_loss"] <= det["reference_average_loss"] + 1e-12
    assert d.result_.method == "ddo" and d.result_.budget == BUDGET
    # the reference run's average is the y at x = 1 of every fit
    for dom in data.domains:
        pts = det["points"][dom]
        assert pts["x"] == pytest.approx([1 / 3, 1.0, 3.0])
        assert pts["y"][1] == pytest.approx(d.runs_[0].average)
    svg = d.plot(tmp_path / "fits.svg")
    assert svg.read_text().lstrip().startswith(("<?xml", "<svg"))
    assert "| code |" in d.result_.to_markdown()


def test_ddo_is_deterministic_and_processes_match_in_process(ddo_fit, mix_data, proxy) -> None:  # type: ignore[no-untyped-def]
    ticks: list[int] = []
    again = DDO(
        BUDGET, proxy=proxy, seed=0, backend="processes", n_jobs=2, progress=ticks.append
    ).fit(mix_data[1])
    assert ticks == [1] * 7
    for a, b in zip(ddo_fit.runs_, again.runs_, strict=True):
        assert a.tag == b.tag
        assert a.average == pytest.approx(b.average, abs=1e-6)
    assert again.weights_ == pytest.approx(ddo_fit.weights_, abs=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "msg"),
    [
        ({"budget": 0}, "budget must be a positive"),
        ({"budget": 40}, "too small"),
        ({"scale_factors": (3.0,)}, "scale_factors"),
        ({"scale_factors": (1.0, 3.0)}, "scale_factors"),
        ({"reference_weights": [0.5, 0.5, 0.0]}, "positive for every domain"),
        ({"reference_weights": [0.5, 0.6, 0.1]}, "sum to 1"),
        ({"backend": "mpi"}, "unknown backend"),
    ],
)
def test_ddo_errors(mix_data, proxy, kwargs, msg) -> None:  # type: ignore[no-untyped-def]
    budget = kwargs.pop("budget", BUDGET)
    with pytest.raises(InvalidInput, match=msg):
        DDO(budget, proxy=proxy, **kwargs).fit(mix_data[1])


# ------------------------------------------------------------------ AutoScale


def test_autoscale_end_to_end(mix_data, proxy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = mix_data[1]
    ticks: list[int] = []
    auto = AutoScale(
        (BUDGET / 2, BUDGET),
        4 * BUDGET,
        proxy=proxy,
        backend="processes",
        n_jobs=1,
        progress=ticks.append,
    ).fit(data)
    assert sum(ticks) == proxy_runs_needed("autoscale", 3) == 14
    q1 = np.array([auto.ddo_[0].quantities_[d] for d in data.domains])
    q2 = np.array([auto.ddo_[1].quantities_[d] for d in data.domains])
    assert q1.sum() == pytest.approx(BUDGET / 2) and q2.sum() == pytest.approx(BUDGET)
    pred = autoscale_predict(q1, q2, 4 * BUDGET)
    assert [auto.weights_[d] for d in data.domains] == pytest.approx(pred["weights"].tolist())
    assert sum(auto.quantities_.values()) == pytest.approx(4 * BUDGET)
    # each domain's quantity follows N2 * (N2 / N1)^t
    for i, d in enumerate(data.domains):
        assert auto.quantities_[d] == pytest.approx(q2[i] * (q2[i] / q1[i]) ** auto.t_)
    assert list(auto.weights_by_budget_) == [BUDGET / 2, BUDGET, 4 * BUDGET]
    assert auto.predict(4 * BUDGET) == pytest.approx(auto.weights_)
    one = autoscale_predict(q1, q2)
    assert auto.path_[0]["budget"] == pytest.approx(one["budget"])
    assert [auto.path_[0]["weights"][d] for d in data.domains] == pytest.approx(
        one["weights"].tolist()
    )
    assert [p["t"] for p in auto.path_] == [1, 2, 3, 4]
    assert auto.result_.method == "autoscale" and len(auto.result_.runs) == 14
    svg = plot_weights_by_budget(auto.result_, tmp_path / "w.svg")
    assert "<svg" in svg.read_text()
    # the same prediction from the two DDO fits run separately
    again = AutoScale.from_ddo(auto.ddo_[0], auto.ddo_[1], 4 * BUDGET)
    assert again.weights_ == pytest.approx(auto.weights_) and again.t_ == pytest.approx(auto.t_)
    with pytest.raises(InvalidInput, match="at least N2"):
        AutoScale.from_ddo(auto.ddo_[0], auto.ddo_[1], BUDGET / 2)
    with pytest.raises(InvalidInput, match="0 < N1 < N2"):
        AutoScale.from_ddo(auto.ddo_[1], auto.ddo_[0], 4 * BUDGET)
    with pytest.raises(InvalidInput, match="must be fitted"):
        AutoScale.from_ddo(auto.ddo_[0], DDO(BUDGET, proxy=proxy), 4 * BUDGET)
    # the benchmark's figure: measured optima at other budgets drawn as open squares
    svg2 = plot_weights_by_budget(
        auto.result_, tmp_path / "w2.svg", measured={4 * BUDGET: auto.ddo_[1].weights_}
    )
    text2 = svg2.read_text()
    assert "DDO measured (squares, dotted)" in text2 and len(text2) > len(svg.read_text())
    report = auto.result_.to_markdown()
    assert "Weights per budget" in report and "AutoScale path" in report


@pytest.mark.parametrize(
    ("budgets", "target", "msg"),
    [
        ((100.0,), 1000.0, "exactly two budgets"),
        ((500.0, 100.0), 1000.0, "0 < N1 < N2"),
        ((100.0, 500.0), 200.0, "at least N2"),
    ],
)
def test_autoscale_errors(mix_data, proxy, budgets, target, msg) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput, match=msg):
        AutoScale(budgets, target, proxy=proxy).fit(mix_data[1])


# -------------------------------------------------------------------- DoReMi


def test_doremi_group_dro(mix_data, proxy) -> None:  # type: ignore[no-untyped-def]
    data = mix_data[1]
    dr = DoReMi(BUDGET, proxy=proxy, seed=0, smoothing=0.1).fit(data)
    w = np.array([dr.weights_[d] for d in data.domains])
    assert w.sum() == pytest.approx(1.0) and np.all(w > 0)
    traj = dr.trajectory_
    assert traj.shape == (dr.result_.details["steps"], 3)
    assert np.allclose(traj.sum(axis=1), 1.0)
    assert np.all(traj >= 0.1 / 3 - 1e-12)  # smoothing keeps every domain above c/m
    assert w == pytest.approx(traj.mean(axis=0))
    # the weights move: Group DRO shifts mass between domains as excess losses differ
    assert np.abs(traj[-1] - 1 / 3).max() > 0.01  # 0.028 when written
    assert np.abs(np.diff(traj, axis=0)).sum(axis=1).max() > 1e-4
    # with a vanishing step size the same run keeps the reference (uniform) weights
    still = DoReMi(BUDGET, proxy=proxy, seed=0, smoothing=0.1, step_size=1e-12).fit(data)
    assert np.allclose(still.trajectory_, 1 / 3, atol=1e-9)
    again = DoReMi(BUDGET, proxy=proxy, seed=0, smoothing=0.1).fit(data)
    assert again.weights_ == pytest.approx(dr.weights_, abs=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "msg"),
    [
        ({"budget": -1.0}, "budget"),
        ({"step_size": 0.0}, "step_size"),
        ({"smoothing": 1.0}, "smoothing"),
    ],
)
def test_doremi_errors(mix_data, proxy, kwargs, msg) -> None:  # type: ignore[no-untyped-def]
    budget = kwargs.pop("budget", BUDGET)
    with pytest.raises(InvalidInput, match=msg):
        DoReMi(budget, proxy=proxy, **kwargs).fit(mix_data[1])


# -------------------------------------------------------------------- RegMix


def test_regmix_regression(mix_data, proxy) -> None:  # type: ignore[no-untyped-def]
    data = mix_data[1]
    rm = RegMix(
        BUDGET / 2, n_runs=6, n_candidates=2000, top_k=20, regressor="linear", proxy=proxy
    ).fit(data)
    assert rm.mixtures_.shape == (6, 3) and rm.losses_.shape == (6,)
    assert np.allclose(rm.mixtures_.sum(axis=1), 1.0)
    assert np.all(rm.mixtures_ >= 0.02 / (1 + 3 * 0.02) - 1e-12)
    assert [r.average for r in rm.runs_] == pytest.approx(rm.losses_.tolist())
    w = np.array([rm.weights_[d] for d in data.domains])
    assert w.sum() == pytest.approx(1.0)
    # the chosen mixture is predicted no worse than the average tried mixture
    pred = rm.model_.predict(w[None, :])[0]
    assert pred <= float(np.mean(rm.model_.predict(rm.mixtures_))) + 1e-9
    assert np.isfinite(rm.r2_loo_) and rm.r2_loo_ <= 1.0
    gbm = RegMix(BUDGET / 2, n_runs=6, n_candidates=500, top_k=5, proxy=proxy).fit(data)
    assert sum(gbm.weights_.values()) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("kwargs", "msg"),
    [
        ({"n_runs": 4}, "n_runs must be at least"),
        ({"regressor": "lightgbm"}, "unknown regressor"),
        ({"concentration": 0.0}, "concentration"),
        ({"top_k": 0}, "top_k"),
        ({"budget": 0.0}, "budget"),
    ],
)
def test_regmix_errors(mix_data, proxy, kwargs, msg) -> None:  # type: ignore[no-untyped-def]
    budget = kwargs.pop("budget", BUDGET)
    with pytest.raises(InvalidInput, match=msg):
        RegMix(budget, proxy=proxy, **kwargs).fit(mix_data[1])


# ----------------------------------------------------------------------- API


def test_optimize_mixture_dispatches_every_method(mix_data, proxy) -> None:  # type: ignore[no-untyped-def]
    data = mix_data[1]
    assert set(METHODS) == {"uniform", "ddo", "autoscale", "doremi", "regmix", "dml"}
    uni = optimize_mixture(data, method="uniform", budget=BUDGET)
    assert uni.weights == uniform_weights(data.domains) and uni.runs == []
    rm = optimize_mixture(
        data, method="regmix", budget=BUDGET, proxy=proxy, options={"n_runs": 5, "top_k": 3}
    )
    assert rm.method == "regmix" and rm.budget == BUDGET / 8 and len(rm.runs) == 5
    dml = optimize_mixture(data, method="dml", budget=BUDGET, proxy=proxy, options={"n_runs": 6})
    assert dml.method == "dml" and dml.budget == BUDGET / 8 and len(dml.runs) == 6
    with pytest.raises(InvalidInput, match="n_runs must be at least 6 for 3 domains"):
        optimize_mixture(data, method="dml", budget=BUDGET, proxy=proxy, options={"n_runs": 5})
    assert proxy_runs_needed("dml", 3) == 16
    with pytest.raises(InvalidInput, match="unknown method"):
        optimize_mixture(data, method="best", budget=BUDGET)
    with pytest.raises(InvalidInput, match="budget"):
        optimize_mixture(data, method="ddo", budget=float("nan"))
    with pytest.raises(InvalidInput, match="no domains"):
        uniform_weights([])


def test_train_with_weights_saves_a_loadable_model(mix_data, proxy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    tok, data = mix_data
    w = {"code": 0.5, "boiler": 0.25, "prose": 0.25}
    _model, res = train_with_weights(
        data, w, budget=BUDGET, proxy=proxy, eval_every=2, tokenizer=tok, output_dir=tmp_path
    )
    assert [h.step for h in res.history] == [2, 4, 6]
    assert set(res.final.losses) == set(data.domains)  # type: ignore[union-attr]
    # data_seed fixes the data sample; seed alone changes init and order
    _, same_data = train_with_weights(data, w, budget=BUDGET, proxy=proxy, seed=1, data_seed=0)
    _, again = train_with_weights(data, w, budget=BUDGET, proxy=proxy, seed=1, data_seed=0)
    assert same_data.train_loss == again.train_loss
    assert same_data.train_loss != res.train_loss
    loaded, ltok = load_model(tmp_path)
    assert ltok is not None and len(ltok) == len(tok)
    assert loaded.config.n_embd == proxy.model.n_embd
    with pytest.raises(InvalidInput, match="sum to 1"):
        train_with_weights(data, {"code": 0.5, "boiler": 0.5, "prose": 0.5}, budget=BUDGET)
    with pytest.raises(InvalidInput, match="missing"):
        train_with_weights(data, {"code": 1.0}, budget=BUDGET)
    with pytest.raises(InvalidInput, match="budget"):
        train_with_weights(data, w, budget=0)


def test_run_proxies_edge_cases(mix_data, proxy) -> None:  # type: ignore[no-untyped-def]
    assert run_proxies(mix_data[1], [], proxy) == []
    with pytest.raises(InvalidInput, match="unknown backend"):
        run_proxies(mix_data[1], [("x", [100, 100, 100])], proxy, backend="dask")


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("DATABAZAAR_TEST_RAY") != "1", reason="set DATABAZAAR_TEST_RAY=1 for Ray"
)
def test_ray_backend_matches_in_process(mix_data, proxy) -> None:  # type: ignore[no-untyped-def]
    import ray

    jobs = [("a", [96.0, 96.0, 96.0]), ("b", [192.0, 48.0, 48.0])]
    try:
        got = run_proxies(mix_data[1], jobs, proxy, backend="ray", n_jobs=2)
    finally:
        ray.shutdown()
    ref = run_proxies(mix_data[1], jobs, proxy, backend="processes", n_jobs=1)
    assert [g.average for g in got] == pytest.approx([r.average for r in ref], abs=1e-6)


# -------------------------------------------------------------------- result


def test_mixture_result_save_load_and_errors(ddo_fit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    res: MixtureResult = ddo_fit.result_
    path = res.save(tmp_path / "w.json")
    back = MixtureResult.load(path)
    assert back.weights == pytest.approx(res.weights) and back.method == "ddo"
    assert back.details["fits"].keys() == res.details["fits"].keys()
    plot_ddo_fits(back, tmp_path / "again.svg")
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"code": 0.2, "boiler": 0.3, "prose": 0.5}))
    assert MixtureResult.load(plain).weights["prose"] == 0.5
    with pytest.raises(NotFound, match="weights file not found"):
        MixtureResult.load(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(InvalidInput, match="not JSON"):
        MixtureResult.load(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(InvalidInput, match="no 'weights'"):
        MixtureResult.load(tmp_path / "list.json")
    (tmp_path / "str.json").write_text(json.dumps({"weights": {"a": "heavy"}}))
    with pytest.raises(InvalidInput, match="must be numbers"):
        MixtureResult.load(tmp_path / "str.json")
