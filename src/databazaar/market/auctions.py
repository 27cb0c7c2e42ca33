"""Sealed-bid auctions: licences sold at the second price with a reserve.

The seller opens an auction of ``units`` licences; buyers place sealed bids they can
cover now; closing clears it (:class:`~databazaar.market.pricing.SecondPriceAuction`)
and books every winner's licence through the one booking path
(:func:`~databazaar.market.sales.record_sale`).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from databazaar.core.errors import Conflict, NotFound, PaymentError
from databazaar.market import access, balances
from databazaar.market import validation as v
from databazaar.market.common import (
    EconomicsBase,
    canonical_json,
    latest_published,
    load_product,
    require_owner,
)
from databazaar.market.econ_models import EconAuction, EconBid, EconPricing
from databazaar.market.models import Grant, Role
from databazaar.market.orders import run_booking
from databazaar.market.pricing import Quote, SecondPriceAuction
from databazaar.market.sales import record_sale
from databazaar.market.schemas import AccountOut, AuctionOut, AuctionResultOut, BidOut


def open_auction_of(s: Session, product_id: int, *, lock: bool = False) -> EconAuction | None:
    """The product's open auction, if any."""
    stmt = select(EconAuction).where(
        EconAuction.product_id == product_id, EconAuction.status == "open"
    )
    if lock:
        stmt = stmt.with_for_update()
    return s.scalar(stmt)


class Auctions(EconomicsBase):
    """Auctions of :class:`~databazaar.market.economics.Economics`."""

    def open_auction(
        self, account: AccountOut, slug: str, reserve_minor: int, units: int = 1
    ) -> AuctionOut:
        """Open a sealed-bid auction of ``units`` licences (one open auction per product)."""
        mech = SecondPriceAuction(reserve_minor, units)
        with self.market.db.write() as s:
            prod = load_product(s, slug, lock=True, eager=False)
            require_owner(prod, account)
            latest_published(s, prod)
            if prod.listing is None or not prod.listing.active:
                raise Conflict(f"product {slug!r} is not on sale", hint="list it first")
            if open_auction_of(s, prod.id) is not None:
                raise Conflict(f"product {slug!r} already has an open auction")
            auc = EconAuction(
                product_id=prod.id,
                reserve_minor=mech.reserve_minor,
                units=mech.units,
                status="open",
            )
            s.add(auc)
            row = s.get(EconPricing, prod.id)
            if row is None:
                s.add(EconPricing(product_id=prod.id, mechanism=mech.name, config=mech.config()))
            else:
                row.mechanism, row.config = mech.name, mech.config()
            s.flush()
            return AuctionOut(
                auction_id=auc.id,
                slug=prod.slug,
                reserve_minor=auc.reserve_minor,
                units=auc.units,
                status="open",
            )

    def place_bid(self, account: AccountOut, slug: str, amount_minor: int) -> BidOut:
        """Place (or replace) a sealed bid; the buyer must be able to pay it now."""
        access.require_role(Role(account.role), {Role.buyer}, "bid")
        amount = v.check_amount(amount_minor)
        with self.market.db.write() as s:
            prod = load_product(s, slug, eager=False)
            auc = open_auction_of(s, prod.id, lock=True)
            if auc is None:
                raise NotFound(f"product {slug!r} has no open auction")
            if prod.seller_id == account.id:
                raise Conflict("you cannot bid on your own product")
            if s.scalar(
                select(Grant.id).where(Grant.account_id == account.id, Grant.product_id == prod.id)
            ):
                raise Conflict(f"you already have access to {slug!r}")
            have = balances.balance(s, account.id) or 0
            if have < amount:
                raise PaymentError(
                    f"your balance {have} cannot cover a bid of {amount}",
                    hint="deposit funds first; winners pay at most their bid",
                )
            bid = s.scalar(
                select(EconBid).where(EconBid.auction_id == auc.id, EconBid.bidder_id == account.id)
            )
            if bid is None:
                s.add(EconBid(auction_id=auc.id, bidder_id=account.id, amount_minor=amount))
            else:
                bid.amount_minor = amount
            s.flush()
            return BidOut(auction_id=auc.id, slug=prod.slug, amount_minor=amount, sealed=True)

    def close_auction(self, account: AccountOut, slug: str) -> AuctionResultOut:
        """Clear the auction and sell licences to the winners at the clearing price.

        A winner whose balance no longer covers the clearing price is disqualified and
        the auction is cleared again without that bid (documented deviation: it can
        only raise the others' price up to their own bids).
        """

        def attempt(s: Session) -> AuctionResultOut:
            prod = load_product(s, slug, lock=True, eager=False)
            require_owner(prod, account)
            auc = open_auction_of(s, prod.id, lock=True)
            if auc is None:
                raise NotFound(f"product {slug!r} has no open auction")
            mech = SecondPriceAuction(auc.reserve_minor, auc.units)
            bids = list(
                s.scalars(select(EconBid).where(EconBid.auction_id == auc.id).order_by(EconBid.id))
            )
            disqualified: list[int] = []
            while True:
                live = [b for b in bids if b.bidder_id not in disqualified]
                outcome = mech.clear(
                    [
                        {"bidder": b.bidder_id, "amount_minor": b.amount_minor, "seq": b.id}
                        for b in live
                    ]
                )
                short = [
                    w
                    for w in outcome.winners
                    if (balances.balance(s, w) or 0) < outcome.price_minor
                ]
                if not short:
                    break
                disqualified += short
            sales = []
            for winner in outcome.winners:
                quote = Quote(
                    "auction",
                    outcome.price_minor,
                    "licence",
                    {**outcome.to_dict(), "auction_id": auc.id},
                )
                key = f"auction-{auc.id}"
                req_hash = hashlib.sha256(canonical_json({"auction": auc.id}).encode()).hexdigest()
                sales.append(
                    record_sale(
                        s,
                        self.market.fee_bps,
                        winner,
                        prod.slug,
                        quote,
                        {"kind": "licence"},
                        key,
                        req_hash,
                    )
                )
            auc.status = "closed"
            auc.outcome = {**outcome.to_dict(), "disqualified": disqualified}
            auc.closed_at = datetime.now(UTC)
            s.flush()
            return AuctionResultOut(auction_id=auc.id, outcome=auc.outcome, sales=sales)

        return run_booking(self.market.db, attempt, lambda s: None)
