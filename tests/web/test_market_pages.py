"""The market for people, in chromium at desktop and phone sizes (issue 21).

One seeded market serves every test of this module (:func:`demo`): a seller with a
product for each pricing mechanism, a contributor whose rows are bundled into the
value-priced product, an admin, and one product per screen size to set prices on and one
auction per size.  Each test runs twice (``desktop`` 1280x800, ``phone`` 390x844) in the
session's one chromium, with fresh browser contexts:

* a seller sets each mechanism's price by form (money and percent, live validation);
* a new buyer meets a disabled Buy with the reason, tops up with the test card provider,
  then buys under value-based, query and auction pricing, each through a quote (or a bid
  review) and a confirmation, and reads receipts naming who was paid what (account
  names, percents, amounts);
* a visitor without an account runs value search from the home page;
* ``/docs`` and ``/redoc`` render with every request answered by the local server;
* a walk of every page as visitor, buyer, seller and admin finds no console error, no
  failed request, no raw float with more than 4 significant digits, no minor units,
  basis points, parser messages or internal field names; on a phone no page scrolls
  sideways and no chart text is smaller than 11 px.  Every page is screenshot at both
  sizes (``test-artifacts/screenshots/``, not committed).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from browser_steps import PASSWORD, flash, log_in, sign_up

pytestmark = pytest.mark.browser

SIZES = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}
TEST_CARD = "4242 4242 4242 4242"
DECLINED_CARD = "4000 0000 0000 0002"


def _table(n: int, seed: int, *, flip: bool = False, region: bool = True) -> bytes:
    """Two numeric features, a region and a yes/no label that depends on the features."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)
    if flip:
        y = 1 - y
    regions = np.array(["north", "south", "east"])[np.arange(n) % 3]
    head = "f1,f2,region,label" if region else "f1,f2,label"
    rows = []
    for (a, b), r, c in zip(x, regions, y, strict=True):
        label = "yes" if c else "no"
        rows.append(f"{a:.3f},{b:.3f},{r},{label}" if region else f"{a:.3f},{b:.3f},{label}")
    return (head + "\n" + "\n".join(rows) + "\n").encode()


def _bundle_table() -> bytes:
    """60 rows from two contributors: ada's rows are labelled right, bo's half flipped."""
    rng = np.random.default_rng(7)
    lines = ["f1,f2,label,source"]
    for i in range(60):
        a, b = rng.normal(), rng.normal()
        y = int(a + 0.5 * b > 0)
        src = "ada-rows" if i < 40 else "bob-rows"
        if src == "bob-rows" and i % 2:
            y = 1 - y
        lines.append(f"{a:.3f},{b:.3f},{'yes' if y else 'no'},{src}")
    return ("\n".join(lines) + "\n").encode()


@dataclass
class Demo:
    base: str
    market: Any
    econ: Any
    receipts: dict[str, list[int]] = field(default_factory=dict)
    buyers: dict[str, str] = field(default_factory=dict)


