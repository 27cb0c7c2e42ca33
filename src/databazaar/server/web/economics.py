"""Pages of the market economics: value-aware search, value reports, pricing, sales.

Every handler calls :class:`databazaar.market.economics.Economics` (the same object
the JSON routes under ``/api/econ`` use, kept on the app) and renders the answer:

``/value-search``                     a buyer uploads a validation set; products on sale
                                       are ranked by KNN-Shapley value for it, with
                                       intervals, a value chart and point-removal curves
``/products/{slug}/buy``               buy under the product's mechanism (posted price,
                                       share of measured value, noisy model, query answer)
``/products/{slug}/bid``               a sealed bid when the product is auctioned
``/sales/{id}``                        what a sale delivered (file, query answer, model)
``/sell/products/{slug}/pricing``      the seller chooses the pricing mechanism
``/sell/products/{slug}/auction/close`` the seller clears an auction
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
import uuid
from pathlib import Path as FsPath
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Path, Query, Request, UploadFile
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.datastructures import UploadFile as StarletteUpload
from starlette.responses import Response

from databazaar.core.errors import (
    Conflict,
    DatabazaarError,
    Forbidden,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
)
from databazaar.core.money import format_minor, parse_decimal
from databazaar.market.allocation import METHOD_DESCRIPTIONS
from databazaar.market.privacy import STATISTICS
from databazaar.market.schemas import AccountOut, ProductOut, VersionOut
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
    web_session,
)
from databazaar.server.web.dp_forms import dp_rows
from databazaar.server.web.pricing_forms import (
    PricingFormError,
    form_from_config,
    model_labels,
    parse_pricing,
    query_columns,
    settings_words,
)
from databazaar.server.web.rendering import redirect
from databazaar.server.web.words import num

router = APIRouter(route_class=WebRoute, include_in_schema=False)

MAX_VALIDATION_BYTES = 5 * 1024 * 1024
MAX_VALIDATION_ROWS = 5000
CHUNK = 1 << 16


def _mechanisms() -> dict[str, tuple[str, str, dict[str, Any]]]:
    """name -> (label, what the buyer gets and pays, an example configuration), in menu
    order, from the pricing registry."""
    from databazaar.market.pricing import get_mechanism_class, mechanism_names

    classes = sorted(
        (get_mechanism_class(n) for n in mechanism_names()), key=lambda c: c.menu_order
    )
    return {c.name: (c.label, c.summary, c.example) for c in classes}


MECHANISMS = _mechanisms()


# ---------------------------------------------------------------------- helpers
def economics(request: Request) -> Any:
    """The app's :class:`Economics` (shared with the JSON routes)."""
    from databazaar.server.api.economics import get_economics

    return get_economics(request, request.app.state.market)


def svg_data_uri(svg: str) -> str:
    """An SVG as a ``data:`` URI for an ``<img>`` (where SVG cannot run scripts)."""
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode("utf-8")).decode("ascii")


def uploaded_table(upload: Any, what: str = "the validation set") -> Any:
    """A small uploaded table (CSV, Parquet or JSONL) as a DataFrame.

    The bytes are copied to a temporary file (at most :data:`MAX_VALIDATION_BYTES`) and
    parsed by the one table reader (:func:`databazaar.core.io.read_table`), so the same
    formats and checks apply as for products; the file is deleted afterwards.
    """
    from databazaar.core.io import read_table, table_format

    if upload is None or not isinstance(upload, StarletteUpload) or not upload.filename:
        raise InvalidInput(f"choose a file with {what}", hint="a .csv, .parquet or .jsonl table")
    fmt = table_format(upload.filename)
    fd, name = tempfile.mkstemp(suffix="." + fmt)
    path = FsPath(name)
    try:
        size = 0
        with os.fdopen(fd, "wb") as out:
            while chunk := upload.file.read(CHUNK):
                size += len(chunk)
                if size > MAX_VALIDATION_BYTES:
                    raise PayloadTooLarge(
                        f"{what} is larger than {MAX_VALIDATION_BYTES // (1024 * 1024)} MB",
                        hint="a few hundred labelled rows are enough",
                    )
                out.write(chunk)
        if size == 0:
            raise InvalidInput(f"the file with {what} is empty")
        frame = read_table(path, fmt)
    finally:
        path.unlink(missing_ok=True)
    if len(frame) > MAX_VALIDATION_ROWS:
        raise InvalidInput(f"{what} has {len(frame)} rows; at most {MAX_VALIDATION_ROWS}")
    return frame


