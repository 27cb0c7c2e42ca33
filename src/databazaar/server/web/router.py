"""The HTML pages of the market: routes that parse a request, call the market, render.

Pages
-----
``/``                                  home: search box and the newest products
``/catalog``                           search with filters (task, license, price, tags)
``/products/{slug}``                   card, preview, statistics, license, price; buy/download
``/login``, ``/signup``, ``/logout``   password login into a cookie session
                                       (:mod:`databazaar.server.web.accounts`)
``/sell``                              seller dashboard: balance, products, earnings chart
``/sell/new``                          create a product (step 1 of the upload flow)
``/sell/products/{slug}``              upload versions, publish drafts, set the price
``/purchases``                         a buyer's orders and download buttons
``/admin``                             ledger rows, verify button, deposits
``/admin/review``                      the listing gate's review queue, policy and audit
                                       (:mod:`databazaar.server.web.review`)

The economics pages (value-aware search, buying under a pricing mechanism, auctions,
sales, pricing choice) live in :mod:`databazaar.server.web.economics` and are included
in :data:`router`.

Every ``POST`` form carries the session's CSRF token and is refused with 403 without it.
Market errors become an HTML page (or the form again, with the message) with the
error's HTTP status; an expired or missing login redirects to ``/login``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, File, Form, Path, Query, Request, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.staticfiles import StaticFiles

from databazaar.core.errors import DatabazaarError, Forbidden, InvalidInput, NotFound, Unauthorized
from databazaar.core.money import format_minor, parse_decimal
from databazaar.market.service import Market
from databazaar.server.web import statements
from databazaar.server.web.accounts import router as accounts_router
from databazaar.server.web.base import (
    Csrf,
    MarketDep,
    Sess,
    SlugPath,
    WebRoute,
    error_page,
    form_user,
    render,
    require_user,
)
from databazaar.server.web.buying import router as buying_router
from databazaar.server.web.economics import price_prefixes, product_context
from databazaar.server.web.economics import router as econ_router
from databazaar.server.web.mixture import router as mixture_router
from databazaar.server.web.rendering import (
    STATIC_DIR,
    Renderer,
    optional_money,
    redirect,
)
from databazaar.server.web.review import router as review_router
from databazaar.server.web.selling import manage_context
from databazaar.server.web.selling import router as selling_router
from databazaar.server.web.session import make_serializer
from databazaar.server.web.value_pages import router as value_router

PAGE_SIZE = 12
SEARCH_MODES = {"fulltext": "Keywords", "semantic": "Meaning (MiniLM)", "hybrid": "Both"}


router = APIRouter(route_class=WebRoute, include_in_schema=False)


# ---------------------------------------------------------------------- browse
@router.get("/")
def home(request: Request, sess: Sess, market: MarketDep) -> Response:
    latest = market.search(None, limit=6)
    return render(
        request,
        sess,
        "home.html",
        {
            "title": "Data for your models",
            "latest": latest,
            "modes": SEARCH_MODES,
            "prefixes": price_prefixes(request, [h.slug for h in latest.hits]),
            "form": {"label_column": "", "task": "", "k": "5", "products": ""},
        },
    )


def _facets(market: Market) -> dict[str, list[str]]:
    """Tasks, licenses and tags in the catalog, for the filter inputs' suggestions."""
    listed = market.search(None, limit=100).hits
    return {
        "tasks": sorted({h.task for h in listed}),
        "licenses": sorted({h.license for h in listed}),
        "tags": sorted({t for h in listed for t in h.tags}),
    }


