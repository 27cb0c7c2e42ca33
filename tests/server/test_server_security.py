"""Security over HTTP: grants, private orders, link expiry, ownership, hostile input.

Every refused request must answer a clear 4xx in the common error shape and leave the
store (tables, ledger, balances, files) exactly as it was.
"""

from __future__ import annotations

import time

import pytest
from apihelpers import Api, store_state, table_csv  # type: ignore[import-not-found]


@pytest.fixture
def world(api: Api) -> dict:
    """Two sellers with a product each, a funded buyer who bought one, and an outsider."""
    s1 = api.account("seller-one", "seller")
    s2 = api.account("seller-two", "seller")
    buyer = api.account("buyer-one")
    outsider = api.account("buyer-two")
    api.product(s1, "owned", 300)
    api.product(s2, "other", 400)
    api.fund(buyer, 1000)
    r = api.client.post(
        "/api/orders", json={"products": ["owned"], "idempotency_key": "b1"}, headers=buyer
    )
    assert r.status_code == 201
    return {"s1": s1, "s2": s2, "buyer": buyer, "outsider": outsider, "order": r.json()}


def _version_id(api: Api, slug: str) -> int:
    from sqlalchemy import select

    from databazaar.market.models import Product, ProductVersion

    with api.market.db.read() as s:
        return s.scalar(
            select(ProductVersion.id)
            .join(Product, Product.id == ProductVersion.product_id)
            .where(Product.slug == slug, ProductVersion.number == 1)
        )


def _refused(r, status: int, needle: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) <= {"error", "message", "hint"} and body["error"]
    assert needle.lower() in (body["message"] + body.get("hint", "")).lower(), body


def test_ungranted_download_is_refused(api: Api, world: dict) -> None:
    c = api.client
    before = store_state(api.market)
    r = c.post("/api/products/other/download-link", json={}, headers=world["buyer"])
    _refused(r, 403, "no access")
    r = c.post("/api/products/owned/download-link", json={}, headers=world["outsider"])
    _refused(r, 403, "no access")
    # a link minted for the buyer's grant cannot be re-pointed at another version
    link = c.post("/api/products/owned/download-link", json={}, headers=world["buyer"]).json()
    token = link["token"]
    payload, _, sig = token.rpartition(".")
    _refused(c.get(f"/api/downloads/{payload}x.{sig}"), 403, "invalid download link")
    _refused(c.get("/api/downloads/not-a-token"), 403, "invalid download link")
    # a link signed with our key for an ungranted version (as a leaked key would allow)
    # is still refused because access is re-checked at download time
    vid = _version_id(api, "other")
    buyer_id = api.me(world["buyer"])["id"]
    forged, _ = api.market.signer.sign(buyer_id, vid, 60)
    _refused(c.get(f"/api/downloads/{forged}"), 403, "no longer has access")
    assert store_state(api.market) == before


def test_expired_link_is_refused(api: Api, world: dict) -> None:
    buyer_id = api.me(world["buyer"])["id"]
    link = api.client.post(
        "/api/products/owned/download-link", json={"ttl_seconds": 60}, headers=world["buyer"]
    ).json()
    assert api.client.get(link["url"]).status_code == 200
    vid = _version_id(api, "owned")
    expired, expires = api.market.signer.sign(buyer_id, vid, 5, now=time.time() - 10)
    assert expires < time.time()
    _refused(api.client.get(f"/api/downloads/{expired}"), 403, "expired")
    r = api.client.post(
        "/api/products/owned/download-link", json={"ttl_seconds": 0}, headers=world["buyer"]
    )
    _refused(r, 422, "ttl_seconds")


def test_other_accounts_orders_are_invisible(api: Api, world: dict) -> None:
    oid = world["order"]["id"]
    _refused(api.client.get(f"/api/orders/{oid}", headers=world["outsider"]), 404, "not found")
    _refused(api.client.get(f"/api/orders/{oid}", headers=world["s1"]), 404, "not found")
    assert api.client.get("/api/orders", headers=world["outsider"]).json() == []
    assert api.client.get(f"/api/orders/{oid}", headers=world["buyer"]).status_code == 200
    assert api.client.get(f"/api/orders/{oid}", headers=api.admin).status_code == 200
    _refused(api.client.get(f"/api/orders/{oid}"), 401, "authentication required")
    # the outsider replaying the buyer's idempotency key creates its own order, not a view
    api.fund(world["outsider"], 300)
    mine = api.client.post(
        "/api/orders", json={"products": ["owned"], "idempotency_key": "b1"},
        headers=world["outsider"],
    ).json()  # fmt: skip
    assert mine["id"] != oid and mine["replayed"] is False