def _mechanism_view(econ: Any, slug: str) -> dict[str, Any] | None:
    try:
        mech = econ.mechanism_for(slug)
    except Conflict:
        return None  # not on sale and no mechanism chosen
    label, about, _example = MECHANISMS.get(mech.name, (mech.name, "", {}))
    view: dict[str, Any] = {
        "name": mech.name,
        "label": label,
        "about": about,
        "config": mech.config(),
        "words": settings_words(mech.name, mech.config()),
    }
    if mech.name == "posted":
        view["price_minor"] = mech.price_minor
    elif mech.name == "model":
        view["curve"] = [(float(var), int(price)) for var, price in mech.curve.config()]
        view["label_column"] = mech.label_column
    elif mech.name == "query":
        view["columns"] = [
            (col, [(i, val, price) for i, (val, price) in enumerate(points)])
            for col, points in mech.config()["price_points"].items()
        ]
    elif mech.name == "value":
        view.update(mech.config())
    elif mech.name == "auction":
        view.update(mech.config())
    return view


def _valuation_view(econ: Any, slug: str) -> dict[str, Any] | None:
    """A bundle's contributors: account, value in accuracy points, share of revenue."""
    from databazaar.market.allocation import split_revenue
    from databazaar.server.web.charts import bar_svg

    try:
        stored = econ.valuation(slug)
    except NotFound:
        return None
    rec = stored.valuation
    groups = [str(g) for g in rec.get("groups", [])]
    values = [float(x) for x in rec.get("values", [])]
    lows, highs = rec.get("ci_low"), rec.get("ci_high")
    names = statements.bundle_contributors(econ.market, slug)
    # the same rule every sale is split by, applied to 100.00 to read off the percents
    split = split_revenue(10_000, dict(zip(groups, values, strict=True)), {g: g for g in groups})
    weights = {str(sh.group): sh.weight for sh in split.shares}
    rows = [
        {
            "group": g,
            "account": names.get(g, g),
            "value": val,
            "ci": None if lows is None else (float(lows[i]), float(highs[i])),
            "share": weights.get(g, 0.0),
        }
        for i, (g, val) in enumerate(zip(groups, values, strict=True))
    ]
    errors = None
    if lows is not None and highs is not None:
        errors = [max((h - lo) / 2, 0.0) * 100 for lo, h in zip(lows, highs, strict=True)]
    chart = bar_svg(
        [f"{r['account']} ({r['group']})" for r in rows],
        [v * 100 for v in values],
        errors=errors,
        title="What each contributor's rows add",
        xlabel="accuracy points on the reference task",
    )
    return {
        "id": stored.valuation_id,
        "method": METHOD_DESCRIPTIONS.get(str(rec.get("method", "")), str(rec.get("method", ""))),
        "rows": rows,
        "chart": svg_data_uri(chart),
    }


