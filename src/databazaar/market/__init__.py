"""The data market: accounts, data products, search, purchases on a ledger, access.

The public API is :class:`Market` (every market action, one transaction each),
:class:`Database` with :func:`upgrade` (the store and its migrations) and the ledger's
:func:`~databazaar.market.ledger_verify.verify`.  Heavy modules load lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from databazaar.market.db import Database, upgrade
    from databazaar.market.service import Market

__all__ = ["Database", "Market", "open_market", "upgrade"]


def open_market(settings: Any = None, **kwargs: Any) -> Market:
    """The market described by ``settings`` (default: the environment), migrated."""
    from databazaar.core.config import get_settings
    from databazaar.market.service import Market

    return Market.from_settings(settings or get_settings(), **kwargs)


def __getattr__(name: str) -> Any:
    if name == "Market":
        from databazaar.market.service import Market

        return Market
    if name in ("Database", "upgrade"):
        from databazaar.market import db

        return getattr(db, name)
    raise AttributeError(name)
