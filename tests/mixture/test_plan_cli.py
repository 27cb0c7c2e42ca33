"""``databazaar mixture plan``: plan and buy from the command line; bad input exits 2."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from argon2 import PasswordHasher
from typer.testing import CliRunner

from databazaar.cli import app
from databazaar.core.config import get_settings
from databazaar.market.db import Database, upgrade
from databazaar.market.service import Market
from text_products import WORDS, seed_text_products  # type: ignore[import-not-found]

PASSWORD = "correct-horse-9"


@pytest.fixture
def market(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Market, str]]:
    monkeypatch.setenv("DATABAZAAR_HOME", str(tmp_path))
    monkeypatch.setenv("DATABAZAAR_SECRET_KEY", "plan-cli-secret-0123")
    get_settings.cache_clear()
    url = f"sqlite:///{tmp_path / 'm.db'}"
    db = Database.from_url(url)
    upgrade(db.engine)
    fast = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    m = Market(db, tmp_path, secret_key="plan-cli-secret-0123", password_hasher=fast)
    seller = m.create_account("seller", PASSWORD, "seller")
    buyer = m.create_account("buyer", PASSWORD, "buyer")
    seed_text_products(m, seller, buyer)
    yield m, url
    db.dispose()
    get_settings.cache_clear()


def _run(url: str, validation: Path, *extra: str) -> Any:
    args = ["mixture", "plan", str(validation), "--tokens", "20000", "--url", url]
    args += ["--user", "buyer", "--password", PASSWORD]
    for slug in WORDS:
        args += ["--slug", slug]
    return CliRunner().invoke(app, [*args, *extra])


def test_plan_cli_buys_one_order_per_product(market: tuple[Market, str], tmp_path: Path) -> None:
    m, url = market
    val = tmp_path / "val.jsonl"
    rng = np.random.default_rng(7)
    words = WORDS["recipes"] + WORDS["weather"]
    val.write_text(
        "".join(json.dumps({"text": " ".join(rng.choice(words, 120))}) + "\n" for _ in range(6))
    )
    res = _run(url, val, "--money", "5000", "--buy", "cli-plan", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["plan"]["total_minor"] == 4500 <= 5000
    assert sorted(s["slug"] for s in out["sales"]) == sorted(WORDS)
    assert m.account_by_name("buyer").balance_minor == 10_000 - 4500
    buyer = m.authenticate(m.login("buyer", PASSWORD).token)
    assert len(m.orders_for(buyer)) == 3


def test_plan_cli_bad_input_exits_2(market: tuple[Market, str], tmp_path: Path) -> None:
    m, url = market
    val = tmp_path / "val.csv"
    val.write_text("body\nrain and snow over the hills\n")
    res = _run(url, val, "--money", "5000", "--buy", "k")
    assert res.exit_code == 2
    assert "not the products' text column 'text'" in res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1
    val.write_text("text\nrain and snow over the hills\n")
    res = _run(url, val, "--money", "10", "--buy", "k")
    assert res.exit_code == 2 and "below the cheapest usable amount 1000" in res.output
    assert m.account_by_name("buyer").balance_minor == 10_000