def product_context(
    request: Request, market: Market, account: AccountOut | None, slug: str, version: int | None
) -> dict[str, Any]:
    """Everything the product page shows: card, access, pricing, value report."""
    product = market.get_product(slug, account)
    shown: VersionOut | None = product.latest
    if version is not None:
        shown = market.get_version(slug, version, account)
    owner = account is not None and (account.role == "admin" or account.username == product.seller)
    has_access = account is not None and market.has_access(account, slug)
    on_sale = product.listing is not None and product.listing.active
    econ = economics(request)
    mechanism = _mechanism_view(econ, slug) if on_sale else None
    can_buy = (
        account is not None
        and account.role == "buyer"
        and not has_access
        and on_sale
        and shown is not None
    )
    splits = []
    if account is not None:
        try:
            splits = _split_rows(market, econ.splits(account, slug))
        except (Forbidden, NotFound):
            splits = []
    balance = market.get_account(account.id).balance_minor if account is not None else 0
    short = None
    if can_buy and mechanism is not None and mechanism["name"] == "posted":
        if balance < mechanism["price_minor"]:
            short = mechanism["price_minor"] - balance
    return {
        "balance_minor": balance,
        "short_minor": short,
        "price_note": price_note(mechanism),
        "value_form": _value_form(slug),
        "title": product.title,
        "product": product,
        "shown": shown,
        "owner": owner,
        "has_access": has_access,
        "on_sale": on_sale,
        "can_buy": can_buy,
        "mechanism": mechanism,
        "valuation": _valuation_view(econ, slug),
        "splits": splits,
        "idempotency_key": uuid.uuid4().hex,
        "dp": _dp_view(econ, slug) if shown is not None else None,
        "dp_form": {},
    }


def _split_rows(market: Market, splits: list[Any]) -> list[dict[str, Any]]:
    """Revenue splits with account names, percents and the receipt of each sale."""
    from databazaar.server.web.words import pct

    receipts = statements.sale_ids(market, [int(sp.order_id) for sp in splits if sp.order_id])
    names: dict[int, str] = {}
    out = []
    for sp in splits:
        shares = []
        for sh in sp.shares:
            acc = int(sh["account_id"])
            if acc not in names:
                names[acc] = market.get_account(acc).username
            amount = int(sh["amount_minor"])
            share = amount / sp.total_minor if sp.total_minor else 0.0
            shares.append({"name": names[acc], "amount_minor": amount, "percent": pct(share)})
        out.append(
            {
                "order_id": sp.order_id,
                "sale_id": receipts.get(int(sp.order_id or 0)),
                "total_minor": sp.total_minor,
                "shares": shares,
            }
        )
    return out


def price_note(mechanism: dict[str, Any] | None) -> str:
    """How to read a product's headline price under its mechanism."""
    if mechanism is None or mechanism["name"] == "posted":
        return ""
    return {
        "value": "the least you pay; the price is a share of the value the data has for you",
        "query": "the cheapest selection; you pay for the rows you choose",
        "model": "the noisiest model; a more exact model costs more",
        "auction": "the reserve of a sealed-bid auction",
    }.get(mechanism["name"], "")


def price_prefixes(request: Request, slugs: list[str]) -> dict[str, str]:
    """``{slug: "from"}`` for products whose headline price is a minimum (catalog cards)."""
    econ = economics(request)
    out: dict[str, str] = {}
    for slug in slugs:
        try:
            name = econ.mechanism_for(slug).name
        except DatabazaarError:
            continue
        if name == "auction":
            out[slug] = "reserve"
        elif name != "posted":
            out[slug] = "from"
    return out


def _dp_view(econ: Any, slug: str) -> dict[str, Any] | None:
    """The product's DP offer for the pages, or ``None`` when it has none."""
    try:
        budget = econ.dp_budget(slug)
    except NotFound:
        return None
    columns = []
    for name, pol in sorted(budget.columns.items()):
        if "categories" in pol:
            about = "categories " + ", ".join(str(c) for c in pol["categories"])
            stats = [st for st in STATISTICS if st in ("count", "histogram")]
        else:
            lo, hi = pol["bounds"]
            about = (
                f"numbers from {num(float(lo))} to {num(float(hi))} (values outside are "
                f"clipped), {pol.get('bins', 10)} histogram bins"
            )
            stats = list(STATISTICS)
        columns.append({"name": name, "about": about, "statistics": stats})
    return {
        **budget.model_dump(),
        "column_views": columns,
        "statistics": STATISTICS,
    }


