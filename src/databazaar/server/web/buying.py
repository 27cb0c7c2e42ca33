"""Paying for data on the pages: quotes before paying, receipts in words, top-ups.

``POST /products/{slug}/buy``          buy at a posted price (other mechanisms quote first)
``POST /products/{slug}/bid``          a sealed bid, reviewed and then confirmed
``GET  /sales/{id}``                   the receipt: what, for how much, why, who was paid
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
import json
from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from databazaar.core.errors import (
    Conflict,
    DatabazaarError,
    InvalidInput,
    NotFound,
    Unauthorized,
)
from databazaar.core.money import format_minor, parse_decimal
from databazaar.market.payments import CardDetails, PaymentProvider, TestCardProvider, top_up
from databazaar.market.quotes import QuoteBook, confirm_price
from databazaar.market.schemas import AccountOut
from databazaar.market.service import Market
from databazaar.server.web import statements
from databazaar.server.web.base import (
    Csrf,
    MarketDep,
    Sess,
    SlugPath,
    WebRoute,
    form_user,
    render,
    require_user,
    web_session,
)
from databazaar.server.web.economics import (
    buy_request,
    economics,
    form_text,
    mechanism_view,
    product_context,
)
from databazaar.server.web.receipts import (
    DELIVERED,
    bid_quote_context,
    book_in_words,
    explain,
    paid_whom,
    quote_context,
)
from databazaar.server.web.rendering import redirect

router = APIRouter(route_class=WebRoute, include_in_schema=False)


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


@router.post("/products/{slug}/quote")
async def quote(
    request: Request, slug: Annotated[str, Path(min_length=1, max_length=64)]
) -> Response:
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
            quote_context, market, account, slug, q.price_minor, q.details, q.mechanism
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
        ctx = quote_context(market, account, held.slug, price, held.details, _mech(econ, held.slug))
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


@router.post("/products/{slug}/buy")
async def buy(request: Request, slug: SlugPath) -> Response:
    sess = web_session(request)
    market: Market = request.app.state.market
    form = await request.form()
    try:
        sess.check_csrf(form.get("csrf_token"))
        account = await run_in_threadpool(sess.require_account)
        econ = economics(request)
        mechanism = await run_in_threadpool(mechanism_view, econ, slug)
        if mechanism is None:
            raise Conflict(f"product {slug!r} is not on sale")
        key = form_text(form, "idempotency_key", 128)
        purchase = await run_in_threadpool(buy_request, form, mechanism)
        price = int(mechanism.get("price_minor", 0))
        sale = await run_in_threadpool(
            book_in_words, market, account, price, econ.buy, account, slug, purchase, key
        )
    except DatabazaarError as exc:
        if isinstance(exc, Unauthorized | NotFound) or exc.code == "csrf_failed":
            raise
        ctx = await run_in_threadpool(product_context, request, market, sess.account(), slug, None)
        return render(request, sess, "product.html", {**ctx, "error": exc}, status=exc.http_status)
    finally:
        await form.close()
    total = sale.order.total_minor
    note = " (this order had already been placed; you were not charged twice)"
    sess.flash(
        f"Order {sale.order.id}: you bought {slug} for "
        f"{format_minor(total)} ({sale.mechanism})" + (note if sale.replayed else "") + ".",
        "success",
    )
    return redirect(sess, f"/sales/{sale.sale_id}")


@router.post("/products/{slug}/bid")
def bid(
    request: Request,
    sess: Sess,
    market: MarketDep,
    slug: SlugPath,
    csrf_token: Csrf = "",
    amount: Annotated[str, Form(max_length=20)] = "",
    confirm: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    """A sealed bid in two steps: the bid's terms in words (the quote), then confirm."""
    account = form_user(sess, csrf_token)
    econ = economics(request)
    try:
        amount_minor = parse_decimal(amount, "bid")
        if confirm != "yes":
            ctx = bid_quote_context(market, econ, account, slug, amount_minor)
            return render(request, sess, "quote.html", ctx)
        placed = book_in_words(
            market, account, amount_minor, econ.place_bid, account, slug, amount_minor
        )
    except DatabazaarError as exc:
        if isinstance(exc, Unauthorized):
            raise
        ctx = product_context(request, market, account, slug, None)
        return render(request, sess, "product.html", {**ctx, "error": exc}, status=exc.http_status)
    amt = placed.amount_minor
    sess.flash(
        f"Your sealed bid of {format_minor(amt)} is in. You pay at most your bid "
        "if you win when the seller closes the auction.",
        "success",
    )
    return redirect(sess, f"/products/{slug}")


@router.get("/sales/{sale_id}")
def sale_page(
    request: Request,
    sess: Sess,
    market: MarketDep,
    sale_id: Annotated[int, Path(ge=1, le=2**53)],
) -> Response:
    """The receipt: what was bought, for how much, why that price and who was paid."""
    account = sess.require_account()
    sale = economics(request).sale(account, sale_id)
    product = market.get_product(sale.slug, account)
    created = statements.order_time(market, sale.order.id)
    rows = sale.rows or []
    return render(
        request,
        sess,
        "sale.html",
        {
            "title": f"Receipt for {product.title}",
            "sale": sale,
            "product": product,
            "created": created,
            "delivered": DELIVERED.get(str(sale.deliverable.get("kind")), "nothing"),
            "reasons": explain(
                sale.mechanism, sale.quote.get("details", {}), sale.order.total_minor
            ),
            "paid": paid_whom(market, sale, product.seller),
            "mine": account.id != 0 and account.username != product.seller,
            "answer_rows": rows[:ANSWER_PREVIEW],
            "answer_total": len(rows),
            "answer_columns": list(rows[0].keys()) if rows else [],
            "model_json": json.dumps(sale.deliverable.get("model"), indent=2)
            if sale.deliverable.get("kind") == "model"
            else None,
        },
    )


ANSWER_PREVIEW = 10


# ---------------------------------------------------------------------- value search
