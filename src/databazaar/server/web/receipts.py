"""Quotes and receipts in words, shared by the buying pages and the product pages.

:func:`explain` says why a quoted price is what it is, :func:`paid_whom` who a sale paid
(account names, percents, amounts), :func:`book_in_words` books through the one booking
path and turns a short balance into money words, and :func:`bid_quote_context` is the
sealed bid's quote page.  Imports neither :mod:`~databazaar.server.web.buying` nor
:mod:`~databazaar.server.web.economics` (both use it).
"""

from __future__ import annotations

from typing import Any

from databazaar.core.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    PaymentError,
)
from databazaar.core.money import format_minor
from databazaar.market.schemas import AccountOut, SaleOut
from databazaar.market.service import Market
from databazaar.server.web.base import require_role
from databazaar.server.web.words import bps_pct, num, pct, points

DELIVERED = {
    "dataset": "the whole dataset (download access)",
    "licence": "a licence to the whole dataset (download access)",
    "query-answer": "the rows matching your selection",
    "model": "a model trained on the data",
}


def _where_words(where: dict[str, list[Any]]) -> str:
    if not where:
        return "all rows"
    return "; ".join(f"{col} is {' or '.join(str(v) for v in vals)}" for col, vals in where.items())


def explain(mechanism: str, details: dict[str, Any], price_minor: int) -> list[str]:
    """Why a quote costs ``price_minor``, in sentences (quote page and receipt)."""
    price = format_minor(price_minor)
    if mechanism == "posted":
        return [f"The seller's posted price for the whole dataset: {price}."]
    if mechanism == "value":
        worth = int(details.get("worth_minor", 0))
        low = details.get("value_low", details.get("value"))
        lines = [
            f"On your validation rows this product adds {points(details.get('value'))} of "
            f"nearest-neighbour accuracy; the price uses the cautious lower end of its 95% "
            f"interval, {points(low)}.",
            f"You said a model that is right on every row (+100 points) is worth "
            f"{format_minor(worth)} to you, so the data is worth "
            f"{format_minor(int(float(details.get('charged_on', 0)) * worth))} to you by "
            "that measure.",
            f"The seller asks {bps_pct(details.get('share_bps', 0))} of that value: "
            f"{format_minor(int(details.get('share_of_value_minor', 0)))}.",
        ]
        if details.get("floor_binds"):
            lines.append(f"That is below the seller's minimum, so you pay the minimum, {price}.")
        elif details.get("cap_binds"):
            lines.append(f"That is above the seller's maximum, so you pay the maximum, {price}.")
        else:
            lines.append(f"You pay {price} and keep the rest of the value.")
        return lines
    if mechanism == "query":
        query = details.get("query", {}) or {}
        det = details.get("determined_by", {}) or {}
        values = ", ".join(str(v) for v in det.get("values", []))
        return [
            f"Your selection: {_where_words(query.get('where', {}))}.",
            f"The cheapest set of priced views that answers it is {det.get('column')} = "
            f"{values} ({details.get('n_views', 0)} view"
            f"{'' if details.get('n_views') == 1 else 's'}), which costs {price} in all; "
            "no combination of other selections answers it for less.",
        ]
    if mechanism == "model":
        return [
            f"A model with noise variance {num(details.get('variance'))} added to its "
            f"parameters costs {price} on the seller's price curve; less noise costs more.",
        ]
    if mechanism == "auction":
        n = int(details.get("n_bids", 0))
        return [
            f"Sealed-bid auction: {n} bid{'' if n == 1 else 's'}; winners pay the highest "
            f"losing bid or the reserve of {format_minor(int(details.get('reserve_minor', 0)))}, "
            f"whichever is higher: {price}.",
        ]
    return [f"Price: {price}."]


def paid_whom(market: Market, sale: SaleOut, seller: str) -> list[dict[str, Any]]:
    """Who received the sale's money: ``{"name", "amount_minor", "percent", "why"}``."""
    total = sale.order.total_minor
    fee = sale.order.fee_minor
    rows: list[dict[str, Any]] = []
    names: dict[int, str] = {}

    def name(account_id: int) -> str:
        if account_id not in names:
            try:
                names[account_id] = market.get_account(account_id).username
            except NotFound:
                names[account_id] = f"account {account_id}"
        return names[account_id]

    if sale.splits:
        for sp in sale.splits:
            for sh in sp.shares:
                rows.append(
                    {
                        "name": name(int(sh["account_id"])),
                        "amount_minor": int(sh["amount_minor"]),
                        "why": f"contributor of rows in group {sh['group']}, paid by the "
                        "measured value of those rows",
                    }
                )
    else:
        rows.append({"name": seller, "amount_minor": total - fee, "why": "the seller"})
    rows.append({"name": "the market", "amount_minor": fee, "why": "market fee"})
    for r in rows:
        r["percent"] = pct(r["amount_minor"] / total) if total else "-"
    return rows


def book_in_words(
    market: Market, account: AccountOut, price_minor: int, book: Any, *args: Any
) -> Any:
    """Run the booking path ``book(*args)``; its balance refusal (worded for the API, in
    minor units) is told again in money, with the way to add some."""
    try:
        return book(*args)
    except PaymentError:
        have = market.get_account(account.id).balance_minor
        raise PaymentError(
            f"your balance of {format_minor(have)} does not cover {format_minor(price_minor)}",
            hint="add money on your Balance page, then try again",
        ) from None


# ---------------------------------------------------------------------- quotes
def quote_context(
    market: Market, account: AccountOut, slug: str, price: int, details: dict[str, Any], mech: str
) -> dict[str, Any]:
    product = market.get_product(slug, account)
    balance = market.get_account(account.id).balance_minor
    return {
        "title": f"Quote for {product.title}",
        "product": product,
        "mechanism": mech,
        "price_minor": price,
        "reasons": explain(mech, details, price),
        "balance_minor": balance,
        "after_minor": balance - price,
        "short": balance < price,
    }


def bid_quote_context(
    market: Market, econ: Any, account: AccountOut, slug: str, amount_minor: int
) -> dict[str, Any]:
    """The confirmation page of a sealed bid: its terms in words and the worst case."""
    require_role(account, "buyer")
    mech = econ.mechanism_for(slug)
    if mech.name != "auction":
        raise Conflict(f"{slug} is not sold by auction")
    cfg = mech.config()
    reserve = int(cfg["reserve_minor"])
    if amount_minor < reserve:
        raise InvalidInput(
            f"your bid is below the reserve of {format_minor(reserve)}",
            hint="bid at least the reserve",
        )
    ctx = quote_context(market, account, slug, amount_minor, {}, "auction")
    units = int(cfg["units"])
    ctx.update(
        bid=True,
        bid_amount=format_minor(amount_minor, code=False),
        reasons=[
            f"You bid {format_minor(amount_minor)} for one of {units} licence"
            f"{'' if units == 1 else 's'} to the whole dataset; other bids stay sealed.",
            f"When the seller closes the auction, the {units} highest bid"
            f"{'' if units == 1 else 's'} of at least the reserve ({format_minor(reserve)}) "
            "win and every winner pays the same clearing price: the highest losing bid or the "
            "reserve, whichever is higher, never more than their own bid.",
            "Nothing is charged now; your balance must still cover the price when the "
            "auction closes.",
        ],
    )
    return ctx