def _dp_summary(slug: str, r: dict[str, Any]) -> str:
    if "counts" in r:  # histogram: per category or per bin
        labels = (
            [str(c) for c in r["categories"]]
            if "categories" in r
            else [
                f"{num(float(lo))} to {num(float(hi))}"
                for lo, hi in zip(r["edges"][:-1], r["edges"][1:], strict=True)
            ]
        )
        value_text = (
            "[" + ", ".join(f"{k}: {n}" for k, n in zip(labels, r["counts"], strict=True)) + "]"
        )
    else:
        value = r["value"]
        value_text = num(value)
    what = r["statistic"] + (f" of {r['column']}" if r.get("column") else " of rows")
    return (
        f"Private {what} in {slug}: {value_text} (epsilon {num(float(r['epsilon']))}, typical "
        f"noise ±{num(float(r['noise_std']))}); budget left {num(float(r['epsilon_remaining']))}."
    )


def _form_k(text: str) -> int:
    """The ``k`` field of the KNN forms: a whole number from 1 to 100."""
    if not text.strip().isdigit() or not 1 <= int(text) <= 100:
        raise InvalidInput("k must be a whole number from 1 to 100")
    return int(text)


def _form_text(form: FormData, name: str, max_len: int = 200) -> str:
    value = form.get(name, "")
    if not isinstance(value, str):
        raise InvalidInput(f"the field {name} must be text")
    if len(value) > max_len:
        raise InvalidInput(f"the field {name} is too long (at most {max_len} characters)")
    return value.strip()


def _buy_request(form: FormData, mechanism: dict[str, Any]) -> dict[str, Any] | None:
    """The mechanism's purchase request from the product page's buy form."""
    name = mechanism["name"]
    if name == "posted":
        return None
    if name == "value":
        frame = uploaded_table(form.get("validation"))
        label = _form_text(form, "label_column")
        if not label:
            raise InvalidInput("name the label column of your validation set")
        worth = parse_decimal(_form_text(form, "worth", 20), "worth of a perfect model")
        return {
            "validation": json.loads(frame.to_json(orient="records")),
            "label_column": label,
            "worth_minor": worth,
        }
    if name == "model":
        raw = _form_text(form, "variance", 40)
        choices = {f"{var:g}": var for var, _price in mechanism["curve"]}
        if raw not in choices:
            raise InvalidInput("choose one of the offered noise levels")
        return {"variance": choices[raw]}
    if name == "query":
        where: dict[str, list[Any]] = {}
        for col, points in mechanism["columns"]:
            picked = form.getlist(f"where:{col}")
            values = []
            for raw in picked:
                if not isinstance(raw, str) or not raw.isdigit() or int(raw) >= len(points):
                    raise InvalidInput(f"unknown value chosen for column {col!r}")
                values.append(points[int(raw)][1])
            if values:
                where[col] = values
        return {"query": {"where": where}}
    raise Conflict(
        f"this product is sold by {mechanism['label'].lower()}", hint="place a bid instead"
    )


# ---------------------------------------------------------------------- buying
@router.post("/products/{slug}/buy")
async def buy(request: Request, slug: SlugPath) -> Response:
    sess = web_session(request)
    market: Market = request.app.state.market
    form = await request.form()
    try:
        sess.check_csrf(form.get("csrf_token"))
        account = await run_in_threadpool(sess.require_account)
        econ = economics(request)
        mechanism = await run_in_threadpool(_mechanism_view, econ, slug)
        if mechanism is None:
            raise Conflict(f"product {slug!r} is not on sale")
        key = _form_text(form, "idempotency_key", 128)
        buy_request = await run_in_threadpool(_buy_request, form, mechanism)
        sale = await run_in_threadpool(econ.buy, account, slug, buy_request, key)
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
    from databazaar.server.web.buying import bid_quote_context

    account = form_user(sess, csrf_token)
    econ = economics(request)
    try:
        amount_minor = parse_decimal(amount, "bid")
        if confirm != "yes":
            ctx = bid_quote_context(market, econ, account, slug, amount_minor)
            return render(request, sess, "quote.html", ctx)
        placed = econ.place_bid(account, slug, amount_minor)
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
    from databazaar.server.web.buying import DELIVERED, explain, paid_whom

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
def _value_form(products: str = "") -> dict[str, Any]:
    return {"label_column": "", "task": "", "k": "5", "products": products}


