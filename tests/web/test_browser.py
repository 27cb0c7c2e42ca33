"""The web pages in a real browser: Debian's chromium driven by Playwright.

The flow test walks the whole market as three people would: a seller signs up, creates
a product, uploads a CSV, publishes it and sets a price; a buyer signs up; the admin
credits the buyer; the buyer searches, opens the product, buys and downloads it; the
seller sees the sale in the earnings; the admin verifies the ledger.  Every step asserts
what the page shows.  Screenshots of the main pages at desktop (1280x800) and phone
(390x844) width go to ``test-artifacts/screenshots/``.

The security tests post a real form with its CSRF token removed (refused with 403, no
state change) and show that a product name holding ``<script>`` renders as text.
"""

from __future__ import annotations

import io
import re
from typing import Any

import numpy as np
import pytest
from browser_steps import PASSWORD, flash, log_in, sign_up
from sqlalchemy import update

from databazaar.market.models import Product

pytestmark = pytest.mark.browser

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}

CSV = (
    b"city,temperature,humidity,rain\n"
    b"Oslo,3.5,81,yes\n"
    b"Lisbon,17.2,64,no\n"
    b"Cairo,24.9,30,no\n"
    b"Quito,13.1,77,yes\n"
    b"Perth,21.0,52,no\n"
    b"Hanoi,27.4,83,yes\n"
)


A11Y_CHECK = """() => {
  const problems = [];
  const named = (el) => (el.getAttribute('aria-label') || el.textContent || '').trim().length > 0;
  for (const el of document.querySelectorAll('input, select, textarea')) {
    if (el.type === 'hidden') continue;
    if (!(el.labels && el.labels.length) && !el.getAttribute('aria-label')) {
      problems.push('unlabelled ' + el.tagName + ' ' + (el.name || el.id));
    }
  }
  for (const el of document.querySelectorAll('img')) {
    if (!(el.getAttribute('alt') || '').trim()) problems.push('img without alt');
  }
  for (const el of document.querySelectorAll('button, a[href]')) {
    if (!named(el)) problems.push('unnamed ' + el.tagName);
  }
  const h1 = document.querySelectorAll('h1').length;
  if (h1 !== 1) problems.push('h1 count ' + h1);
  if (!document.querySelector('main#main')) problems.push('no main landmark');
  if (!document.querySelector('nav[aria-label]')) problems.push('no labelled nav');
  const ids = [...document.querySelectorAll('[id]')].map((e) => e.id);
  const dup = ids.filter((id, i) => ids.indexOf(id) !== i);
  if (dup.length) problems.push('duplicate ids ' + dup.join(','));
  return problems;
}"""


def _a11y_problems(page: Any) -> list[str]:
    """Missing labels, alt texts, names, landmarks and duplicate ids on the page."""
    return list(page.evaluate(A11Y_CHECK))


def _no_horizontal_scroll(page: Any) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"))


