r"""Sealed-bid uniform-price (second-price) auction with a reserve price.

References: Vickrey (1961), *Counterspeculation, auctions, and competitive sealed
tenders*, J. Finance 16(1); Myerson (1981), *Optimal auction design* (reserve prices);
the survey's transaction stage (Zhang et al. 2024).

Rules, for ``units`` identical licences of the product and unit-demand bidders:

* bids below the reserve :math:`r` are not eligible;
* the ``units`` highest eligible bids win (equal bids: the earlier bid wins);
* every winner pays the same price :math:`\max(r, b_{(k+1)})`, the highest losing
  eligible bid (the :math:`(k+1)`-th price), or :math:`r` when there is none.

With ``units = 1`` this is Vickrey's second-price auction.  Bidding one's true value is
a dominant strategy: a winner's price does not depend on its own bid, and any bid that
changes the outcome only wins at a price above the value or loses a profitable win.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from databazaar.core.errors import InvalidInput
from databazaar.core.money import check_minor
from databazaar.market.pricing.base import PricingMechanism, Quote, register

MAX_UNITS = 1000
MAX_BIDS = 100_000


@dataclass(frozen=True)
class Bid:
    """A sealed bid: ``bidder`` offers ``amount_minor``; ``seq`` orders equal bids."""

    bidder: Any
    amount_minor: int
    seq: int = 0

    @classmethod
    def parse(cls, obj: Any, seq: int) -> Bid:
        if isinstance(obj, Bid):
            return obj
        if isinstance(obj, Mapping):
            unknown = set(obj) - {"bidder", "amount_minor", "seq"}
            if unknown or "bidder" not in obj or "amount_minor" not in obj:
                raise InvalidInput("a bid must be {'bidder': id, 'amount_minor': int}")
            return cls(
                obj["bidder"], check_minor(obj["amount_minor"], "bid"), int(obj.get("seq", seq))
            )
        if isinstance(obj, Sequence) and not isinstance(obj, str) and len(obj) == 2:
            return cls(obj[0], check_minor(obj[1], "bid"), seq)
        raise InvalidInput(f"not a bid: {obj!r}", hint="use {'bidder': id, 'amount_minor': int}")


@dataclass(frozen=True)
class AuctionOutcome:
    """Who won and what each winner pays (the same clearing price for all)."""

    winners: tuple[Any, ...]
    price_minor: int
    reserve_minor: int
    n_bids: int
    n_eligible: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "winners": list(self.winners),
            "price_minor": self.price_minor,
            "reserve_minor": self.reserve_minor,
            "n_bids": self.n_bids,
            "n_eligible": self.n_eligible,
        }


@register
class SecondPriceAuction(PricingMechanism):
    """A sealed-bid (k+1)-th price auction of ``units`` licences with a reserve.

    Args:
        reserve_minor: the lowest acceptable price.
        units: licences sold (1 = classic Vickrey auction).
    """

    name = "auction"
    label = "Sealed-bid auction"
    summary = (
        "Buyers place sealed bids; when you close the auction the winners pay the "
        "second price (at least the reserve) for a licence."
    )
    example: ClassVar[dict[str, Any]] = {"reserve_minor": 1000, "units": 1}
    menu_order = 4
    deliverable = "licence"
    request_fields = ("bids",)

    def __init__(self, reserve_minor: int = 0, units: int = 1) -> None:
        self.reserve_minor = check_minor(reserve_minor, "reserve")
        if isinstance(units, bool) or not isinstance(units, int) or not 1 <= units <= MAX_UNITS:
            raise InvalidInput(f"units must be an integer between 1 and {MAX_UNITS}, got {units!r}")
        self.units = units

    def config(self) -> dict[str, Any]:
        return {"reserve_minor": self.reserve_minor, "units": self.units}

    def clear(self, bids: Sequence[Any]) -> AuctionOutcome:
        """Clear the auction on sealed ``bids`` (one per bidder; see the module rules)."""
        if isinstance(bids, str | bytes) or not isinstance(bids, Sequence):
            raise InvalidInput("bids must be a list")
        if len(bids) > MAX_BIDS:
            raise InvalidInput(f"at most {MAX_BIDS} bids")
        parsed = [Bid.parse(b, i) for i, b in enumerate(bids)]
        seen: set[Any] = set()
        for b in parsed:
            if b.bidder in seen:
                raise InvalidInput(f"bidder {b.bidder!r} bid twice", hint="keep one bid per bidder")
            seen.add(b.bidder)
        eligible = sorted(
            (b for b in parsed if b.amount_minor >= self.reserve_minor),
            key=lambda b: (-b.amount_minor, b.seq),
        )
        winners = eligible[: self.units]
        if not winners:
            return AuctionOutcome((), 0, self.reserve_minor, len(parsed), 0)
        runner_up = eligible[self.units].amount_minor if len(eligible) > self.units else 0
        price = max(self.reserve_minor, runner_up)
        return AuctionOutcome(
            tuple(b.bidder for b in winners), price, self.reserve_minor, len(parsed), len(eligible)
        )

    def quote(self, request: Mapping[str, Any] | None = None) -> Quote:
        """The clearing price for ``{"bids": [...]}`` (the reserve when no bids are given)."""
        req = self._request(request)
        out = self.clear(req.get("bids", []))
        price = out.price_minor if out.winners else self.reserve_minor
        return Quote(self.name, price, self.deliverable, out.to_dict())
