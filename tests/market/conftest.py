"""Market fixtures: the same store on SQLite and on the real PostgreSQL server.

``store`` (from ``tests/conftest.py``) is parametrized over both backends (PostgreSQL
cases carry the ``postgres`` marker and use a fresh schema each); ``market`` wraps it in
a :class:`Market` with a small upload limit; ``seller``/``buyer`` are ready accounts and
``listed`` a factory that uploads, publishes and prices a product.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from sqlalchemy import func, select

from databazaar.market.db import Database
from databazaar.market.schemas import AccountOut
from databazaar.market.service import Market

SECRET = "test-secret-key-0123456789"
PASSWORD = "correct-horse-9"
UPLOAD_LIMIT = 64 * 1024
# Real Argon2id, with cheap cost parameters so account creation does not dominate tests.
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@pytest.fixture
def market(store: Database, tmp_path: Path) -> Market:
    """A market over ``store`` with a 5% fee and a 64 KiB upload limit."""
    return Market(
        store,
        tmp_path / "home",
        secret_key=SECRET,
        fee_bps=500,
        max_upload_bytes=UPLOAD_LIMIT,
        password_hasher=FAST_HASHER,
    )


@pytest.fixture
def seller(market: Market) -> AccountOut:
    return market.create_account("seller-a", PASSWORD, "seller")


@pytest.fixture
def other_seller(market: Market) -> AccountOut:
    return market.create_account("seller-b", PASSWORD, "seller")


@pytest.fixture
def buyer(market: Market) -> AccountOut:
    return market.create_account("buyer-a", PASSWORD, "buyer")


def csv_bytes(n_rows: int = 20, seed: int = 0) -> bytes:
    """A small numeric/text table as CSV."""
    lines = ["id,score,label"]
    for i in range(n_rows):
        lines.append(f"{i},{(i * 7 + seed) % 11 / 2:.1f},{'cat' if i % 3 else 'dog'}")
    return ("\n".join(lines) + "\n").encode()


ListedFactory = Callable[..., Any]


@pytest.fixture
def listed(market: Market) -> ListedFactory:
    """``listed(owner, slug, price, **card)``: create, upload, publish and list a product."""

    def make(
        owner: AccountOut,
        slug: str,
        price: int = 1000,
        *,
        data: bytes | None = None,
        filename: str = "data.csv",
        title: str | None = None,
        **card: Any,
    ) -> Any:
        market.create_product(owner, slug, title or slug.replace("-", " ").title())
        card = {"license": "CC-BY-4.0", "task": "classification", **card}
        ver = market.add_version(
            owner, slug, io.BytesIO(data if data is not None else csv_bytes()), filename, card
        )
        market.publish(owner, slug, ver.number)
        market.set_listing(owner, slug, price)
        return ver

    return make


def store_state(market: Market) -> dict[str, Any]:
    """Row counts of every table, the ledger head and the files on disk."""
    from databazaar.market.models import Base, LedgerChain

    state: dict[str, Any] = {}
    with market.db.read() as s:
        for table in Base.metadata.sorted_tables:
            if table.name == "login_attempts":  # the throttle's count, not market data
                continue
            state[table.name] = s.scalar(select(func.count()).select_from(table))
        state["heads"] = sorted(
            (h.account_id, h.last_seq, h.last_hash) for h in s.scalars(select(LedgerChain))
        )
        state["balances"] = sorted(
            s.execute(select(Base.metadata.tables["accounts"].c.balance_minor)).scalars().all()
        )
    blob_root = market.blobs.root
    state["files"] = sorted(
        str(p.relative_to(blob_root)) for p in blob_root.rglob("*") if p.is_file()
    )
    return state


@pytest.fixture
def state_of() -> Callable[[Market], dict[str, Any]]:
    """The :func:`store_state` function, for "the store is unchanged" assertions."""
    return store_state


@pytest.fixture
def make_csv() -> Callable[..., bytes]:
    """The :func:`csv_bytes` function."""
    return csv_bytes


def tamper_ledger(db: Database, sql: str) -> None:
    """Run ``sql`` as an attacker with table access would: bypassing the append-only guard."""
    from sqlalchemy import text

    with db.engine.begin() as conn:
        if db.dialect == "postgresql":
            conn.execute(text("ALTER TABLE ledger_entries DISABLE TRIGGER ledger_append_only"))
        else:
            conn.execute(text("DROP TRIGGER IF EXISTS ledger_no_update"))
            conn.execute(text("DROP TRIGGER IF EXISTS ledger_no_delete"))
        conn.execute(text(sql))


@pytest.fixture
def tamper() -> Callable[[Database, str], None]:
    """The :func:`tamper_ledger` function."""
    return tamper_ledger