def test_seller_buyer_admin_flow(live_server: Any, browser: Any, screenshot: Any) -> None:
    base = live_server.url
    live_server.market.create_account("root-admin", PASSWORD, "admin")

    # ---- seller signs up and lists a CSV product
    seller_ctx = browser.new_context(viewport=DESKTOP, accept_downloads=True)
    seller = seller_ctx.new_page()
    seller.goto(base + "/")
    assert seller.get_by_role("heading", level=1).inner_text().startswith("Find data")
    screenshot(seller, "home")
    sign_up(seller, base, "wanda-weather", "seller")
    assert seller.url.endswith("/sell")
    assert seller.get_by_role("heading", name="Seller dashboard").is_visible()
    assert seller.get_by_test_id("earned").inner_text() == "0.00 USD"
    assert "You have no products yet" in seller.locator("main").inner_text()

    seller.get_by_role("link", name="New product").click()
    seller.get_by_label("Title").fill("City weather observations")
    seller.get_by_label("Web name (slug)").fill("city-weather")
    seller.get_by_role("button", name="Create product").click()
    assert seller.url.endswith("/sell/products/city-weather")
    assert "Product city-weather created" in flash(seller)
    assert "No data uploaded yet" in seller.locator("main").inner_text()

    seller.get_by_label("Table file").set_input_files(
        files=[{"name": "weather.csv", "mimeType": "text/csv", "buffer": CSV}]
    )
    seller.get_by_label("Task").fill("classification")
    seller.get_by_label("License").fill("CC-BY-4.0")
    seller.get_by_label("Description").fill("Daily weather in six cities, labelled rain or not.")
    seller.get_by_label("Tags").fill("weather, tabular")
    seller.get_by_role("button", name="Upload as draft").click()
    assert "as draft version 1: 6 rows, 4 columns" in flash(seller)
    assert seller.get_by_test_id("status-1").inner_text() == "draft"
    preview = seller.locator("#version-1 table").inner_text()
    assert "Lisbon" in preview and "temperature" in preview
    screenshot(seller, "sell-manage")

    seller.get_by_role("button", name="Publish version 1").click()
    assert "Version 1 is published" in flash(seller)
    assert seller.get_by_test_id("status-1").inner_text() == "published"
    seller.get_by_role("link", name="Price", exact=True).click()  # the manage page's tab
    assert seller.url.endswith("?tab=pricing")
    seller.get_by_label("Posted price (USD)").fill("12.50")
    seller.get_by_label("On sale").check()
    seller.get_by_role("button", name="Save price").click()
    assert "city-weather is on sale at 12.50 USD" in flash(seller)

    seller.goto(base + "/sell")
    row = seller.get_by_test_id("my-products").locator("tbody tr").first
    assert "City weather observations" in row.inner_text()
    assert "12.50 USD" in row.inner_text() and "v1 (published)" in row.inner_text()

    # ---- buyer signs up: empty balance
    buyer_ctx = browser.new_context(viewport=DESKTOP, accept_downloads=True)
    buyer = buyer_ctx.new_page()
    sign_up(buyer, base, "bruno-buyer", "buyer")
    assert buyer.url.endswith("/purchases")
    assert buyer.get_by_test_id("balance").inner_text() == "0.00 USD"

    # ---- the admin credits the buyer
    admin_ctx = browser.new_context(viewport=DESKTOP)
    admin = admin_ctx.new_page()
    log_in(admin, base, "root-admin")
    assert admin.url.endswith("/admin")
    admin.get_by_label("Username").fill("bruno-buyer")
    admin.get_by_label("Amount (USD)").fill("50")
    admin.get_by_label("Memo").fill("welcome credit")
    admin.get_by_role("button", name="Deposit").click()
    assert "Deposited to bruno-buyer; balance now 50.00 USD" in flash(admin)
    assert "welcome credit" in admin.get_by_test_id("ledger-rows").inner_text()

    # ---- buyer searches, opens the product and buys it
    buyer.goto(base + "/")
    buyer.get_by_label("Search the catalog").fill("weather rain")
    buyer.get_by_role("button", name="Search").click()
    assert "/catalog?" in buyer.url
    assert buyer.get_by_test_id("result-count").inner_text().startswith("1 product")
    card = buyer.locator("article.card").first
    assert "City weather observations" in card.inner_text()
    assert card.get_by_test_id("price").inner_text() == "12.50 USD"
    screenshot(buyer, "catalog")
    card.get_by_role("link", name="City weather observations").click()
    assert buyer.url.endswith("/products/city-weather")
    assert buyer.get_by_test_id("product-title").inner_text() == "City weather observations"
    assert buyer.get_by_test_id("product-price").inner_text() == "12.50 USD"
    assert buyer.get_by_test_id("license").inner_text() == "CC-BY-4.0"
    assert buyer.get_by_test_id("seller").inner_text() == "wanda-weather"
    table = buyer.get_by_test_id("preview")
    assert table.locator("thead th").count() == 4
    assert table.locator("tbody tr").count() == 5  # the card previews the first 5 rows
    assert "Oslo" in table.inner_text()
    screenshot(buyer, "product")

    assert buyer.get_by_test_id("mechanism").inner_text() == "Posted price"
    buyer.get_by_role("button", name="Buy for 12.50 USD").click()
    assert re.search(r"/sales/\d+$", buyer.url)
    assert "you bought city-weather for 12.50 USD" in flash(buyer)
    assert buyer.get_by_test_id("sale-total").inner_text() == "12.50 USD"
    screenshot(buyer, "sale")
    buyer.get_by_role("link", name="All your purchases").click()
    assert buyer.get_by_test_id("balance").inner_text() == "37.50 USD"
    assert buyer.get_by_test_id("order-total").first.inner_text() == "12.50 USD"
    screenshot(buyer, "purchases")

    # ---- buyer downloads the file through a signed link
    with buyer.expect_download() as info:
        buyer.get_by_test_id("downloads").get_by_role(
            "button", name="Download city-weather"
        ).click()
    download = info.value
    assert download.suggested_filename == "weather.csv"
    with open(download.path(), "rb") as fh:
        assert fh.read() == CSV
    buyer.goto(base + "/products/city-weather")
    assert buyer.get_by_test_id("access").inner_text() == "You have bought this product."

    # ---- the seller's earnings changed: 12.50 minus the 5% fee (62 cents, rounded down)
    seller.goto(base + "/sell")
    assert seller.get_by_test_id("earned").inner_text() == "11.88 USD"
    assert seller.get_by_test_id("balance").inner_text() == "11.88 USD"
    assert seller.get_by_test_id("sales-count").inner_text() == "1"
    sales = seller.get_by_test_id("sales").inner_text()
    assert "City weather observations" in sales and "0.62 USD" in sales
    chart = seller.get_by_role("img", name=re.compile("cumulative earnings"))
    assert chart.evaluate("img => img.complete && img.naturalWidth > 0")
    svg = seller_ctx.request.get(base + "/sell/earnings.svg")
    assert svg.ok and svg.headers["content-type"].startswith("image/svg+xml")
    assert "<svg" in svg.text()
    screenshot(seller, "sell-dashboard")

    # ---- the admin verifies the ledger
    admin.goto(base + "/admin")
    admin.get_by_role("button", name="Verify the ledger").click()
    result = admin.get_by_test_id("verify-result").inner_text()
    # the buyer's deposit and one purchase (buyer, seller, market fee): 2 transactions, 5 rows
    assert result.startswith("Ledger OK: 5 rows, 2 transactions, sum 0"), result
    screenshot(admin, "admin-ledger")

    # ---- logged-out pages
    anon = browser.new_context(viewport=DESKTOP)
    page = anon.new_page()
    for path, name in (("/login", "login"), ("/signup", "signup")):
        page.goto(base + path)
        assert page.get_by_role("heading", level=1).is_visible()
        screenshot(page, name)

    # ---- the same pages at phone width: no sideways scrolling, menu behind a button
    pages = [
        (anon, ["/", "/catalog?q=weather", "/products/city-weather", "/login", "/signup"]),
        (seller_ctx, ["/sell", "/sell/products/city-weather"]),
        (buyer_ctx, ["/purchases", "/value-search"]),
        (admin_ctx, ["/admin"]),
    ]
    names = {
        "/": "home",
        "/catalog?q=weather": "catalog",
        "/products/city-weather": "product",
        "/login": "login",
        "/signup": "signup",
        "/sell": "sell-dashboard",
        "/sell/products/city-weather": "sell-manage",
        "/purchases": "purchases",
        "/value-search": "value-search-form",
        "/admin": "admin-ledger",
    }
    for ctx, paths in pages:
        phone_ctx = browser.new_context(viewport=PHONE, storage_state=ctx.storage_state())
        phone = phone_ctx.new_page()
        for path in paths:
            phone.goto(base + path)
            assert _no_horizontal_scroll(phone), f"{path} scrolls sideways at phone width"
            assert _a11y_problems(phone) == [], path
            menu = phone.get_by_role("button", name="Menu")
            assert menu.is_visible()
            assert not phone.locator("#site-nav").is_visible()
            screenshot(phone, names[path])
        menu.click()
        assert phone.locator("#site-nav").is_visible()
        phone_ctx.close()
    for ctx in (seller_ctx, buyer_ctx, admin_ctx, anon):
        ctx.close()


