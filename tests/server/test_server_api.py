"""The market over HTTP: the whole journey through the real FastAPI app."""

from __future__ import annotations

import hashlib

from apihelpers import Api, table_csv  # type: ignore[import-not-found]


def test_docs_openapi_and_health(api: Api) -> None:
    c = api.client
    assert c.get("/docs").status_code == 200
    spec = c.get("/openapi.json").json()
    paths = set(spec["paths"])
    assert {
        "/api/accounts",
        "/api/auth/token",
        "/api/catalog",
        "/api/products/{slug}/versions",
        "/api/orders",
        "/api/downloads/{token}",
        "/api/admin/ledger/verify",
    } <= paths
    health = c.get("/api/health").json()
    assert health["status"] == "ok" and health["database"] == api.market.db.dialect


def test_sell_search_buy_download_journey(api: Api) -> None:
    c = api.client
    seller = api.account("seller-one", "seller")
    buyer = api.account("buyer-one")
    version = api.product(seller, "weather-obs", 1250, description="hourly weather stations",
                          tags="weather,time-series")  # fmt: skip
    assert version["n_rows"] == 12 and [col["type"] for col in version["columns"]] == [
        "integer",
        "float",
        "string",
    ]
    api.product(seller, "bird-calls", 800, task="audio-classification", tags="audio")

    hits = c.get("/api/catalog", params={"q": "weather stations"}).json()
    assert [h["slug"] for h in hits["hits"]] == ["weather-obs"] and hits["mode"] == "fulltext"
    browse = c.get("/api/catalog", params={"max_price": 1000}).json()
    assert [h["slug"] for h in browse["hits"]] == ["bird-calls"]
    tagged = c.get("/api/catalog", params=[("tag", "weather"), ("tag", "time-series")]).json()
    assert [h["slug"] for h in tagged["hits"]] == ["weather-obs"]

    api.fund(buyer, 2000)
    r = c.post("/api/orders", json={"products": ["weather-obs"], "idempotency_key": "o-1"},
               headers=buyer)  # fmt: skip
    assert r.status_code == 201, r.text
    order = r.json()
    assert (order["total_minor"], order["fee_minor"], order["replayed"]) == (1250, 62, False)
    again = c.post("/api/orders", json={"products": ["weather-obs"], "idempotency_key": "o-1"},
                   headers=buyer).json()  # fmt: skip
    assert again["id"] == order["id"] and again["replayed"] is True
    assert api.me(buyer)["balance_minor"] == 750
    assert api.me(seller)["balance_minor"] == 1188
    assert [o["id"] for o in c.get("/api/orders", headers=buyer).json()] == [order["id"]]
    assert c.get(f"/api/orders/{order['id']}", headers=buyer).json()["items"][0]["version"] == 1

    link = c.post("/api/products/weather-obs/download-link", json={"ttl_seconds": 60},
                  headers=buyer).json()  # fmt: skip
    assert link["url"].startswith("/api/downloads/")
    r = c.get(link["url"])  # the signed link itself is the credential
    assert r.status_code == 200 and r.content == table_csv()
    assert hashlib.sha256(r.content).hexdigest() == link["sha256"]
    assert 'filename="table.csv"' in r.headers["content-disposition"]

    report = c.get("/api/admin/ledger/verify", headers=api.admin).json()
    assert report["ok"] is True and report["total_minor"] == 0 and report["n_rows"] == 5


def test_errors_have_one_shape(api: Api) -> None:
    c = api.client
    r = c.get("/api/me")
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"
    assert r.headers["www-authenticate"] == "Bearer"
    r = c.get("/api/products/nope")
    assert r.status_code == 404 and r.json() == {
        "error": "not_found",
        "message": "product 'nope' not found",
    }
    r = c.post("/api/accounts", json={"username": "x"})
    assert r.status_code == 422 and r.json()["error"] == "invalid_input"
    assert "password" in r.json()["message"]
    r = c.get("/api/catalog", params={"mode": "psychic", "q": "x"})
    assert r.status_code == 422 and r.json()["error"] == "invalid_input"
    buyer = api.account("poor-buyer")
    seller = api.account("seller-two", "seller")
    api.product(seller, "costly", 5000)
    r = c.post("/api/orders", json={"products": ["costly"], "idempotency_key": "k"},
               headers=buyer)  # fmt: skip
    assert r.status_code == 402 and r.json()["error"] == "payment_error"
    assert r.json()["hint"] == "deposit funds first"
    r = c.delete("/api/catalog")
    assert r.status_code == 405 and r.json()["error"] == "method_not_allowed"


def test_logout_revokes_the_token(api: Api) -> None:
    h = api.account("leaver")
    assert api.client.get("/api/me", headers=h).status_code == 200
    assert api.client.post("/api/auth/logout", headers=h).status_code == 204
    assert api.client.get("/api/me", headers=h).status_code == 401


def test_draft_card_edit_and_publish_over_http(api: Api) -> None:
    c = api.client
    seller = api.account("seller-three", "seller")
    c.post("/api/products", json={"slug": "drafty", "title": "Drafty"}, headers=seller)
    r = c.post("/api/products/drafty/versions", headers=seller,
               files={"file": ("d.csv", table_csv(3))},
               data={"license": "MIT", "task": "regression"})  # fmt: skip
    assert r.status_code == 201 and r.json()["status"] == "draft"
    assert c.get("/api/products/drafty").status_code == 404  # drafts are private
    r = c.patch("/api/products/drafty/versions/1", json={"description": "now described"},
                headers=seller)  # fmt: skip
    assert r.status_code == 200 and r.json()["description"] == "now described"
    assert c.post("/api/products/drafty/versions/1/publish", headers=seller).status_code == 200
    r = c.patch("/api/products/drafty/versions/1", json={"description": "changed"},
                headers=seller)  # fmt: skip
    assert r.status_code == 409 and "cannot change" in r.json()["message"]
    assert c.get("/api/products/drafty").json()["latest"]["description"] == "now described"
    mine = c.get("/api/products/mine", headers=seller).json()
    assert [p["slug"] for p in mine] == ["drafty"]