@pytest.fixture(scope="module")
def demo(live_server: Any) -> Iterator[Demo]:
    """The seeded market shared by every test of the module."""
    from databazaar.server.web.economics import economics

    market = live_server.market
    econ = economics(SimpleNamespace(app=live_server.app))
    ada = market.create_account("ada", PASSWORD, "seller")
    market.create_account("bob", PASSWORD, "seller")
    market.create_account("root", PASSWORD, "admin")
    card = {"license": "CC-BY-4.0", "task": "classification", "tags": ["sensors"]}

    def product(slug: str, title: str, body: bytes, price: int) -> None:
        market.create_product(ada, slug, title)
        market.add_version(
            ada, slug, io.BytesIO(body), f"{slug}.csv", {**card, "description": title}
        )
        market.publish(ada, slug, 1)
        market.set_listing(ada, slug, price)

    product("sensor-posted", "Sensor readings, posted price", _table(60, 1), 1250)
    product("sensor-bundle", "Pooled sensor readings (value-priced)", _bundle_table(), 100)
    econ.register_bundle(
        ada,
        "sensor-bundle",
        group_column="source",
        label_column="label",
        contributors={"ada-rows": "ada", "bob-rows": "bob"},
        reference=pd.read_csv(io.BytesIO(_table(30, 5, region=False))),
    )
    econ.set_pricing(
        ada, "sensor-bundle", "value", {"share_bps": 5000, "floor_minor": 100, "cap_minor": 4000}
    )
    product("sensor-query", "Sensor readings by region", _table(60, 2), 150)
    econ.set_pricing(
        ada,
        "sensor-query",
        "query",
        {"price_points": {"region": [["east", 150], ["north", 300], ["south", 200]]}},
    )
    product("sensor-model", "Sensor model, noisy", _table(60, 3), 500)
    econ.set_pricing(
        ada,
        "sensor-model",
        "model",
        {"curve": [[0.01, 4000], [0.1, 1500], [1.0, 500]], "label_column": "label"},
    )
    for size in SIZES:
        product(f"auction-{size}", f"Sensor licence auction ({size})", _table(40, 4), 500)
        econ.open_auction(ada, f"auction-{size}", 500, 1)
        product(f"lab-{size}", f"Pricing lab ({size})", _table(30, 6), 900)
    yield Demo(base=live_server.url, market=market, econ=econ)


# ---------------------------------------------------------------------- helpers
class PageProblems:
    """Console errors, uncaught exceptions and failed requests of a browser context.

    A page answered with an error status on purpose (a form sent back with its message,
    422) makes chromium log "Failed to load resource" for that document; those are not
    problems.  Any other console error, page error, failed request or subresource answered
    with 4xx/5xx (a missing favicon, stylesheet or chart) is.
    """

    def __init__(self, context: Any, base: str) -> None:
        self.errors: list[str] = []
        self.documents: set[str] = set()
        self.base = base
        context.on("page", self._watch)

    def _watch(self, page: Any) -> None:
        page.on("console", lambda msg: self._console(msg, page))
        page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc} @ {page.url}"))
        page.on("requestfailed", self._failed)
        page.on("response", self._response)

    def _console(self, msg: Any, page: Any) -> None:
        if msg.type != "error":
            return
        where = (msg.location or {}).get("url", "")
        if msg.text.startswith("Failed to load resource") and where in self.documents:
            return
        self.errors.append(f"console {msg.type}: {msg.text} @ {where or page.url}")

    def _failed(self, req: Any) -> None:
        if req.failure and "ERR_ABORTED" in req.failure and req.resource_type == "document":
            return  # a download started from a form post
        self.errors.append(f"request failed: {req.url} ({req.failure})")

    def _response(self, res: Any) -> None:
        if res.request.resource_type == "document":
            self.documents.add(res.url)
        elif res.status >= 400:
            self.errors.append(f"{res.status} for {res.url}")


def _context(browser: Any, size: str, demo: Demo) -> tuple[Any, PageProblems]:
    ctx = browser.new_context(viewport=SIZES[size], accept_downloads=True)
    return ctx, PageProblems(ctx, demo.base)


def _money(text: str) -> int:
    """``"12.50 USD"`` -> 1250."""
    match = re.search(r"(\d[\d,]*)\.(\d\d) USD", text)
    assert match, text
    return int(match[1].replace(",", "")) * 100 + int(match[2])


