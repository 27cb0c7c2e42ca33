"""`databazaar demo` runs every part of the tour on a fresh SQLite store."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from databazaar.cli import app
from databazaar.demo import valuation_tour


def test_valuation_tour_finds_the_flipped_labels() -> None:
    lines: list[str] = []
    out = valuation_tour(lines.append)
    assert out["auroc"] > 0.95
    assert out["bottom_k_f1"] > 0.8
    assert out["accuracy_after"] >= out["accuracy_before"] - 0.01
    assert any("exact KNN-Shapley (K=5)" in line for line in lines)


@pytest.mark.slow
def test_demo_command_end_to_end(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["demo", "--home", str(tmp_path)])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "1. Valuation" in text and "2. Market" in text and "3. Market economics" in text
    assert "ledger verify: OK" in text
    assert (tmp_path / "market-demo" / "databazaar.db").is_file()
