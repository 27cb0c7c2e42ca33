"""The anchors ``market_api.py`` measures the market API against, as uvicorn factories.

* :func:`read_anchor`: a bare FastAPI app with one trivial JSON route, ``GET /anchor``:
  the most a FastAPI route can do under the same uvicorn, workers and logging.
* :func:`write_anchor`: a minimal FastAPI + SQLAlchemy app whose one route,
  ``POST /pay``, runs one transaction updating one account's balance
  (``UPDATE bench_accounts SET balance = balance - :amount WHERE id = :id AND balance
  >= :amount``): the least work a purchase that moves money must do.  It uses the same
  engine settings as the market (:func:`databazaar.market.db.make_engine`) on the
  database named by ``ANCHOR_DATABASE_URL``; :func:`seed_write_anchor` creates and
  funds its table.
"""

from __future__ import annotations

import os

from fastapi import FastAPI
from pydantic import BaseModel
from sqlalchemy import text

TABLE = "bench_accounts"


def read_anchor() -> FastAPI:
    app = FastAPI()

    @app.get("/anchor")
    def anchor() -> dict[str, bool]:
        return {"ok": True}

    return app


class Pay(BaseModel):
    account: int
    amount: int = 1


def write_anchor() -> FastAPI:
    from databazaar.market.db import make_engine

    engine = make_engine(os.environ["ANCHOR_DATABASE_URL"])
    app = FastAPI()

    @app.post("/pay", status_code=201)
    def pay(body: Pay) -> dict[str, int]:
        with engine.begin() as conn:
            balance = conn.execute(
                text(
                    f"UPDATE {TABLE} SET balance = balance - :amount "
                    "WHERE id = :id AND balance >= :amount RETURNING balance"
                ),
                {"id": body.account, "amount": body.amount},
            ).scalar()
        return {"account": body.account, "balance": -1 if balance is None else balance}

    return app


def seed_write_anchor(url: str, n_accounts: int, balance: int) -> None:
    from databazaar.market.db import make_engine

    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f"DROP TABLE IF EXISTS {TABLE}"))
        conn.execute(text(f"CREATE TABLE {TABLE} (id INTEGER PRIMARY KEY, balance BIGINT)"))
        conn.execute(
            text(f"INSERT INTO {TABLE} (id, balance) VALUES (:id, :b)"),
            [{"id": i, "b": balance} for i in range(n_accounts)],
        )
    engine.dispose()