def test_seller_cannot_edit_another_sellers_product(api: Api, world: dict) -> None:
    c, s2 = api.client, world["s2"]
    r = c.post("/api/products", json={"slug": "draft-x", "title": "Draft"}, headers=world["s1"])
    assert r.status_code == 201
    r = c.post("/api/products/draft-x/versions", headers=world["s1"],
               files={"file": ("d.csv", table_csv(4))},
               data={"license": "MIT", "task": "regression"})  # fmt: skip
    assert r.status_code == 201
    before = store_state(api.market)
    _refused(c.put("/api/products/owned/listing", json={"price_minor": 1}, headers=s2), 403,
             "belongs to another seller")  # fmt: skip
    _refused(c.patch("/api/products/draft-x/versions/1", json={"title": "pwned"}, headers=s2),
             403, "belongs to another seller")  # fmt: skip
    _refused(c.post("/api/products/draft-x/versions/1/publish", headers=s2), 403,
             "belongs to another seller")  # fmt: skip
    r = c.post("/api/products/owned/versions", headers=s2,
               files={"file": ("d.csv", table_csv(4))},
               data={"license": "MIT", "task": "regression"})  # fmt: skip
    _refused(r, 403, "belongs to another seller")
    # a buyer cannot sell at all
    _refused(c.post("/api/products", json={"slug": "b", "title": "B"}, headers=world["buyer"]),
             403, "only a seller")  # fmt: skip
    # nobody can register as admin over the API
    r = c.post("/api/accounts", json={"username": "evil", "password": "x" * 10, "role": "admin"})
    _refused(r, 422, "role")
    assert store_state(api.market) == before
    assert c.get("/api/products/owned").json()["listing"]["price_minor"] == 300


BAD_UPLOADS = [
    ("binary.csv", b"\x00\xff\xfe\x00garbage\x89PNG\r\n", "binary"),
    ("latin1.csv", "name\ncaf\xe9\n".encode("latin-1"), "could not be parsed"),
    ("empty.csv", b"", "empty"),
    ("header.csv", b"a,b,c\n", "no rows"),
    ("ragged.csv", b"a,b\n1,2\n3,4,5,6\n", "could not be parsed"),
    ("dupe.csv", b"a,a\n1,2\n", "not unique"),
    ("broken.jsonl", b'{"a": 1}\n{"a": \n', "could not be parsed"),
    ("fake.parquet", b"a,b\n1,2\n", "not a Parquet file"),
    ("nul-name.jsonl", b'{"a\\u0000b": 1}\n', "control characters"),
    ("payload.exe", b"MZ\x90\x00", "unsupported file type"),
    ("noext", b"a\n1\n", "unsupported file type"),
]
TRAVERSAL_NAMES = [
    "../../etc/passwd.csv",
    "..\\..\\boot.csv",
    "/etc/shadow.csv",
    "a/b.csv",
    ".hidden.csv",
    "..csv",
    "x\x00.csv",
    "<script>.csv",
]


def _upload(api: Api, headers, name: str, content: bytes, **data: str):
    form = {"license": "MIT", "task": "regression", **data}
    return api.client.post(
        "/api/products/owned/versions", headers=headers, files={"file": (name, content)},
        data=form,
    )  # fmt: skip


def test_malformed_uploads_are_refused_and_store_unchanged(api: Api, world: dict) -> None:
    before = store_state(api.market)
    for name, content, needle in BAD_UPLOADS:
        _refused(_upload(api, world["s1"], name, content), 422, needle)
    for name in TRAVERSAL_NAMES:
        _refused(_upload(api, world["s1"], name, table_csv()), 422, "file name")
    assert store_state(api.market) == before
    staging = api.market.blobs.root / ".staging"
    assert list(staging.iterdir()) == []


