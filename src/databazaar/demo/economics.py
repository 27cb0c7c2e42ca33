"""The economics part of ``databazaar demo``: value-aware search, a purchase under a
chosen pricing mechanism and the Shapley revenue split of a multi-seller product.

:func:`run_economics_demo` works on the SQLite store that the market walk-through
(:func:`databazaar.demo.market.run_market_demo`) leaves in ``home`` (it runs
that walk-through first, quietly, when the store is missing), migrates it to the
economics schema and uses only the market's and the economics service's public
functions.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from databazaar.core.money import format_minor

SPECIES = ("setosa", "versicolor", "virginica")
PASSWORD = "demo-password-1"


def iris_like(n: int, seed: int, *, flip: bool = False, noise: bool = False) -> pd.DataFrame:
    """Rows of the demo's iris-like task (the same columns as the market demo's tables)."""
    rng = np.random.default_rng(seed)
    k = np.arange(n) % 3
    df = pd.DataFrame(
        {
            "sepal_length": np.round(4.8 + k + rng.normal(0, 0.3, n), 2),
            "sepal_width": np.round(3.2 - 0.3 * k + rng.normal(0, 0.2, n), 2),
            "petal_length": np.round(1.4 + 2 * k + rng.normal(0, 0.3, n), 2),
        }
    )
    labels = np.array(SPECIES)[k]
    if flip:
        labels = np.array(SPECIES)[(k + 1) % 3]
    if noise:
        df[:] = np.round(rng.uniform(3, 8, size=(n, 3)), 2)
        labels = rng.choice(SPECIES, n)
    df["species"] = labels
    return df


def _list(market: Any, seller: Any, slug: str, title: str, frame: pd.DataFrame, price: int) -> None:
    market.create_product(seller, slug, title)
    ver = market.add_version(
        seller,
        slug,
        io.BytesIO(frame.to_csv(index=False).encode()),
        f"{slug}.csv",
        {
            "license": "CC-BY-4.0",
            "task": "classification",
            "tags": ["tabular", "botany"],
            "description": title,
        },
    )
    market.publish(seller, slug, ver.number)
    market.set_listing(seller, slug, price)


def _already_ran(root: Path) -> bool:
    """Whether this store already holds the economics demo's products."""
    import sqlite3

    con = sqlite3.connect(root / "databazaar.db")
    try:
        row = con.execute("SELECT 1 FROM products WHERE slug = 'iris-field-coop'").fetchone()
    except sqlite3.Error:
        return False
    finally:
        con.close()
    return row is not None


