"""Enriched derivatives: created through the API, listed with provenance, bought, split."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from databazaar.core.config import Settings
from databazaar.market.econ_models import EconDerivative, EconSplit
from databazaar.market.economics import Economics
from databazaar.market.models import LedgerEntry, Product
from databazaar.market.schemas import AccountOut
from databazaar.market.service import Market
from databazaar.server.api import economics
from databazaar.server.app import create_app

from .conftest import PASSWORD, ListFn, task_frame


def _client(market: Market, tmp_path: Path, backend: str | None) -> TestClient:
    mount = APIRouter(prefix="/api")
    mount.include_router(economics.router)
    settings = Settings(home=tmp_path / "home", enrich_backend=backend)
    return TestClient(create_app(settings, market=market, extra_routers=[mount]))


def _auth(market: Market, name: str, role: str, funds: int = 0) -> dict[str, str]:
    acc = market.create_account(name, PASSWORD, role)
    if funds:
        market.deposit(acc.id, funds)
    return {"Authorization": f"Bearer {market.login(name, PASSWORD).token}"}


def _list_jsonl(
    market: Market, seller: AccountOut, slug: str, rows: list[dict], price: int
) -> None:
    market.create_product(seller, slug, slug.replace("-", " ").title())
    body = "".join(json.dumps(r) + "\n" for r in rows).encode()
    ver = market.add_version(
        seller, slug, io.BytesIO(body), f"{slug}.jsonl", {"license": "CC-BY-4.0", "task": "sft"}
    )
    market.publish(seller, slug, ver.number)
    market.set_listing(seller, slug, price)


def _sale_credits(market: Market) -> dict[tuple[int, str], int]:
    with market.db.read() as s:
        out: dict[tuple[int, str], int] = {}
        for row in s.scalars(select(LedgerEntry).where(LedgerEntry.kind == "sale")):
            out[(row.account_id, row.memo)] = (
                out.get((row.account_id, row.memo), 0) + row.amount_minor
            )
    return out


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
def test_enriched_derivative_created_listed_bought_and_split(
    market: Market, tmp_path: Path, list_table: ListFn
) -> None:
    """A co-op's bundle of Q&A rows (ann's and bob's) is enriched by the co-op; a buyer
    buys the derivative; 40% of the seller side goes to ann and bob by their values."""
    from databazaar.lm.tasks import generate_tasks

    client = _client(market, tmp_path, "rule-teacher")
    coop = _auth(market, "coop", "seller")
    _auth(market, "ann", "seller")
    bob = _auth(market, "bob", "seller")
    carol = _auth(market, "carol", "buyer", 10_000)
    qs = generate_tasks(["multiple_choice"], n_per_family=160, random_state=3)
    noise = task_frame(300, 80).assign(src="bob")
    noise["label"] = np.random.default_rng(0).permutation(noise["label"].to_numpy())
    frame = pd.concat([task_frame(0, 80).assign(src="ann"), noise], ignore_index=True)
    frame["prompt"] = [e.prompt for e in qs]
    frame["completion"] = [e.answer for e in qs]
    list_table(market.account_by_name("coop"), "coop-qa", frame, price=1000)
    r = client.put(
        "/api/econ/products/coop-qa/bundle",
        headers=coop,
        json={
            "group_column": "src",
            "label_column": "label",
            "contributors": {"ann": "ann", "bob": "bob"},
            "reference": task_frame(2000, 40).to_dict(orient="records"),
            "method": "exact",
            "k": 3,
        },
    )
    assert r.status_code == 200, r.text
    body = {"slug": "coop-qa-dipt", "method": "dipt", "price_minor": 2000, "source_share_bps": 4000}

    r = client.post("/api/econ/products/coop-qa/derivatives", headers=bob, json=body)
    assert r.status_code == 403 and "buy the product" in r.json()["hint"]  # not bob's product
    r = client.post("/api/econ/products/coop-qa/derivatives", headers=carol, json=body)
    assert r.status_code == 403  # buyers do not sell
    r = client.post(
        "/api/econ/products/coop-qa/derivatives",
        headers=coop,
        json={**body, "method": "rationales"},
    )
    assert r.status_code == 422 and "prompt+chosen+rejected" in r.json()["message"]
    r = client.post(
        "/api/econ/products/coop-qa/derivatives",
        headers=coop,
        json={**body, "parameters": {"temperature": 2}},
    )
    assert r.status_code == 422 and "unknown parameter" in r.json()["message"]

    r = client.post("/api/econ/products/coop-qa/derivatives", headers=coop, json=body)
    assert r.status_code == 201, r.text
    d = r.json()
    assert d["source_slug"] == "coop-qa" and d["source_version"] == 1 and d["rows"] == 160
    assert d["method"] == "dipt" and d["generator"] == "rule-teacher"
    assert d["parameters"] == {"max_new_tokens": 96} and d["source_share_bps"] == 4000
    card = market.get_version("coop-qa-dipt", 1)
    for part in (
        "'coop-qa'",
        "version 1",
        "Method: dipt",
        "Generator model: rule-teacher",
        '"max_new_tokens": 96',
        "40% of the seller's revenue",
    ):
        assert part in card.provenance
    assert card.tags == ["dipt", "enriched"]
    assert client.get("/api/econ/products/coop-qa-dipt/derivative").json() == d
    assert "coop-qa-dipt" in [h.slug for h in market.search(task="classification").hits]
    rows = Economics(market).table("coop-qa-dipt")
    first = rows.iloc[0]
    assert first["completion"].endswith(f"Answer: {qs[0].answer}")
    assert first["completion"].count(" is a ") == 4  # every option's perspective
    r = client.post("/api/econ/products/coop-qa/derivatives", headers=coop, json=body)
    assert r.status_code == 409  # the slug is taken now

    before = _sale_credits(market)
    r = client.post(
        "/api/econ/products/coop-qa-dipt/purchase", headers=carol, json={"idempotency_key": "c"}
    )
    assert r.status_code == 201, r.text
    after = _sale_credits(market)
    new = {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}
    per: dict[str, int] = {}
    for (acc, _), v in new.items():
        per[market.get_account(acc).username] = per.get(market.get_account(acc).username, 0) + v
    # price 2000, fee 5% = 100, seller side 1900: 40% (760) to the source's contributors
    assert per["coop"] == 1140
    assert per.get("ann", 0) + per.get("bob", 0) == 760
    assert per["ann"] > per.get("bob", 0)  # split by the bundle's valuation (bob: noise)
    assert any("derivative of coop-qa" in memo for (_, memo) in new)
    assert market.verify_ledger().ok


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
def test_failing_backend_or_none_writes_nothing(market: Market, tmp_path: Path) -> None:
    rows = [{"prompt": "What is 2 + 3?", "completion": "5"}]
    ann = market.create_account("ann", PASSWORD, "seller")
    _list_jsonl(market, ann, "sums", rows, 500)
    auth = {"Authorization": f"Bearer {market.login('ann', PASSWORD).token}"}
    body = {"slug": "sums-dipt", "method": "dipt", "price_minor": 900}
    r = _client(market, tmp_path, None).post(
        "/api/econ/products/sums/derivatives", headers=auth, json=body
    )
    assert r.status_code == 409 and "no enrichment backend" in r.json()["message"]
    dead = _client(market, tmp_path, "http://127.0.0.1:9")  # nothing listens on port 9
    r = dead.post("/api/econ/products/sums/derivatives", headers=auth, json=body)
    assert r.status_code == 502, r.text
    with market.db.read() as s:
        assert s.scalar(select(func.count()).select_from(Product)) == 1
        assert s.scalar(select(func.count()).select_from(EconDerivative)) == 0


def test_derivative_of_a_bundle_pays_the_bundle_contributors_by_value(
    econ: Economics, market: Market, seller: AccountOut, buyer: AccountOut, list_table: ListFn
) -> None:
    """A derivative's source share is split like a sale of its source (a valued bundle)."""
    noise = task_frame(300, 80).assign(src="b")
    noise["label"] = np.random.default_rng(0).permutation(noise["label"].to_numpy())
    frame = pd.concat([task_frame(0, 80).assign(src="a"), noise])
    ann = market.create_account("ann-d", PASSWORD, "seller")
    bob = market.create_account("bob-d", PASSWORD, "seller")
    list_table(seller, "pair", frame, price=2000)
    econ.register_bundle(
        seller,
        "pair",
        group_column="src",
        label_column="label",
        contributors={"a": ann.username, "b": bob.username},
        reference=task_frame(2000, 40),
        method="exact",
        k=3,
    )
    maker = market.create_account("maker", PASSWORD, "seller")
    list_table(maker, "pair-plus", frame, price=3000)
    with market.db.write() as s:
        src = s.scalar(select(Product).where(Product.slug == "pair"))
        prod = s.scalar(select(Product).where(Product.slug == "pair-plus"))
        s.add(
            EconDerivative(
                product_id=prod.id,
                source_product_id=src.id,
                source_version_id=src.versions[0].id,
                method="dipt",
                generator="test",
                parameters={},
                source_share_bps=5000,
            )
        )
    order = market.purchase(buyer, ["pair-plus"], "pp-1")
    net = 3000 - order.fee_minor
    credits: dict[int, int] = {}
    for (acc, _), v in _sale_credits(market).items():
        credits[acc] = credits.get(acc, 0) + v
    assert credits[maker.id] == net - net * 5000 // 10_000
    assert credits.get(ann.id, 0) + credits.get(bob.id, 0) == net * 5000 // 10_000
    assert credits.get(ann.id, 0) > credits.get(bob.id, 0)  # split by the bundle's values
    assert seller.id not in credits  # the bundle's lister is paid only as a contributor
    with market.db.read() as s:
        split = s.scalar(select(EconSplit))
        assert split is not None and split.total_minor == net * 5000 // 10_000
    assert market.verify_ledger().ok
