"""The steps-to-reach metric and the report of ``benchmarks/mixture.py``."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "mixture.py"


@pytest.fixture(scope="module")
def bench():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("mixture_benchmark", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_steps_to_reach_interpolates_between_evaluations(bench) -> None:  # type: ignore[no-untyped-def]
    steps = np.array([10, 20, 30, 40])
    curve = np.array([5.0, 4.0, 3.0, 2.5])
    # 3.5 lies half-way between the evaluations at 20 (4.0) and 30 (3.0)
    assert bench.steps_to_reach(steps, curve, 3.5) == pytest.approx(25.0)
    assert bench.steps_to_reach(steps, curve, 3.0) == pytest.approx(30.0)
    assert bench.steps_to_reach(steps, curve, 6.0) == pytest.approx(10.0)
    assert bench.steps_to_reach(steps, curve, 2.0) is None
    # a curve that dips below the target and comes back counts at its first crossing
    bumpy = np.array([5.0, 3.0, 3.4, 3.2])
    assert bench.steps_to_reach(steps, bumpy, 3.2) == pytest.approx(19.0)


def test_paired_fraction_and_its_bootstrap_ci(bench) -> None:  # type: ignore[no-untyped-def]
    steps = np.array([10, 20, 30, 40])
    uni = np.array([[5.0, 4.0, 3.5, 3.0], [5.0, 4.2, 3.7, 3.2]])  # final mean 3.1
    fast = uni - 0.5  # reaches 3.1 between step 20 (3.6) and 30 (3.1): at 30
    assert bench.fraction_of_uniform(steps, fast, uni) == pytest.approx(30 / 40)
    assert bench.fraction_of_uniform(steps, uni + 0.1, uni) == float("inf")
    assert bench.fraction_of_uniform(steps, uni, uni) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    lo, hi = bench.paired_fraction_ci(steps, fast, uni, n_boot=300, rng=rng)
    assert lo is not None and hi is not None and lo <= 0.75 <= hi < 1.0
    # a method that reaches the bar on one seed only: the upper end is "never"
    mixed = np.vstack([fast[0], uni[1] + 0.3])
    lo, hi = bench.paired_fraction_ci(steps, mixed, uni, n_boot=300, rng=rng)
    assert lo is not None and hi is None
    assert bench.weight_distances({"a": 0.5, "b": 0.5}, {"a": 0.2, "b": 0.8}) == pytest.approx(
        {"l1": 0.6, "l2": np.sqrt(0.18), "max": 0.3}
    )


def _result(bench, *, auto_ci_hi: float | None, auto_reused_ci: list[float]):  # type: ignore[no-untyped-def]
    doms = ["a", "b"]
    methods = bench.METHOD_ORDER
    w = {k: {"a": 0.5, "b": 0.5} for k in methods}
    w["ddo"] = {"a": 0.7, "b": 0.3}
    w["autoscale"] = {"a": 0.65, "b": 0.35}
    return {
        "seeds": [0, 1, 2, 3, 4],
        "uniform_final_average_loss": 3.0,
        "steps_fraction_vs_uniform": dict.fromkeys(methods, 0.9)
        | {"autoscale": 0.7, "regmix": None},
        "steps_fraction_ci": {k: [0.8, 1.0] for k in methods} | {"autoscale": [0.6, auto_ci_hi]},
        "per_seed_steps_fraction_vs_uniform": {k: [0.5, None, 1.0, 0.9, 0.8] for k in methods},
        "final_average_loss": dict(
            zip(methods, [3.0, 2.99, 3.01, 3.02, 2.97, 2.95, 2.94], strict=True)
        ),
        "final_loss_diff_vs_uniform": dict.fromkeys(methods, -0.01),
        "final_loss_diff_vs_uniform_ci": {k: [-0.02, 0.0] for k in methods},
        "final_loss_paired_diffs": {
            "autoscale-reused": {"mean": -0.02, "ci": auto_reused_ci},
            "autoscale-ddo": {"mean": 0.01, "ci": [-0.01, 0.03]},
            "ddo-reused": {"mean": -0.03, "ci": [-0.05, -0.01]},
        },
        "final_per_domain_loss": {k: {"a": 3.0, "b": 3.0} for k in methods},
        "weights": w,
        "autoscale_vs_direct_ddo_distance": 0.1,
        "weight_distances_to_direct_ddo": {
            "autoscale": {"l1": 0.1, "l2": 0.07, "max": 0.05},
            "reused": {"l1": 0.4, "l2": 0.28, "max": 0.2},
            "uniform": {"l1": 0.4, "l2": 0.28, "max": 0.2},
        },
        "method_details": {k: {} for k in methods}
        | {
            "autoscale": {
                "weights_by_budget": {
                    "250": w["uniform"],
                    "500": w["uniform"],
                    "1000": w["autoscale"],
                }
            }
        },
        "setup": {
            "domains": doms,
            "target_budget_tokens": 1000.0,
            "epochs": 2.0,
            "steps": 64,
            "model": {"n_layer": 2, "n_embd": 16},
            "train": {"batch_size": 4, "lr": 0.01},
            "vocab_size": 300,
            "block_size": 16,
            "eval_every": 4,
            "val_blocks_per_domain": {"a": 8, "b": 8},
            "search_seed": 1000,
            "dev_seeds": [100, 101],
        },
        "timings_seconds": {"total": 1.0, "autoscale_search": 2.0, "ddo_T": 5.0},
        "load_average": {"start": [1.0, 1.0, 1.0], "end": [2.0, 2.0, 2.0]},
        "figure": "w.svg",
    }


def test_report_states_the_verdict_honestly(bench) -> None:  # type: ignore[no-untyped-def]
    text = bench.render_markdown(_result(bench, auto_ci_hi=0.95, auto_reused_ci=[-0.03, -0.01]))
    assert (
        "HOLDS: AutoScale's predicted weights beat uniform with the CI below 1.0 "
        "(70%, CI [60%, 95%])" in text
    )
    assert (
        "at most 72% of uniform's steps): held at the point estimate (70%); the CI reaches above it"
        in text
    )
    assert "better (CI below 0)" in text
    assert (
        "| regmix | RegMix, 16 runs at T/8 | never [80%, 100%] | 50%, never, 100%, 90%, 80% |"
        in text
    )
    assert (
        "closer to the direct DDO optimum at T than the reused T/2 optimum (L1 0.100 vs 0.400)"
        in text
    )
    assert "lower than doremi, regmix, dml" in text
    assert "| AutoScale prediction | 1,000 | 0.650 | 0.350 |" in text
    assert "| DDO optimum (direct) | 1,000 | 0.700 | 0.300 |" in text
    assert "dev seeds [100, 101]" in text and "at start 1.00, 1.00, 1.00" in text
    text = bench.render_markdown(_result(bench, auto_ci_hi=None, auto_reused_ci=[-0.01, 0.02]))
    assert (
        "FAILS: AutoScale's predicted weights do not beat uniform with the CI below 1.0 "
        "(70%, CI [60%, never])" in text
    )
    assert "no difference resolved (CI contains 0)" in text
