"""The economics routes over HTTP (FastAPI TestClient on a real market: SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient

from databazaar.core.config import Settings
from databazaar.market.service import Market
from databazaar.server.api import economics
from databazaar.server.app import create_app

from .conftest import PASSWORD, ListFn, task_frame


@pytest.fixture
def client(market: Market, tmp_path: Path) -> TestClient:
    mount = APIRouter(prefix="/api")
    mount.include_router(economics.router)
    app = create_app(Settings(home=tmp_path / "home"), market=market, extra_routers=[mount])
    return TestClient(app)


def _auth(market: Market, name: str, role: str, funds: int = 0) -> dict[str, str]:
    acc = market.create_account(name, PASSWORD, role)
    if funds:
        market.deposit(acc.id, funds)
    return {"Authorization": f"Bearer {market.login(name, PASSWORD).token}"}


def test_http_flow(client: TestClient, market: Market, list_table: ListFn) -> None:
    sell = _auth(market, "sam", "seller")
    buy = _auth(market, "bea", "buyer", 100_000)
    sam = market.account_by_name("sam")
    df = task_frame(0, 90)
    df["region"] = np.array(["n", "s", "e"])[np.arange(90) % 3]
    list_table(sam, "regional", df, price=4000)
    list_table(sam, "flipped", task_frame(300, 90, flip=True), price=900)

    assert client.get("/api/econ/mechanisms").json() == [
        "auction",
        "model",
        "posted",
        "query",
        "value",
    ]
    assert client.get("/api/econ/products/regional/pricing").json()["mechanism"] == "posted"
    r = client.put(
        "/api/econ/products/regional/pricing",
        headers=buy,
        json={"mechanism": "posted", "config": {"price_minor": 1}},
    )
    assert r.status_code == 403 and r.json()["error"] == "forbidden"
    r = client.put(
        "/api/econ/products/regional/pricing",
        headers=sell,
        json={
            "mechanism": "query",
            "config": {"price_points": {"region": {"n": 700, "s": 500, "e": 600}}},
        },
    )
    assert r.status_code == 200, r.text
    q = {"query": {"where": {"region": ["s"]}}}
    assert (
        client.post("/api/econ/products/regional/quote", json={"request": q}).json()["price_minor"]
        == 500
    )
    r = client.post(
        "/api/econ/products/regional/purchase",
        headers=buy,
        json={"request": q, "idempotency_key": "h-1"},
    )
    assert r.status_code == 201 and len(r.json()["rows"]) == 30
    sale_id = r.json()["sale_id"]
    assert len(client.get(f"/api/econ/sales/{sale_id}", headers=buy).json()["rows"]) == 30
    assert client.get(f"/api/econ/sales/{sale_id}", headers=sell).status_code == 200
    r = client.post(
        "/api/econ/products/regional/purchase", json={"request": q, "idempotency_key": "h-2"}
    )
    assert r.status_code == 401
    r = client.post("/api/econ/products/regional/quote", json={"request": {"query": {"bad": 1}}})
    assert r.status_code == 422 and r.json()["error"] == "invalid_input"

    val = task_frame(2000, 40).to_dict(orient="records")
    r = client.post(
        "/api/econ/search/value",
        headers=buy,
        json={"validation": val, "label_column": "label", "svg": True},
    )
    body = r.json()
    assert r.status_code == 200, r.text
    assert body["products"][0]["slug"] == "regional" and body["products"][-1]["slug"] == "flipped"
    assert "<svg" in body["removal_curve_svg"]

    r = client.put(
        "/api/econ/products/flipped/dp",
        headers=sell,
        json={"epsilon_total": 0.5, "columns": {"f0": {"bounds": [-5, 5]}}},
    )
    assert r.status_code == 200 and r.json()["epsilon_remaining"] == 0.5
    r = client.post(
        "/api/econ/products/flipped/dp/query",
        headers=buy,
        json={"statistic": "mean", "column": "f0", "epsilon": 0.4},
    )
    assert r.status_code == 200 and r.json()["epsilon_remaining"] == pytest.approx(0.1)
    r = client.post(
        "/api/econ/products/flipped/dp/query",
        headers=buy,
        json={"statistic": "count", "epsilon": 0.2},
    )
    assert r.status_code == 403 and r.json()["error"] == "budget_exceeded"
    assert client.get("/api/econ/products/flipped/dp").json()["n_releases"] == 1

    r = client.post("/api/econ/products/flipped/auction", headers=sell, json={"reserve_minor": 300})
    assert r.status_code == 201
    assert (
        client.post(
            "/api/econ/products/flipped/bids", headers=buy, json={"amount_minor": 800}
        ).status_code
        == 201
    )
    r = client.post("/api/econ/products/flipped/auction/close", headers=sell)
    assert r.status_code == 200 and r.json()["outcome"]["price_minor"] == 300
    assert client.get("/api/econ/products/flipped/valuation").status_code == 404
    assert client.get("/api/econ/products/flipped/splits", headers=sell).json() == []
    assert market.verify_ledger().ok


def test_http_bundle_and_splits(client: TestClient, market: Market, list_table: ListFn) -> None:
    owner = _auth(market, "coop", "seller")
    _auth(market, "ann", "seller")
    bob = _auth(market, "bob", "seller")
    buy = _auth(market, "bea", "buyer", 100_000)
    frame = pd.concat(
        [task_frame(0, 100).assign(src="ann"), task_frame(100, 100, flip=True).assign(src="bob")]
    )
    list_table(market.account_by_name("coop"), "coop-data", frame, price=2000)
    body = {
        "group_column": "src",
        "label_column": "label",
        "contributors": {"ann": "ann", "bob": "bob"},
        "reference": task_frame(2000, 40).to_dict(orient="records"),
    }
    r = client.put("/api/econ/products/coop-data/bundle", headers=bob, json=body)
    assert r.status_code == 403
    r = client.put(
        "/api/econ/products/coop-data/bundle", headers=owner, json={**body, "method": "lottery"}
    )
    assert r.status_code == 422 and "unknown allocation method" in r.json()["message"]
    r = client.put("/api/econ/products/coop-data/bundle", headers=owner, json=body)
    assert r.status_code == 200, r.text
    assert (
        client.get("/api/econ/products/coop-data/valuation").json()["digest"] == r.json()["digest"]
    )
    r = client.post(
        "/api/econ/products/coop-data/purchase", headers=buy, json={"idempotency_key": "b1"}
    )
    assert r.status_code == 201
    shares = {s["group"]: s["amount_minor"] for s in r.json()["splits"][0]["shares"]}
    assert shares == {"ann": 1900, "bob": 0}  # bob's flipped labels hurt the task
    got = client.get("/api/econ/products/coop-data/splits", headers=bob).json()
    assert got[0]["shares"] == r.json()["splits"][0]["shares"]
    assert client.get("/api/econ/products/coop-data/splits", headers=buy).status_code == 403