# ---------------------------------------------------------------------- sellers
@pytest.mark.parametrize("size", list(SIZES))
def test_seller_sets_each_mechanism_by_form(
    demo: Demo, browser: Any, screenshot: Any, size: str
) -> None:
    ctx, problems = _context(browser, size, demo)
    page = ctx.new_page()
    log_in(page, demo.base, "ada")
    slug = f"lab-{size}"
    page.goto(f"{demo.base}/sell/products/{slug}?tab=pricing")
    assert page.get_by_test_id("current-mechanism").inner_text() == "Posted price"
    assert page.get_by_label("Posted price (USD)").input_value() == "9.00"  # as entered

    # live validation next to the field, before anything is sent
    page.get_by_label("Posted price (USD)").fill("12,5O")
    assert page.locator("#msg-price").inner_text() == "enter an amount in USD, e.g. 12.50"
    assert page.get_by_label("Posted price (USD)").get_attribute("aria-invalid") == "true"
    page.get_by_label("Posted price (USD)").fill("14.00")
    assert page.locator("#msg-price").inner_text() == ""
    page.get_by_role("button", name="Save price").click()
    assert f"{slug} is on sale at 14.00 USD" in flash(page)
    assert (
        "Buyers pay 14.00 USD for the whole dataset."
        in page.get_by_test_id("current-pricing").inner_text()
    )

    # share of measured value: percent and money; a mistake comes back next to its field
    page.get_by_label("Share of measured value").check()
    assert page.get_by_label("Posted price (USD)").is_hidden()  # one mechanism's fields
    page.get_by_label("Your share of the value (%)").fill("250")
    assert "percent from 0.01 to 100" in page.locator("#msg-share").inner_text()
    page.get_by_role("button", name="Save price").click()  # the server checks too
    assert "check the marked fields" in page.locator("#form-error").inner_text()
    assert "percent from 0.01 to 100" in page.locator("#msg-share").inner_text()
    page.get_by_label("Your share of the value (%)").fill("30")
    page.get_by_label("Minimum price (USD)").fill("2")
    page.get_by_label("Maximum price (USD, optional)").fill("45.5")
    page.get_by_role("button", name="Save price").click()
    assert "sold by share of measured value" in flash(page)
    words = page.get_by_test_id("current-pricing").inner_text()
    assert "Buyers pay 30% of the value" in words
    assert "at least 2.00 USD and at most 45.50 USD" in words
    assert page.get_by_label("Your share of the value (%)").input_value() == "30"
    screenshot(page, "sell-pricing-value")

    # pay per selection: one price per value of the chosen column
    page.get_by_label("Query-based (pay per selection)").check()
    page.get_by_label("Buyers select rows by").select_option("region")
    for value, price in (("east", "1.50"), ("north", "3"), ("south", "2.25")):
        page.get_by_label(f"region = {value} (USD)").fill(price)
    page.get_by_role("button", name="Save price").click()
    assert "sold by query-based" in flash(page)
    assert (
        "east 1.50 USD, north 3.00 USD, south 2.25 USD"
        in page.get_by_test_id("current-pricing").inner_text()
    )

    # noisy models: noise levels and their prices
    page.get_by_label("Noisy models (model-based)").check()
    page.get_by_label("The model predicts").select_option("label")
    for i, (variance, price) in enumerate((("0.01", "40"), ("0.1", "15"), ("1", "5"))):
        page.get_by_label(f"Noise level {i + 1} (variance)").fill(variance)
        page.get_by_label(f"Price at level {i + 1} (USD)").fill(price)
    page.get_by_role("button", name="Save price").click()
    assert "sold by noisy models" in flash(page)
    assert "noise 0.1: 15.00 USD" in page.get_by_test_id("current-pricing").inner_text()

    # sealed-bid auction: reserve and licences
    page.get_by_label("Sealed-bid auction").check()
    page.get_by_label("Reserve price (USD)").fill("7.5")
    page.get_by_label("Licences for sale").fill("2")
    page.get_by_role("button", name="Save price").click()
    assert "sold by sealed-bid auction" in flash(page)
    assert (
        "auction of 2 licences with a reserve of 7.50 USD"
        in page.get_by_test_id("current-pricing").inner_text()
    )
    screenshot(page, "sell-pricing-auction")

    mech = demo.econ.mechanism_for(slug)
    assert mech.name == "auction" and mech.config() == {"reserve_minor": 750, "units": 2}
    page.goto(f"{demo.base}/products/{slug}")
    assert page.get_by_test_id("product-price").inner_text() == "reserve 7.50 USD"
    assert problems.errors == []
    ctx.close()


