"""Posted pricing: one fixed price for the whole dataset (the survey's baseline).

The seller posts ``price_minor``; every buyer pays it.  A single posted price for the
one product sold is trivially arbitrage-free: there is nothing cheaper to combine.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from databazaar.core.money import check_minor
from databazaar.market.pricing.base import PricingMechanism, Quote, register


@register
class PostedPrice(PricingMechanism):
    """Sell the dataset at a fixed price in minor units."""

    name = "posted"
    label = "Posted price"
    summary = "Buyers pay the listed price for the whole dataset."
    example: ClassVar[dict[str, Any]] = {"price_minor": 1250}
    menu_order = 0
    deliverable = "dataset"

    def __init__(self, price_minor: int) -> None:
        self.price_minor = check_minor(price_minor)

    def config(self) -> dict[str, Any]:
        return {"price_minor": self.price_minor}

    def quote(self, request: Mapping[str, Any] | None = None) -> Quote:
        """The posted price (the request takes no fields)."""
        self._request(request)
        return Quote(
            self.name, self.price_minor, self.deliverable, {"posted_minor": self.price_minor}
        )
