"""Strict input at the API edge (issue 13): no coercion of money and counts, ragged CSV
rows refused with their row number, and an OpenAPI spec that states the real rules.

Every refusal is a 422 in the common error shape and leaves the store exactly as it was
(tables, ledger, balances, files), on SQLite and PostgreSQL.
"""

from __future__ import annotations

from typing import Any

import pytest
from apihelpers import PASSWORD, Api, store_state  # type: ignore[import-not-found]

#: Values a lax parser would coerce into an integer: bool, numeric string, float, null.
NOT_INTEGERS = [True, False, "600", "0x10", 500.0, 1.5, None, [600], {"v": 600}]


@pytest.fixture
def shop(api: Api) -> dict[str, Any]:
    seller = api.account("seller-one", "seller")
    buyer = api.account("buyer-one")
    api.product(seller, "rows", 700)
    api.fund(buyer, 5000)
    return {"seller": seller, "buyer": buyer, "buyer_id": api.me(buyer)["id"]}


def _refused(r: Any, needle: str = "") -> None:
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["error"] == "invalid_input"
    assert needle.lower() in body["message"].lower(), body


@pytest.mark.parametrize("bad", NOT_INTEGERS)
def test_money_is_never_coerced(api: Api, shop: dict[str, Any], bad: Any) -> None:
    c = api.client
    before = store_state(api.market)
    r = c.put("/api/products/rows/listing", json={"price_minor": bad}, headers=shop["seller"])
    _refused(r, "price_minor")
    r = c.post(
        "/api/admin/deposits",
        json={"account_id": shop["buyer_id"], "amount_minor": bad},
        headers=api.admin,
    )
    _refused(r, "amount_minor")
    r = c.post(
        "/api/admin/deposits",
        json={"account_id": bad, "amount_minor": 100},
        headers=api.admin,
    )
    _refused(r, "account_id")
    r = c.post("/api/econ/products/rows/auction", json={"reserve_minor": bad},
               headers=shop["seller"])  # fmt: skip
    _refused(r, "reserve_minor")
    r = c.post("/api/econ/products/rows/bids", json={"amount_minor": bad}, headers=shop["buyer"])
    _refused(r, "amount_minor")
    assert store_state(api.market) == before
    assert api.client.get("/api/products/rows").json()["listing"]["price_minor"] == 700


@pytest.mark.parametrize("bad", [True, "2", 2.0])
def test_counts_and_flags_are_never_coerced(api: Api, shop: dict[str, Any], bad: Any) -> None:
    c = api.client
    before = store_state(api.market)
    r = c.post("/api/econ/products/rows/auction", json={"reserve_minor": 100, "units": bad},
               headers=shop["seller"])  # fmt: skip
    _refused(r, "units")
    r = c.post("/api/products/rows/download-link", json={"ttl_seconds": bad},
               headers=shop["seller"])  # fmt: skip
    _refused(r, "ttl_seconds")
    r = c.post("/api/products/rows/download-link", json={"version": bad}, headers=shop["seller"])
    _refused(r, "version")
    r = c.put("/api/products/rows/listing", json={"price_minor": 700, "active": str(bad)},
              headers=shop["seller"])  # fmt: skip
    _refused(r, "active")
    r = c.post("/api/orders", json={"products": ["rows"], "idempotency_key": 12345},
               headers=shop["buyer"])  # fmt: skip
    _refused(r, "idempotency_key")
    r = c.post("/api/orders", json={"products": "rows", "idempotency_key": "k1"},
               headers=shop["buyer"])  # fmt: skip
    _refused(r, "products")
    assert store_state(api.market) == before


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"a,b\n1,2,3\n4\n", "row 1 (line 2) has 3 fields, the header has 2"),
        (b"a,b\n1,2\n4\n", "row 2 (line 3) has 1 field, the header has 2"),
        (b"a,b\n1,2\n\n3,4\n5,6,\n", "row 3 (line 5) has 3 fields"),
        (b'a,b\n"x,y",2\n"p"\n', "row 2 (line 3) has 1 field"),
    ],
)
def test_ragged_and_short_csv_rows_are_refused_with_the_row(
    api: Api, shop: dict[str, Any], body: bytes, needle: str
) -> None:
    before = store_state(api.market)
    r = api.client.post(
        "/api/products/rows/versions",
        files={"file": ("ragged.csv", body, "text/csv")},
        data={"license": "MIT", "task": "classification"},
        headers=shop["seller"],
    )
    _refused(r, needle)
    assert store_state(api.market) == before


def test_a_regular_csv_keeps_its_columns_and_preview(api: Api, shop: dict[str, Any]) -> None:
    """Quoted commas and a blank line are fine; the preview is the file's own rows."""
    r = api.client.post(
        "/api/products/rows/versions",
        files={"file": ("ok.csv", b'a,b\n"x,y",2\n\n"p",3\n', "text/csv")},
        data={"license": "MIT", "task": "classification"},
        headers=shop["seller"],
    )
    assert r.status_code == 201, r.text
    card = r.json()
    assert [c["name"] for c in card["columns"]] == ["a", "b"]
    assert card["n_rows"] == 2
    assert card["preview"] == [{"a": "x,y", "b": 2}, {"a": "p", "b": 3}]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"username": "al", "password": PASSWORD}, "username"),
        ({"username": "Alice", "password": PASSWORD}, "username"),
        ({"username": "9lives", "password": PASSWORD}, "username"),
        ({"username": "a" * 33, "password": PASSWORD}, "username"),
        ({"username": "alice", "password": "seven77"}, "password"),
        ({"username": "alice", "password": 12345678}, "password"),
        ({"username": "alice", "password": PASSWORD, "role": "admin"}, "role"),
    ],
)
def test_registration_follows_the_published_rules(
    api: Api, body: dict[str, Any], needle: str
) -> None:
    before = store_state(api.market)
    _refused(api.client.post("/api/accounts", json=body), needle)
    assert store_state(api.market) == before


def test_openapi_states_the_real_constraints(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    reg = schemas["RegisterIn"]["properties"]
    assert reg["username"]["pattern"] == "^[a-z][a-z0-9_.-]{2,31}$"
    assert (reg["username"]["minLength"], reg["username"]["maxLength"]) == (3, 32)
    assert (reg["password"]["minLength"], reg["password"]["maxLength"]) == (8, 256)
    price = schemas["ListingIn"]["properties"]["price_minor"]
    assert (price["type"], price["minimum"], price["maximum"]) == ("integer", 0, 10**12)
    amount = schemas["DepositIn"]["properties"]["amount_minor"]
    assert (amount["type"], amount["minimum"], amount["maximum"]) == ("integer", 1, 10**12)
    assert schemas["BidIn"]["properties"]["amount_minor"]["minimum"] == 1