# ---------------------------------------------------------------------- buyers
def _quote_and_confirm(page: Any) -> tuple[int, int]:
    """On a quote page: the quoted price and balance after; confirm; the receipt's total."""
    price = _money(page.get_by_test_id("quote-price").inner_text())
    now = _money(page.get_by_test_id("balance-now").inner_text())
    after = _money(page.get_by_test_id("balance-after").inner_text())
    assert after == now - price
    page.get_by_role("button", name=re.compile(r"Confirm and pay")).click()
    assert re.search(r"/sales/\d+$", page.url)
    return price, _money(page.get_by_test_id("sale-total").inner_text())


def _paid_rows(page: Any) -> dict[str, tuple[int, str]]:
    out = {}
    for row in page.get_by_test_id("paid").locator("tbody tr").all():
        cells = row.locator("th, td").all_inner_texts()
        out[cells[0]] = (_money(cells[1]), cells[2])
    return out


@pytest.mark.parametrize("size", list(SIZES))
def test_buyer_tops_up_quotes_confirms_and_reads_receipts(
    demo: Demo, browser: Any, screenshot: Any, size: str
) -> None:
    market = demo.market
    ctx, problems = _context(browser, size, demo)
    page = ctx.new_page()
    name = f"cy-{size}"
    sign_up(page, demo.base, name, "buyer")
    demo.buyers[size] = name

    # ---- no money yet: Buy is disabled and says why
    page.goto(demo.base + "/products/sensor-posted")
    buy = page.get_by_role("button", name="Buy for 12.50 USD")
    assert buy.is_disabled()
    assert "12.50 USD short" in page.get_by_test_id("short-reason").inner_text()
    page.get_by_test_id("short-reason").get_by_role("link", name="Add money").click()

    # ---- top up with the offline test provider (a declined card first)
    assert "Test mode" in page.get_by_test_id("test-mode").inner_text()
    page.get_by_label("Amount (USD)").fill("80")
    page.get_by_label("Name on the card").fill("Cy Buyer")
    page.get_by_label("Card number").fill(DECLINED_CARD)
    page.get_by_label("Expiry (MM/YY)").fill("12/39")
    page.get_by_label("Security code").fill("123")
    page.get_by_role("button", name="Add money").click()
    assert "the card was declined" in page.locator("#form-error").inner_text()
    assert page.get_by_test_id("balance").inner_text() == "0.00 USD"
    page.get_by_label("Card number").fill(TEST_CARD)
    page.get_by_label("Security code").fill("123")
    page.get_by_role("button", name="Add money").click()
    assert "Added 80.00 USD from test card ending 4242 (test mode" in flash(page)
    assert page.url.endswith("/products/sensor-posted")  # back where the buyer was
    screenshot(page, "product-posted-funded")

    # ---- posted price: one click, receipt in words
    page.get_by_role("button", name="Buy for 12.50 USD").click()
    assert page.get_by_test_id("sale-total").inner_text() == "12.50 USD"
    summary = page.get_by_test_id("receipt-summary").inner_text()
    assert summary.startswith("You bought the whole dataset (download access) of")
    assert "from ada" in summary
    paid = _paid_rows(page)
    # the 5% fee is rounded down to the cent: 62 of 1250 cents
    assert paid == {"ada": (1188, "95%"), "the market": (62, "4.96%")}
    demo.receipts.setdefault(size, []).append(int(page.url.rsplit("/", 1)[1]))

    # ---- value-priced bundle: quote on the buyer's own rows, confirm, receipt with splits
    page.goto(demo.base + "/products/sensor-bundle")
    assert page.get_by_test_id("product-price").inner_text() == "from 1.00 USD"
    page.get_by_label("Your validation set").set_input_files(
        files=[{"name": "mine.csv", "mimeType": "text/csv", "buffer": _table(40, 11, region=False)}]
    )
    page.get_by_label("Its label column").fill("label")
    page.get_by_label("What a model that is always right is worth to you (USD)").fill("20")
    page.get_by_role("button", name="Get a quote").click()
    reasons = page.get_by_test_id("quote-reasons").inner_text()
    assert "points of nearest-neighbour accuracy" in reasons
    assert "The seller asks 50% of that value" in reasons
    balance_before = market.get_account(market.account_by_name(name).id).balance_minor
    screenshot(page, "quote-value")
    price, total = _quote_and_confirm(page)
    assert price == total
    assert (
        market.get_account(market.account_by_name(name).id).balance_minor == balance_before - price
    )
    paid = _paid_rows(page)
    assert set(paid) == {"ada", "bob", "the market"}  # contributors by account name
    assert sum(amount for amount, _pct in paid.values()) == total
    assert all(pct.endswith("%") for _amount, pct in paid.values())
    assert (
        "The seller asks 50% of that value" in page.get_by_test_id("receipt-reasons").inner_text()
    )
    screenshot(page, "receipt-value")
    demo.receipts.setdefault(size, []).append(int(page.url.rsplit("/", 1)[1]))

    # ---- query: choose rows, quote names the priced views, confirm, answer as CSV
    page.goto(demo.base + "/products/sensor-query")
    assert page.get_by_test_id("product-price").inner_text() == "from 1.50 USD"
    page.get_by_label("north (3.00 USD)").check()
    page.get_by_label("south (2.00 USD)").check()
    page.get_by_role("button", name="Get a quote").click()
    reasons = page.get_by_test_id("quote-reasons").inner_text()
    assert "region is north or south" in reasons and "5.00 USD in all" in reasons
    price, total = _quote_and_confirm(page)
    assert price == total == 500
    n_rows = int(page.get_by_test_id("answer-count").inner_text().split()[0])
    assert n_rows == 40  # two of three regions of 60 rows
    assert page.get_by_test_id("answer").locator("tbody tr").count() == 10  # not all inline
    with page.expect_download() as info:
        page.get_by_role("link", name=f"Download all {n_rows} rows (CSV)").click()
    with open(info.value.path(), encoding="utf-8") as fh:
        assert len(fh.read().strip().splitlines()) == n_rows + 1
    demo.receipts.setdefault(size, []).append(int(page.url.rsplit("/", 1)[1]))

    # ---- auction: bid, review the terms, confirm; the seller closes; the receipt
    page.goto(f"{demo.base}/products/auction-{size}")
    page.get_by_label("Your sealed bid (USD)").fill("9")
    page.get_by_role("button", name="Review my bid").click()
    assert page.get_by_test_id("quote-price").inner_text() == "9.00 USD"
    assert "Nothing is charged now" in page.get_by_test_id("quote-reasons").inner_text()
    screenshot(page, "quote-bid")
    page.get_by_role("button", name="Place my sealed bid").click()
    assert "Your sealed bid of 9.00 USD is in" in flash(page)
    seller_ctx, seller_problems = _context(browser, size, demo)
    seller = seller_ctx.new_page()
    log_in(seller, demo.base, "ada")
    seller.goto(f"{demo.base}/sell/products/auction-{size}?tab=pricing")
    seller.get_by_role("button", name="Close the auction and sell to the winners").click()
    assert "1 licence(s) sold at 5.00 USD each" in flash(seller)
    page.goto(demo.base + "/purchases")
    page.get_by_test_id("receipt-link").first.click()
    assert page.get_by_test_id("sale-total").inner_text() == "5.00 USD"
    assert (
        "highest losing bid or the reserve" in page.get_by_test_id("receipt-reasons").inner_text()
    )
    paid = _paid_rows(page)
    assert paid["ada"][0] + paid["the market"][0] == 500
    demo.receipts.setdefault(size, []).append(int(page.url.rsplit("/", 1)[1]))

    # the seller's dashboard links each sale's receipt
    seller.goto(demo.base + "/sell")
    assert (
        seller.get_by_test_id("sales").get_by_role("link", name=re.compile("receipt")).count() >= 4
    )
    assert market.verify_ledger().ok
    assert problems.errors == [] and seller_problems.errors == []
    seller_ctx.close()
    ctx.close()