def test_form_without_csrf_token_is_refused(
    live_server: Any, browser: Any, screenshot: Any
) -> None:
    base = live_server.url
    ctx = browser.new_context(viewport=DESKTOP)
    page = ctx.new_page()
    sign_up(page, base, "csrf-seller", "seller")
    page.goto(base + "/sell/new")
    # Remove the hidden token from the real form, then submit it as a person would.
    page.locator("form.stack input[name=csrf_token]").evaluate("el => el.remove()")
    page.get_by_label("Title").fill("Should not exist")
    page.get_by_label("Web name (slug)").fill("no-csrf-product")
    with page.expect_response(lambda r: r.url.endswith("/sell/new")) as info:
        page.get_by_role("button", name="Create product").click()
    assert info.value.status == 403
    assert "sent without its security token" in page.get_by_test_id("error-message").inner_text()
    assert page.get_by_role("heading", level=1).inner_text() == "Not allowed"

    # A token from another session is refused too.
    page.goto(base + "/sell/new")
    page.locator("form.stack input[name=csrf_token]").evaluate(
        "el => el.value = 'forged' + el.value"
    )
    page.get_by_label("Title").fill("Should not exist")
    page.get_by_label("Web name (slug)").fill("no-csrf-product")
    with page.expect_response(lambda r: r.url.endswith("/sell/new")) as info:
        page.get_by_role("button", name="Create product").click()
    assert info.value.status == 403
    assert "does not match your session" in page.get_by_test_id("error-message").inner_text()

    # Nothing was created.
    page.goto(base + "/sell")
    assert "You have no products yet" in page.locator("main").inner_text()
    resp = page.goto(base + "/products/no-csrf-product")
    assert resp is not None and resp.status == 404
    ctx.close()


