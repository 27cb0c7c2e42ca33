"""Paying for data on the pages: quotes before paying, receipts in words, top-ups.

``POST /products/{slug}/quote``        price a purchase under a non-posted mechanism
                                       (value-based, query, model): the buyer sees the
                                       price, what it is based on and the balance after
``POST /quotes/{token}/confirm``       book the quoted purchase (priced again first: a
                                       moved price is shown, never charged)
``GET  /sales/{id}/answer.csv``        a bought query answer as CSV
``GET  /wallet``, ``POST /wallet/top-up``  the buyer's balance and a card top-up through
                                       the payment provider (offline test mode by default)

The price always comes from the mechanism's own quote
(:meth:`databazaar.market.economics.Economics.quote`) and every purchase is booked by
:meth:`~databazaar.market.economics.Economics.buy` (the one booking path with its one
balance check); this module only shows them in words.  :func:`explain` and
:func:`paid_whom` put a quote's numbers and a sale's money flows into sentences for the
quote page and the receipt (``/sales/{id}``).
"""

from __future__ import annotations

import io
from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from databazaar.core.errors import (
    Conflict,
    DatabazaarError,
    InvalidInput,
    NotFound,
    PaymentError,
    Unauthorized,
)
from databazaar.core.money import format_minor, parse_decimal
from databazaar.market.payments import CardDetails, PaymentProvider, TestCardProvider, top_up
from databazaar.market.quotes import QuoteBook, confirm_price
from databazaar.market.schemas import AccountOut, SaleOut
from databazaar.market.service import Market
from databazaar.server.web import statements
from databazaar.server.web.base import (
    Csrf,
    MarketDep,
    Sess,
    WebRoute,
    form_user,
    render,
    require_role,
    require_user,
    web_session,
)
from databazaar.server.web.rendering import redirect
from databazaar.server.web.words import bps_pct, num, pct, points

router = APIRouter(route_class=WebRoute, include_in_schema=False)

DELIVERED = {
    "dataset": "the whole dataset (download access)",
    "licence": "a licence to the whole dataset (download access)",
    "query-answer": "the rows matching your selection",
    "model": "a model trained on the data",
}


def quote_book(request: Request) -> QuoteBook:
    """The app's quotes awaiting confirmation (files under the market's home)."""
    market: Market = request.app.state.market
    return QuoteBook(market.home / "quotes")


def payment_provider(request: Request) -> PaymentProvider:
    """The app's payment provider (``app.state.payment_provider``; offline test cards
    when none is configured)."""
    provider = getattr(request.app.state, "payment_provider", None)
    if provider is None:
        provider = TestCardProvider()
        request.app.state.payment_provider = provider
    return provider