# ---------------------------------------------------------------------- visitors
@pytest.mark.parametrize("size", list(SIZES))
def test_visitor_runs_value_search_from_the_home_page(
    demo: Demo, browser: Any, screenshot: Any, size: str
) -> None:
    ctx, problems = _context(browser, size, demo)
    page = ctx.new_page()
    page.goto(demo.base + "/")
    section = page.locator("section.worth")
    section.get_by_label("Your labelled rows").set_input_files(
        files=[{"name": "mine.csv", "mimeType": "text/csv", "buffer": _table(30, 12, region=False)}]
    )
    section.get_by_label("Label column").fill("label")
    section.get_by_role("button", name="Measure the value").click()
    assert page.url.endswith("/value-search")
    summary = page.get_by_test_id("report-summary").inner_text()
    assert "valued on your 30 rows" in summary and "Guessing alone gets" in summary
    ranking = page.get_by_test_id("ranking")
    first = ranking.locator("tbody tr").first.inner_text()
    assert re.search(r"[+−]\d[\d.]* points", first)
    assert re.search(r"between [+−]?\d[\d.]* and [+−]?\d[\d.]* points", first)
    screenshot(page, "value-search-visitor")
    ranking.get_by_role("link", name=re.compile("^Buy sensor-posted")).click()
    assert page.url.endswith("/products/sensor-posted#buy-title")
    assert "Log in" in page.locator("section.buybox").inner_text()
    assert page.get_by_test_id("whoami").count() == 0  # still a visitor
    assert problems.errors == []
    ctx.close()