def test_script_tags_in_a_product_name_render_as_text(
    live_server: Any, browser: Any, screenshot: Any
) -> None:
    base = live_server.url
    market = live_server.market
    evil = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned=2">'
    ctx = browser.new_context(viewport=DESKTOP)
    page = ctx.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    sign_up(page, base, "xss-seller", "seller")

    # 1. Typed into the form: the market refuses markup, and the page shows the typed
    #    text back in the field as text.
    page.goto(base + "/sell/new")
    page.get_by_label("Title").fill(evil)
    page.get_by_label("Web name (slug)").fill("xss-typed")
    with page.expect_response(lambda r: r.url.endswith("/sell/new")) as info:
        page.get_by_role("button", name="Create product").click()
    assert info.value.status == 422
    assert "contains HTML markup" in page.locator("#form-error").inner_text()
    assert page.get_by_label("Title").input_value() == evil
    assert page.evaluate("window.__pwned") is None

    # 2. Stored by some other path (an older release, a direct import): the name is
    #    escaped on the catalog, the product page and the seller's dashboard.
    account = market.account_by_name("xss-seller")
    market.create_product(account, "xss-stored", "Placeholder")
    market.add_version(
        account,
        "xss-stored",
        __import__("io").BytesIO(b"note,value\n<b>bold</b>,1\n<script>x()</script>,2\n"),
        "notes.csv",
        {"license": "MIT", "task": "classification", "tags": ["xss"]},
    )
    market.publish(account, "xss-stored", 1)
    market.set_listing(account, "xss-stored", 100)
    with market.db.write() as s:
        s.execute(update(Product).where(Product.slug == "xss-stored").values(title=evil))

    page.goto(base + "/catalog?tags=xss")
    assert page.locator("article.card h3").inner_text() == evil
    page.goto(base + "/products/xss-stored")
    assert page.get_by_test_id("product-title").inner_text() == evil
    assert page.title().startswith(evil)
    cells = page.get_by_test_id("preview").locator("tbody td").all_inner_texts()
    assert "<b>bold</b>" in cells and "<script>x()</script>" in cells
    assert page.locator("main script, main img[src=x], main b").count() == 0
    page.goto(base + "/sell")
    assert evil in page.get_by_test_id("my-products").inner_text()
    assert page.evaluate("window.__pwned") is None
    assert dialogs == []
    screenshot(page, "escaped-product-name")
    ctx.close()


def test_keyboard_reaches_skip_link_and_search(
    live_server: Any, browser: Any, screenshot: Any
) -> None:
    ctx = browser.new_context(viewport=DESKTOP)
    page = ctx.new_page()
    page.goto(live_server.url + "/")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("location.hash") == "#main"
    page.get_by_label("Search the catalog").focus()
    page.keyboard.type("nothing-matches-this")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/catalog\?"))
    assert page.get_by_test_id("result-count").inner_text().startswith("0 products")
    ctx.close()


def _sensor_csv(n: int, seed: int, *, flip: bool = False) -> bytes:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)
    if flip:
        y = 1 - y
    rows = [f"{a:.3f},{b:.3f},{'on' if c else 'off'}" for (a, b), c in zip(x, y, strict=True)]
    return ("temp,vibration,label\n" + "\n".join(rows) + "\n").encode()


