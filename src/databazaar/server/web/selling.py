"""The seller's manage page: its tabs and the forms that change a product's offer.

``/sell/products/{slug}?tab=...``       the manage page in four tabs: data and versions
                                        (:mod:`databazaar.server.web.router`), price,
                                        private statistics, contributors
``/sell/products/{slug}/pricing``       how buyers pay, from the per-mechanism form
                                        (:mod:`databazaar.server.web.pricing_forms`)
``/sell/products/{slug}/auction/close`` the seller clears an auction
``/sell/products/{slug}/dp``            the private-statistics offer
                                        (:mod:`databazaar.server.web.dp_forms`)
``/sell/products/{slug}/bundle``        contributor groups valued on reference rows

Every form is checked by the market itself (the mechanism, the privacy accountant, the
bundle valuation); a refused form comes back on its tab with the message next to its
fields.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from databazaar.core.errors import DatabazaarError, Forbidden, InvalidInput, NotFound, Unauthorized
from databazaar.core.money import format_minor, parse_decimal
from databazaar.market.allocation import METHOD_DESCRIPTIONS
from databazaar.market.schemas import AccountOut, ProductOut
from databazaar.market.service import Market
from databazaar.server.web.base import (
    Csrf,
    MarketDep,
    Sess,
    SlugPath,
    WebRoute,
    form_user,
    render,
    web_session,
)
from databazaar.server.web.dp_forms import dp_rows
from databazaar.server.web.economics import (
    MECHANISMS,
    dp_view,
    economics,
    epsilon_field,
    form_k,
    mechanism_view,
    uploaded_table,
    valuation_view,
)
from databazaar.server.web.pricing_forms import (
    PricingFormError,
    form_from_config,
    model_labels,
    parse_pricing,
    percent_bps,
    query_columns,
)
from databazaar.server.web.rendering import redirect

router = APIRouter(route_class=WebRoute, include_in_schema=False)


# ---------------------------------------------------------------------- sellers
def manage_extras(request: Request, slug: str) -> dict[str, Any]:
    """The pricing, privacy and bundle parts of the seller's manage page."""
    econ = economics(request)
    mechanism = mechanism_view(econ, slug)
    frame = econ.table(slug)
    offered = dp_view(econ, slug)
    form = {"mechanism": mechanism["name"] if mechanism else "posted"}
    if mechanism:
        form.update(form_from_config(mechanism["name"], mechanism["config"]))
    return {
        "mechanism": mechanism,
        "mechanisms": MECHANISMS,
        "pricing_form": form,
        "pricing_errors": {},
        "query_columns": query_columns(frame),
        "model_labels": model_labels(frame),
        "dp": offered,
        "dp_form": {},
        "dp_errors": {},
        "dp_rows": dp_rows(frame, offered["columns"] if offered else None),
        "bundle_valuation": valuation_view(econ, slug),
        "bundle_form": {},
        "bundle_methods": BUNDLE_METHODS,
        "derive_form": {},
        "enrich_backend": getattr(request.app.state.settings, "enrich_backend", None),
    }


MANAGE_TABS = {
    "listing": "Data and versions",
    "pricing": "Price",
    "privacy": "Private statistics",
    "bundle": "Contributors",
    "derive": "Enriched derivative",
}


def manage_context(
    request: Request, market: Market, account: AccountOut, slug: str, tab: str = "listing"
) -> dict[str, Any]:
    """The seller's manage page: versions, upload form, price and pricing mechanism."""
    product: ProductOut = market.get_product(slug, account)
    if account.role != "admin" and product.seller != account.username:
        raise Forbidden(f"product {slug!r} belongs to another seller")
    versions = [market.get_version(slug, n, account) for n in product.versions][::-1]
    listing = product.listing
    has_published = any(v.status == "published" for v in versions)
    ctx = {
        **(manage_extras(request, slug) if has_published else {"mechanism": None}),
        "title": f"Manage {product.title}",
        "tab": tab if tab in MANAGE_TABS else "listing",
        "tabs": MANAGE_TABS,
        "product": product,
        "versions": versions,
        "has_published": has_published,
        "upload": {},
        "price_form": {
            "price": "" if listing is None else format_minor(listing.price_minor, code=False),
            "active": True if listing is None else listing.active,
        },
    }
    if has_published:
        ctx["pricing_form"].setdefault("active", ctx["price_form"]["active"])
        if ctx["pricing_form"].get("mechanism") == "posted":
            ctx["pricing_form"].setdefault("price", ctx["price_form"]["price"])
    return ctx


