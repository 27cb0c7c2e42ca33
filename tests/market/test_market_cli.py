"""The market's CLI pieces: the demo walk-through and ``serve`` as a real process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from databazaar.market.cli import run_market_demo


def test_demo_walks_a_purchase_end_to_end(tmp_path: Path) -> None:
    lines: list[str] = []
    out = run_market_demo(tmp_path, lines.append)
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
    again = run_market_demo(tmp_path, lambda _line: None)
    assert again["order_id"] == 1 and again["balances"] == out["balances"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_runs_the_api_on_the_sqlite_default(tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL",
                                                           "DATABAZAAR_DATABASE_URL")}  # fmt: skip
    env["DATABAZAAR_HOME"] = str(tmp_path)
    code = (
        f"from databazaar.market.cli import serve; serve('127.0.0.1', {port}, log_level='warning')"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)
        assert r.json() == {"status": "ok", "database": "sqlite"}
        assert httpx.get(f"http://127.0.0.1:{port}/docs", timeout=5).status_code == 200
        assert (tmp_path / "databazaar.db").is_file()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
