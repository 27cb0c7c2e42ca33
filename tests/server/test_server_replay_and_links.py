"""Replays and download links over HTTP (issue 13).

A replayed purchase answers with the original status (201), the original body and
``Idempotent-Replayed: true``; download links live five minutes by default and, when
bound to the account, work only with that account's token.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from apihelpers import Api, store_state, table_csv  # type: ignore[import-not-found]

from databazaar.core.errors import Forbidden
from databazaar.market.access import DEFAULT_LINK_TTL


def _buyer_with_product(api: Api) -> tuple[dict[str, str], dict[str, str]]:
    seller = api.account("seller-one", "seller")
    buyer = api.account("buyer-one")
    api.product(seller, "rows", 700)
    api.fund(buyer, 5000)
    return seller, buyer


def test_a_replayed_order_answers_201_with_the_replay_header(api: Api) -> None:
    _seller, buyer = _buyer_with_product(api)
    body = {"products": ["rows"], "idempotency_key": "order-1"}
    first = api.client.post("/api/orders", json=body, headers=buyer)
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
    before = store_state(api.market)
    again = api.client.post("/api/orders", json=body, headers=buyer)
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == {**first.json(), "replayed": True}
    assert store_state(api.market) == before
    assert api.me(buyer)["balance_minor"] == 5000 - 700
    # the same key for another basket is still a conflict, without the header
    other = api.client.post(
        "/api/orders", json={"products": ["nope"], "idempotency_key": "order-1"}, headers=buyer
    )
    assert other.status_code == 409 and "Idempotent-Replayed" not in other.headers


def test_a_replayed_econ_purchase_answers_201_with_the_replay_header(api: Api) -> None:
    _seller, buyer = _buyer_with_product(api)
    body = {"idempotency_key": "econ-1"}
    first = api.client.post("/api/econ/products/rows/purchase", json=body, headers=buyer)
    assert first.status_code == 201, first.text
    assert "Idempotent-Replayed" not in first.headers
    assert set(first.json()) == {
        "sale_id", "slug", "mechanism", "order", "quote", "deliverable", "splits", "replayed"
    }  # fmt: skip
    again = api.client.post("/api/econ/products/rows/purchase", json=body, headers=buyer)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == {**first.json(), "replayed": True}
    assert api.me(buyer)["balance_minor"] == 5000 - 700


def _link(api: Api, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    r = api.client.post("/api/products/rows/download-link", json=body, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def test_links_are_short_lived_by_default(api: Api) -> None:
    _seller, buyer = _buyer_with_product(api)
    api.client.post(
        "/api/orders", json={"products": ["rows"], "idempotency_key": "k"}, headers=buyer
    )
    now = int(time.time())
    link = _link(api, buyer)
    assert DEFAULT_LINK_TTL == 300
    assert now + DEFAULT_LINK_TTL - 2 <= link["expires_at"] <= now + DEFAULT_LINK_TTL + 2
    assert link["bound"] is False
    # an unbound link works without credentials; past its expiry it is refused
    assert api.client.get(link["url"]).content == table_csv()
    api.market.resolve_download(link["token"], now=link["expires_at"] - 1)
    with pytest.raises(Forbidden, match="expired"):
        api.market.resolve_download(link["token"], now=link["expires_at"])


def test_a_bound_link_needs_the_same_account(api: Api) -> None:
    seller, buyer = _buyer_with_product(api)
    api.client.post(
        "/api/orders", json={"products": ["rows"], "idempotency_key": "k"}, headers=buyer
    )
    link = _link(api, buyer, bind_to_account=True, ttl_seconds=60)
    assert link["bound"] is True
    anonymous = api.client.get(link["url"])
    assert anonymous.status_code == 403 and "bound" in anonymous.json()["message"]
    # another account (even the product's seller) cannot use the buyer's bound link
    assert api.client.get(link["url"], headers=seller).status_code == 403
    assert api.client.get(link["url"], headers=api.admin).status_code == 403
    ok = api.client.get(link["url"], headers=buyer)
    assert ok.status_code == 200 and ok.content == table_csv()
    # a bad token is an authentication error, not a download
    bad = api.client.get(link["url"], headers={"Authorization": "Bearer dbz_0_nope"})
    assert bad.status_code == 401
    # binding is part of the signature: dropping it from the token breaks the link
    plain = _link(api, buyer)
    assert plain["token"] != link["token"]
    assert api.client.get(plain["url"]).status_code == 200