@router.get("/catalog")
def catalog(
    request: Request,
    sess: Sess,
    market: MarketDep,
    q: Annotated[str, Query(max_length=500)] = "",
    mode: Annotated[str, Query(max_length=16)] = "fulltext",
    task: Annotated[str, Query(max_length=64)] = "",
    license: Annotated[str, Query(max_length=64)] = "",
    min_price: Annotated[str, Query(max_length=20)] = "",
    max_price: Annotated[str, Query(max_length=20)] = "",
    tags: Annotated[str, Query(max_length=500)] = "",
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> Response:
    form = {
        "q": q,
        "mode": mode,
        "task": task,
        "license": license,
        "min_price": min_price,
        "max_price": max_price,
        "tags": tags,
    }
    ctx: dict[str, Any] = {
        "title": "Catalog",
        "form": form,
        "modes": SEARCH_MODES,
        "facets": _facets(market),
        "results": None,
        "prefixes": {},
        "page": page,
        "page_size": PAGE_SIZE,
    }
    try:
        if mode not in SEARCH_MODES:
            raise InvalidInput(f"unknown search mode {mode!r}", hint="choose one from the list")
        results = market.search(
            q or None,
            mode=mode,
            task=task.strip() or None,
            license=license.strip() or None,
            min_price=optional_money(min_price, "minimum price"),
            max_price=optional_money(max_price, "maximum price"),
            tags=[t.strip() for t in tags.split(",") if t.strip()],
            limit=PAGE_SIZE,
            offset=(page - 1) * PAGE_SIZE,
        )
    except InvalidInput as exc:
        return render(request, sess, "catalog.html", {**ctx, "error": exc}, status=422)
    ctx["results"] = results
    ctx["prefixes"] = price_prefixes(request, [h.slug for h in results.hits])
    ctx["query_base"] = "&".join(
        f"{k}={quote(v, safe='')}" for k, v in form.items() if v and k != "page"
    )
    return render(request, sess, "catalog.html", ctx)


@router.get("/products/{slug}")
def product_page(
    request: Request,
    sess: Sess,
    market: MarketDep,
    slug: SlugPath,
    version: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
) -> Response:
    ctx = product_context(request, market, sess.account(), slug, version)
    return render(request, sess, "product.html", ctx)


@router.post("/products/{slug}/download")
def download(
    request: Request,
    sess: Sess,
    market: MarketDep,
    slug: SlugPath,
    csrf_token: Csrf = "",
    version: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    account = form_user(sess, csrf_token)
    number = None
    if version.strip():
        if not version.strip().isdigit():
            raise InvalidInput("the version must be a whole number")
        number = int(version)
    link = market.download_link(account, slug, number, ttl_seconds=300)
    return redirect(sess, link.url)


# ---------------------------------------------------------------------- sellers
@router.get("/sell")
def seller_dashboard(request: Request, sess: Sess, market: MarketDep) -> Response:
    account = require_user(sess, "seller")
    fresh = market.get_account(account.id)
    postings = statements.account_postings(market, account.id)
    sales = statements.seller_sales(market, account.id)
    earned = sum(p.amount_minor for p in postings if p.kind == "sale")
    products = market.my_products(account)
    return render(
        request,
        sess,
        "sell_dashboard.html",
        {
            "title": "Seller dashboard",
            "me": fresh,
            "products": products,
            "prefixes": price_prefixes(request, [p.slug for p in products]),
            "sales": sales,
            "earned": earned,
            "postings": postings[-20:][::-1],
            "receipts": statements.sale_ids(market, [s.order_id for s in sales]),
            "bundles": statements.bundles_of(market, account.id),
        },
    )


@router.get("/sell/earnings.svg")
def earnings_chart(sess: Sess, market: MarketDep) -> Response:
    from databazaar.server.web.charts import earnings_svg

    account = require_user(sess, "seller")
    points = statements.cumulative(statements.account_postings(market, account.id), ("sale",))
    response = Response(
        earnings_svg(points, until=datetime.now(UTC)),
        media_type="image/svg+xml",
        headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
    )
    return sess.save(response)


@router.get("/sell/new")
def new_product_form(request: Request, sess: Sess) -> Response:
    require_user(sess, "seller")
    return render(request, sess, "sell_new.html", {"title": "New product", "form": {}})


@router.post("/sell/new")
def new_product(
    request: Request,
    sess: Sess,
    market: MarketDep,
    csrf_token: Csrf = "",
    slug: Annotated[str, Form(max_length=64)] = "",
    title: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    account = form_user(sess, csrf_token, "seller")
    try:
        product = market.create_product(account, slug.strip(), title)
    except DatabazaarError as exc:
        if isinstance(exc, Unauthorized):
            raise
        ctx = {"title": "New product", "form": {"slug": slug, "title": title}, "error": exc}
        return render(request, sess, "sell_new.html", ctx, status=exc.http_status)
    sess.flash(f"Product {product.slug} created. Now upload its data.", "success")
    return redirect(sess, f"/sell/products/{product.slug}")


@router.get("/sell/products/{slug}")
def manage_product(
    request: Request,
    sess: Sess,
    market: MarketDep,
    slug: SlugPath,
    tab: Annotated[str, Query(max_length=16)] = "listing",
) -> Response:
    account = require_user(sess, "seller")
    ctx = manage_context(request, market, account, slug, tab)
    return render(request, sess, "sell_manage.html", ctx)


@router.post("/sell/products/{slug}/versions")
def upload_version(
    request: Request,
    sess: Sess,
    market: MarketDep,
    slug: SlugPath,
    csrf_token: Csrf = "",
    file: Annotated[UploadFile | None, File()] = None,
    license: Annotated[str, Form(max_length=64)] = "",
    task: Annotated[str, Form(max_length=64)] = "",
    description: Annotated[str, Form(max_length=20_000)] = "",
    provenance: Annotated[str, Form(max_length=5_000)] = "",
    tags: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    account = form_user(sess, csrf_token, "seller")
    upload = {
        "license": license,
        "task": task,
        "description": description,
        "provenance": provenance,
        "tags": tags,
    }
    try:
        if file is None or not file.filename:
            raise InvalidInput("choose a file to upload", hint="a .csv, .parquet or .jsonl table")
        card = {k: v.strip() for k, v in upload.items()}
        version = market.add_version(account, slug, file.file, file.filename, card)
    except DatabazaarError as exc:
        if isinstance(exc, Unauthorized | NotFound | Forbidden):
            raise
        ctx = manage_context(request, market, account, slug)
        ctx.update(upload=upload, error=exc)
        return render(request, sess, "sell_manage.html", ctx, status=exc.http_status)
    sess.flash(
        f"Uploaded {version.filename} as draft version {version.number}: "
        f"{version.n_rows} rows, {version.n_columns} columns. Check it, then publish.",
        "success",
    )
    return redirect(sess, f"/sell/products/{slug}#version-{version.number}")


@router.post("/sell/products/{slug}/versions/{number}/publish")
def publish_version(
    request: Request,
    sess: Sess,
    market: MarketDep,
    slug: SlugPath,
    number: Annotated[int, Path(ge=1, le=1_000_000)],
    csrf_token: Csrf = "",
) -> Response:
    account = form_user(sess, csrf_token, "seller")
    version = market.publish(account, slug, number)
    if version.status == "published":
        sess.flash(f"Version {version.number} is published: buyers can now find it.", "success")
    elif version.status == "held":
        sess.flash(
            f"Version {version.number} is held for risk review: an admin checks it before "
            "buyers can see it.",
            "info",
        )
    else:
        sess.flash(f"Version {version.number} was refused by the market's risk screening.", "error")
    return redirect(sess, f"/sell/products/{slug}")


@router.post("/sell/products/{slug}/listing")
def set_listing(
    request: Request,
    sess: Sess,
    market: MarketDep,
    slug: SlugPath,
    csrf_token: Csrf = "",
    price: Annotated[str, Form(max_length=20)] = "",
    active: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    account = form_user(sess, csrf_token, "seller")
    on_sale = active == "on"
    try:
        listing = market.set_listing(account, slug, parse_decimal(price), active=on_sale)
    except DatabazaarError as exc:
        if isinstance(exc, Unauthorized | NotFound | Forbidden):
            raise
        ctx = manage_context(request, market, account, slug, "pricing")
        ctx.update(error=exc)
        return render(request, sess, "sell_manage.html", ctx, status=exc.http_status)
    state = "on sale" if listing.active else "off sale"
    p = listing.price_minor
    sess.flash(f"{slug} is {state} at {format_minor(p, listing.currency)}.", "success")
    return redirect(sess, f"/sell/products/{slug}")


# ---------------------------------------------------------------------- buyers
@router.get("/purchases")
def purchases(request: Request, sess: Sess, market: MarketDep) -> Response:
    account = sess.require_account()
    orders = market.orders_for(account)
    bought = sorted({item.slug for order in orders for item in order.items})
    # Query answers and models are delivered on their sale page, not as file access.
    owned = [slug for slug in bought if market.has_access(account, slug)]
    return render(
        request,
        sess,
        "purchases.html",
        {
            "title": "Your purchases",
            "me": market.get_account(account.id),
            "orders": orders,
            "owned": owned,
            "receipts": statements.sale_ids(market, [o.id for o in orders]),
        },
    )


# ---------------------------------------------------------------------- admin
def _admin_context(market: Market) -> dict[str, Any]:
    return {
        "title": "Ledger",
        "rows": statements.recent_ledger(market, limit=50),
        "report": None,
        "deposit": {},
    }


@router.get("/admin")
def admin(request: Request, sess: Sess, market: MarketDep) -> Response:
    require_user(sess, "admin")
    return render(request, sess, "admin.html", _admin_context(market))


@router.post("/admin/ledger/verify")
def admin_verify(
    request: Request, sess: Sess, market: MarketDep, csrf_token: Csrf = ""
) -> Response:
    form_user(sess, csrf_token, "admin")
    report = market.verify_ledger()
    ctx = {**_admin_context(market), "report": report}
    return render(request, sess, "admin.html", ctx)


@router.post("/admin/deposits")
def admin_deposit(
    request: Request,
    sess: Sess,
    market: MarketDep,
    csrf_token: Csrf = "",
    username: Annotated[str, Form(max_length=64)] = "",
    amount: Annotated[str, Form(max_length=20)] = "",
    memo: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    form_user(sess, csrf_token, "admin")
    try:
        target = market.account_by_name(username.strip())
        done = market.deposit(target.id, parse_decimal(amount, "amount"), memo=memo or "deposit")
    except DatabazaarError as exc:
        if isinstance(exc, Unauthorized):
            raise
        ctx = {
            **_admin_context(market),
            "deposit": {"username": username, "amount": amount, "memo": memo},
            "error": exc,
        }
        return render(request, sess, "admin.html", ctx, status=exc.http_status)
    bal = done.account.balance_minor
    sess.flash(
        f"Deposited to {done.account.username}; balance now {format_minor(bal)}.",
        "success",
    )
    return redirect(sess, "/admin")


router.include_router(accounts_router)
router.include_router(econ_router)
router.include_router(buying_router)
router.include_router(selling_router)
router.include_router(value_router)
router.include_router(mixture_router)
router.include_router(review_router)


# ---------------------------------------------------------------------- mounting
class WebState:
    """What the pages share per app: the renderer and the cookie signer."""

    def __init__(self, secret_key: str) -> None:
        self.renderer = Renderer()
        self.serializer = make_serializer(secret_key)


def mount_web(app: FastAPI) -> FastAPI:
    """Attach the pages and ``/static`` to an app built by ``create_app`` (idempotent).

    The session cookie is signed with the market's secret key (``DATABAZAAR_SECRET_KEY``,
    else the key kept in the data home).  Unknown paths outside ``/api`` answer browsers
    with an HTML error page; API clients keep the JSON errors.
    """
    if getattr(app.state, "web", None) is not None:
        return app
    from databazaar.market.access import load_secret_key

    market: Market = app.state.market
    settings = getattr(app.state, "settings", None)
    secret = load_secret_key(market.home, getattr(settings, "secret_key", None))
    app.state.web = WebState(secret)
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="web-static")

    api_handler = app.exception_handlers.get(StarletteHTTPException)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        wants_html = "text/html" in request.headers.get("accept", "")
        if wants_html and not request.url.path.startswith(("/api/", "/static/")):
            err = DatabazaarError(str(exc.detail))
            err.http_status = exc.status_code
            return error_page(request, err)
        if api_handler is None:
            raise exc
        result = api_handler(request, exc)
        return await result if hasattr(result, "__await__") else result  # type: ignore[return-value]

    app.add_exception_handler(StarletteHTTPException, http_error)
    return app
