"""In-process tests of the web pages: CSRF, sessions, escaping, errors, money, charts.

They drive the real app (``create_app`` with the pages mounted, on a temp SQLite store)
through Starlette's ``TestClient``; the browser suite (``test_browser.py``) repeats the
main flows in chromium.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from databazaar.core.errors import InvalidInput
from databazaar.core.money import format_minor as money
from databazaar.core.money import parse_decimal as parse_money
from databazaar.server.web import router as pages_router
from databazaar.server.web.charts import bar_svg, earnings_svg, line_svg
from databazaar.server.web.rendering import TEMPLATES_DIR, make_env, safe_next
from databazaar.server.web.session import COOKIE_NAME, SECURE_COOKIE_NAME
from databazaar.server.web.statements import account_postings, cumulative, seller_sales

PASSWORD = "correct-horse-9"
CSV = b"x,y,label\n1,2,a\n3,4,b\n5,6,a\n"
EVIL = '<script>alert("x")</script>'


def _signup(client: TestClient, csrf_of: Callable[[str], str], username: str, role: str) -> Any:
    token = csrf_of(client.get("/signup").text)
    response = client.post(
        "/signup",
        data={
            "csrf_token": token,
            "username": username,
            "password": PASSWORD,
            "password_again": PASSWORD,
            "role": role,
        },
    )
    assert response.status_code == 200, response.text
    return response


def _listed_product(web_app: Any, slug: str = "toy-data", price: int = 1000) -> Any:
    market = web_app.state.market
    seller = market.create_account(f"sel-{slug}"[:32], PASSWORD, "seller")
    market.create_product(seller, slug, "Toy data")
    market.add_version(
        seller, slug, io.BytesIO(CSV), "toy.csv", {"license": "MIT", "task": "classification"}
    )
    market.publish(seller, slug, 1)
    market.set_listing(seller, slug, price)
    return seller


# ---------------------------------------------------------------------- CSRF
def _post_routes() -> list[str]:
    from databazaar.server.web.accounts import router as accounts_router
    from databazaar.server.web.buying import router as buying_router
    from databazaar.server.web.economics import router as econ_router
    from databazaar.server.web.mixture import router as mixture_router
    from databazaar.server.web.review import router as review_router
    from databazaar.server.web.selling import router as selling_router
    from databazaar.server.web.value_pages import router as value_router

    paths = []
    routers = (
        pages_router, econ_router, buying_router, selling_router, value_router, mixture_router,
        review_router, accounts_router,
    )  # fmt: skip
    for route in [r for router in routers for r in router.routes]:
        if "POST" in (getattr(route, "methods", None) or set()):
            path = route.path.replace("{slug}", "toy-data").replace("{number}", "1")
            paths.append(path.replace("{token}", "0" * 32))
    return sorted(set(paths))


def test_every_form_route_is_covered() -> None:
    assert set(_post_routes()) == {
        "/products/toy-data/buy",
        "/products/toy-data/download",
        "/login",
        "/signup",
        "/logout",
        "/sell/new",
        "/sell/products/toy-data/versions",
        "/sell/products/toy-data/versions/1/publish",
        "/sell/products/toy-data/listing",
        "/admin/ledger/verify",
        "/admin/deposits",
        "/products/toy-data/bid",
        "/value-search",
        "/mixture-plan",
        "/mixture-plan/buy",
        "/sell/products/toy-data/pricing",
        "/sell/products/toy-data/auction/close",
        "/products/toy-data/dp",
        "/sell/products/toy-data/dp",
        "/sell/products/toy-data/bundle",
        "/admin/review/toy-data/1/approve",
        "/admin/review/toy-data/1/reject",
        "/admin/review/policy",
        "/products/toy-data/quote",
        "/quotes/00000000000000000000000000000000/confirm",
        "/wallet/top-up",
        "/sell/products/toy-data/derivative",
    }


@pytest.mark.parametrize("path", _post_routes())
def test_posts_without_csrf_token_are_refused(
    client: TestClient, csrf_of: Callable[[str], str], web_app: Any, path: str
) -> None:
    _listed_product(web_app)
    web_app.state.market.create_account("boss", PASSWORD, "admin")
    token = csrf_of(client.get("/login").text)
    client.post("/login", data={"csrf_token": token, "username": "boss", "password": PASSWORD})
    before = web_app.state.market.verify_ledger()
    for data in ({}, {"csrf_token": ""}, {"csrf_token": "not-the-token"}):
        response = client.post(path, data={**data, "username": "x", "price": "1"})
        assert response.status_code == 403, (path, response.text[:300])
        assert response.headers["content-type"].startswith("text/html")
        assert "security token" in response.text
    after = web_app.state.market.verify_ledger()
    assert after.n_rows == before.n_rows


def test_token_of_another_session_is_refused(web_app: Any, csrf_of: Callable[[str], str]) -> None:
    with TestClient(web_app) as alice, TestClient(web_app) as mallory:
        _signup(alice, csrf_of, "alice", "seller")
        foreign = csrf_of(mallory.get("/login").text)
        response = alice.post("/sell/new", data={"csrf_token": foreign, "slug": "a", "title": "A"})
        assert response.status_code == 403
        assert web_app.state.market.my_products(web_app.state.market.account_by_name("alice")) == []


# ---------------------------------------------------------------------- sessions
def test_session_cookie_flags_over_http_and_https(web_app: Any) -> None:
    with TestClient(web_app) as plain:
        cookie = plain.get("/").headers["set-cookie"]
        assert cookie.startswith(COOKIE_NAME + "=")
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
        assert "Secure" not in cookie
    with TestClient(web_app, base_url="https://testserver") as tls:
        cookie = tls.get("/").headers["set-cookie"]
        assert cookie.startswith(SECURE_COOKIE_NAME + "=")
        assert "Secure" in cookie and "HttpOnly" in cookie


def test_login_rotates_csrf_and_logout_revokes_the_token(
    client: TestClient, csrf_of: Callable[[str], str], web_app: Any
) -> None:
    web_app.state.market.create_account("sam", PASSWORD, "seller")
    before = csrf_of(client.get("/login").text)
    response = client.post(
        "/login", data={"csrf_token": before, "username": "sam", "password": PASSWORD}
    )
    assert response.url.path == "/sell"
    after = csrf_of(response.text)
    assert after != before
    stolen = client.cookies.get(COOKIE_NAME)
    response = client.post("/logout", data={"csrf_token": after})
    assert "You are logged out" in response.text
    # Replaying the old cookie does not log anyone in: the token was revoked.
    client.cookies.clear()
    client.cookies.set(COOKIE_NAME, stolen)
    response = client.get("/sell", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=/sell"


def test_tampered_cookie_is_ignored(client: TestClient, csrf_of: Callable[[str], str]) -> None:
    _signup(client, csrf_of, "tess", "seller")
    good = client.cookies.get(COOKIE_NAME)
    assert good
    client.cookies.clear()
    client.cookies.set(COOKIE_NAME, good[:-3] + ("aaa" if not good.endswith("aaa") else "bbb"))
    response = client.get("/sell", follow_redirects=False)
    assert response.status_code == 303


def test_wrong_password_and_unsafe_next(
    client: TestClient, csrf_of: Callable[[str], str], web_app: Any
) -> None:
    web_app.state.market.create_account("bob", PASSWORD, "buyer")
    token = csrf_of(client.get("/login").text)
    response = client.post(
        "/login", data={"csrf_token": token, "username": "bob", "password": "wrong-password"}
    )
    assert response.status_code == 401
    assert "wrong username or password" in response.text
    assert 'value="bob"' in response.text
    response = client.post(
        "/login",
        data={
            "csrf_token": token,
            "username": "bob",
            "password": PASSWORD,
            "next": "//evil.example/",
        },
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/purchases"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/sell", "/sell"),
        ("/products/a?version=2", "/products/a?version=2"),
        ("//evil.example", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("javascript:alert(1)", "/"),
        ("sell", "/"),
        ("", "/"),
        (None, "/"),
    ],
)
def test_safe_next(raw: str | None, expected: str) -> None:
    assert safe_next(raw) == expected


# ---------------------------------------------------------------------- escaping
def test_autoescape_is_on_and_no_template_opts_out() -> None:
    env = make_env()
    for name in env.list_templates():
        assert env.select_autoescape(name) if callable(env.autoescape) else env.autoescape
        source = (TEMPLATES_DIR / name).read_text()
        assert "|safe" not in source.replace(" ", ""), name
        assert "autoescape false" not in source, name
        assert "Markup" not in source, name


def test_product_card_escapes_every_field() -> None:
    from databazaar.market.schemas import SearchHit

    env = make_env()
    hit = SearchHit(
        slug="s",
        title=EVIL,
        seller="sel",
        version=1,
        task="classification",
        license="MIT",
        tags=["a"],
        price_minor=150,
        currency="USD",
        n_rows=3,
        n_columns=2,
        description='"><img src=x onerror=alert(1)>',
    )
    html = env.from_string('{% import "_macros.html" as m %}{{ m.product_card(hit) }}').render(
        hit=hit
    )
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in html


def test_search_text_and_upload_cells_are_escaped(
    client: TestClient, csrf_of: Callable[[str], str], web_app: Any
) -> None:
    response = client.get("/catalog", params={"q": EVIL})
    assert response.status_code == 200
    assert "<script>alert" not in response.text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in response.text
    market = web_app.state.market
    seller = market.create_account("cells", PASSWORD, "seller")
    market.create_product(seller, "cells", "Cells")
    market.add_version(
        seller,
        "cells",
        io.BytesIO(b"note,n\n" + EVIL.replace('"', "").encode() + b",1\n"),
        "cells.csv",
        {"license": "MIT", "task": "classification"},
    )
    market.publish(seller, "cells", 1)
    page = client.get("/products/cells").text
    assert "<script>alert(x)" not in page
    assert "&lt;script&gt;alert(x)&lt;/script&gt;" in page


def test_pages_send_security_headers(client: TestClient) -> None:
    response = client.get("/")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    css = client.get("/static/web.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    js = client.get("/static/web.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]


# ---------------------------------------------------------------------- errors
def test_errors_render_as_pages_with_their_status(
    client: TestClient, csrf_of: Callable[[str], str]
) -> None:
    response = client.get("/products/no-such-product")
    assert response.status_code == 404
    assert "product &#39;no-such-product&#39; not found" in response.text
    assert client.get("/catalog", params={"min_price": "abc"}).status_code == 422
    assert client.get("/catalog", params={"max_price": "1.234"}).status_code == 422
    bad_mode = client.get("/catalog", params={"mode": "bogus"})
    assert bad_mode.status_code == 422 and "unknown search mode" in bad_mode.text
    page_404 = client.get("/no/such/page", headers={"accept": "text/html"})
    assert page_404.status_code == 404 and page_404.headers["content-type"].startswith("text/html")
    api_404 = client.get("/api/no/such/route")
    assert api_404.status_code == 404 and api_404.json()["error"] == "not_found"
    anon = client.get("/sell", follow_redirects=False)
    assert anon.status_code == 303 and anon.headers["location"] == "/login?next=/sell"
    _signup(client, csrf_of, "bea", "buyer")
    assert client.get("/sell").status_code == 403
    assert client.get("/admin").status_code == 403
    assert client.get("/sell/earnings.svg").status_code == 403


def test_signup_errors_keep_the_form(client: TestClient, csrf_of: Callable[[str], str]) -> None:
    token = csrf_of(client.get("/signup").text)
    base = {"csrf_token": token, "password": PASSWORD, "role": "seller"}
    differ = client.post("/signup", data={**base, "username": "ok-name", "password_again": "x"})
    assert differ.status_code == 422 and "the two passwords differ" in differ.text
    bad = client.post("/signup", data={**base, "username": "Bad Name", "password_again": PASSWORD})
    assert bad.status_code == 422 and "invalid username" in bad.text
    assert 'value="Bad Name"' in bad.text
    admin = client.post(
        "/signup", data={**base, "role": "admin", "username": "sneaky", "password_again": PASSWORD}
    )
    assert admin.status_code == 422
    _signup(client, csrf_of, "taken", "buyer")
    token = csrf_of(client.get("/signup").text)
    dup = client.post(
        "/signup",
        data={**base, "csrf_token": token, "username": "taken", "password_again": PASSWORD},
    )
    assert dup.status_code == 409 and "is taken" in dup.text


# ---------------------------------------------------------------------- money flows
def test_purchase_without_funds_is_refused_and_changes_nothing(
    client: TestClient, csrf_of: Callable[[str], str], web_app: Any
) -> None:
    _listed_product(web_app)
    _signup(client, csrf_of, "poor-buyer", "buyer")
    page = client.get("/products/toy-data").text
    key = re.search(r'name="idempotency_key" value="([0-9a-f]+)"', page).group(1)
    response = client.post(
        "/products/toy-data/buy", data={"csrf_token": csrf_of(page), "idempotency_key": key}
    )
    assert response.status_code == 402
    # the booking path's refusal, told in money (not minor units) with the way out
    assert "your balance of 0.00 USD does not cover 10.00 USD" in response.text
    assert "minor units" not in response.text and "add money" in response.text
    market = web_app.state.market
    buyer = market.account_by_name("poor-buyer")
    assert market.orders_for(buyer) == [] and buyer.balance_minor == 0
    assert market.verify_ledger().ok


def test_double_submitted_purchase_is_charged_once(
    client: TestClient, csrf_of: Callable[[str], str], web_app: Any
) -> None:
    seller = _listed_product(web_app, price=1000)
    market = web_app.state.market
    _signup(client, csrf_of, "rich-buyer", "buyer")
    buyer = market.account_by_name("rich-buyer")
    market.deposit(buyer.id, 5000)
    page = client.get("/products/toy-data").text
    form = {
        "csrf_token": csrf_of(page),
        "idempotency_key": re.search(r'name="idempotency_key" value="([0-9a-f]+)"', page)[1],
    }
    first = client.post("/products/toy-data/buy", data=form)
    assert first.status_code == 200 and "you bought toy-data for 10.00 USD" in first.text
    again = client.post("/products/toy-data/buy", data=form)
    assert "not charged twice" in again.text
    assert market.get_account(buyer.id).balance_minor == 4000
    assert [s.net_minor for s in seller_sales(market, seller.id)] == [950]
    points = cumulative(account_postings(market, seller.id), ("sale",))
    assert [p[1] for p in points] == [950]
    # a download goes through a signed link to the file
    response = client.post("/products/toy-data/download", data={"csrf_token": form["csrf_token"]})
    assert response.status_code == 200 and response.content == CSV
    assert response.url.path.startswith("/api/downloads/")


def test_oversized_page_upload_gets_an_html_page(tmp_path: Path, csrf_of: Any) -> None:
    from fastapi.testclient import TestClient

    from databazaar.core.config import Settings
    from databazaar.market.service import Market
    from databazaar.server.app import create_app
    from databazaar.server.web import mount_web

    home = tmp_path / "home"
    settings = Settings(
        home=home,
        secret_key="s" * 32,
        database_url=f"sqlite:///{home / 'db.sqlite'}",
        max_upload_bytes=4096,
    )
    market = Market.from_settings(settings)
    app = mount_web(create_app(settings, market=market))
    try:
        with TestClient(app) as client:
            _signup(client, csrf_of, "big-seller", "seller")
            token = csrf_of(client.get("/sell/new").text)
            client.post("/sell/new", data={"csrf_token": token, "slug": "big", "title": "Big"})
            card = {"csrf_token": token, "task": "classification", "license": "MIT"}
            big = b"x,label\n" + b"1,a\n" * 200_000  # 800 KB, over limit + multipart slack
            response = client.post(
                "/sell/products/big/versions",
                data=card,
                files={"file": ("big.csv", big, "text/csv")},
                headers={"accept": "text/html"},
            )
            assert response.status_code == 413
            assert response.headers["content-type"].startswith("text/html")
            assert 'role="alert"' in response.text and "larger than the limit" in response.text
            assert market.get_product("big", market.account_by_name("big-seller")).versions == []
            # the API keeps its JSON answer for the same oversized body
            api = client.post("/api/products/big/versions", files={"file": ("b.csv", big)})
            assert api.status_code == 413 and api.json()["error"] == "payload_too_large"
    finally:
        market.close()


def test_upload_errors_leave_no_version(
    client: TestClient, csrf_of: Callable[[str], str], web_app: Any
) -> None:
    _signup(client, csrf_of, "up-seller", "seller")
    token = csrf_of(client.get("/sell/new").text)
    client.post("/sell/new", data={"csrf_token": token, "slug": "up", "title": "Up"})
    card = {"csrf_token": token, "task": "classification", "license": "MIT"}
    cases = [
        (("../../etc/passwd.csv", b"a\n1\n"), "invalid file name"),
        (("data.exe", b"MZ"), "unsupported file type"),
        (("empty.csv", b""), "empty"),
        (("bad.parquet", b"not parquet at all"), "not a Parquet file"),
    ]
    for (name, body), message in cases:
        response = client.post(
            "/sell/products/up/versions", data=card, files={"file": (name, body, "text/plain")}
        )
        assert response.status_code in (413, 422), (name, response.status_code)
        assert message in response.text
        assert 'role="alert"' in response.text
    missing = client.post("/sell/products/up/versions", data=card)
    assert missing.status_code == 422 and "choose a file" in missing.text
    market = web_app.state.market
    assert market.get_product("up", market.account_by_name("up-seller")).versions == []
    price = client.post(
        "/sell/products/up/listing", data={"csrf_token": token, "price": "5", "active": "on"}
    )
    assert price.status_code == 409 and "no published version" in price.text


def test_seller_cannot_manage_another_sellers_product(
    client: TestClient, csrf_of: Callable[[str], str], web_app: Any
) -> None:
    _listed_product(web_app)
    _signup(client, csrf_of, "other-seller", "seller")
    assert client.get("/sell/products/toy-data").status_code == 403
    token = csrf_of(client.get("/sell").text)
    response = client.post(
        "/sell/products/toy-data/listing", data={"csrf_token": token, "price": "0", "active": "on"}
    )
    assert response.status_code == 403
    assert web_app.state.market.get_product("toy-data").listing.price_minor == 1000


# ---------------------------------------------------------------------- helpers
@pytest.mark.parametrize(
    ("raw", "minor"),
    [("12", 1200), ("12.5", 1250), ("$12.50", 1250), ("1,234.05", 123405), ("0", 0)],
)
def test_parse_money(raw: str, minor: int) -> None:
    assert parse_money(raw) == minor


@pytest.mark.parametrize("raw", ["", "abc", "-1", "1.234", "nan", "inf", "1e20"])
def test_parse_money_refuses(raw: str) -> None:
    with pytest.raises(InvalidInput):
        parse_money(raw)


def test_money_format() -> None:
    assert money(0) == "0.00 USD"
    assert money(123456789) == "1,234,567.89 USD"
    assert money(-5) == "-0.05 USD"


def test_charts_are_deterministic_svg() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    points = [(t0, 950), (t0 + timedelta(days=2), 1900)]
    svg = earnings_svg(points)
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    assert svg == earnings_svg(points)
    assert "no sales yet" in earnings_svg([])
    bars = bar_svg(["a<b>", "c"], [0.5, -0.25], title="Values", xlabel="value")
    assert "<b>" not in bars and "a&lt;b&gt;" in bars
    assert "<svg" in line_svg([0, 1], {"ours": [1, 0]}, title="t", xlabel="x", ylabel="y")


def test_demo_app_serves_the_seeded_market(tmp_path: Path) -> None:
    from databazaar.server.web.demo import DEMO_ADMIN, build_demo_app

    lines: list[str] = []
    app, summary = build_demo_app(tmp_path, lines.append, gate=None)
    try:
        assert summary["ledger_ok"] and lines
        with TestClient(app) as c:
            home = c.get("/")
            assert "Iris flower measurements" in home.text
            token = re.search(r'name="csrf_token" value="([^"]+)"', c.get("/login").text)[1]
            from databazaar.demo.market import DEMO_PASSWORD

            admin = c.post(
                "/login",
                data={"csrf_token": token, "username": DEMO_ADMIN, "password": DEMO_PASSWORD},
            )
            assert admin.url.path == "/admin"
            token = re.search(r'name="csrf_token" value="([^"]+)"', admin.text)[1]
            report = c.post("/admin/ledger/verify", data={"csrf_token": token})
            assert "Ledger OK" in report.text
    finally:
        app.state.market.close()


# ---------------------------------------------------------------------- economics
def _labelled_csv(n: int, seed: int, *, flip: bool = False) -> bytes:
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    y = (x[:, 0] > 0).astype(int)
    if flip:
        y = 1 - y
    rows = [f"{a:.3f},{b:.3f},{'p' if c else 'q'}" for (a, b), c in zip(x, y, strict=True)]
    return ("f1,f2,label\n" + "\n".join(rows) + "\n").encode()


def _econ_market(web_app: Any) -> tuple[Any, Any]:
    market = web_app.state.market
    seller = market.create_account("econ-seller", PASSWORD, "seller")
    for slug, seed, flip in (("near", 1, False), ("flip", 2, True)):
        market.create_product(seller, slug, slug.title())
        market.add_version(
            seller,
            slug,
            io.BytesIO(_labelled_csv(40, seed, flip=flip)),
            "t.csv",
            {"license": "MIT", "task": "classification"},
        )
        market.publish(seller, slug, 1)
        market.set_listing(seller, slug, 700)
    buyer = market.create_account("econ-buyer", PASSWORD, "buyer")
    market.deposit(buyer.id, 50_000)
    return seller, buyer


def _login(client: TestClient, csrf_of: Callable[[str], str], username: str) -> str:
    token = csrf_of(client.get("/login").text)
    page = client.post(
        "/login", data={"csrf_token": token, "username": username, "password": PASSWORD}
    )
    return csrf_of(page.text)


def test_value_search_ranks_and_reports_errors(
    client: TestClient, csrf_of: Callable[[str], str], web_app: Any
) -> None:
    _econ_market(web_app)
    # visitors may rank too: the form is open and the file is not kept
    visitor = client.get("/value-search", follow_redirects=False)
    assert visitor.status_code == 200
    files = {"validation": ("v.csv", _labelled_csv(24, 3), "text/csv")}
    page = client.post(
        "/value-search",
        data={"csrf_token": csrf_of(visitor.text), "label_column": "label"},
        files=files,
    )
    assert page.status_code == 200
    ranked = re.findall(r'<th scope="row">\d+\. <a href="/products/([a-z-]+)"', page.text)
    assert ranked == ["near", "flip"]
    assert "points" in page.text and "pool-note" not in page.text
    assert page.text.count('src="data:image/svg+xml;base64,') == 2
    token = _login(client, csrf_of, "econ-buyer")
    full = client.post(
        "/value-search", data={"csrf_token": token, "label_column": "label"}, files=files
    )
    assert 'data-testid="pool-note"' not in full.text  # first search of this session
    only = client.post(
        "/value-search",
        data={"csrf_token": token, "label_column": "label", "products": "near"},
        files=files,
    )
    assert re.findall(r'<th scope="row">\d+\. <a href="/products/([a-z-]+)"', only.text) == ["near"]
    # the pool changed since the last search (flip left it): the page says so
    assert 'data-testid="pool-note"' in only.text and "without flip" in only.text
    missing = client.post(
        "/value-search", data={"csrf_token": token, "label_column": "nope"}, files=files
    )
    assert missing.status_code in (404, 422) and 'role="alert"' in missing.text
    bad_file = client.post(
        "/value-search",
        data={"csrf_token": token, "label_column": "label"},
        files={"validation": ("v.exe", b"MZ", "application/octet-stream")},
    )
    assert bad_file.status_code == 422 and "unsupported file type" in bad_file.text
    no_file = client.post("/value-search", data={"csrf_token": token, "label_column": "label"})
    assert no_file.status_code == 422 and "choose a file" in no_file.text
    bad_k = client.post(
        "/value-search", data={"csrf_token": token, "label_column": "label", "k": "0"}, files=files
    )
    assert bad_k.status_code == 422


def _quote_and_confirm(client: TestClient, slug: str, data: dict[str, Any], **kw: Any) -> Any:
    """Ask for a quote on the product page's form, then confirm it; the receipt page."""
    quote = client.post(f"/products/{slug}/quote", data=data, **kw)
    assert quote.status_code == 200, quote.text[:500]
    assert 'data-testid="quote-price"' in quote.text
    token = re.search(r'action="/quotes/([0-9a-f]+)/confirm"', quote.text)[1]
    return quote, client.post(f"/quotes/{token}/confirm", data={"csrf_token": data["csrf_token"]})