# ---------------------------------------------------------------------- words
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
def _quote_context(
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
    ctx = _quote_context(market, account, slug, amount_minor, {}, "auction")
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


@router.post("/products/{slug}/quote")
async def quote(
    request: Request, slug: Annotated[str, Path(min_length=1, max_length=64)]
) -> Response:
    from databazaar.server.web.economics import (
        buy_request,
        economics,
        form_text,
        mechanism_view,
        product_context,
    )

    sess = web_session(request)
    market: Market = request.app.state.market
    form = await request.form()
    try:
        sess.check_csrf(form.get("csrf_token"))
        account = await run_in_threadpool(require_user, sess, "buyer")
        econ = economics(request)
        mechanism = await run_in_threadpool(mechanism_view, econ, slug)
        if mechanism is None:
            raise Conflict(f"{slug} is not on sale")
        if mechanism["name"] in ("posted", "auction"):
            raise Conflict(f"{slug} needs no quote", hint="use the button on the product page")
        req = await run_in_threadpool(buy_request, form, mechanism)
        key = form_text(form, "idempotency_key", 128)
        q = await run_in_threadpool(econ.quote, slug, req)
        held = quote_book(request).hold(
            account.id, slug, {"request": req, "key": key}, q.price_minor, q.details
        )
        ctx = await run_in_threadpool(
            _quote_context, market, account, slug, q.price_minor, q.details, q.mechanism
        )
    except DatabazaarError as exc:
        if isinstance(exc, Unauthorized | NotFound) or exc.code == "csrf_failed":
            raise
        ctx = await run_in_threadpool(product_context, request, market, sess.account(), slug, None)
        return render(request, sess, "product.html", {**ctx, "error": exc}, status=exc.http_status)
    finally:
        await form.close()
    ctx.update(token=held.token, minutes=held.expires_in // 60)
    return render(request, sess, "quote.html", ctx)


@router.post("/quotes/{token}/confirm")
def confirm(
    request: Request,
    sess: Sess,
    market: MarketDep,
    token: Annotated[str, Path(min_length=1, max_length=64)],
    csrf_token: Csrf = "",
) -> Response:
    from databazaar.server.web.economics import economics

    account = form_user(sess, csrf_token, "buyer")
    book = quote_book(request)
    held = book.get(account.id, token)
    econ = economics(request)
    req = held.request["request"]
    try:
        now = econ.quote(held.slug, req)
        confirm_price(held, now.price_minor)
        sale = book_in_words(
            market,
            account,
            held.price_minor,
            econ.buy,
            account,
            held.slug,
            req,
            held.request["key"],
        )
    except DatabazaarError as exc:
        if isinstance(exc, Unauthorized):
            raise
        price = held.price_minor
        ctx = _quote_context(
            market, account, held.slug, price, held.details, _mech(econ, held.slug)
        )
        ctx.update(token=held.token, minutes=held.expires_in // 60, error=exc)
        return render(request, sess, "quote.html", ctx, status=exc.http_status)
    book.drop(token)
    note = " (already booked: you were not charged twice)" if sale.replayed else ""
    sess.flash(
        f"You bought {held.slug} for {format_minor(sale.order.total_minor)}{note}.", "success"
    )
    return redirect(sess, f"/sales/{sale.sale_id}")


def _mech(econ: Any, slug: str) -> str:
    try:
        return str(econ.mechanism_for(slug).name)
    except DatabazaarError:
        return ""


@router.get("/sales/{sale_id}/answer.csv")
def answer_csv(
    request: Request, sess: Sess, sale_id: Annotated[int, Path(ge=1, le=2**53)]
) -> Response:
    """A bought query answer as a CSV file (its buyer only)."""
    import pandas as pd

    from databazaar.server.web.economics import economics

    account = sess.require_account()
    sale = economics(request).sale(account, sale_id)
    if sale.deliverable.get("kind") != "query-answer" or sale.rows is None:
        raise NotFound(f"sale {sale_id} has no query answer for you")
    buf = io.StringIO()
    pd.DataFrame(sale.rows).to_csv(buf, index=False)
    response = Response(
        buf.getvalue(),
        media_type="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="{sale.slug}-sale-{sale_id}.csv"',
            "Cache-Control": "no-store",
        },
    )
    return sess.save(response)


# ---------------------------------------------------------------------- top-ups
def _wallet_context(
    market: Market, account: AccountOut, provider: PaymentProvider
) -> dict[str, Any]:
    postings = statements.account_postings(market, account.id, limit=200)
    return {
        "title": "Your balance",
        "me": market.get_account(account.id),
        "test_mode": provider.test_mode,
        "provider": provider.name,
        "topups": [p for p in postings if p.kind == "deposit"][::-1][:10],
        "form": {},
    }


@router.get("/wallet")
def wallet(
    request: Request,
    sess: Sess,
    market: MarketDep,
    next: Annotated[str, Query(max_length=500)] = "",
) -> Response:
    from databazaar.server.web.rendering import safe_next

    account = require_user(sess, "buyer")
    ctx = _wallet_context(market, account, payment_provider(request))
    ctx["request_next"] = safe_next(next, "")
    return render(request, sess, "wallet.html", ctx)


@router.post("/wallet/top-up")
def wallet_top_up(
    request: Request,
    sess: Sess,
    market: MarketDep,
    csrf_token: Csrf = "",
    amount: Annotated[str, Form(max_length=20)] = "",
    number: Annotated[str, Form(max_length=40)] = "",
    expiry: Annotated[str, Form(max_length=7)] = "",
    cvc: Annotated[str, Form(max_length=4)] = "",
    holder: Annotated[str, Form(max_length=100)] = "",
    next: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    from databazaar.server.web.rendering import safe_next

    account = form_user(sess, csrf_token, "buyer")
    provider = payment_provider(request)
    try:
        payment, done = top_up(
            market,
            account.id,
            parse_decimal(amount, "amount"),
            CardDetails(number=number, expiry=expiry, cvc=cvc, holder=holder),
            provider,
        )
    except (InvalidInput, DatabazaarError) as exc:
        if isinstance(exc, Unauthorized):
            raise
        ctx = _wallet_context(market, account, provider)
        ctx.update(form={"amount": amount, "holder": holder, "expiry": expiry}, error=exc)
        ctx["request_next"] = safe_next(next, "")
        return render(request, sess, "wallet.html", ctx, status=exc.http_status)
    mode = " (test mode: no real money moved)" if payment.test_mode else ""
    sess.flash(
        f"Added {format_minor(payment.amount_minor)} from {payment.description}{mode}; "
        f"your balance is {format_minor(done.account.balance_minor)}.",
        "success",
    )
    return redirect(sess, safe_next(next, "/wallet"))
