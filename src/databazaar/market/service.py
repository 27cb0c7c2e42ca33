"""The market service: one object that owns the store and does every market action.

:class:`Market` is a thin facade over the per-topic modules of the market domain:

* :mod:`~databazaar.market.accounts`: registration, login, API tokens;
* :mod:`~databazaar.market.products`: products, versioned uploads, cards, listings;
* :mod:`~databazaar.market.catalog`: browsing and full-text/semantic/hybrid search;
* :mod:`~databazaar.market.orders`: purchases through the one booking path
  (:func:`~databazaar.market.orders.book_order`);
* :mod:`~databazaar.market.settlement`: ledger postings, revenue splits, deposits,
  payouts, ledger verification;
* :mod:`~databazaar.market.downloads`: access checks and signed download links;
* :mod:`~databazaar.market.gatekeeping`: the listing gate's policy, review queue and
  audit trail (screening on publish, :mod:`databazaar.market.gate`).

Pricing mechanisms, auctions, bundles and DP statistics are
:class:`~databazaar.market.economics.Economics`, which books its sales through the same
path.  Each public method is one unit of work in its own database transaction,
validates its input first, and returns pydantic views (:mod:`databazaar.market.schemas`).
Anything a caller gets wrong raises an error of :mod:`databazaar.core.errors` and leaves
the store unchanged.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from databazaar.core.config import Settings
from databazaar.core.errors import InvalidInput
from databazaar.market import access
from databazaar.market.accounts import Accounts
from databazaar.market.catalog import Catalog
from databazaar.market.common import FEE_ACCOUNT, FUNDING_ACCOUNT
from databazaar.market.db import Database
from databazaar.market.downloads import Downloads
from databazaar.market.gate import ListingGate
from databazaar.market.gatekeeping import Gatekeeping
from databazaar.market.orders import Orders
from databazaar.market.products import Products
from databazaar.market.settlement import Settlement
from databazaar.market.storage import BlobStore
from databazaar.market.throttle import LoginThrottle

__all__ = ["FEE_ACCOUNT", "FUNDING_ACCOUNT", "Market"]


class Market(Accounts, Products, Catalog, Orders, Settlement, Downloads, Gatekeeping):
    """The data market over one database and one data home.

    Parameters
    ----------
    db:
        The :class:`Database` (already migrated with :func:`databazaar.market.db.upgrade`).
    home:
        The data home; files live in ``home/blobs``.
    secret_key:
        Key for download-link signatures (kept in ``home/secret_key`` if not given).
    fee_bps:
        Market fee in basis points of each item's price.
    max_upload_bytes:
        Largest accepted upload.
    embedder:
        Optional sentence encoder for semantic search; by default MiniLM is loaded the
        first time a semantic search runs.
    password_hasher:
        An ``argon2.PasswordHasher`` with other cost parameters (default: argon2-cffi's
        RFC 9106 low-memory profile).
    gate:
        A :class:`~databazaar.market.gate.ListingGate` to screen versions on publish
        (default: none; :meth:`from_settings` builds one when ``DATABAZAAR_GATE`` is
        ``minilm`` or ``tfidf``).
    """

    def __init__(
        self,
        db: Database,
        home: Path,
        *,
        secret_key: str | None = None,
        fee_bps: int = 500,
        max_upload_bytes: int = 50 * 1024 * 1024,
        embedder: Any | None = None,
        password_hasher: Any | None = None,
        login_throttle: LoginThrottle | None = None,
        gate: ListingGate | None = None,
    ) -> None:
        if not (0 <= fee_bps <= 10_000):
            raise InvalidInput("fee_bps must be between 0 and 10000")
        self.db = db
        self.home = Path(home)
        self.blobs = BlobStore(self.home / "blobs")
        self.signer = access.LinkSigner(access.load_secret_key(self.home, secret_key))
        self.fee_bps = fee_bps
        self.max_upload_bytes = max_upload_bytes
        self._embedder = embedder
        self._password_hasher = password_hasher
        self._embedder_lock = threading.Lock()
        self.login_throttle = login_throttle or LoginThrottle(db)
        self.gate = gate

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        migrate: bool = True,
        engine_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Market:
        """Open the market described by ``settings`` (migrating the store first).

        ``engine_kwargs`` go to :func:`~databazaar.market.db.make_engine` (for example
        ``connect_args`` that set a PostgreSQL ``search_path``)."""
        from databazaar.market.db import upgrade

        db = Database.from_url(settings.resolved_database_url, **(engine_kwargs or {}))
        if migrate:
            upgrade(db.engine)
        if "gate" not in kwargs:
            kwargs["gate"] = ListingGate.from_settings(settings)
        if "login_throttle" not in kwargs:
            kwargs["login_throttle"] = LoginThrottle(
                db, settings.login_max_failures, settings.login_window_seconds
            )
        return cls(
            db,
            settings.home,
            secret_key=settings.secret_key,
            fee_bps=settings.market_fee_bps,
            max_upload_bytes=settings.max_upload_bytes,
            **kwargs,
        )

    def close(self) -> None:
        """Release database connections."""
        self.db.dispose()