def test_pricing_choice_and_purchases_under_each_mechanism(
    web_app: Any, csrf_of: Callable[[str], str]
) -> None:
    _seller, buyer = _econ_market(web_app)
    market = web_app.state.market
    with TestClient(web_app) as s, TestClient(web_app) as b:
        st = _login(s, csrf_of, "econ-seller")
        form = {"csrf_token": st, "active": "on"}
        r = s.post(
            "/sell/products/flip/pricing",
            data={
                **form,
                "mechanism": "query",
                "query_column": "label",
                "qp:label:0": "3.00",
                "qp:label:1": "2",
            },
        )
        assert r.status_code == 200 and "sold by query-based" in r.text
        assert "Buyers pay per selected value by label: p 3.00 USD, q 2.00 USD." in r.text
        bad = s.post("/sell/products/flip/pricing", data={**form, "mechanism": "bogus"})
        assert bad.status_code == 422 and "choose how buyers pay" in bad.text
        worse = s.post("/sell/products/near/pricing", data={**form, "mechanism": "model"})
        assert worse.status_code == 422 and "offer at least one noise level" in worse.text
        typo = s.post(
            "/sell/products/near/pricing",
            data={**form, "mechanism": "value", "share": "150", "floor": "1.0x"},
        )
        assert typo.status_code == 422
        assert "enter a percent from 0.01 to 100" in typo.text  # next to the share field
        assert 'id="msg-floor"' in typo.text and 'aria-invalid="true"' in typo.text
        s.post(
            "/sell/products/near/pricing",
            data={**form, "mechanism": "value", "share": "50", "floor": "1", "cap": "40"},
        )
        saved = s.get("/sell/products/near?tab=pricing").text
        assert 'value="50"' in saved and 'value="1.00"' in saved and 'value="40.00"' in saved

        bt = _login(b, csrf_of, "econ-buyer")
        page = b.get("/products/flip").text
        assert "Get a quote" in page and 'name="where:label"' in page
        assert "from 2.00 USD" in page  # the headline price of a query-priced product
        key = re.search(r'name="idempotency_key" value="([0-9a-f]+)"', page)[1]
        quote, sale = _quote_and_confirm(
            b, "flip", {"csrf_token": bt, "idempotency_key": key, "where:label": "0"}
        )
        assert "3.00 USD" in quote.text and "label is p" in quote.text
        assert sale.status_code == 200 and 'data-testid="answer"' in sale.text
        assert "3.00 USD" in sale.text  # the price point of label = p
        forged = b.post(
            "/products/flip/quote",
            data={"csrf_token": bt, "idempotency_key": key + "x", "where:label": "9"},
        )
        assert forged.status_code == 422 and "unknown value" in forged.text

        page = b.get("/products/near").text
        assert "Get a quote" in page
        key = re.search(r'name="idempotency_key" value="([0-9a-f]+)"', page)[1]
        before = market.get_account(buyer.id).balance_minor
        quote, sale = _quote_and_confirm(
            b,
            "near",
            {"csrf_token": bt, "idempotency_key": key, "label_column": "label", "worth": "20"},
            files={"validation": ("v.csv", _labelled_csv(24, 3), "text/csv")},
        )
        assert market.get_account(buyer.id).balance_minor < before  # charged at confirm only
        assert sale.status_code == 200, sale.text[:500]
        assert "you bought near for" in sale.text.lower()
        assert "The seller asks 50% of that value" in sale.text
        assert b.get("/products/near").text.count("You have bought this product.") == 1
    report = market.verify_ledger()
    assert report.ok
    assert market.get_account(buyer.id).balance_minor < 50_000 - 300


