"""The /mixture-plan page: plan three text products, show the loss, buy the plan."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from typing import Any

import numpy as np
from fastapi.testclient import TestClient

from text_products import WORDS, seed_text_products  # type: ignore[import-not-found]

PASSWORD = "correct-horse-9"


def _seed(web_app: Any) -> None:
    market = web_app.state.market
    seller = market.create_account("text-seller", PASSWORD, "seller")
    buyer = market.create_account("mixer", PASSWORD, "buyer")
    seed_text_products(market, seller, buyer)


def test_plan_page_shows_loss_and_buys(
    client: TestClient, web_app: Any, csrf_of: Callable[[str], str]
) -> None:
    _seed(web_app)
    market = web_app.state.market
    token = csrf_of(client.get("/login").text)
    client.post("/login", data={"csrf_token": token, "username": "mixer", "password": PASSWORD})
    page = client.get("/mixture-plan")
    assert page.status_code == 200 and 'action="/mixture-plan"' in page.text
    rng = np.random.default_rng(7)
    words = WORDS["recipes"] + WORDS["weather"]
    texts = "\n\n".join(" ".join(rng.choice(words, 120)) for _ in range(6))
    form = {
        "csrf_token": csrf_of(page.text),
        "products": "recipes, football, weather",
        "validation": texts,
        "tokens": "20000",
        "money": "50.00",
    }
    bad = client.post("/mixture-plan", data={**form, "money": "5.00"})
    assert bad.status_code == 422 and "below the cheapest usable amount" in bad.text
    shown = client.post("/mixture-plan", data=form)
    assert shown.status_code == 200, shown.text[:500]
    assert "predicted validation loss" in shown.text and 'data-testid="buy-plan"' in shown.text
    assert "Buy this plan (45.00 USD)" in shown.text
    items = html.unescape(re.search(r'name="items" value="([^"]+)"', shown.text).group(1))
    key = re.search(r'name="key" value="([^"]+)"', shown.text).group(1)
    buy = {"csrf_token": csrf_of(shown.text), "items": items, "key": key, "max_total": "5000"}
    done = client.post("/mixture-plan/buy", data=buy, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/purchases"
    buyer = market.authenticate(market.login("mixer", PASSWORD).token)
    assert len(market.orders_for(buyer)) == 3
    assert market.account_by_name("mixer").balance_minor == 10_000 - 4500
