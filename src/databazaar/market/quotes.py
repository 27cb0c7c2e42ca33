"""Quotes a buyer is shown before paying, kept until they confirm or the quote expires.

The web pages price a purchase under a non-posted mechanism in two steps: the buyer asks
for a quote (the mechanism's own :meth:`~databazaar.market.economics.Economics.quote`,
the same computation the booking path uses), sees the price, what it is based on and the
balance after, and then confirms.  :class:`QuoteBook` keeps the priced request between
the two steps: one JSON file per quote under ``<market home>/quotes/``, named by a
random token and bound to the buyer's account, so any worker process of the server can
confirm it.  A quote expires after :data:`QUOTE_TTL_SECONDS` and is deleted when used.

At confirmation the request is priced again (:func:`confirm_price`); a price that moved
since the quote (the seller changed the pricing, the product changed) is refused with a
:class:`~databazaar.core.errors.Conflict` carrying the new price, never charged.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from databazaar.core.errors import Conflict, InvalidInput, NotFound
from databazaar.core.money import format_minor

QUOTE_TTL_SECONDS = 15 * 60
_TOKEN_LEN = 32


@dataclass(frozen=True)
class HeldQuote:
    """A quote shown to a buyer: the request it prices and the price shown."""

    token: str
    account_id: int
    slug: str
    request: dict[str, Any]
    price_minor: int
    details: dict[str, Any]
    created: float

    @property
    def expires_in(self) -> int:
        return max(0, int(self.created + QUOTE_TTL_SECONDS - time.time()))


class QuoteBook:
    """Quotes awaiting confirmation, as files under ``folder``."""

    def __init__(self, folder: Path | str) -> None:
        self.folder = Path(folder)

    def _path(self, token: str) -> Path:
        if not isinstance(token, str) or len(token) != _TOKEN_LEN or not token.isalnum():
            raise NotFound("this quote does not exist", hint="ask for a new quote")
        return self.folder / f"{token}.json"

    def hold(
        self,
        account_id: int,
        slug: str,
        request: dict[str, Any],
        price_minor: int,
        details: dict[str, Any],
    ) -> HeldQuote:
        """Keep a quote (expired ones are swept first) and return it with its token."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.sweep()
        token = secrets.token_hex(_TOKEN_LEN // 2)
        held = HeldQuote(token, account_id, slug, request, int(price_minor), details, time.time())
        tmp = self.folder / f".{token}.tmp"
        tmp.write_text(json.dumps(held.__dict__), encoding="utf-8")
        os.replace(tmp, self._path(token))
        return held

    def get(self, account_id: int, token: str) -> HeldQuote:
        """The buyer's quote ``token``; :class:`NotFound` when unknown, another buyer's,
        or expired."""
        path = self._path(token)
        try:
            held = HeldQuote(**json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            raise NotFound("this quote does not exist", hint="ask for a new quote") from None
        if held.account_id != account_id:
            raise NotFound("this quote does not exist", hint="ask for a new quote")
        if held.expires_in <= 0:
            path.unlink(missing_ok=True)
            raise NotFound("this quote has expired", hint="ask for a new quote")
        return held

    def drop(self, token: str) -> None:
        self._path(token).unlink(missing_ok=True)

    def sweep(self) -> int:
        """Delete expired quotes; returns how many."""
        gone = 0
        cutoff = time.time() - QUOTE_TTL_SECONDS
        for path in self.folder.glob("*.json"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink(missing_ok=True)
                    gone += 1
            except OSError:
                continue
        return gone


def confirm_price(held: HeldQuote, price_now: int) -> None:
    """Refuse to book when the price moved since the buyer saw the quote."""
    if not isinstance(price_now, int):
        raise InvalidInput("the price must be whole minor units")
    if price_now != held.price_minor:
        raise Conflict(
            f"the price changed from {format_minor(held.price_minor)} to "
            f"{format_minor(price_now)} since your quote",
            hint="you were not charged; look at the new quote and confirm again",
        )
