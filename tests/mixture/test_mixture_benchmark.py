"""The reduced (CI) version of ``benchmarks/mixture.py``: every step runs, for real, at tiny size.

Checks what the full run's verdict rests on: AutoScale's weights are a valid simplex
point computed from the two small-budget DDO optima by the scaling rule, the distance to
direct DDO is the distance between the stored weight vectors, every CI is an interval
around its point estimate, and the weight-shift figure is drawn from the same numbers.
"""

from __future__ import annotations

import importlib.util
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from databazaar.mixture import autoscale_predict

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "mixture.py"


@pytest.fixture(scope="module")
def quick(tmp_path_factory):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("mixture_benchmark_quick", SCRIPT)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path_factory.mktemp("mixture")
    res = bench.main(["--quick", "--seeds", "0,1", "--n-jobs", "2", "--out", str(out)])
    return bench, res, out


@pytest.mark.slow
def test_quick_benchmark_autoscale_prediction_is_the_scaling_rule(quick) -> None:  # type: ignore[no-untyped-def]
    _, res, _ = quick
    doms = res["setup"]["domains"]
    T = res["setup"]["target_budget_tokens"]
    assert len(doms) == 4 and res["seeds"] == [0, 1]
    auto = np.array([res["weights"]["autoscale"][d] for d in doms])
    assert np.all(auto > 0) and auto.sum() == pytest.approx(1.0)
    q = res["method_details"]["autoscale"]["quantities_by_budget"]
    q1 = np.array([q[str(T / 4)][d] for d in doms])
    q2 = np.array([q[str(T / 2)][d] for d in doms])
    assert q1.sum() == pytest.approx(T / 4) and q2.sum() == pytest.approx(T / 2)
    pred = autoscale_predict(q1, q2, T)
    assert auto == pytest.approx(pred["weights"], abs=1e-12)
    assert res["method_details"]["autoscale"]["t"] == pytest.approx(pred["t"])
    # "reused" is the T/2 optimum, unchanged
    assert [res["weights"]["reused"][d] for d in doms] == pytest.approx((q2 / q2.sum()).tolist())
    direct = np.array([res["weights"]["ddo"][d] for d in doms])
    assert res["autoscale_vs_direct_ddo_distance"] == pytest.approx(np.abs(auto - direct).sum())
    assert res["method_details"]["ddo"]["seed"] == res["setup"]["search_seed"] == 1000


@pytest.mark.slow
def test_quick_benchmark_statistics_and_outputs(quick) -> None:  # type: ignore[no-untyped-def]
    bench, res, out = quick
    methods = list(bench.METHOD_ORDER)
    assert set(res["steps_fraction_vs_uniform"]) == set(methods) == set(res["steps_fraction_ci"])
    assert res["steps_fraction_vs_uniform"]["uniform"] == pytest.approx(1.0)
    for k in methods:
        f, (lo, hi) = res["steps_fraction_vs_uniform"][k], res["steps_fraction_ci"][k]
        w = res["weights"][k]
        assert sum(w.values()) == pytest.approx(1.0) and min(w.values()) >= 0
        finals = res["per_seed_final_average_loss"][k]
        assert len(finals) == 2 and all(np.isfinite(finals))
        assert res["final_average_loss"][k] == pytest.approx(np.mean(finals))
        d_lo, d_hi = res["final_loss_diff_vs_uniform_ci"][k]
        assert d_lo - 1e-12 <= res["final_loss_diff_vs_uniform"][k] <= d_hi + 1e-12
        if f is not None and lo is not None:
            assert lo <= f + 1e-12
        if f is not None and hi is not None:
            assert f <= hi + 1e-12
        if hi is not None:  # a finite upper end means the bar was reached in every resample
            assert f is not None
    u = np.array(res["per_seed_final_average_loss"]["uniform"])
    for k in methods:
        diff = np.array(res["per_seed_final_average_loss"][k]) - u
        assert res["final_loss_diff_vs_uniform"][k] == pytest.approx(diff.mean())
    md = (out / "mixture_quick.md").read_text()
    assert "**Claim tested**" in md and ("HOLDS:" in md or "FAILS:" in md)
    assert "`autoscale_vs_direct_ddo_distance` (L1)" in md
    saved = json.loads((out / "mixture_quick.json").read_text())
    assert saved["steps_fraction_ci"] == res["steps_fraction_ci"]
    assert len(saved["load_average"]["start"]) == 3
    # the weight-shift figure: one line per domain, the title names what is drawn
    svg = ET.parse(out / res["figure"])
    text = ET.tostring(svg.getroot(), encoding="unicode")
    assert "Optimal weight per domain vs budget" in text
    for d in res["setup"]["domains"]:
        assert d in text
