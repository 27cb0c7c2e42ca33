"""The market walk-through of ``databazaar demo``: a throw-away market, end to end.

Two sellers list three products (a CSV, a second CSV, a JSONL), a buyer deposits and
buys two of them in one order, a replayed purchase is a no-op, a download link is
fetched and checked against its sha256, and the ledger verifies.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from databazaar.core.money import format_minor

DEMO_SELLERS = ("ada-labs", "bayes-data")
DEMO_BUYER = "carol"
DEMO_PASSWORD = "demo-password-1"


def _demo_table(n: int, seed: int) -> bytes:
    import numpy as np

    rng = np.random.default_rng(seed)
    lines = ["sepal_length,sepal_width,petal_length,species"]
    species = ["setosa", "versicolor", "virginica"]
    for i in range(n):
        k = i % 3
        lines.append(
            f"{4.8 + k + rng.normal(0, 0.3):.2f},{3.2 - 0.3 * k + rng.normal(0, 0.2):.2f},"
            f"{1.4 + 2 * k + rng.normal(0, 0.3):.2f},{species[k]}"
        )
    return ("\n".join(lines) + "\n").encode()


def _demo_jsonl(n: int) -> bytes:
    import json

    rows = [
        {"text": f"review {i}: the product was {'great' if i % 2 else 'poor'}", "label": int(i % 2)}
        for i in range(n)
    ]
    return ("\n".join(json.dumps(r) for r in rows) + "\n").encode()


def run_market_demo(home: Path, say: Callable[[str], None]) -> dict[str, Any]:
    """Seed a fresh SQLite market under ``home`` and walk one purchase end to end.

    The store lives in ``home/market-demo`` (wiped first, so the demo can rerun).  Two
    sellers upload, publish and list products; a buyer is funded, searches, buys two
    products in one order (replaying the idempotency key once), downloads through a
    signed link and the ledger is verified.  Returns the numbers it printed.
    """
    from databazaar.market.db import Database, upgrade
    from databazaar.market.service import Market

    root = Path(home) / "market-demo"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    db = Database.from_url(f"sqlite:///{root / 'databazaar.db'}")
    try:
        upgrade(db.engine)
        market = Market(db, root, fee_bps=500)
        say(f"market store: {root / 'databazaar.db'} (SQLite), fee 5%")
        ada = market.create_account(DEMO_SELLERS[0], DEMO_PASSWORD, "seller")
        bay = market.create_account(DEMO_SELLERS[1], DEMO_PASSWORD, "seller")
        carol = market.create_account(DEMO_BUYER, DEMO_PASSWORD, "buyer")
        say(f"accounts: sellers {ada.username}, {bay.username}; buyer {carol.username}")

        catalog = [
            (
                ada,
                "iris-measurements",
                "Iris flower measurements",
                "iris.csv",
                _demo_table(150, 0),
                "classification",
                "CC-BY-4.0",
                ["tabular", "botany"],
                1250,
                "Sepal and petal measurements of three iris species.",
            ),
            (
                ada,
                "iris-extended",
                "Iris measurements, extended field survey",
                "iris2.csv",
                _demo_table(600, 1),
                "classification",
                "CC-BY-SA-4.0",
                ["tabular", "botany"],
                4900,
                "A larger field survey of iris flowers with the same columns.",
            ),
            (
                bay,
                "product-reviews",
                "Labelled product reviews",
                "reviews.jsonl",
                _demo_jsonl(200),
                "text-classification",
                "MIT",
                ["text", "sentiment"],
                2000,
                "Short customer reviews labelled positive or negative.",
            ),
        ]
        for seller, slug, title, fname, data, task, lic, tags, price, desc in catalog:
            market.create_product(seller, slug, title)
            ver = market.add_version(
                seller,
                slug,
                io.BytesIO(data),
                fname,
                {"license": lic, "task": task, "tags": tags, "description": desc},
            )
            market.publish(seller, slug, ver.number)
            market.set_listing(seller, slug, price)
            say(
                f"{seller.username} listed {slug!r}: {ver.n_rows} rows x {ver.n_columns} "
                f"columns ({ver.file_format}, sha256 {ver.sha256[:12]}...), "
                f"price {format_minor(price)}"
            )

        market.deposit(carol.id, 10_000)
        say(f"{carol.username} deposited 100.00 USD")
        hits = market.search("iris flowers", task="classification", max_price=5_000)
        say(
            "search 'iris flowers' (task=classification, price<=50.00): "
            + ", ".join(f"{h.slug} ({format_minor(h.price_minor, code=False)})" for h in hits.hits)
        )
        token = market.login(DEMO_BUYER, DEMO_PASSWORD)
        buyer = market.authenticate(token.token)
        basket = ["iris-measurements", "product-reviews"]
        order = market.purchase(buyer, basket, "demo-order-1")
        say(
            f"order {order.id}: {', '.join(basket)} for {format_minor(order.total_minor)} "
            f"(market fee {format_minor(order.fee_minor, code=False)})"
        )
        replay = market.purchase(buyer, basket, "demo-order-1")
        say(
            f"replaying idempotency key 'demo-order-1' returned order {replay.id} "
            f"(replayed={replay.replayed}); no second charge"
        )
        link = market.download_link(buyer, "iris-measurements", ttl_seconds=300)
        path, filename, _media = market.resolve_download(link.token)
        say(f"signed download link valid for 300 s -> {filename} ({path.stat().st_size} bytes)")
        balances = {
            a: market.account_by_name(a).balance_minor
            for a in (DEMO_BUYER, *DEMO_SELLERS, "@market-fee")
        }
        say("balances (minor units): " + ", ".join(f"{k}={v}" for k, v in balances.items()))
        report = market.ledger_report()
        say(
            f"ledger verify: {'OK' if report.ok else 'FAILED'} - {report.n_rows} rows, "
            f"{report.n_transactions} transactions, sum {report.total_minor}"
        )
        return {
            "store": str(root / "databazaar.db"),
            "products": [c[1] for c in catalog],
            "order_id": order.id,
            "total_minor": order.total_minor,
            "fee_minor": order.fee_minor,
            "replayed": replay.replayed,
            "balances": balances,
            "ledger_ok": report.ok,
            "ledger_rows": report.n_rows,
            "search_hits": [h.slug for h in hits.hits],
            "download_bytes": path.stat().st_size,
        }
    finally:
        db.dispose()


__all__ = ["DEMO_BUYER", "DEMO_PASSWORD", "DEMO_SELLERS", "run_market_demo"]