@router.get("/value-search")
def value_search_form(
    request: Request,
    sess: Sess,
    products: Annotated[str, Query(max_length=2000)] = "",
) -> Response:
    """Open to visitors: their validation file is read in memory and never stored."""
    return render(
        request,
        sess,
        "value_search.html",
        {"title": "Value-aware search", "form": _value_form(products), "report": None},
    )


POOL_KEY = "vp"  # the session remembers the last ranked pool (slugs), to say when it changed


def _pool_note(sess: Any, slugs: list[str]) -> str | None:
    """A sentence when the ranked pool differs from this visitor's previous search."""
    before = sess.data.get(POOL_KEY)
    sess.data[POOL_KEY] = slugs[:20]
    sess.dirty = True
    if not isinstance(before, list) or sorted(before) == sorted(slugs[:20]):
        return None
    added = sorted(set(slugs) - set(before))
    gone = sorted(set(before) - set(slugs))
    parts = []
    if added:
        parts.append("added " + ", ".join(added))
    if gone:
        parts.append("without " + ", ".join(gone))
    return (
        "The products ranked together changed since your last search ("
        + "; ".join(parts)
        + "). Values are shares of what the whole pool adds to your task, so a product's "
        "value can move when others join or leave even if its own data did not change."
    )


def _ranking_rows(report: Any) -> list[dict[str, Any]]:
    rows = []
    for p in report.products:
        per_usd = None
        if p.price_minor:
            per_usd = p.value * 100 / (p.price_minor / 100)
        rows.append(
            {
                "rank": p.rank,
                "slug": p.slug,
                "value": p.value,
                "ci": (p.ci_low, p.ci_high) if p.ci_low is not None else None,
                "n_rows": p.n_rows,
                "price_minor": p.price_minor,
                "per_usd": per_usd,
            }
        )
    return rows


@router.post("/value-search")
def value_search(
    request: Request,
    sess: Sess,
    csrf_token: Csrf = "",
    validation: Annotated[UploadFile | None, File()] = None,
    label_column: Annotated[str, Form(max_length=200)] = "",
    task: Annotated[str, Form(max_length=64)] = "",
    k: Annotated[str, Form(max_length=4)] = "5",
    products: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    from databazaar.server.web.charts import bar_svg, line_svg

    sess.check_csrf(csrf_token)  # visitors may rank too; nothing is stored for them
    form = {"label_column": label_column, "task": task, "k": k, "products": products}
    try:
        if not label_column.strip():
            raise InvalidInput("name the label column of your validation set")
        neighbours = _form_k(k)
        slugs = [s.strip() for s in products.split(",") if s.strip()] or None
        frame = uploaded_table(validation)
        report, skipped = economics(request).rank(
            frame,
            label_column.strip(),
            slugs,
            task=task.strip() or None,
            k=neighbours,
            confidence=0.95,
            curves=True,
        )
    except DatabazaarError as exc:
        if isinstance(exc, Unauthorized):
            raise
        ctx = {"title": "Value-aware search", "form": form, "report": None, "error": exc}
        return render(request, sess, "value_search.html", ctx, status=exc.http_status)
    values_chart = bar_svg(
        [p.slug for p in report.products],
        [p.value * 100 for p in report.products],
        errors=[
            max((p.ci_high - p.ci_low) / 2, 0.0) * 100 if p.ci_low is not None else 0.0
            for p in report.products
        ],
        title="What each product adds (95% interval)",
        xlabel="accuracy points on your rows",
    )
    curve_chart = None
    if report.curves:
        names = {"high": "most valuable removed first", "low": "least valuable removed first"}
        first = next(iter(report.curves.values()))
        curve_chart = line_svg(
            [100 * float(f) for f in first["fractions"]],
            {
                names.get(n, n): [100 * float(x) for x in c["scores"]]
                for n, c in report.curves.items()
            },
            title="Removing rows from the pool",
            xlabel="% of pooled rows removed",
            ylabel="accuracy on your rows (%)",
        )
    return render(
        request,
        sess,
        "value_search.html",
        {
            "title": "Value-aware search",
            "form": form,
            "report": report,
            "rows": _ranking_rows(report),
            "pool_note": _pool_note(sess, [p.slug for p in report.products]),
            "skipped": skipped,
            "values_chart": svg_data_uri(values_chart),
            "curve_chart": svg_data_uri(curve_chart) if curve_chart else None,
        },
    )


# ---------------------------------------------------------------------- sellers
def manage_extras(request: Request, slug: str) -> dict[str, Any]:
    """The pricing, privacy and bundle parts of the seller's manage page."""
    econ = economics(request)
    mechanism = _mechanism_view(econ, slug)
    frame = econ.table(slug)
    dp_view = _dp_view(econ, slug)
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
        "dp": dp_view,
        "dp_form": {},
        "dp_errors": {},
        "dp_rows": dp_rows(frame, dp_view["columns"] if dp_view else None),
        "bundle_valuation": _valuation_view(econ, slug),
        "bundle_form": {},
        "bundle_methods": BUNDLE_METHODS,
    }


