"""The seller's page makes an enriched derivative; its product page shows the provenance."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

PASSWORD = "correct-horse-9"  # the web tests' password (FAST_HASHER in conftest)


def test_seller_page_makes_an_enriched_derivative(
    client: TestClient, web_app: Any, csrf_of: Callable[[str], str]
) -> None:
    market = web_app.state.market
    token = csrf_of(client.get("/signup").text)
    r = client.post(
        "/signup",
        data={
            "csrf_token": token,
            "username": "owner",
            "password": PASSWORD,
            "password_again": PASSWORD,
            "role": "seller",
        },
    )
    assert r.status_code == 200
    owner = market.account_by_name("owner")
    rows = [
        {
            "prompt": "Which one is a fruit? A) saw B) plum C) zebra D) red "
            "Answer with the letter.",
            "completion": "B",
        },
        {"prompt": "What is 3 + 4?", "completion": "7"},
    ]
    body = "".join(json.dumps(x) + "\n" for x in rows).encode()
    market.create_product(owner, "qa", "Q and A")
    market.add_version(owner, "qa", io.BytesIO(body), "qa.jsonl", {"license": "MIT", "task": "sft"})
    market.publish(owner, "qa", 1)
    page = client.get("/sell/products/qa?tab=derive").text
    assert "no enrichment model configured" in page
    web_app.state.settings = web_app.state.settings.model_copy(
        update={"enrich_backend": "rule-teacher"}
    )
    page = client.get("/sell/products/qa?tab=derive").text
    assert 'id="derive-title"' in page and "Enrich and list" in page
    form = {"csrf_token": csrf_of(page), "new_slug": "qa-dipt", "method": "dipt", "price": "12.50"}
    r = client.post("/sell/products/qa/derivative", data={**form, "method": "rationales"})
    assert r.status_code == 422 and "prompt+chosen+rejected" in r.text
    r = client.post("/sell/products/qa/derivative", data={**form, "share": "lots"})
    assert r.status_code == 422 and "enter a percent from 0.01 to 100" in r.text
    r = client.post("/sell/products/qa/derivative", data={**form, "share": "30"})
    assert r.status_code == 200, r.text
    assert r.url.path == "/products/qa-dipt"
    assert "Enriched derivative of product &#39;qa&#39;" in r.text
    assert "Generator model: rule-teacher" in r.text and "30% of the seller" in r.text
    d = market.get_product("qa-dipt")
    assert d.listing is not None and d.listing.price_minor == 1250