def test_auction_bid_and_close(web_app: Any, csrf_of: Callable[[str], str]) -> None:
    _seller, buyer = _econ_market(web_app)
    market = web_app.state.market
    with TestClient(web_app) as s, TestClient(web_app) as b:
        st = _login(s, csrf_of, "econ-seller")
        r = s.post(
            "/sell/products/near/pricing",
            data={
                "csrf_token": st,
                "mechanism": "auction",
                "reserve": "5",
                "units": "1",
                "active": "on",
            },
        )
        assert "sold by sealed-bid auction" in r.text
        assert "Close the auction" in r.text
        bt = _login(b, csrf_of, "econ-buyer")
        page = b.get("/products/near").text
        assert "Review my bid" in page and "reserve 5.00 USD" in page
        low = b.post("/products/near/bid", data={"csrf_token": bt, "amount": "abc"})
        assert low.status_code == 422
        below = b.post("/products/near/bid", data={"csrf_token": bt, "amount": "4"})
        assert below.status_code == 422 and "below the reserve" in below.text
        review = b.post("/products/near/bid", data={"csrf_token": bt, "amount": "12"})
        assert 'data-testid="quote-price">12.00 USD<' in review.text
        assert "Nothing is charged now" in review.text
        ok = b.post("/products/near/bid", data={"csrf_token": bt, "amount": "12", "confirm": "yes"})
        assert "Your sealed bid of 12.00 USD is in" in ok.text
        closed = s.post("/sell/products/near/auction/close", data={"csrf_token": st})
        assert "Auction closed: 1 licence(s) sold at 5.00 USD each" in closed.text
    assert market.get_account(buyer.id).balance_minor == 50_000 - 500
    assert market.has_access(buyer, "near")


