"""Economics fixtures: a migrated market (SQLite, and PostgreSQL when reachable) with
sellers, buyers and a helper that lists a product from a DataFrame."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from argon2 import PasswordHasher
from sklearn.datasets import make_classification

from databazaar.market.db import Database
from databazaar.market.economics import Economics
from databazaar.market.schemas import AccountOut
from databazaar.market.service import Market

PASSWORD = "correct-horse-9"
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@pytest.fixture
def market(store: Database, tmp_path: Path) -> Market:
    return Market(
        store,
        tmp_path / "home",
        secret_key="k" * 32,
        fee_bps=500,
        max_upload_bytes=2 * 1024 * 1024,
        password_hasher=FAST_HASHER,
    )


@pytest.fixture
def econ(market: Market) -> Economics:
    return Economics(market, random_state=0)


@pytest.fixture
def seller(market: Market) -> AccountOut:
    return market.create_account("seller-a", PASSWORD, "seller")


@pytest.fixture
def buyer(market: Market) -> AccountOut:
    acc = market.create_account("buyer-a", PASSWORD, "buyer")
    market.deposit(acc.id, 1_000_000)
    return market.get_account(acc.id)


ListFn = Callable[..., str]


@pytest.fixture
def list_table(market: Market) -> ListFn:
    """``list_table(seller, slug, frame, price)`` uploads, publishes and lists a table."""

    def _list(seller: AccountOut, slug: str, frame: pd.DataFrame, price: int = 1000) -> str:
        market.create_product(seller, slug, slug.replace("-", " ").title())
        ver = market.add_version(
            seller,
            slug,
            io.BytesIO(frame.to_csv(index=False).encode()),
            f"{slug}.csv",
            {"license": "CC-BY-4.0", "task": "classification"},
        )
        market.publish(seller, slug, ver.number)
        market.set_listing(seller, slug, price)
        return slug

    return _list


def task_frame(start: int, n: int, *, flip: bool = False, shift: float = 0.0) -> pd.DataFrame:
    """Rows ``start:start+n`` of one fixed 2-class task (f0..f4 + label); disjoint slices
    are independent samples of the same distribution."""
    x, y = make_classification(
        n_samples=3000,
        n_features=5,
        n_informative=4,
        n_redundant=0,
        class_sep=1.5,
        random_state=11,
    )
    sl = slice(start, start + n)
    df = pd.DataFrame(x[sl] + shift, columns=[f"f{i}" for i in range(5)])
    lab = y[sl] if not flip else 1 - y[sl]
    df["label"] = np.where(lab == 1, "yes", "no")
    return df
