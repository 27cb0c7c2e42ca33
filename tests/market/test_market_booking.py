"""The one booking path: every sale is written by ``orders.book_order`` under
``orders.run_booking``, whose retry and replay rules are tested here on a real store."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

import databazaar
from databazaar.core.errors import Conflict
from databazaar.market import orders
from databazaar.market.db import Database, upgrade
from databazaar.market.models import Account

MARKET = Path(databazaar.__file__).parent / "market"


def _constructed(path: Path) -> set[str]:
    """Names of the classes ``path`` instantiates or inserts rows of (``Order(...)``,
    ``insert(Order)``, ``insert(Order.__table__)`` and the like)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
            continue
        names.add(node.func.id)
        if node.func.id == "insert" and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Attribute) and arg.attr == "__table__":
                arg = arg.value
            if isinstance(arg, ast.Name):
                names.add(arg.id)
    return names


def _writers(*models: str) -> set[str]:
    return {p.name for p in MARKET.rglob("*.py") if _constructed(p) & set(models)}


def test_only_orders_writes_orders_items_and_grants() -> None:
    assert _writers("Order", "OrderItem", "Grant") == {"orders.py"}


def test_only_the_ledger_writes_postings_and_pending_credits() -> None:
    assert _writers("LedgerEntry", "_ENTRIES") == {"ledger.py"}
    assert _writers("PendingCredit", "_PENDING") == {"balances.py"}


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database.from_url(f"sqlite:///{tmp_path / 'b.db'}")
    upgrade(database.engine)
    return database


def _count(s: Session) -> int:
    return len(s.scalars(select(Account.id)).all())


def test_run_booking_retries_operational_errors(db: Database, monkeypatch) -> None:
    monkeypatch.setattr(orders.time, "sleep", lambda _s: None)
    calls = []

    def attempt(s: Session) -> int:
        calls.append(1)
        if len(calls) < 3:
            raise OperationalError("UPDATE", {}, Exception("deadlock detected"))
        return _count(s)

    assert orders.run_booking(db, attempt, lambda s: None) == 2  # the two system accounts
    assert len(calls) == 3


def test_run_booking_gives_up_with_a_conflict(db: Database, monkeypatch) -> None:
    monkeypatch.setattr(orders.time, "sleep", lambda _s: None)
    calls = []

    def attempt(s: Session) -> int:
        calls.append(1)
        raise OperationalError("UPDATE", {}, Exception("could not serialize access"))

    with pytest.raises(Conflict, match="concurrent updates"):
        orders.run_booking(db, attempt, lambda s: None)
    assert len(calls) == orders.PURCHASE_RETRIES


def test_run_booking_replays_the_winner_of_a_key_race(db: Database) -> None:
    def attempt(s: Session) -> str:
        raise IntegrityError("INSERT", {}, Exception("duplicate key"))

    assert orders.run_booking(db, attempt, lambda s: "the first order") == "the first order"
    with pytest.raises(Conflict):  # nothing to replay: retried, then refused
        orders.run_booking(db, attempt, lambda s: None)