def test_bundle_value_report_on_the_product_page(
    client: TestClient, web_app: Any, csrf_of: Callable[[str], str]
) -> None:
    from databazaar.server.web.economics import economics as econ_of

    market = web_app.state.market
    owner = market.create_account("bundler", PASSWORD, "seller")
    market.create_account("helper", PASSWORD, "seller")
    rows = [
        line.decode() + ("," + ("a" if i % 2 else "b"))
        for i, line in enumerate(_labelled_csv(40, 4).splitlines()[1:])
    ]
    body = ("f1,f2,label,source\n" + "\n".join(rows) + "\n").encode()
    market.create_product(owner, "bundle", "Bundle")
    market.add_version(
        owner, "bundle", io.BytesIO(body), "b.csv", {"license": "MIT", "task": "classification"}
    )
    market.publish(owner, "bundle", 1)
    market.set_listing(owner, "bundle", 1000)

    class _Req:
        app = web_app

    econ = econ_of(_Req())  # type: ignore[arg-type]
    reference = [
        {"f1": float(r.split(",")[0]), "f2": float(r.split(",")[1]), "label": r.split(",")[2]}
        for r in _labelled_csv(20, 5).decode().splitlines()[1:]
    ]
    econ.register_bundle(
        owner,
        "bundle",
        group_column="source",
        label_column="label",
        contributors={"a": "bundler", "b": "helper"},
        reference=reference,
    )
    page = client.get("/products/bundle").text
    assert "Who contributed what" in page and "bundler" in page and "helper" in page
    assert 'data-testid="valuation"' in page
    assert 'src="data:image/svg+xml;base64,' in page


