"""`databazaar demo` runs every part of the tour on a fresh SQLite store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
def test_demo_command_end_to_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, air_screener: Any
) -> None:
    """The tour runs end to end; its listing gate holds the planted forum dump.

    The demo keeps its screener under ``$DATABAZAAR_HOME/cache``: the session's trained
    screener is put there so the test does not train another one.
    """
    import shutil

    from databazaar.core.config import get_settings

    home = tmp_path / "data-home"
    cached = Path(air_screener[1].cache_path_)
    (home / "cache").mkdir(parents=True)
    shutil.copy(cached, home / "cache" / cached.name)
    monkeypatch.setenv("DATABAZAAR_HOME", str(home))
    get_settings.cache_clear()
    try:
        res = CliRunner().invoke(app, ["demo", "--home", str(tmp_path / "demo")])
    finally:
        monkeypatch.delenv("DATABAZAAR_HOME")
        get_settings.cache_clear()
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "listing gate: on" in text
    assert text.count("): cleared") == 3
    assert "'forum-dump'" in text and "): held (" in text and "Criminal Activities" in text
    assert "tries to buy 'forum-dump': refused (Conflict: " in text
    assert "1. Valuation" in text and "2. Market" in text and "3. Market economics" in text
    assert "ledger verify: OK" in text
    # the demo seeds the data home it was given, and says how to use it
    assert (tmp_path / "demo" / "databazaar.db").is_file()
    assert f"databazaar --home {tmp_path / 'demo'} ledger verify" in text


def test_demo_gate_falls_back_to_tfidf_on_a_core_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """README command 1 installs no `lm` extra: the gate must screen with TF-IDF, not fail."""
    from databazaar.demo import market as demo_market

    monkeypatch.setenv("DATABAZAAR_HOME", str(tmp_path))
    monkeypatch.setattr(demo_market, "_minilm_installed", lambda: False)
    said: list[str] = []
    out = demo_market.run_market_demo(tmp_path, said.append)
    assert any("TF-IDF screener" in line and "databazaar[lm]" in line for line in said)
    assert out["held_refusal"] is not None and "held for risk review" in out["held_refusal"]
    assert "error" not in " ".join(said).lower()