def test_value_search_pricing_choice_and_model_purchase(
    live_server: Any, browser: Any, screenshot: Any
) -> None:
    base = live_server.url
    market = live_server.market
    seller = market.create_account("val-seller", PASSWORD, "seller")
    for slug, seed, flip in (("sensor-matching", 1, False), ("sensor-flipped", 2, True)):
        market.create_product(seller, slug, slug.replace("-", " ").title())
        market.add_version(
            seller,
            slug,
            io.BytesIO(_sensor_csv(60, seed, flip=flip)),
            "sensors.csv",
            {"license": "MIT", "task": "classification", "tags": ["sensors"]},
        )
        market.publish(seller, slug, 1)
        market.set_listing(seller, slug, 900)
    buyer = market.create_account("val-buyer", PASSWORD, "buyer")
    market.deposit(buyer.id, 10_000)

    # ---- the seller chooses noisy-model pricing in the browser
    sctx = browser.new_context(viewport=DESKTOP)
    page = sctx.new_page()
    log_in(page, base, "val-seller")
    page.goto(base + "/sell/products/sensor-matching?tab=pricing")
    assert page.get_by_test_id("current-mechanism").inner_text() == "Posted price"
    page.get_by_label("Noisy models (model-based)").check()
    page.get_by_label("The model predicts").select_option("label")
    for i, (variance, price) in enumerate((("0.01", "40"), ("0.1", "15"), ("1", "5"))):
        page.get_by_label(f"Noise level {i + 1} (variance)").fill(variance)
        page.get_by_label(f"Price at level {i + 1} (USD)").fill(price)
    page.get_by_role("button", name="Save price").click()
    assert "sensor-matching is on sale, sold by noisy models" in flash(page)
    assert page.get_by_test_id("current-mechanism").inner_text() == "Noisy models (model-based)"
    page.get_by_label("Noise level 1 (variance)").fill("-1")
    page.get_by_role("button", name="Save price").click()
    assert "check the marked fields" in page.locator("#form-error").inner_text()
    assert "a number above 0" in page.locator("#msg-mv0").inner_text()
    assert _a11y_problems(page) == []
    screenshot(page, "sell-pricing")

    # ---- the buyer ranks products by value for an uploaded validation set
    bctx = browser.new_context(viewport=DESKTOP)
    page = bctx.new_page()
    log_in(page, base, "val-buyer")
    page.get_by_role("link", name="Value search").click()
    page.get_by_label("Your labelled rows").set_input_files(
        files=[{"name": "mine.csv", "mimeType": "text/csv", "buffer": _sensor_csv(30, 3)}]
    )
    page.get_by_label("Label column").fill("label")
    page.get_by_label("Only products for task").fill("classification")
    page.get_by_role("button", name="Measure the value").click()
    assert "valued on your 30 rows" in page.get_by_test_id("report-summary").inner_text()
    ranked = page.get_by_test_id("ranking").locator("tbody th").all_inner_texts()
    assert ranked[0] == "1. sensor-matching" and ranked[-1].endswith(". sensor-flipped")
    for img in page.locator("figure.chart img").all():
        assert img.evaluate("i => i.complete && i.naturalWidth > 0")
    assert page.locator("figure.chart img").count() == 2
    assert _a11y_problems(page) == []
    screenshot(page, "value-search")

    # ---- ... opens the best product and buys a noisy model of it
    page.get_by_test_id("ranking").get_by_role("link", name="sensor-matching", exact=True).click()
    assert page.get_by_test_id("mechanism").inner_text() == "Noisy models (model-based)"
    page.get_by_label("noise 0.1: 15.00 USD").check()
    page.get_by_role("button", name="Get a quote").click()
    assert page.get_by_test_id("quote-price").inner_text() == "15.00 USD"
    assert page.get_by_test_id("balance-after").inner_text() == "85.00 USD"
    page.get_by_role("button", name="Confirm and pay 15.00 USD").click()
    assert re.search(r"/sales/\d+$", page.url)
    page.get_by_text("Model parameters (for loading into your code)").click()
    assert page.get_by_test_id("sale-total").inner_text() == "15.00 USD"
    assert '"coef"' in page.get_by_test_id("model").inner_text()
    screenshot(page, "sale-model")
    assert market.get_account(buyer.id).balance_minor == 10_000 - 1500
    assert market.verify_ledger().ok
    sctx.close()
    bctx.close()