def test_mount_web_is_idempotent(web_app: Any) -> None:
    from databazaar.server.web import mount_web

    before = len(web_app.router.routes)
    assert mount_web(web_app) is web_app
    assert len(web_app.router.routes) == before
    with TestClient(web_app) as c:
        assert c.get("/").status_code == 200
        assert c.get("/api/health").json()["status"] == "ok"


def test_login_page_locks_out_password_guessing(
    client: TestClient, csrf_of: Callable[[str], str]
) -> None:
    _signup(client, csrf_of, "guessed", "buyer")
    client.post("/logout", data={"csrf_token": csrf_of(client.get("/").text)})
    token = csrf_of(client.get("/login").text)
    form = {"csrf_token": token, "username": "guessed", "password": "not-it-123"}
    for _ in range(5):
        page = client.post("/login", data=form)
        assert page.status_code == 401 and "wrong username or password" in page.text
    page = client.post("/login", data={**form, "password": PASSWORD})
    assert page.status_code == 429 and "too many failed logins" in page.text
    assert 'role="alert"' in page.text and "Welcome back" not in page.text


def test_private_statistics_pages(client: TestClient, csrf_of: Callable[[str], str], web_app: Any):
    """A seller offers DP statistics on the manage page; a buyer asks for one."""
    market = web_app.state.market
    _listed_product(web_app)  # columns x, y, label; seller "sel-toy-data"
    token = csrf_of(client.get("/login").text)
    client.post(
        "/login", data={"csrf_token": token, "username": "sel-toy-data", "password": PASSWORD}
    )
    manage = client.get("/sell/products/toy-data?tab=privacy")
    assert 'id="dp-title"' in manage.text and "Offer private statistics" in manage.text
    # the form has a row per column (x, y, label); x is column 0, label column 2
    assert 'name="dp_lo:0"' in manage.text and 'name="dp_cats:2"' in manage.text
    form = {"csrf_token": csrf_of(manage.text), "epsilon_total": "1"}
    bad = client.post("/sell/products/toy-data/dp", data=form)
    assert bad.status_code == 422 and "tick at least one column" in bad.text
    assert 'role="alert"' in bad.text
    bad = client.post(
        "/sell/products/toy-data/dp",
        data={**form, "dp_on:0": "on", "dp_lo:0": "5", "dp_hi:0": "1x", "dp_bins:0": "10"},
    )
    assert bad.status_code == 422 and 'id="msg-dp_hi-0"' in bad.text
    assert "enter a number, e.g. 0 or 10.5" in bad.text
    columns = {
        "dp_on:0": "on", "dp_lo:0": "0", "dp_hi:0": "10", "dp_bins:0": "10",
        "dp_on:2": "on", "dp_cats:2": "a, b",
    }  # fmt: skip
    ok = client.post("/sell/products/toy-data/dp", data={**form, **columns})
    assert ok.status_code == 200 and "now offers private statistics" in ok.text
    assert 'data-testid="dp-total">1<' in ok.text
    client.post("/logout", data={"csrf_token": csrf_of(ok.text)})
    # anyone logged in may ask; the page shows the budget and the answer
    _signup(client, csrf_of, "curious", "buyer")
    page = client.get("/products/toy-data")
    assert 'data-testid="dp-remaining">1<' in page.text
    ask = {"csrf_token": csrf_of(page.text), "statistic": "mean", "column": "x"}
    answer = client.post("/products/toy-data/dp", data={**ask, "epsilon": "0.6"})
    assert answer.status_code == 200 and "Private mean of x in toy-data:" in answer.text
    assert "budget left 0.4" in answer.text
    assert 'data-testid="dp-remaining">0.4<' in answer.text
    spent = market.verify_ledger().n_rows
    over = client.post("/products/toy-data/dp", data={**ask, "epsilon": "0.5"})
    assert over.status_code == 403 and "only 0.4" in over.text  # nothing spent
    assert 'data-testid="dp-remaining">0.4<' in over.text
    for bad_eps, message in (("abc", "must be a number"), ("-1", "epsilon")):
        bad = client.post("/products/toy-data/dp", data={**ask, "epsilon": bad_eps})
        assert bad.status_code == 422 and message in bad.text
    bad = client.post("/products/toy-data/dp", data={**ask, "column": "y", "epsilon": "0.1"})
    assert bad.status_code == 422 and "not offered" in bad.text
    assert market.verify_ledger().n_rows == spent
    hist = client.post(
        "/products/toy-data/dp",
        data={**ask, "statistic": "histogram", "column": "label", "epsilon": "0.2"},
    )
    assert "Private histogram of label in toy-data: [a: " in hist.text
    # a buyer cannot change the offer; a stranger is sent to log in
    refused = client.post(
        "/sell/products/toy-data/dp", data={**form, "csrf_token": ask["csrf_token"]}
    )
    assert refused.status_code == 403


