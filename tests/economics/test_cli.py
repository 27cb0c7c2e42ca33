"""``databazaar econ`` commands, mounted the way the top-level CLI mounts them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from databazaar.cli import app as root_app
from databazaar.core.config import get_settings
from databazaar.market.service import Market

from .conftest import PASSWORD, ListFn, task_frame

runner = CliRunner()


@pytest.fixture
def cli(market: Market, monkeypatch: pytest.MonkeyPatch) -> Iterator[typer.Typer]:
    monkeypatch.setenv("DATABAZAAR_HOME", str(market.home))
    monkeypatch.setenv("DATABAZAAR_SECRET_KEY", "k" * 32)
    monkeypatch.setenv("DATABASE_URL", market.db.engine.url.render_as_string(hide_password=False))
    get_settings.cache_clear()
    yield root_app
    get_settings.cache_clear()


def test_split_on_files(tmp_path: Path) -> None:
    good = task_frame(0, 100).assign(source="ann")
    rng = np.random.default_rng(0)
    noise = pd.DataFrame(rng.normal(0, 3, (100, 5)), columns=[f"f{i}" for i in range(5)])
    noise = noise.assign(label=rng.choice(["yes", "no"], 100), source="nat")
    data, val = tmp_path / "bundle.csv", tmp_path / "val.csv"
    pd.concat([good, good.assign(source="bob"), noise]).to_csv(data, index=False)
    task_frame(2000, 60).to_csv(val, index=False)
    app = root_app
    args = [
        "econ",
        "split",
        str(data),
        str(val),
        "--revenue",
        "10001",
        "--group",
        "source",
        "--label",
        "label",
    ]
    r = runner.invoke(app, [*args, "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    amounts = {s["group"]: s["amount_minor"] for s in out["shares"]}
    assert sum(amounts.values()) == 10001 and abs(amounts["ann"] - amounts["bob"]) <= 1
    assert amounts["nat"] == 0
    r = runner.invoke(app, [*args, "--method", "ads", "--order", "ann,bob,nat"])
    assert r.exit_code == 0 and "total 10001 = revenue 10001" in r.output
    r = runner.invoke(app, [*args[:-2], "--label", "nope"])
    assert r.exit_code == 2 and "has no column 'nope'" in r.output


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
def test_market_commands(
    cli: typer.Typer, market: Market, list_table: ListFn, tmp_path: Path
) -> None:
    sam = market.create_account("sam", PASSWORD, "seller")
    bea = market.create_account("bea", PASSWORD, "buyer")
    market.deposit(bea.id, 50_000)
    df = task_frame(0, 120)
    df["age"] = np.arange(120) % 70
    list_table(sam, "good-data", df, price=3000)
    list_table(sam, "flipped-data", task_frame(500, 120, flip=True), price=500)
    val = tmp_path / "val.csv"
    task_frame(2000, 40).to_csv(val, index=False)
    svg = tmp_path / "curve.svg"
    r = runner.invoke(cli, ["econ", "rank", str(val), "--label", "label", "--svg", str(svg)])
    assert r.exit_code == 0, r.output
    lines = [ln for ln in r.output.splitlines() if ln.startswith("| 1 ") or ln.startswith("| 2 ")]
    assert "good-data" in lines[0] and "flipped-data" in lines[1]
    assert svg.read_text().count("<svg") == 1

    env = {"DATABAZAAR_PASSWORD": PASSWORD}
    r = runner.invoke(
        cli,
        [
            "econ",
            "pricing",
            "good-data",
            "model",
            '{"curve": [[0.1, 2000], [1.0, 500]], "label_column": "label"}',
            "--user",
            "sam",
        ],
        env=env,
    )
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["econ", "quote", "good-data", "--request", '{"variance": 1.0}'])
    assert r.exit_code == 0 and json.loads(r.output)["price_minor"] == 500
    r = runner.invoke(
        cli,
        [
            "econ",
            "buy",
            "good-data",
            "--key",
            "c-1",
            "--user",
            "bea",
            "--request",
            '{"variance": 1.0}',
        ],
        env=env,
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["deliverable"]["model"]["variance"] == 1.0
    r = runner.invoke(
        cli,
        ["econ", "buy", "good-data", "--key", "c-2", "--user", "bea", "--request", "{bad"],
        env=env,
    )
    assert r.exit_code == 2 and "not valid JSON" in r.output
    r = runner.invoke(
        cli,
        [
            "econ",
            "buy",
            "good-data",
            "--key",
            "c-3",
            "--user",
            "bea",
            "--password",
            "wrong-password",
        ],
    )
    assert r.exit_code == 5

    from databazaar.market.economics import Economics

    Economics(market).offer_dp(sam, "good-data", 0.3, {"age": {"bounds": [0, 100]}})
    r = runner.invoke(
        cli,
        [
            "econ",
            "dp-query",
            "good-data",
            "mean",
            "--column",
            "age",
            "--epsilon",
            "0.25",
            "--user",
            "bea",
        ],
        env=env,
    )
    assert r.exit_code == 0 and json.loads(r.output)["epsilon_remaining"] == pytest.approx(0.05)
    r = runner.invoke(
        cli,
        ["econ", "dp-query", "good-data", "count", "--epsilon", "0.1", "--user", "bea"],
        env=env,
    )
    assert r.exit_code == 5 and "only 0.05" in r.output
    assert market.verify_ledger().ok
