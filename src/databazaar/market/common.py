"""State and helpers shared by the market's per-topic modules.

:class:`MarketBase` declares what every part of :class:`~databazaar.market.service.Market`
uses (the database, the blob store, the link signer, the fee), and the functions here
load products and versions, check ownership and convert timestamps, so each topic
module (accounts, products, catalog, orders, settlement, downloads) states them once.
"""

from __future__ import annotations

import json
import threading
import weakref
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from databazaar.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from databazaar.core.io import read_table
from databazaar.market import validation as v
from databazaar.market.models import Account, Product, ProductVersion, Role, VersionStatus

if TYPE_CHECKING:
    from databazaar.market import access
    from databazaar.market.db import Database
    from databazaar.market.gate import ListingGate
    from databazaar.market.schemas import AccountOut
    from databazaar.market.service import Market
    from databazaar.market.storage import BlobStore
    from databazaar.market.throttle import LoginThrottle

FEE_ACCOUNT = "@market-fee"
FUNDING_ACCOUNT = "@funding"


class MarketBase:
    """The state every market topic works on (set by :class:`Market.__init__`)."""

    db: Database
    home: Path
    blobs: BlobStore
    signer: access.LinkSigner
    fee_bps: int
    max_upload_bytes: int
    login_throttle: LoginThrottle
    gate: ListingGate | None
    _embedder: Any
    _embedder_lock: threading.Lock
    _password_hasher: Any


def utc(dt: datetime | None) -> datetime | None:
    """``dt`` with UTC attached when the database returned it naive (SQLite)."""
    if dt is not None and dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt


def created(dt: datetime | None) -> datetime:
    """A stored creation time in UTC (now, for a row not yet flushed)."""
    return utc(dt) or datetime.now(UTC)


def load_product(s: Session, slug: str, *, lock: bool = False, eager: bool = True) -> Product:
    """The product ``slug`` (its versions, listing and seller loaded when ``eager``)."""
    stmt = select(Product).where(Product.slug == v.check_slug(slug))
    if eager:
        stmt = stmt.options(
            selectinload(Product.versions).selectinload(ProductVersion.tag_rows),
            selectinload(Product.versions).selectinload(ProductVersion.blob),
            selectinload(Product.listing),
            selectinload(Product.seller),
        )
    if lock:
        stmt = stmt.with_for_update(of=Product)
    prod = s.scalar(stmt)
    if prod is None:
        raise NotFound(f"product {slug!r} not found")
    return prod


def find_version(prod: Product, number: int) -> ProductVersion:
    """Version ``number`` of a loaded product; :class:`NotFound` if it has none."""
    for ver in prod.versions:
        if ver.number == number:
            return ver
    raise NotFound(f"product {prod.slug!r} has no version {number}")


def latest_published(s: Session, prod: Product) -> ProductVersion:
    """The product's newest published version; :class:`Conflict` if it has none."""
    ver = s.scalar(
        select(ProductVersion)
        .where(
            ProductVersion.product_id == prod.id,
            ProductVersion.status == VersionStatus.published,
        )
        .order_by(ProductVersion.number.desc())
        .limit(1)
    )
    if ver is None:
        raise Conflict(f"product {prod.slug!r} has no published version")
    return ver


def require_owner(prod: Product, account: AccountOut) -> None:
    """:class:`Forbidden` unless ``account`` sells ``prod`` or is an admin."""
    if account.role != Role.admin.value and prod.seller_id != account.id:
        raise Forbidden(f"product {prod.slug!r} belongs to another seller")


def is_owner(prod: Product, account: AccountOut | None) -> bool:
    """Whether ``account`` sells ``prod`` or is an admin."""
    return account is not None and (
        account.role == Role.admin.value or account.id == prod.seller_id
    )


def system_account(s: Session, username: str) -> Account:
    """One of the market's system accounts (``@market-fee``, ``@funding``)."""
    acc = s.scalar(select(Account).where(Account.username == username))
    if acc is None:
        raise InvalidInput("market system accounts missing", hint="run databazaar db upgrade")
    return acc


_SYSTEM_IDS: weakref.WeakKeyDictionary[Any, dict[str, int]] = weakref.WeakKeyDictionary()


def system_account_id(s: Session, username: str) -> int:
    """The id of a system account, looked up once per database engine (it never changes)."""
    engine = s.get_bind()
    ids = _SYSTEM_IDS.setdefault(engine, {})
    if username not in ids:
        ids[username] = system_account(s, username).id
    return ids[username]


def canonical_json(obj: Any) -> str:
    """Sorted, compact JSON (the input of request hashes)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def frame_from(obj: Any, what: str) -> pd.DataFrame:
    """A non-empty DataFrame from a DataFrame or a list of row objects."""
    if isinstance(obj, pd.DataFrame):
        frame = obj
    elif isinstance(obj, list) and all(isinstance(r, Mapping) for r in obj):
        frame = pd.DataFrame(obj)
    else:
        raise InvalidInput(f"{what} must be a table (a DataFrame or a list of row objects)")
    if frame.empty:
        raise InvalidInput(f"{what} has no rows")
    return frame


def numeric_features(frame: pd.DataFrame, label: str, exclude: Sequence[str] = ()) -> list[str]:
    """The numeric, non-boolean columns other than ``label`` and ``exclude``."""
    skip = {label, *exclude}
    return [
        c
        for c in frame.columns
        if c not in skip
        and pd.api.types.is_numeric_dtype(frame[c])
        and not pd.api.types.is_bool_dtype(frame[c])
    ]


class EconomicsBase:
    """The state of :class:`~databazaar.market.economics.Economics` and its table access."""

    market: Market
    _rng: np.random.Generator
    _rng_lock: threading.Lock
    _embedder: Any

    def _seed(self) -> int:
        """A fresh seed from the service's generator (thread-safe)."""
        with self._rng_lock:
            return int(self._rng.integers(0, 2**31 - 1))

    def _read_version(self, ver: ProductVersion) -> pd.DataFrame:
        path = self.market.blobs.path_for(ver.blob_sha256)
        if not path.is_file():
            raise NotFound("the product's file is missing from the store", hint="contact the admin")
        return read_table(path, ver.file_format)

    def table(self, slug: str) -> pd.DataFrame:
        """The latest published version of a product as a DataFrame (server side only)."""
        with self.market.db.read() as s:
            ver = latest_published(s, load_product(s, slug, eager=False))
        return self._read_version(ver)
