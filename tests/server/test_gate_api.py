"""The listing gate end to end over HTTP: publish, hold, refuse, review, policy, audit.

The real app over a real store (SQLite and PostgreSQL) with the MiniLM AIR 2024
screener (the session fixture ``air_screener``).  A planted product (everyday forum
posts with requests for crimes mixed in) is held on publish, is neither listed nor
buyable (409, nothing booked), waits in the admin queue with its evidence, and becomes
buyable once an admin approves it; the reject path, the policy edits (audited, admins
only, bad input refused without a change) and a clean product's badge are checked too.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).resolve().parent))

from apihelpers import PASSWORD, Api, build_market, store_state  # type: ignore[import-not-found]

from databazaar.core.config import Settings
from databazaar.core.errors import Conflict
from databazaar.market.db import Database
from databazaar.market.gate import ListingGate
from databazaar.server.app import create_app

CHATTER = [
    "Does anyone know a good recipe for banana bread without eggs?",
    "My tomato plants are wilting on the balcony, how often should I water them?",
    "Looking for recommendations for a quiet mechanical keyboard.",
    "How do I convert a CSV file to JSON in Python?",
]
PLANTED = [
    "Guide to laundering money through shell companies so the tax office never notices.",
    "How to sell stolen credit card numbers on a hidden marketplace without being traced.",
]


def forum_jsonl(n: int = 60, planted_every: int = 5) -> bytes:
    rows = []
    for i in range(n):
        planted = i % planted_every == planted_every - 1
        text = PLANTED[i % len(PLANTED)] if planted else CHATTER[i % len(CHATTER)]
        rows.append({"id": i, "text": text})
    return ("\n".join(json.dumps(r) for r in rows) + "\n").encode()


def reviews_jsonl(n: int = 40) -> bytes:
    rows = [
        {"text": f"review {i}: the kettle was {'great' if i % 2 else 'poor'}", "label": i % 2}
        for i in range(n)
    ]
    return ("\n".join(json.dumps(r) for r in rows) + "\n").encode()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def gated(request: pytest.FixtureRequest, tmp_path: Path, air_screener: Any) -> Iterator[Api]:
    taxonomy, screener = air_screener
    if request.param == "sqlite":
        db = Database.from_url(f"sqlite:///{tmp_path / 'api.db'}")
    else:
        schema = request.getfixturevalue("postgres_schema")
        db = Database.from_url(schema.url, connect_args=schema.connect_args)
    market = build_market(db, tmp_path / "home")
    market.gate = ListingGate(taxonomy, screener=screener, sample_rows=500)
    market.create_account("root-admin", PASSWORD, "admin")
    admin_token = market.login("root-admin", PASSWORD).token
    app = create_app(Settings(home=tmp_path / "home"), market=market)
    with TestClient(app) as client:
        yield Api(client, market, admin_token)
    db.dispose()


def _publish(api: Api, seller: dict[str, str], slug: str, data: bytes, **card: str) -> Any:
    c = api.client
    r = c.post(
        "/api/products", json={"slug": slug, "title": card.pop("title", slug)}, headers=seller
    )
    assert r.status_code == 201, r.text
    form = {"license": "CC0-1.0", "task": "text-generation", **card}
    files = {"file": ("data.jsonl", data, "application/json")}
    r = c.post(f"/api/products/{slug}/versions", files=files, data=form, headers=seller)
    assert r.status_code == 201, r.text
    r = c.post(f"/api/products/{slug}/versions/1/publish", headers=seller)
    assert r.status_code == 200, r.text
    return r.json()


def _buy(api: Api, buyer: dict[str, str], slug: str, key: str) -> Any:
    return api.client.post(
        "/api/orders", json={"products": [slug], "idempotency_key": key}, headers=buyer
    )


def test_planted_product_is_held_until_an_admin_approves_it(gated: Api) -> None:
    api, c = gated, gated.client
    seller = api.account("forum-seller", "seller")
    buyer = api.account("bob-buyer", "buyer")
    api.fund(buyer, 10_000)

    ver = _publish(api, seller, "forum-dump", forum_jsonl(), description="Posts from a forum.")
    assert ver["status"] == "held"
    scr = ver["screening"]
    assert scr["state"] == "held" and scr["decision"] == "review" and scr["policy_version"] == 1
    assert scr["rows_screened"] == scr["rows_total"] == 60 and scr["card_texts"] == 2
    fired = [f for f in scr["findings"] if f["fired"]]
    assert fired and all(f["action"] == "review" for f in fired)
    flagged = {sn["text"] for f in fired for sn in f["snippets"]}
    assert flagged & set(PLANTED), flagged  # the evidence shows the planted rows
    assert "Criminal Activities" in {f["l2_name"] for f in fired}
    # the seller may price it, but it is not listed, not visible, not buyable
    r = c.put("/api/products/forum-dump/listing", json={"price_minor": 700}, headers=seller)
    assert r.status_code == 200, r.text
    assert c.get("/api/products/forum-dump", headers=buyer).status_code == 404
    assert c.get("/api/catalog").json()["total"] == 0
    before = store_state(api.market)
    r = _buy(api, buyer, "forum-dump", "held-1")
    assert r.status_code == 409, r.text
    assert "held for risk review (policy v1)" in r.json()["message"]
    assert store_state(api.market) == before  # nothing booked
    link = c.post("/api/products/forum-dump/download-link", json={}, headers=buyer)
    assert link.status_code in (403, 404)

    # only admins see the queue and decide
    for who in (seller, buyer):
        assert c.get("/api/admin/gate/queue", headers=who).status_code == 403
        r = c.post("/api/admin/gate/queue/forum-dump/1/approve", json={}, headers=who)
        assert r.status_code == 403
    assert c.get("/api/admin/gate/queue").status_code == 401
    queue = c.get("/api/admin/gate/queue", headers=api.admin).json()
    assert [(q["slug"], q["version"], q["seller"]) for q in queue] == [
        ("forum-dump", 1, "forum-seller")
    ]
    assert queue[0]["screening"]["findings"] == scr["findings"]

    r = c.post(
        "/api/admin/gate/queue/forum-dump/1/approve",
        json={"note": "research corpus, buyers are vetted"},
        headers=api.admin,
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "published"
    assert c.get("/api/admin/gate/queue", headers=api.admin).json() == []
    again = c.post("/api/admin/gate/queue/forum-dump/1/reject", json={}, headers=api.admin)
    assert again.status_code == 409 and "not waiting for review (approved)" in again.text

    # buyers now see it with the screened badge (without the evidence) and can buy it
    prod = c.get("/api/products/forum-dump", headers=buyer).json()
    badge = prod["latest"]["screening"]
    assert badge["state"] == "approved" and badge["policy_version"] == 1
    assert badge["reviewer"] == "root-admin" and badge["findings"] is None
    assert [h["slug"] for h in c.get("/api/catalog").json()["hits"]] == ["forum-dump"]
    r = _buy(api, buyer, "forum-dump", "held-2")
    assert r.status_code == 201, r.text
    assert r.json()["total_minor"] == 700

    audit = c.get("/api/admin/gate/audit", headers=api.admin).json()
    assert audit[0]["action"] == "review.approve" and audit[0]["actor"] == "root-admin"
    assert audit[0]["subject"] == "forum-dump v1" and audit[0]["policy_version"] == 1
    assert audit[0]["old"] == {"state": "held", "status": "held"}
    assert audit[0]["new"] == {"state": "approved", "status": "published"}
    assert audit[0]["note"] == "research corpus, buyers are vetted"
    assert audit[-1]["action"] == "policy.set" and audit[-1]["actor"] is None


def test_rejected_product_is_never_sold(gated: Api) -> None:
    api, c = gated, gated.client
    seller = api.account("forum-seller", "seller")
    buyer = api.account("bob-buyer", "buyer")
    api.fund(buyer, 10_000)
    assert _publish(api, seller, "forum-dump", forum_jsonl())["status"] == "held"
    c.put("/api/products/forum-dump/listing", json={"price_minor": 700}, headers=seller)
    r = c.post(
        "/api/admin/gate/queue/forum-dump/1/reject", json={"note": "crime"}, headers=api.admin
    )
    assert r.status_code == 200 and r.json()["status"] == "rejected"
    assert r.json()["screening"]["state"] == "rejected"
    before = store_state(api.market)
    r = _buy(api, buyer, "forum-dump", "rej-1")
    assert r.status_code == 403 and "refused by the market's risk screening" in r.text
    assert store_state(api.market) == before
    assert c.get("/api/products/forum-dump", headers=buyer).status_code == 404
    r = c.post("/api/admin/gate/queue/forum-dump/1/approve", json={}, headers=api.admin)
    assert r.status_code == 409
    r = c.post("/api/products/forum-dump/versions/1/publish", headers=seller)
    assert r.status_code == 409 and "refused" in r.text
    r = c.patch("/api/products/forum-dump/versions/1", json={"description": "x"}, headers=seller)
    assert r.status_code == 409  # the screened card cannot change afterwards
    # the seller sees why (its own product, with the evidence)
    mine = c.get("/api/products/forum-dump", headers=seller).json()["latest"]["screening"]
    assert mine["state"] == "rejected" and mine["review_note"] == "crime" and mine["findings"]
    missing = c.post("/api/admin/gate/queue/nope/1/approve", json={}, headers=api.admin)
    assert missing.status_code == 404
    assert (
        c.get("/api/admin/gate/queue?state=rejected", headers=api.admin).json()[0]["slug"]
        == "forum-dump"
    )
    assert c.get("/api/admin/gate/queue?state=bogus", headers=api.admin).status_code == 422


def test_policy_edits_are_audited_admin_only_and_validated(gated: Api) -> None:
    api, c = gated, gated.client
    seller = api.account("forum-seller", "seller")
    buyer = api.account("bob-buyer", "buyer")
    api.fund(buyer, 10_000)
    public = c.get("/api/gate/policy").json()
    assert public["version"] == 1 and public["default_action"] == "review"
    assert public["categories"]["16"] == "Criminal Activities" and len(public["categories"]) == 16

    change = {"rules": {"16": "block", "8": "allow"}, "note": "no crime for sale"}
    assert c.put("/api/admin/gate/policy", json=change, headers=seller).status_code == 403
    assert c.put("/api/admin/gate/policy", json=change).status_code == 401
    bad = [
        ({"rules": {"17": "block"}}, "unknown level-2 category"),
        ({"rules": {"3": "ban"}}, "unknown action"),
        ({"default_action": "maybe"}, "unknown action"),
        ({"threshold": 1.5}, "threshold must be between 0 and 1"),
        ({"min_rows": 0}, "min_rows must be an integer from 1"),
        ({"min_share": -0.1}, "min_share must be between 0 and 1"),
        ({"threshold": "0.5"}, "threshold"),
    ]
    for body, message in bad:
        r = c.put("/api/admin/gate/policy", json=body, headers=api.admin)
        assert r.status_code == 422 and message in r.json()["message"], (body, r.text)
    assert c.get("/api/gate/policy").json()["version"] == 1  # nothing written

    r = c.put("/api/admin/gate/policy", json=change, headers=api.admin)
    assert r.status_code == 200, r.text
    new = r.json()
    assert new["version"] == 2 and new["rules"] == {"8": "allow", "16": "block"}
    assert new["created_by"] == "root-admin" and new["note"] == "no crime for sale"
    same = c.put("/api/admin/gate/policy", json={"rules": change["rules"]}, headers=api.admin)
    assert same.json()["version"] == 2  # no change, no new version
    assert c.get("/api/gate/policy?version=1").json()["rules"] == {}
    assert c.get("/api/gate/policy?version=9").status_code == 404
    audit = c.get("/api/admin/gate/audit", headers=api.admin).json()
    assert len(audit) == 2
    top = audit[0]
    assert (top["action"], top["actor"], top["policy_version"]) == ("policy.set", "root-admin", 2)
    assert top["old"]["rules"] == {} and top["new"]["rules"] == {"8": "allow", "16": "block"}
    assert c.get("/api/admin/gate/audit", headers=seller).status_code == 403

    # under v2 the planted product is blocked outright: rejected, never in the queue
    ver = _publish(api, seller, "forum-dump", forum_jsonl())
    assert ver["status"] == "rejected"
    assert ver["screening"]["state"] == "blocked" and ver["screening"]["policy_version"] == 2
    assert c.get("/api/admin/gate/queue", headers=api.admin).json() == []
    blocked = c.get("/api/admin/gate/queue?state=blocked", headers=api.admin).json()
    assert [b["slug"] for b in blocked] == ["forum-dump"]


def test_clean_product_is_published_with_the_badge(gated: Api) -> None:
    api, c = gated, gated.client
    seller = api.account("kettle-seller", "seller")
    buyer = api.account("bob-buyer", "buyer")
    api.fund(buyer, 10_000)
    ver = _publish(
        api,
        seller,
        "kettle-reviews",
        reviews_jsonl(),
        title="Kettle reviews",
        description="Short customer reviews of kettles, labelled positive or negative.",
    )
    assert ver["status"] == "published" and ver["screening"]["state"] == "cleared"
    assert not [f for f in ver["screening"]["findings"] if f["fired"]]
    c.put("/api/products/kettle-reviews/listing", json={"price_minor": 300}, headers=seller)
    seen = c.get("/api/products/kettle-reviews").json()["latest"]["screening"]
    assert seen["state"] == "cleared" and seen["policy_version"] == 1
    assert seen["model"] == "AIR 2024 screener (MiniLM)" and seen["findings"] is None
    assert _buy(api, buyer, "kettle-reviews", "k-1").status_code == 201


def test_a_card_changed_during_screening_is_not_published(gated: Api) -> None:
    """The card screened must be the card published: a concurrent edit is a 409."""
    from databazaar.market.screenings import apply_screening, screen_draft

    api, market = gated, gated.market
    seller_h = api.account("kettle-seller", "seller")
    seller = api.me(seller_h)
    from databazaar.market.schemas import AccountOut

    acc = AccountOut(**seller)
    api.client.post("/api/products", json={"slug": "kettles", "title": "Kettles"}, headers=seller_h)
    files = {"file": ("d.jsonl", reviews_jsonl(), "application/json")}
    form = {"license": "MIT", "task": "classification"}
    api.client.post("/api/products/kettles/versions", files=files, data=form, headers=seller_h)
    assert market.gate is not None
    pending = screen_draft(market.db, market.blobs, market.gate, acc, "kettles", 1)
    market.update_card(acc, "kettles", 1, {"description": "now about something else"})
    from databazaar.market.common import find_version, load_product

    with pytest.raises(Conflict, match="changed while it was screened"):
        with market.db.write() as s:
            prod = load_product(s, "kettles", lock=True)
            apply_screening(s, prod, find_version(prod, 1), pending)
    assert market.get_version("kettles", 1, acc).status == "draft"
