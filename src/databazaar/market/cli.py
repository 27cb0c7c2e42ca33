"""Command-line pieces of the market, wired into ``databazaar`` by the top-level CLI.

* ``db_app``: ``databazaar db upgrade`` (run the packaged Alembic migrations) and
  ``databazaar db create-admin`` (the only way to make an admin account);
* ``ledger_app``: ``databazaar ledger verify`` (recompute the hash chain and balances;
  exit code 0 when intact, 1 with the offending rows named otherwise);
* :func:`serve`: run the HTTP API with uvicorn;
* :func:`run_market_demo`: seed a throw-away market and walk a purchase end to end.

Only ``typer`` is imported at module level; everything heavy loads inside the commands.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

db_app = typer.Typer(help="Manage the market database.", no_args_is_help=True)
ledger_app = typer.Typer(help="Inspect the market ledger.", no_args_is_help=True)


@db_app.callback()
def _db() -> None:
    """Manage the market database."""


@ledger_app.callback()
def _ledger() -> None:
    """Inspect the market ledger."""


UrlOption = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        "--url",
        help="SQLAlchemy URL (default: DATABASE_URL, else the SQLite file in DATABAZAAR_HOME)",
    ),
]


def _url(url: str | None) -> str:
    from databazaar.core.config import get_settings

    return url or get_settings().resolved_database_url


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@db_app.command("upgrade")
def db_upgrade(
    url: UrlOption = None,
    revision: Annotated[str, typer.Option(help="target Alembic revision")] = "head",
) -> None:
    """Create or migrate the market tables to the newest schema."""
    from databazaar.market.db import Database, upgrade

    target = _url(url)
    db = Database.from_url(target)
    try:
        rev = upgrade(db.engine, revision)
    finally:
        db.dispose()
    typer.echo(f"database {_safe_url(target)} is at revision {rev}")


@db_app.command("create-admin")
def db_create_admin(
    username: Annotated[str, typer.Argument(help="the admin's username")],
    password: Annotated[
        str,
        typer.Option(
            prompt=True,
            hide_input=True,
            confirmation_prompt=True,
            envvar="DATABAZAAR_ADMIN_PASSWORD",
            help="password (prompted when not given; or DATABAZAAR_ADMIN_PASSWORD)",
        ),
    ],
    url: UrlOption = None,
) -> None:
    """Create an admin account (admins cannot be registered over the API)."""
    from databazaar.core.config import get_settings
    from databazaar.market.db import Database, upgrade
    from databazaar.market.service import Market

    settings = get_settings()
    db = Database.from_url(_url(url))
    try:
        upgrade(db.engine)
        market = Market(db, settings.home, secret_key=settings.secret_key)
        acc = market.create_account(username, password, "admin")
    finally:
        db.dispose()
    typer.echo(f"admin account {acc.username!r} created (id {acc.id})")


@ledger_app.command("verify")
def ledger_verify(
    url: UrlOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Recompute the ledger's hash chain, double entry and balances; name any bad row."""
    import json

    from databazaar.market import ledger
    from databazaar.market.db import Database

    db = Database.from_url(_url(url))
    try:
        with db.snapshot() as session:
            report = ledger.verify(session)
    finally:
        db.dispose()
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    elif report.ok:
        typer.echo(
            f"ledger OK: {report.n_rows} rows, {report.n_transactions} transactions, "
            f"sum {report.total_minor}, head seq {report.head_seq}"
        )
    else:
        typer.echo(f"ledger FAILED verification ({len(report.problems)} problems):", err=True)
        for problem in report.problems:
            typer.echo(f"  {problem}", err=True)
    if not report.ok:
        raise typer.Exit(code=1)


def serve(host: str = "127.0.0.1", port: int = 8000, *, log_level: str = "info") -> None:
    """Serve the market API (OpenAPI at ``/docs``) and the web pages with uvicorn.

    Runs until interrupted.

    The store comes from the settings: ``DATABASE_URL`` if set, else the SQLite file in
    ``DATABAZAAR_HOME``; it is migrated on start.
    """
    import uvicorn

    from databazaar.server.app import create_app

    app = create_app()
    try:  # the web pages are optional: serve the JSON API alone without them
        from databazaar.server.web import mount_web
    except ImportError:
        pass
    else:
        mount_web(app)
    uvicorn.run(app, host=host, port=port, log_level=log_level)


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
                f"price {price / 100:.2f} USD"
            )

        market.deposit(carol.id, 10_000)
        say(f"{carol.username} deposited 100.00 USD")
        hits = market.search("iris flowers", task="classification", max_price=5_000)
        say(
            "search 'iris flowers' (task=classification, price<=50.00): "
            + ", ".join(f"{h.slug} ({h.price_minor / 100:.2f})" for h in hits.hits)
        )
        token = market.login(DEMO_BUYER, DEMO_PASSWORD)
        buyer = market.authenticate(token.token)
        basket = ["iris-measurements", "product-reviews"]
        order = market.purchase(buyer, basket, "demo-order-1")
        say(
            f"order {order.id}: {', '.join(basket)} for {order.total_minor / 100:.2f} USD "
            f"(market fee {order.fee_minor / 100:.2f})"
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


__all__ = ["db_app", "ledger_app", "run_market_demo", "serve"]
