"""The economics walk-through of ``databazaar demo`` on the market demo's store."""

from __future__ import annotations

from pathlib import Path

import pytest

from databazaar.demo.economics import run_economics_demo


@pytest.mark.slow
def test_economics_demo(tmp_path: Path) -> None:
    lines: list[str] = []
    out = run_economics_demo(tmp_path, lines.append)  # runs the market demo first
    assert out["ranking"][-1] == "iris-quicklabel"
    assert out["ranking"][0] == "iris-extended"
    assert sum(out["split"].values()) == out["split_total_minor"]
    assert out["split"]["eve"] == 0 and abs(out["split"]["cora"] - out["split"]["dan"]) < 100
    assert out["ledger_ok"] and 2 < out["dp_mean"] < 6
    assert any("ledger verify: OK" in line for line in lines)
    again = run_economics_demo(tmp_path, lines.append)  # reruns on a fresh store
    assert again["price_minor"] == out["price_minor"]