def test_api_docs_render_offline(demo: Demo, browser: Any, screenshot: Any) -> None:
    """Swagger UI and ReDoc load only from this server (nothing from a CDN)."""
    ctx, problems = _context(browser, "desktop", demo)
    outside: list[str] = []

    def only_local(route: Any) -> None:
        if route.request.url.startswith(demo.base):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    ctx.route("**/*", only_local)
    page = ctx.new_page()
    page.goto(demo.base + "/docs")
    page.wait_for_selector(".swagger-ui .info .title", timeout=15_000)
    assert "databazaar market API" in page.locator(".swagger-ui .info .title").inner_text()
    assert page.locator(".opblock").count() > 10
    screenshot(page, "docs")
    page.goto(demo.base + "/redoc")
    page.wait_for_selector("h1", timeout=15_000)
    assert "databazaar market API" in page.locator("h1").first.inner_text()
    assert outside == [] and problems.errors == []
    favicon = ctx.request.get(demo.base + "/favicon.ico")
    assert favicon.ok and favicon.headers["content-type"].startswith("image/svg+xml")
    ctx.close()


# ---------------------------------------------------------------------- the page walk
FLOAT_RE = re.compile(r"(?<![\w.])[-−+]?\d[\d,]*\.\d+(?:[eE][-+]?\d+)?(?![\w.])")
IDENTIFIER_RE = re.compile(
    r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"  # a ledger txn id
    r"|\b(?=[0-9a-f]*[a-f])[0-9a-f]{16,}\b"  # a digest
)
EXPONENT_RE = re.compile(r"\b\d(?:\.\d+)?[eE][-+]?\d+\b")
FORBIDDEN = {
    "minor units": re.compile(r"\bminor\b|\bcents?\b", re.I),
    "basis points": re.compile(r"\bbps\b|basis points?", re.I),
    "parser message": re.compile(
        r"Expecting (value|property name)|JSONDecodeError|Traceback|line \d+ column \d+|"
        r"could not convert|invalid literal|validation error for|Input should be",
    ),
    "internal field name": re.compile(
        r"\b[a-z]+_(minor|bps|binds|low|high|on|by|json|id|key|column|views|rows|total)\b"
    ),
    "python value": re.compile(r"\b(None|nan|NaN|True|False|inf)\b"),
}


