"""``databazaar db`` and ``databazaar ledger``: the market's commands.

* ``db_app``: ``databazaar db upgrade`` (run the packaged Alembic migrations) and
  ``databazaar db create-admin`` (the only way to make an admin account);
* ``ledger_app``: ``databazaar ledger verify`` (recompute the hash chains, seals and
  balances; exit code 0 when intact, 1 with the offending rows named otherwise) and
  ``databazaar ledger seal`` (append every chain head to the global chain).

``databazaar serve`` is :func:`databazaar.server.app.serve`.

Only ``typer`` is imported at module level; everything heavy loads inside the commands.
"""

from __future__ import annotations

from typing import Annotated, Optional

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
    """Recompute the ledger's hash chains, seals, double entry and balances; name any bad row."""
    import json

    from databazaar.market import ledger_verify
    from databazaar.market.db import Database

    db = Database.from_url(_url(url))
    try:
        with db.snapshot() as session:
            report = ledger_verify.verify(session)
    finally:
        db.dispose()
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    elif report.ok:
        typer.echo(
            f"ledger OK: {report.n_rows} rows, {report.n_transactions} transactions, "
            f"sum {report.total_minor}, head seq {report.head_seq}, {report.n_chains} chains, "
            f"{report.n_seals} seals"
        )
    else:
        typer.echo(f"ledger FAILED verification ({len(report.problems)} problems):", err=True)
        for problem in report.problems:
            typer.echo(f"  {problem}", err=True)
    if not report.ok:
        raise typer.Exit(code=1)


@ledger_app.command("seal")
def ledger_seal(url: UrlOption = None) -> None:
    """Seal every account chain's head into the global chain (run it periodically, e.g. cron).

    A seal fixes each chain's position and hash: a later deletion or rewrite of a sealed
    row is caught by ``ledger verify`` even if the chain heads are rewritten with it.
    Pending sale credits are folded into the cached balances first.
    """
    import json

    from databazaar.market import ledger
    from databazaar.market.db import Database

    db = Database.from_url(_url(url))
    try:
        with db.write() as session:
            seal = ledger.seal(session)
            n_chains = len(json.loads(seal.heads))
            typer.echo(f"ledger sealed: seal {seal.id}, {n_chains} chains, "
                       f"hash {seal.seal_hash[:16]}")  # fmt: skip
    finally:
        db.dispose()


__all__ = ["db_app", "ledger_app"]