def _bundle_tables() -> tuple[bytes, bytes]:
    import numpy as np

    rng = np.random.default_rng(0)
    rows, ref = ["f1,f2,label,src"], ["f1,f2,label"]
    for i in range(60):
        y = i % 2
        x1, x2 = rng.normal(2.0 * y, 0.5), rng.normal(0.0, 1.0)
        # "north" rows have correct labels, "south" rows flipped ones
        src = "north" if i < 40 else "south"
        rows.append(f"{x1:.3f},{x2:.3f},{y if src == 'north' else 1 - y},{src}")
    for i in range(20):
        y = i % 2
        ref.append(f"{rng.normal(2.0 * y, 0.5):.3f},{rng.normal(0.0, 1.0):.3f},{y}")
    return ("\n".join(rows) + "\n").encode(), ("\n".join(ref) + "\n").encode()


def test_bundle_registration_page(client: TestClient, csrf_of: Callable[[str], str], web_app: Any):
    market = web_app.state.market
    table, reference = _bundle_tables()
    for name in ("alice", "bob"):
        market.create_account(name, PASSWORD, "seller")
    _signup(client, csrf_of, "owner", "seller")
    owner = market.account_by_name("owner")
    market.create_product(owner, "pooled", "Pooled")
    card = {"license": "MIT", "task": "classification"}
    market.add_version(owner, "pooled", io.BytesIO(table), "t.csv", card)
    market.publish(owner, "pooled", 1)
    manage = client.get("/sell/products/pooled?tab=bundle")
    assert 'id="bundle-title"' in manage.text and "Value the contributors" in manage.text
    form = {
        "csrf_token": csrf_of(manage.text),
        "group_column": "src",
        "label_column": "label",
        "contributors": "north = alice\nsouth = bob",
        "method": "knn",
        "k": "5",
    }
    files = {"reference": ("ref.csv", reference, "text/csv")}
    cases = [
        ({"contributors": "north alice"}, 422, "is not &#39;group = username&#39;"),
        ({"contributors": "north = alice"}, 422, "missing [&#39;south&#39;]"),
        ({"contributors": "north = alice\nsouth = nobody"}, 404, "nobody"),
        ({"k": "0"}, 422, "k must be a whole number"),
        ({"method": "magic"}, 422, "unknown allocation method"),
        ({"label_column": "nope"}, 422, "no column"),
    ]
    for change, status, message in cases:
        bad = client.post("/sell/products/pooled/bundle", data={**form, **change}, files=files)
        assert bad.status_code == status, (change, bad.status_code)
        assert message in bad.text and 'role="alert"' in bad.text, change
    missing_file = client.post("/sell/products/pooled/bundle", data=form)
    assert missing_file.status_code == 422 and "choose a file" in missing_file.text
    assert "Value report" not in client.get("/products/pooled").text  # nothing stored
    ok = client.post("/sell/products/pooled/bundle", data=form, files=files)
    assert ok.status_code == 200 and "is a bundle of 2 contributors, valued with knn" in ok.text
    assert 'data-testid="bundle-method">' in ok.text
    product = client.get("/products/pooled")
    assert "Who contributed what" in product.text
    cell = r'<th scope="row">(alice|bob)</th><td class="num">([0-9.]+)%</td><td class="num">([+−]?)'
    rows = {name: (float(share), sign) for name, share, sign in re.findall(cell, product.text)}
    assert rows["alice"][1] == "+" and rows["bob"][1] == "−"  # flipped labels hurt
    assert rows["alice"][0] == 100.0 and rows["bob"][0] == 0.0  # shares of revenue
    # another seller cannot declare the bundle
    client.post("/logout", data={"csrf_token": csrf_of(product.text)})
    token = csrf_of(client.get("/login").text)
    client.post("/login", data={"csrf_token": token, "username": "alice", "password": PASSWORD})
    page = client.get("/sell")
    refused = client.post(
        "/sell/products/pooled/bundle", data={**form, "csrf_token": csrf_of(page.text)}, files=files
    )
    assert refused.status_code == 403


