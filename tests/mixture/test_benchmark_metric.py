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


def test_report_states_the_verdict_honestly(bench) -> None:  # type: ignore[no-untyped-def]
    doms = ["a", "b"]
    methods = bench.METHOD_ORDER
    out = {
        "seeds": [0, 1, 2],
        "uniform_final_average_loss": 3.0,
        "steps_fraction_vs_uniform": {
            "uniform": 1.0,
            "doremi": 0.6,
            "regmix": None,
            "ddo": 0.8,
            "autoscale": 0.9,
        },
        "per_seed_steps_fraction_vs_uniform": {k: [0.5, None, 1.0] for k in methods},
        "final_average_loss": dict.fromkeys(methods, 3.0),
        "weights": {k: {"a": 0.5, "b": 0.5} for k in methods},
        "method_details": {k: {} for k in methods},
        "curves": {k: {"final_per_domain": {"a": 3.0, "b": 3.0}} for k in methods},
        "setup": {
            "domains": doms,
            "target_budget_tokens": 1000.0,
            "epochs": 4.0,
            "steps": 64,
            "model": {"n_layer": 2, "n_embd": 16},
            "vocab_size": 300,
            "block_size": 16,
            "eval_every": 4,
        },
        "timings_seconds": {"total": 1.0},
    }
    text = bench.render_markdown(out)
    assert "Acceptance NOT met" in text
    assert "A baseline wins: doremi is fastest (60%)" in text
    assert "| regmix | never | 50%, never, 100% |" in text
    out["steps_fraction_vs_uniform"]["ddo"] = 0.5
    text = bench.render_markdown(out)
    assert "Acceptance holds: ddo reaches uniform's final loss in 50% of the steps" in text
    assert "Fastest method: ddo (50%)" in text
    assert "- autoscale does not: it needs 90% of uniform's steps." in text
    assert "- ddo: 1 of 3 seeds reach uniform's final loss within 75%" in text
