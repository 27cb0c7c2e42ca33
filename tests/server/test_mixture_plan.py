"""Buying a mixture (issue 20 item 4): plan over three text products, buy it, bad input.

The plan runs the real DDO proxy trainings (tiny GPT-2s on the products' previews) and the
purchase goes through the market's one booking path, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
from apihelpers import PASSWORD, Api, store_state  # type: ignore[import-not-found]

WORDS = {
    "recipes": "flour sugar butter oven bake stir salt egg milk pan heat cup whisk".split(),
    "football": "goal match team player score league coach pitch ball win referee".split(),
    "weather": "rain cloud sun wind storm forecast cold warm snow humid front mist".split(),
}
PRICES = {"recipes": 1000, "football": 1500, "weather": 2000}


def _doc(rng: np.random.Generator, words: list[str], n: int) -> str:
    return " ".join(rng.choice(words, n))


def _validation(n: int = 6) -> list[dict[str, str]]:
    rng = np.random.default_rng(7)
    return [{"text": _doc(rng, WORDS["recipes"] + WORDS["weather"], 120)} for _ in range(n)]


def _seed_market(api: Api) -> tuple[dict[str, str], Any]:
    """Three text products (one seller, distinct vocabularies), a CSV product, a buyer."""
    market = api.market
    seller = market.create_account("text-seller", PASSWORD, "seller")
    rng = np.random.default_rng(0)
    for slug, words in WORDS.items():
        rows = [{"id": i, "text": _doc(rng, words, 120)} for i in range(20)]
        data = ("\n".join(json.dumps(r) for r in rows) + "\n").encode()
        market.create_product(seller, slug, f"{slug} texts")
        ver = market.add_version(
            seller, slug, io.BytesIO(data), f"{slug}.jsonl", {"license": "MIT", "task": "lm"}
        )
        market.publish(seller, slug, ver.number)
        market.set_listing(seller, slug, PRICES[slug])
    table = b"id,value\n" + b"".join(f"{i},{i * 2}\n".encode() for i in range(10))
    market.create_product(seller, "numbers", "numbers only")
    market.add_version(
        seller, "numbers", io.BytesIO(table), "n.csv", {"license": "MIT", "task": "t"}
    )
    market.publish(seller, "numbers", 1)
    market.set_listing(seller, "numbers", 100)
    buyer = api.account("mix-buyer")
    api.fund(buyer, 10_000)
    return buyer, market


def _plan(api: Api, buyer: dict[str, str], **over: Any) -> Any:
    body = {
        "slugs": list(WORDS),
        "validation": _validation(),
        "token_budget": 20_000,
        "money_budget_minor": 5000,
        "seed": 3,
        **over,
    }
    return api.client.post("/api/mixture/plan", json=body, headers=buyer)


def test_plan_and_buy_one_order_per_product(api: Api) -> None:
    buyer, market = _seed_market(api)
    r = _plan(api, buyer)
    assert r.status_code == 200, r.text
    plan = r.json()
    lines = {x["slug"]: x for x in plan["lines"]}
    assert set(lines) == set(WORDS)
    assert abs(sum(x["tokens"] for x in lines.values()) - 20_000) <= 3
    assert abs(sum(x["weight"] for x in lines.values()) - 1) < 1e-9
    assert all(x["source"] == "preview" and x["mechanism"] == "posted" for x in lines.values())
    assert all(x["cost_minor"] == PRICES[s] for s, x in lines.items())
    assert plan["total_minor"] == sum(PRICES.values()) == 4500 <= plan["money_budget_minor"]
    assert not plan["trimmed"]
    assert np.isfinite(plan["predicted_loss"]) and 0 < plan["predicted_loss"] < 10
    # the validation texts mix recipes and weather: football gets the least weight
    assert lines["football"]["weight"] == min(x["weight"] for x in lines.values())
    if market.db.engine.dialect.name == "sqlite":  # reproducible for a seed (once is enough)
        again = _plan(api, buyer)
        assert again.json() == plan

    before = api.me(buyer)["balance_minor"]
    items = [{"slug": x["slug"], "request": x["request"]} for x in plan["lines"]]
    body = {"items": items, "idempotency_key": "plan-1", "max_total_minor": 5000}
    r = api.client.post("/api/mixture/plan/buy", json=body, headers=buyer)
    assert r.status_code == 201, r.text
    sales = r.json()
    assert [s["slug"] for s in sales] == list(WORDS)
    orders = api.client.get("/api/orders", headers=buyer).json()
    assert len(orders) == 3
    assert sorted(len(o["items"]) for o in orders) == [1, 1, 1]
    assert sorted(o["items"][0]["slug"] for o in orders) == sorted(WORDS)
    assert api.me(buyer)["balance_minor"] == before - 4500
    # a replay of the same plan purchase books nothing more
    state = store_state(market)
    r = api.client.post("/api/mixture/plan/buy", json=body, headers=buyer)
    assert r.status_code == 201 and all(s["replayed"] for s in r.json())
    assert store_state(market) == state


def test_bad_input_is_refused_and_nothing_is_bought(api: Api) -> None:
    buyer, market = _seed_market(api)
    state = store_state(market)
    cases = [
        ({"money_budget_minor": 999}, "below the cheapest usable amount 1000"),
        ({"slugs": ["recipes", "numbers"]}, "'numbers' has no text column"),
        ({"validation": [{"body": "rain and snow"}]}, "not the products' text column 'text'"),
        ({"token_budget": 50}, "token budget 50 is below the cheapest usable amount"),
        ({"slugs": ["recipes", "recipes"]}, "lists a product twice"),
    ]
    for over, message in cases:
        r = _plan(api, buyer, **over)
        assert r.status_code == 422, (over, r.text)
        assert message in r.json()["message"], r.json()
    assert _plan(api, buyer, slugs=["recipes", "nope"]).status_code == 404
    items = [{"slug": s} for s in WORDS]
    cap = {"items": items, "idempotency_key": "k", "max_total_minor": 4499}
    r = api.client.post("/api/mixture/plan/buy", json=cap, headers=buyer)
    assert r.status_code == 422 and "more than the budget 4499" in r.json()["message"]
    assert store_state(market) == state
    poor = api.account("poor-buyer")
    api.fund(poor, 4000)
    state = store_state(market)
    r = api.client.post(
        "/api/mixture/plan/buy", json={**cap, "max_total_minor": None}, headers=poor
    )
    assert r.status_code == 402 and "insufficient balance for the plan" in r.json()["message"]
    assert store_state(market) == state
    assert api.client.get("/api/orders", headers=buyer).json() == []


def test_query_priced_product_is_priced_for_the_rows_needed(api: Api) -> None:
    from databazaar.market.economics import Economics
    from databazaar.mixture.plan import _price, buy_plan

    market = api.market
    seller = market.create_account("query-seller", PASSWORD, "seller")
    rows = [{"topic": "abcd"[i % 4], "text": f"text number {i}"} for i in range(20)]
    data = ("\n".join(json.dumps(r) for r in rows) + "\n").encode()
    market.create_product(seller, "topics", "topics")
    market.add_version(
        seller, "topics", io.BytesIO(data), "t.jsonl", {"license": "MIT", "task": "lm"}
    )
    market.publish(seller, "topics", 1)
    market.set_listing(seller, "topics", 5000)
    econ = Economics(market)
    points = {"topic": {"a": 100, "b": 200, "c": 300, "d": 400}}
    econ.set_pricing(seller, "topics", "query", {"price_points": points})
    mech, price, request = _price(econ, "topics", 8, 20, owned=False)
    assert (mech, price) == ("query", 300)
    assert request == {"query": {"where": {"topic": ["a", "b"]}}}
    assert _price(econ, "topics", 20, 20, owned=False)[1] == 1000  # every row: all views
    assert _price(econ, "topics", 0, 20, owned=False) == ("none", 0, {})
    assert _price(econ, "topics", 5, 20, owned=True) == ("owned", 0, {})
    headers = api.account("query-buyer")
    api.fund(headers, 1000)
    buyer = market.authenticate(headers["Authorization"].split()[1])
    sales = buy_plan(econ, buyer, [{"slug": "topics", "request": request}], "q-1")
    assert len(sales) == 1 and sales[0].order.total_minor == 300
    assert sorted({r["topic"] for r in sales[0].rows}) == ["a", "b"] and len(sales[0].rows) == 10