def _significant(token: str) -> int:
    digits = re.sub(r"[^\d]", "", token.split("e")[0].split("E")[0])
    return len(digits.lstrip("0"))


def text_problems(text: str) -> list[str]:
    """Raw floats over 4 significant digits, minor units, basis points, parser messages,
    internal field names and Python values in a page's visible text."""
    problems = []
    text = IDENTIFIER_RE.sub(" ", text)  # ledger transaction ids and digests are not numbers
    for match in FLOAT_RE.finditer(text):
        after = text[match.end() : match.end() + 4]
        if after.startswith(" USD"):
            continue  # money is exact to the cent
        if _significant(match[0]) > 4:
            problems.append(f"raw float {match[0]!r}")
    for match in EXPONENT_RE.finditer(text):
        problems.append(f"exponent notation {match[0]!r}")
    for what, pattern in FORBIDDEN.items():
        for match in pattern.finditer(text):
            problems.append(f"{what} {match[0]!r}")
    return problems


def test_text_checker_catches_what_the_issue_found() -> None:
    """The walk's checker flags the issue's examples and passes their fixed forms."""
    bad = [
        "value 0.2166666666666665",
        "worth minor 5000",
        "share bps 2000",
        "floor binds False",
        "sd 0.862877",
        "max 1.07548e+06",
        "insufficient balance: 0 < 1250 (minor units)",
        "Expecting value: line 1 column 1 (char 0)",
        "price_minor",
    ]
    for text in bad:
        assert text_problems(text), text
    good = (
        "You pay 1,234.56 USD; adds +4.23 points (between +1.2 and +6.5); 21.7%; 1.075 million;"
        " ledger transaction 5f1c2b9e-0e61-4a8d-9c3b-1d2e3f4a5b6c"
    )
    assert text_problems(good) == []


CHART_FONTS = r"""async () => {
  // Read each SVG chart as text (no DOM parsing: that would run into the page's CSP) and
  // scale its font sizes by how wide the chart is drawn: the smallest text in CSS px.
  const out = [];
  for (const img of document.querySelectorAll('img')) {
    const src = img.getAttribute('src') || '';
    if (!(src.startsWith('data:image/svg+xml') || src.split('?')[0].endsWith('.svg'))) continue;
    const svg = src.startsWith('data:image/svg+xml;base64,')
      ? atob(src.split(',')[1]) : await (await fetch(src)).text();
    const box = svg.match(/viewBox="([^"]+)"/);
    const width = box ? Number(box[1].trim().split(/[ ,]+/)[2]) : NaN;
    const shown = img.getBoundingClientRect().width;
    const sizes = [...svg.matchAll(/font(?:-size)?:\s*(?:[a-z-]+\s+)*([\d.]+)px/g)]
      .map((m) => Number(m[1]) * shown / width);
    if (sizes.length) out.push({src: src.slice(0, 40), min: Math.min(...sizes), n: sizes.length});
  }
  return out;
}"""


def _walk(page: Any, url: str, name: str, size: str, screenshot: Any) -> list[str]:
    """Open ``url``; the problems of its visible text and (on a phone) its layout."""
    page.goto(url)
    screenshot(page, f"walk-{name}")
    problems = [f"{name}: {p}" for p in text_problems(page.locator("body").inner_text())]
    if size == "phone":
        if not page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"):
            problems.append(f"{name}: the page scrolls sideways")
        for chart in page.evaluate(CHART_FONTS):
            if chart["min"] < 11:
                problems.append(f"{name}: chart text {chart['min']:.1f} px in {chart['src']}")
    return problems