def test_oversized_uploads_are_refused(api: Api, world: dict) -> None:
    before = store_state(api.market)
    limit = api.market.max_upload_bytes
    big = b"a,b\n" + b"1,2\n" * (limit // 4 + 10)  # over the file limit, under the body limit
    _refused(_upload(api, world["s1"], "big.csv", big), 413, "larger than the limit")
    huge = b"a,b\n" + b"1,2\n" * (limit // 4 + 200_000)  # over the request body limit
    _refused(_upload(api, world["s1"], "huge.csv", huge), 413, "larger than the limit")
    assert store_state(api.market) == before
    assert list((api.market.blobs.root / ".staging").iterdir()) == []


SQL_STRINGS = [
    "x'; DROP TABLE products; --",
    "1 OR 1=1",
    "admin'--",
    '" UNION SELECT password_hash FROM accounts --',
]
HTML_STRINGS = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "javascript:alert(1)",
    "&#60;script&#62;",
]


def test_sql_and_html_strings_are_refused(api: Api, world: dict) -> None:
    c, s1 = api.client, world["s1"]
    before = store_state(api.market)
    for bad in SQL_STRINGS + HTML_STRINGS:
        r = c.post("/api/accounts", json={"username": bad, "password": "x" * 10})
        _refused(r, 422, "username")
        _refused(c.post("/api/products", json={"slug": bad, "title": "T"}, headers=s1), 422,
                 "slug")  # fmt: skip
        _refused(_upload(api, s1, "ok.csv", table_csv(), license=bad), 422, "license")
        _refused(_upload(api, s1, "ok.csv", table_csv(), task=bad), 422, "task")
        _refused(_upload(api, s1, "ok.csv", table_csv(), tags=f"good,{bad}"), 422, "tag")
        r = c.post("/api/orders", json={"products": ["owned"], "idempotency_key": bad},
                   headers=world["outsider"])  # fmt: skip
        _refused(r, 422, "idempotency key")
        _refused(c.get("/api/catalog", params={"task": bad}), 422, "task")
    for bad in HTML_STRINGS:
        r = c.post("/api/products", json={"slug": "fine-slug", "title": bad}, headers=s1)
        _refused(r, 422, "markup")
        _refused(_upload(api, s1, "ok.csv", table_csv(), description=bad), 422, "markup")
    # SQL-looking search text is data, never syntax: no error, no match, nothing changed
    for bad in SQL_STRINGS:
        for mode in ("fulltext",):
            r = c.get("/api/catalog", params={"q": bad, "mode": mode})
            assert r.status_code == 200 and r.json()["total"] == 0, r.text
    assert store_state(api.market) == before
    assert c.get("/api/catalog").json()["total"] == 2


def test_bad_tokens_and_headers(api: Api, world: dict) -> None:
    c = api.client
    for header in ("Bearer ", "Bearer dbz_", "Bearer dbz_0123456789abcdef_" + "x" * 200,
                   "Basic Zm9vOmJhcg==", "Bearer ' OR 1=1 --"):  # fmt: skip
        r = c.get("/api/me", headers={"Authorization": header})
        assert r.status_code in (401, 403), (header, r.text)
        assert r.json()["error"] in ("unauthorized", "forbidden")
    r = c.post("/api/auth/token", json={"username": "seller-one", "password": "wrong-pass"})
    _refused(r, 401, "wrong username or password")


def test_password_guessing_is_locked_out(api: Api, world: dict) -> None:
    from apihelpers import PASSWORD  # type: ignore[import-not-found]

    c = api.client
    before = store_state(api.market)
    for name in ("seller-one", "no-such-user"):
        for _ in range(5):
            r = c.post("/api/auth/token", json={"username": name, "password": "guess-1234"})
            _refused(r, 401, "wrong username or password")
        # the sixth attempt is refused before the password is checked, even the right one
        r = c.post("/api/auth/token", json={"username": name, "password": PASSWORD})
        _refused(r, 429, "too many failed logins")
        assert r.json()["error"] == "too_many_requests"
        assert 1 <= int(r.headers["Retry-After"]) <= 901
    assert store_state(api.market) == before  # no token was issued
    # other accounts are not affected, and a success clears the count
    r = c.post("/api/auth/token", json={"username": "seller-two", "password": PASSWORD})
    assert r.status_code == 200
    for _ in range(4):
        c.post("/api/auth/token", json={"username": "seller-two", "password": "guess-1234"})
    assert (
        c.post("/api/auth/token", json={"username": "seller-two", "password": PASSWORD}).status_code
        == 200
    )
    assert (
        c.post(
            "/api/auth/token", json={"username": "seller-two", "password": "guess-1234"}
        ).status_code
        == 401
    )


def test_nul_and_control_characters_never_reach_the_database(api: Api, world: dict) -> None:
    """PostgreSQL rejects NUL in text; every input path must refuse it first (no 5xx)."""
    c = api.client
    before = store_state(api.market)
    for mode in ("fulltext", "semantic", "hybrid"):
        _refused(c.get("/api/catalog", params={"q": "rain\x00fall", "mode": mode}), 422,
                 "control characters")  # fmt: skip
    r = c.post("/api/auth/token", json={"username": "seller\x00one", "password": "x" * 10})
    _refused(r, 401, "wrong username or password")
    r = c.get("/api/me", headers={"Authorization": "Bearer dbz_0123456789abcd\x00f_secret"})
    _refused(r, 401, "malformed API token")
    for params in ({"tag": "a\x00"}, {"license": "MIT\x00"}, {"task": "t\x00"}):
        assert c.get("/api/catalog", params=params).status_code == 422
    r = c.post("/api/orders", json={"products": ["own\x00ed"], "idempotency_key": "k\x00"},
               headers=world["buyer"])  # fmt: skip
    assert r.status_code == 422
    r = c.post("/api/products", json={"slug": "fine", "title": "bad\x00title"},
               headers=world["s1"])  # fmt: skip
    _refused(r, 422, "control characters")
    _refused(_upload(api, world["s1"], "ok.csv", table_csv(), description="x\x00y"), 422,
             "control characters")  # fmt: skip
    assert store_state(api.market) == before