def test_review_page_without_the_gate_and_its_policy_form(
    client: TestClient, csrf_of: Callable[[str], str], web_app: Any
) -> None:
    """The policy form works while screening is off; bad values write nothing."""
    market = web_app.state.market
    market.create_account("boss", PASSWORD, "admin")
    market.create_account("sally", PASSWORD, "seller")
    token = _login(client, csrf_of, "sally")
    assert client.get("/admin/review").status_code == 403
    client.post("/logout", data={"csrf_token": token})
    token = _login(client, csrf_of, "boss")
    page = client.get("/admin/review")
    assert page.status_code == 200 and 'data-testid="gate-off"' in page.text
    assert page.text.count('name="rule_') == 16 and 'data-testid="queue-empty"' in page.text
    form = {"csrf_token": token, "default_action": "block", "threshold": "0.9"}
    form |= {"min_rows": "2", "min_share": "0", "rule_3": "allow", "rule_4": "default"}
    done = client.post("/admin/review/policy", data={**form, "note": "strict"})
    assert done.status_code == 200 and "Policy version 2 is in force" in done.text
    policy = market.gate_policy()
    assert (policy.version, policy.default_action, policy.rules) == (2, "block", {"3": "allow"})
    bads = (({"threshold": "abc"}, "must be a number"), ({"rule_5": "ban"}, "unknown action"))
    for bad, message in bads:
        page = client.post("/admin/review/policy", data={**form, **bad})
        assert page.status_code == 422 and message in page.text
    assert market.gate_policy().version == 2
    missing = client.post("/admin/review/nope/1/approve", data={"csrf_token": token})
    assert missing.status_code == 404