@pytest.mark.parametrize("size", list(SIZES))
def test_page_walk_speaks_to_people(demo: Demo, browser: Any, screenshot: Any, size: str) -> None:
    """Every page of the demo as visitor, buyer, seller and admin: no console errors or
    failed requests, no raw numbers or code words; phones: no sideways scroll, charts
    readable."""
    base = demo.base
    slugs = ["sensor-posted", "sensor-bundle", "sensor-query", "sensor-model", f"auction-{size}"]
    problems: list[str] = []
    contexts = []

    def visit(who: str | None, paths: list[tuple[str, str]]) -> Any:
        ctx, watcher = _context(browser, size, demo)
        contexts.append((ctx, watcher))
        page = ctx.new_page()
        if who is not None:
            log_in(page, base, who)
        for path, name in paths:
            problems.extend(_walk(page, base + path, name, size, screenshot))
        return page

    visitor = visit(
        None,
        [("/", "home"), ("/catalog", "catalog"), ("/catalog?q=sensor&mode=fulltext", "search"),
         ("/login", "login"), ("/signup", "signup"), ("/value-search", "value-search"),
         ("/no-such-page", "not-found")]
        + [(f"/products/{s}", f"product-{s}") for s in slugs],
    )  # fmt: skip
    # the visitor's value search result page
    visitor.goto(base + "/value-search")
    visitor.locator("form.value-form").get_by_label("Your labelled rows").set_input_files(
        files=[{"name": "v.csv", "mimeType": "text/csv", "buffer": _table(30, 13, region=False)}]
    )
    visitor.locator("form.value-form").get_by_label("Label column").fill("label")
    visitor.get_by_role("button", name="Measure the value").click()
    screenshot(visitor, "walk-value-report")
    problems.extend(
        f"value-report: {p}" for p in text_problems(visitor.locator("body").inner_text())
    )
    if size == "phone":
        for chart in visitor.evaluate(CHART_FONTS):
            if chart["min"] < 11:
                problems.append(f"value-report: chart text {chart['min']:.1f} px")
        assert len(visitor.evaluate(CHART_FONTS)) == 2  # both charts were measured

    buyer_name = f"walker-{size}"
    demo.market.create_account(buyer_name, PASSWORD, "buyer")
    buyer = visit(buyer_name, [("/purchases", "purchases-empty"), ("/wallet", "wallet")])
    # a quote page for the model-priced product (its price and reasons)
    buyer.goto(base + "/products/sensor-model")
    buyer.get_by_role("button", name="Get a quote").click()
    screenshot(buyer, "walk-quote-model")
    problems.extend(f"quote: {p}" for p in text_problems(buyer.locator("body").inner_text()))
    assert "short" in buyer.get_by_test_id("short-reason").inner_text()  # no money: disabled
    assert buyer.get_by_role("button", name=re.compile("Confirm and pay")).is_disabled()

    earlier = demo.buyers.get(size)
    if earlier is not None:  # the buyer test ran first: walk its purchases and receipts
        visit(earlier, [("/purchases", "purchases")]
              + [(f"/sales/{i}", f"receipt-{i}") for i in demo.receipts.get(size, [])])  # fmt: skip
    seller_paths = [("/sell", "sell-dashboard"), ("/sell/new", "sell-new")]
    for slug in ("sensor-bundle", "sensor-query", f"auction-{size}"):
        for tab in ("listing", "pricing", "privacy", "bundle"):
            seller_paths.append((f"/sell/products/{slug}?tab={tab}", f"manage-{slug}-{tab}"))
    seller_paths += [
        (f"/sales/{i}", f"seller-receipt-{i}") for ids in demo.receipts.values() for i in ids
    ]
    visit("ada", seller_paths)
    visit(
        "bob",
        [("/sell", "contributor-dashboard"), ("/products/sensor-bundle", "contributor-product")],
    )
    visit(
        "root",
        [("/admin", "admin"), ("/admin/review", "review"), ("/mixture-plan", "mixture-plan")],
    )
    for ctx, watcher in contexts:
        problems.extend(watcher.errors)
        ctx.close()
    distinct = sorted({p.replace(base, "") for p in problems})
    assert not distinct, f"{len(problems)} problems:\n" + "\n".join(distinct[:60])