def _manage_error(
    request: Request,
    sess: Any,
    market: Market,
    account: AccountOut,
    slug: str,
    exc: Any,
    tab: str = "listing",
    **form: Any,
) -> Response:
    """The seller's manage page again, with the error and the form as it was sent."""
    ctx = manage_context(request, market, account, slug, tab)
    ctx.update(error=exc, **form)
    return render(request, sess, "sell_manage.html", ctx, status=exc.http_status)


async def seller_form(
    request: Request, max_len: int
) -> tuple[Any, Market, dict[str, str], AccountOut]:
    """A seller's form post with fields named at run time: ``(session, market, text
    fields, account)`` after the CSRF and role checks (fields over ``max_len`` dropped)."""
    sess = web_session(request)
    raw = await request.form()
    form = {k: v for k, v in raw.items() if isinstance(v, str) and len(v) <= max_len}
    await raw.close()
    account = form_user(sess, form.get("csrf_token"), "seller")
    return sess, request.app.state.market, form, account


@router.post("/sell/products/{slug}/pricing")
async def set_pricing(request: Request, slug: SlugPath) -> Response:
    """Set how buyers pay, from the per-mechanism form (money and percent, no JSON).

    The configuration is checked by the mechanism first; then the listing (on sale or
    not, with the headline price the catalog shows) and the mechanism are saved.
    """
    sess, market, form, account = await seller_form(request, max_len=200)
    econ = economics(request)
    mechanism = form.get("mechanism", "")
    on_sale = form.get("active") == "on"
    try:
        if mechanism not in MECHANISMS:
            raise InvalidInput("choose how buyers pay from the list")
        frame = await run_in_threadpool(econ.table, slug)
        config, headline = parse_pricing(mechanism, form, query_columns(frame), model_labels(frame))
        from databazaar.market.pricing import mechanism_from_config

        mechanism_from_config(mechanism, config)  # the mechanism's own checks, before saving
        await run_in_threadpool(market.set_listing, account, slug, headline, active=on_sale)
        if mechanism == "auction":
            if on_sale:
                await run_in_threadpool(
                    econ.open_auction, account, slug, config["reserve_minor"], config["units"]
                )
        else:
            await run_in_threadpool(econ.set_pricing, account, slug, mechanism, config)
    except DatabazaarError as exc:
        if isinstance(exc, Unauthorized | NotFound | Forbidden):
            raise
        errors = exc.fields if isinstance(exc, PricingFormError) else {}
        pricing_form = {**form, "mechanism": mechanism, "active": on_sale}
        return await run_in_threadpool(
            _manage_error, request, sess, market, account, slug, exc, "pricing",
            pricing_form=pricing_form, pricing_errors=errors,
        )  # fmt: skip
    label = MECHANISMS[mechanism][0]
    state = "on sale" if on_sale else "off sale"
    if mechanism == "posted":
        sess.flash(f"{slug} is {state} at {format_minor(headline)}.", "success")
    else:
        sess.flash(f"{slug} is {state}, sold by {label.lower()}.", "success")
    return redirect(sess, f"/sell/products/{slug}?tab=pricing")


@router.post("/sell/products/{slug}/auction/close")
def close_auction(request: Request, sess: Sess, slug: SlugPath, csrf_token: Csrf = "") -> Response:
    account = form_user(sess, csrf_token, "seller")
    result = economics(request).close_auction(account, slug)
    outcome = result.outcome
    price = int(outcome.get("price_minor", 0))
    sess.flash(
        f"Auction closed: {len(result.sales)} licence(s) sold at {format_minor(price)} each.",
        "success",
    )
    return redirect(sess, f"/sell/products/{slug}?tab=pricing")


@router.post("/sell/products/{slug}/dp")
async def dp_offer(request: Request, slug: SlugPath) -> Response:
    """Offer (or change) the product's DP statistics and total privacy budget (per-column
    fields, see :mod:`databazaar.server.web.dp_forms`)."""
    from databazaar.server.web.dp_forms import DpFormError, parse_dp_form

    sess, market, form, account = await seller_form(request, max_len=5000)
    econ = economics(request)
    epsilon_total = form.get("epsilon_total", "")
    try:
        frame = await run_in_threadpool(econ.table, slug)
        columns = parse_dp_form(frame, form)
        total = epsilon_field(epsilon_total, "the total epsilon")
        await run_in_threadpool(econ.offer_dp, account, slug, total, columns)
    except DatabazaarError as exc:
        if isinstance(exc, Unauthorized | NotFound | Forbidden):
            raise
        errors = exc.fields if isinstance(exc, DpFormError) else {}
        return await run_in_threadpool(
            _manage_error, request, sess, market, account, slug, exc, "privacy",
            dp_form=form, dp_errors=errors,
        )  # fmt: skip
    sess.flash(f"{slug} now offers private statistics (total epsilon {epsilon_total}).", "success")
    return redirect(sess, f"/sell/products/{slug}?tab=privacy")


