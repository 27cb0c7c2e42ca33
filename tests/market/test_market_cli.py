"""The market's CLI pieces: the demo walk-through and ``serve`` as a real process."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import httpx
import pytest

from databazaar.demo.market import run_market_demo


def test_demo_walks_a_purchase_end_to_end(tmp_path: Path) -> None:
    lines: list[str] = []
    out = run_market_demo(tmp_path, lines.append, gate=None)  # the gate: tests/test_demo.py
    assert out["ledger_ok"] is True and out["replayed"] is True
    # 12.50 + 20.00, fees floor(5%): 62 + 100
    assert (out["total_minor"], out["fee_minor"]) == (3250, 162)
    assert out["balances"] == {
        "carol": 6750,
        "ada-labs": 1250 - 62,
        "bayes-data": 2000 - 100,
        "@market-fee": 162,
    }
    assert out["search_hits"] == ["iris-measurements", "iris-extended"]
    assert out["ledger_rows"] == 2 + 4  # deposit + purchase(buyer, 2 sellers, fee)
    assert any("replayed=True" in line for line in lines)
    assert any(line.startswith("ledger verify: OK") for line in lines)
    # rerunning starts from a fresh store
    again = run_market_demo(tmp_path, lambda _line: None, gate=None)
    assert again["order_id"] == 1 and again["balances"] == out["balances"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_runs_the_api_on_the_sqlite_default(tmp_path: Path, http_subprocess) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL",
                                                           "DATABAZAAR_DATABASE_URL")}  # fmt: skip
    env["DATABAZAAR_HOME"] = str(tmp_path)
    code = (
        f"from databazaar.server.app import serve; serve('127.0.0.1', {port}, log_level='warning')"
    )
    _, r = http_subprocess(code, f"http://127.0.0.1:{port}/api/health", env)
    assert r.json() == {"status": "ok", "database": "sqlite"}
    assert httpx.get(f"http://127.0.0.1:{port}/docs", timeout=5).status_code == 200
    assert (tmp_path / "databazaar.db").is_file()


def test_db_upgrade_follows_database_url_and_home(tmp_path: Path, monkeypatch) -> None:
    """Without --url the store comes from the settings: DATABAZAAR_HOME, else DATABASE_URL."""
    from typer.testing import CliRunner

    from databazaar.cli.market import db_app
    from databazaar.core.config import get_settings
    from databazaar.market.db import head_revision

    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("DATABAZAAR_DATABASE_URL", raising=False)
    monkeypatch.setenv("DATABAZAAR_HOME", str(tmp_path))
    get_settings.cache_clear()
    try:
        res = CliRunner().invoke(db_app, ["upgrade"])
        assert res.exit_code == 0, res.output
        assert f"sqlite:///{tmp_path / 'databazaar.db'} is at revision {head_revision()}" in (
            res.output
        )
        assert (tmp_path / "databazaar.db").is_file()
    finally:
        get_settings.cache_clear()


@pytest.mark.postgres
def test_db_upgrade_on_postgres_from_database_url(postgres_schema, monkeypatch) -> None:
    from urllib.parse import quote

    from typer.testing import CliRunner

    from databazaar.cli.market import db_app
    from databazaar.core.config import get_settings
    from databazaar.market.db import head_revision

    # a plain postgresql:// URL, as deployment tools set it, is mapped to psycopg 3
    plain = postgres_schema.url.replace("postgresql+psycopg://", "postgresql://")
    url = f"{plain}?options={quote('-csearch_path=' + postgres_schema.name)}"
    monkeypatch.delenv("DATABAZAAR_DATABASE_URL", raising=False)
    monkeypatch.setenv("DATABASE_URL", url)
    get_settings.cache_clear()
    try:
        res = CliRunner().invoke(db_app, ["upgrade"])
        assert res.exit_code == 0, res.output
        assert "postgresql+psycopg://" in res.output and head_revision() in res.output
    finally:
        get_settings.cache_clear()
    from sqlalchemy import create_engine, text

    engine = create_engine(postgres_schema.url)
    with engine.connect() as conn:
        names = (
            conn.execute(
                text("SELECT table_name FROM information_schema.tables WHERE table_schema = :s"),
                {"s": postgres_schema.name},
            )
            .scalars()
            .all()
        )
    engine.dispose()
    assert {"accounts", "ledger_entries", "search_docs", "alembic_version"} <= set(names)
