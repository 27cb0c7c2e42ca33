"""Cached public catalog reads: ETag, 304, and invalidation by the store's triggers."""

from __future__ import annotations

from apihelpers import Api  # type: ignore[import-not-found]
from sqlalchemy import text


def _generation(api: Api) -> int:
    with api.market.db.engine.connect() as conn:
        return int(conn.execute(text("SELECT generation FROM catalog_state")).scalar_one())


def test_etag_304_and_invalidation_by_any_writer(api: Api) -> None:
    c = api.client
    seller = api.account("seller-c", "seller")
    api.product(seller, "cached-one", 500)
    first = c.get("/api/products/cached-one")
    etag = first.headers["etag"]
    assert first.status_code == 200 and first.headers["cache-control"] == "no-cache"
    again = c.get("/api/products/cached-one")
    assert again.content == first.content and again.headers["etag"] == etag
    for header in (etag, f"W/{etag}", f'"nope", {etag}', "*"):
        r = c.get("/api/products/cached-one", headers={"If-None-Match": header})
        assert r.status_code == 304 and r.content == b"" and r.headers["etag"] == etag
    assert c.get("/api/products/cached-one", headers={"If-None-Match": '"x"'}).status_code == 200
    # a change made outside this app (the library, straight to the store) bumps the
    # generation through the triggers, so the cached answer is not served again
    before = _generation(api)
    owner = api.market.account_by_name("seller-c")
    api.market.set_listing(owner, "cached-one", 777)
    assert _generation(api) > before
    r = c.get("/api/products/cached-one", headers={"If-None-Match": etag})
    assert r.status_code == 200 and r.json()["listing"]["price_minor"] == 777
    assert r.headers["etag"] != etag
    assert [h["price_minor"] for h in c.get("/api/catalog").json()["hits"]] == [777]


def test_private_and_failed_answers_are_not_cached(api: Api) -> None:
    c = api.client
    seller = api.account("seller-d", "seller")
    missing = c.get("/api/products/later-one")
    assert missing.status_code == 404 and "etag" not in missing.headers
    api.product(seller, "later-one", 300)
    assert c.get("/api/products/later-one").status_code == 200  # the 404 was not kept
    # an owner's view (drafts included) is never cached nor served from the cache
    r = c.post("/api/products/later-one/versions", headers=seller,
               files={"file": ("t.csv", b"a,b\n1,2\n", "text/csv")},
               data={"license": "MIT", "task": "classification"})  # fmt: skip
    assert r.status_code == 201, r.text
    mine = c.get("/api/products/later-one", headers=seller)
    assert "etag" not in mine.headers and mine.json()["versions"] == [1, 2]
    assert c.get("/api/products/later-one").json()["versions"] == [1]
    # other routes and methods are untouched
    assert "etag" not in c.get("/api/health").headers
    assert "etag" not in c.get("/api/catalog/", follow_redirects=False).headers