def run_economics_demo(home: Path, say: Callable[[str], None]) -> dict[str, Any]:
    """Rank products by value for a buyer, buy one under value-based pricing, split it.

    Steps: three sellers contribute rows to a bundled product (one of them uploads
    noise); another seller lists a mislabelled copy of the task; the buyer ranks the
    classification catalog by KNN-Shapley value on a 45-row validation set, buys the
    bundle at 20% of its measured value (lower confidence bound), and the seller side
    is split by the contributors' Data Shapley values, booked on the ledger; a DP mean
    closes the tour.  Returns the numbers it printed.
    """
    from databazaar.market.db import Database, upgrade
    from databazaar.market.economics import Economics
    from databazaar.market.service import Market

    root = Path(home)
    if not (root / "databazaar.db").is_file() or _already_ran(root):
        from databazaar.demo.market import run_market_demo

        # a fresh store (it wipes the old one); the economics tour needs no listing gate
        run_market_demo(home, lambda _line: None, gate=None)
    db = Database.from_url(f"sqlite:///{root / 'databazaar.db'}")
    try:
        rev = upgrade(db.engine)
        market = Market(db, root, fee_bps=500)
        econ = Economics(market, random_state=0)
        say(f"economics schema ready (revision {rev}) on {root / 'databazaar.db'}")
        names = ("field-coop", "cora", "dan", "eve", "mallory-data")
        accs = {name: market.create_account(name, PASSWORD, "seller") for name in names}
        bundle = pd.concat(
            [
                iris_like(90, 10).assign(contributor="cora"),
                iris_like(90, 11).assign(contributor="dan"),
                iris_like(90, 12, noise=True).assign(contributor="eve"),
            ],
            ignore_index=True,
        )
        _list(
            market, accs["field-coop"], "iris-field-coop", "Iris field survey co-op", bundle, 3000
        )
        _list(
            market,
            accs["mallory-data"],
            "iris-quicklabel",
            "Iris, quickly labelled",
            iris_like(300, 13, flip=True),
            800,
        )
        say("listed 'iris-field-coop' (rows from cora, dan and eve) and 'iris-quicklabel'")
        reference = iris_like(60, 20)
        reg = econ.register_bundle(
            accs["field-coop"],
            "iris-field-coop",
            group_column="contributor",
            label_column="species",
            contributors={"cora": "cora", "dan": "dan", "eve": "eve"},
            reference=reference,
        )
        vals = dict(zip(reg.valuation["groups"], reg.valuation["values"], strict=True))
        say(
            "co-op contributors valued by KNN-Shapley on its reference set: "
            + ", ".join(f"{g}={x:+.3f}" for g, x in vals.items())
            + f" (valuation {reg.valuation_id}, sha256 {reg.digest[:12]}...)"
        )

        carol = market.account_by_name("carol")
        market.deposit(carol.id, 50_000)
        validation = iris_like(45, 30)
        report, _skipped = econ.rank(validation, "species", task="classification", curves=False)
        say("carol ranks the classification catalog by value for her 45-row validation set:")
        for p in report.products:
            say(
                f"  {p.rank}. {p.slug:<20} value {p.value:+.3f} "
                f"(95% CI {p.ci_low:+.3f}..{p.ci_high:+.3f}), {p.n_rows} rows, "
                f"price {format_minor(p.price_minor)}"
            )

        econ.set_pricing(
            accs["field-coop"],
            "iris-field-coop",
            "value",
            {"share_bps": 2000, "floor_minor": 100, "cap_minor": 5000},
        )
        request = {
            "validation": validation.to_dict(orient="records"),
            "label_column": "species",
            "worth_minor": 20_000,
        }
        quote = econ.quote("iris-field-coop", request)
        say(
            f"value-based quote for 'iris-field-coop': 20% of its value alone "
            f"{quote.details['value_low']:.3f} (CI lower bound) x 200.00 USD = "
            f"{format_minor(quote.price_minor)}"
        )
        sale = econ.buy(market.account_by_name("carol"), "iris-field-coop", request, "econ-demo-1")
        (split,) = sale.splits
        order = sale.order
        say(
            f"sale {sale.sale_id}: paid {format_minor(order.total_minor)}, market fee "
            f"{format_minor(order.fee_minor, code=False)}; "
            f"{split.total_minor} minor units split by "
            f"valuation {split.valuation_id}:"
        )
        for sh in split.shares:
            say(f"  {sh['group']:<5} value {sh['value']:+.3f} -> {sh['amount_minor']} minor units")
        econ.offer_dp(
            accs["field-coop"], "iris-field-coop", 1.0, {"petal_length": {"bounds": [0, 10]}}
        )
        dp = econ.dp_query(carol, "iris-field-coop", "mean", "petal_length", 0.5, random_state=0)
        say(
            f"DP mean petal_length = {dp.value:.2f} (epsilon 0.5, noise std "
            f"{dp.noise_std:.3f}); budget left {dp.epsilon_remaining:g}"
        )
        report_ledger = market.ledger_report()
        say(
            f"ledger verify: {'OK' if report_ledger.ok else 'FAILED'} - {report_ledger.n_rows} rows"
        )
        return {
            "ranking": [p.slug for p in report.products],
            "values": {p.slug: p.value for p in report.products},
            "price_minor": sale.order.total_minor,
            "split": {sh["group"]: sh["amount_minor"] for sh in split.shares},
            "split_total_minor": split.total_minor,
            "valuation_id": split.valuation_id,
            "dp_mean": dp.value,
            "ledger_ok": report_ledger.ok,
        }
    finally:
        db.dispose()
