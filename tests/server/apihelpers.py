"""Helpers for the HTTP tests: an API client wrapper and a small CSV table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from databazaar.market.db import Database, upgrade
from databazaar.market.service import Market

PASSWORD = "correct-horse-9"
UPLOAD_LIMIT = 32 * 1024
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def table_csv(n_rows: int = 12) -> bytes:
    rows = ["id,value,label"] + [f"{i},{i * 1.5},{'a' if i % 2 else 'b'}" for i in range(n_rows)]
    return ("\n".join(rows) + "\n").encode()


class Api:
    """A TestClient plus the market behind it and a few HTTP-only helpers."""

    def __init__(self, client: TestClient, market: Market, admin_token: str) -> None:
        self.client = client
        self.market = market
        self.admin = {"Authorization": f"Bearer {admin_token}"}

    def account(self, username: str, role: str = "buyer") -> dict[str, str]:
        r = self.client.post(
            "/api/accounts", json={"username": username, "password": PASSWORD, "role": role}
        )
        assert r.status_code == 201, r.text
        r = self.client.post("/api/auth/token", json={"username": username, "password": PASSWORD})
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['token']}"}

    def me(self, headers: dict[str, str]) -> dict[str, Any]:
        return self.client.get("/api/me", headers=headers).json()

    def fund(self, headers: dict[str, str], amount: int) -> None:
        r = self.client.post(
            "/api/admin/deposits",
            json={"account_id": self.me(headers)["id"], "amount_minor": amount},
            headers=self.admin,
        )
        assert r.status_code == 201, r.text

    def product(self, headers: dict[str, str], slug: str, price: int = 1000,
                **card: str) -> dict[str, Any]:  # fmt: skip
        r = self.client.post(
            "/api/products", json={"slug": slug, "title": f"Title of {slug}"}, headers=headers
        )
        assert r.status_code == 201, r.text
        data = {"license": "CC-BY-4.0", "task": "classification", **card}
        r = self.client.post(
            f"/api/products/{slug}/versions",
            files={"file": ("table.csv", table_csv(), "text/csv")},
            data=data,
            headers=headers,
        )
        assert r.status_code == 201, r.text
        version = r.json()
        r = self.client.post(f"/api/products/{slug}/versions/1/publish", headers=headers)
        assert r.status_code == 200, r.text
        r = self.client.put(
            f"/api/products/{slug}/listing", json={"price_minor": price}, headers=headers
        )
        assert r.status_code == 200, r.text
        return version


def build_market(db: Database, home: Path) -> Market:
    upgrade(db.engine)
    return Market(
        db,
        home,
        secret_key="server-test-secret-0123",
        fee_bps=500,
        max_upload_bytes=UPLOAD_LIMIT,
        password_hasher=FAST_HASHER,
    )


def store_state(market: Market) -> dict[str, Any]:
    """Row counts of every table, the ledger's chain heads, balances and the files on disk."""
    from sqlalchemy import func, select

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
        accounts = Base.metadata.tables["accounts"]
        state["balances"] = s.execute(
            select(accounts.c.username, accounts.c.balance_minor).order_by(accounts.c.id)
        ).all()
    root = market.blobs.root
    state["files"] = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    return state