# ---------------------------------------------------------------------- bundles
BUNDLE_METHODS = METHOD_DESCRIPTIONS


def _contributors(text: str) -> dict[str, str]:
    """``group = username`` per line (blank lines and ``#`` comments skipped)."""
    out: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        group, sep, username = (part.strip() for part in line.partition("="))
        if not sep or not group or not username:
            raise InvalidInput(
                f"contributors line {n} is not 'group = username': {line[:60]!r}",
                hint="one line per group, e.g. north = alice",
            )
        if group in out:
            raise InvalidInput(f"group {group!r} is named twice")
        out[group] = username
    if not out:
        raise InvalidInput("name the contributor account of every group, one per line")
    return out


@router.post("/sell/products/{slug}/bundle")
def register_bundle(
    request: Request,
    sess: Sess,
    market: MarketDep,
    slug: SlugPath,
    csrf_token: Csrf = "",
    reference: Annotated[UploadFile | None, File()] = None,
    group_column: Annotated[str, Form(max_length=200)] = "",
    label_column: Annotated[str, Form(max_length=200)] = "",
    contributors: Annotated[str, Form(max_length=50_000)] = "",
    method: Annotated[str, Form(max_length=16)] = "knn",
    order: Annotated[str, Form(max_length=5000)] = "",
    k: Annotated[str, Form(max_length=4)] = "5",
) -> Response:
    """Declare the product's contributor groups and value them on a reference set."""
    account = form_user(sess, csrf_token, "seller")
    form = {
        "group_column": group_column,
        "label_column": label_column,
        "contributors": contributors,
        "method": method,
        "order": order,
        "k": k,
    }
    try:
        if not group_column.strip() or not label_column.strip():
            raise InvalidInput("name the contributor column and the label column")
        neighbours = form_k(k)
        named = _contributors(contributors)
        groups = [g.strip() for g in order.split(",") if g.strip()] or None
        frame = uploaded_table(reference, "the reference rows")
        economics(request).register_bundle(
            account,
            slug,
            group_column=group_column.strip(),
            label_column=label_column.strip(),
            contributors=named,
            reference=frame,
            method=method,
            order=groups,
            k=neighbours,
        )
    except DatabazaarError as exc:
        if isinstance(exc, Unauthorized | Forbidden) or exc.code == "csrf_failed":
            raise
        return _manage_error(request, sess, market, account, slug, exc, "bundle", bundle_form=form)
    sess.flash(
        f"{slug} is a bundle of {len(named)} contributors, valued with {method}; each "
        "sale's revenue is now split among them by the value of their rows.",
        "success",
    )
    return redirect(sess, f"/sell/products/{slug}?tab=bundle")


@router.post("/sell/products/{slug}/derivative")
def create_derivative(
    request: Request,
    sess: Sess,
    market: MarketDep,
    slug: SlugPath,
    csrf_token: Csrf = "",
    new_slug: Annotated[str, Form(max_length=64)] = "",
    method: Annotated[str, Form(max_length=16)] = "dipt",
    style: Annotated[str, Form(max_length=16)] = "general",
    price: Annotated[str, Form(max_length=20)] = "",
    share: Annotated[str, Form(max_length=8)] = "50",
) -> Response:
    """Enrich the product with the market's backend and list the result as a new product."""
    from databazaar.core.errors import Conflict
    from databazaar.enrich.teacher import open_enrich_backend

    account = form_user(sess, csrf_token, "seller")
    form = {"new_slug": new_slug, "method": method, "style": style, "price": price, "share": share}
    try:
        spec = getattr(request.app.state.settings, "enrich_backend", None)
        if not spec:
            raise Conflict("this market has no enrichment backend")
        problems: dict[str, str] = {}
        share_bps = percent_bps(share, problems, "share")
        if share_bps is None:
            raise InvalidInput(f"the source's share: {problems['share']}")
        out = economics(request).create_derivative(
            account,
            slug,
            new_slug.strip(),
            method=method,
            backend=open_enrich_backend(spec),
            price_minor=parse_decimal(price),
            parameters={"style": style} if method == "rationales" else {},
            source_share_bps=share_bps,
        )
    except DatabazaarError as exc:
        if isinstance(exc, Unauthorized | Forbidden) or exc.code == "csrf_failed":
            raise
        return _manage_error(request, sess, market, account, slug, exc, "derive", derive_form=form)
    sess.flash(
        f"{out.slug} is listed: {out.rows} rows enriched with {out.method} by {out.generator}; "
        f"{out.source_share_bps / 100:g}% of its sales go to {slug}'s contributors.",
        "success",
    )
    return redirect(sess, f"/products/{out.slug}")