MANAGE_TABS = {
    "listing": "Data and versions",
    "pricing": "Price",
    "privacy": "Private statistics",
    "bundle": "Contributors",
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


@router.post("/sell/products/{slug}/pricing")
async def set_pricing(request: Request, slug: SlugPath) -> Response:
    """Set how buyers pay, from the per-mechanism form (money and percent, no JSON).

    The configuration is checked by the mechanism first; then the listing (on sale or
    not, with the headline price the catalog shows) and the mechanism are saved.
    """
    sess = web_session(request)
    market: Market = request.app.state.market
    raw = await request.form()
    form = {k: v for k, v in raw.items() if isinstance(v, str) and len(v) <= 200}
    await raw.close()
    account = form_user(sess, form.get("csrf_token"), "seller")
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


# ---------------------------------------------------------------------- DP statistics
def _epsilon(text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InvalidInput(f"{name} must be a number, e.g. 0.5") from None
    return value


@router.post("/products/{slug}/dp")
def dp_release(
    request: Request,
    sess: Sess,
    market: MarketDep,
    slug: SlugPath,
    csrf_token: Csrf = "",
    statistic: Annotated[str, Form(max_length=16)] = "",
    column: Annotated[str, Form(max_length=200)] = "",
    epsilon: Annotated[str, Form(max_length=32)] = "",
) -> Response:
    """Release one DP statistic of a product (any logged-in account); PRG with a flash."""
    account = form_user(sess, csrf_token)
    econ = economics(request)
    try:
        result = econ.dp_query(
            account, slug, statistic, column or None, _epsilon(epsilon, "epsilon")
        )
    except DatabazaarError as exc:
        if isinstance(exc, Unauthorized | NotFound) or exc.code == "csrf_failed":
            raise
        ctx = product_context(request, market, account, slug, None)
        ctx["dp_form"] = {"statistic": statistic, "column": column, "epsilon": epsilon}
        return render(request, sess, "product.html", {**ctx, "error": exc}, status=exc.http_status)
    sess.flash(_dp_summary(slug, result.model_dump(exclude_unset=True)), "success")
    return redirect(sess, f"/products/{slug}#dp-title")


@router.post("/sell/products/{slug}/dp")
async def dp_offer(request: Request, slug: SlugPath) -> Response:
    """Offer (or change) the product's DP statistics and total privacy budget (per-column
    fields, see :mod:`databazaar.server.web.dp_forms`)."""
    from databazaar.server.web.dp_forms import DpFormError, parse_dp_form

    sess = web_session(request)
    market: Market = request.app.state.market
    raw = await request.form()
    form = {k: v for k, v in raw.items() if isinstance(v, str) and len(v) <= 5000}
    await raw.close()
    account = form_user(sess, form.get("csrf_token"), "seller")
    econ = economics(request)
    epsilon_total = form.get("epsilon_total", "")
    try:
        frame = await run_in_threadpool(econ.table, slug)
        columns = parse_dp_form(frame, form)
        total = _epsilon(epsilon_total, "the total epsilon")
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
        neighbours = _form_k(k)
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
