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
from databazaar.server.web.rendering import redirect

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
        "config_json": json.dumps(mech.config(), sort_keys=True),
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
    from databazaar.server.web.charts import bar_svg

    try:
        stored = econ.valuation(slug)
    except NotFound:
        return None
    rec = stored.valuation
    groups = [str(g) for g in rec.get("groups", [])]
    values = [float(x) for x in rec.get("values", [])]
    lows, highs = rec.get("ci_low"), rec.get("ci_high")
    errors = None
    if lows is not None and highs is not None:
        errors = [max((h - lo) / 2, 0.0) for lo, h in zip(lows, highs, strict=True)]
    rows = [
        {
            "group": g,
            "value": val,
            "ci": None if lows is None else (float(lows[i]), float(highs[i])),
        }
        for i, (g, val) in enumerate(zip(groups, values, strict=True))
    ]
    chart = bar_svg(
        groups,
        values,
        errors=errors,
        title=f"Contribution of each group ({rec.get('method', 'shapley')})",
        xlabel="value on the reference task",
    )
    return {
        "id": stored.valuation_id,
        "digest": stored.digest,
        "method": rec.get("method", ""),
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
    if owner:
        try:
            splits = econ.splits(account, slug)
        except (Forbidden, NotFound):
            splits = []
    return {
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


DP_EXAMPLE = (
    '{"petal_length": {"bounds": [0, 10], "bins": 10}, "species": {"categories": ["a", "b"]}}'
)


def _dp_view(econ: Any, slug: str) -> dict[str, Any] | None:
    """The product's DP offer for the pages, or ``None`` when it has none."""
    try:
        budget = econ.dp_budget(slug)
    except NotFound:
        return None
    columns = []
    for name, pol in sorted(budget.columns.items()):
        if "categories" in pol:
            about = "categorical: " + ", ".join(str(c) for c in pol["categories"])
            stats = [st for st in STATISTICS if st in ("count", "histogram")]
        else:
            lo, hi = pol["bounds"]
            about = f"numeric, clipped to [{lo:g}, {hi:g}], {pol.get('bins', 10)} histogram bins"
            stats = list(STATISTICS)
        columns.append({"name": name, "about": about, "statistics": stats})
    return {
        **budget.model_dump(),
        "column_views": columns,
        "columns_json": json.dumps(budget.columns),
        "statistics": STATISTICS,
    }


def _dp_summary(slug: str, r: dict[str, Any]) -> str:
    if "counts" in r:  # histogram: per category or per bin
        labels = (
            [str(c) for c in r["categories"]]
            if "categories" in r
            else [f"{lo:g}-{hi:g}" for lo, hi in zip(r["edges"][:-1], r["edges"][1:], strict=True)]
        )
        value_text = (
            "[" + ", ".join(f"{k}: {n}" for k, n in zip(labels, r["counts"], strict=True)) + "]"
        )
    else:
        value = r["value"]
        value_text = f"{value:.6g}" if isinstance(value, float) else str(value)
    what = r["statistic"] + (f" of {r['column']}" if r.get("column") else " of rows")
    return (
        f"Private {what} in {slug}: {value_text} (epsilon {r['epsilon']:g}, noise sd "
        f"{r['noise_std']:.3g}); budget left {r['epsilon_remaining']:g}."
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
) -> Response:
    account = form_user(sess, csrf_token)
    econ = economics(request)
    try:
        placed = econ.place_bid(account, slug, parse_decimal(amount, "bid"))
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
    sale_id: Annotated[int, Path(ge=1, le=2**53)],
) -> Response:
    account = sess.require_account()
    sale = economics(request).sale(account, sale_id)
    return render(
        request,
        sess,
        "sale.html",
        {
            "title": f"Sale {sale_id}",
            "sale": sale,
            "model_json": json.dumps(sale.deliverable.get("model"), indent=2)
            if sale.deliverable.get("kind") == "model"
            else None,
        },
    )


# ---------------------------------------------------------------------- value search
def _value_form(products: str = "") -> dict[str, Any]:
    return {"label_column": "", "task": "", "k": "5", "products": products}


@router.get("/value-search")
def value_search_form(
    request: Request,
    sess: Sess,
    products: Annotated[str, Query(max_length=2000)] = "",
) -> Response:
    sess.require_account()
    return render(
        request,
        sess,
        "value_search.html",
        {"title": "Value-aware search", "form": _value_form(products), "report": None},
    )


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
    from databazaar.server.web.charts import bar_svg

    form_user(sess, csrf_token)
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
        [p.value for p in report.products],
        errors=[
            max((p.ci_high - p.ci_low) / 2, 0.0) if p.ci_low is not None else 0.0
            for p in report.products
        ],
        title="Value of each product for your task (95% interval)",
        xlabel="KNN-Shapley value (gain over chance)",
    )
    return render(
        request,
        sess,
        "value_search.html",
        {
            "title": "Value-aware search",
            "form": form,
            "report": report,
            "skipped": skipped,
            "values_chart": svg_data_uri(values_chart),
            "curve_chart": svg_data_uri(report.removal_curve_svg()) if report.curves else None,
        },
    )


# ---------------------------------------------------------------------- sellers
def manage_extras(request: Request, slug: str) -> dict[str, Any]:
    """The pricing part of the seller's manage page."""
    econ = economics(request)
    return {
        "mechanism": _mechanism_view(econ, slug),
        "mechanisms": MECHANISMS,
        "examples": {k: json.dumps(v[2]) for k, v in MECHANISMS.items()},
        "pricing_form": {},
        "dp": _dp_view(econ, slug),
        "dp_form": {},
        "dp_example": DP_EXAMPLE,
        "bundle_valuation": _valuation_view(econ, slug),
        "bundle_form": {},
        "bundle_methods": BUNDLE_METHODS,
        "derive_form": {},
        "enrich_backend": getattr(request.app.state.settings, "enrich_backend", None),
    }


def _json_form(text: str, what: str, empty: Any, hint: str) -> Any:
    """A JSON form field (``empty`` when blank) or a clear :class:`InvalidInput`."""
    try:
        return json.loads(text) if text.strip() else empty
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"{what} is not valid JSON: {exc.msg} (line {exc.lineno})", hint=hint
        ) from None


def manage_context(
    request: Request, market: Market, account: AccountOut, slug: str
) -> dict[str, Any]:
    """The seller's manage page: versions, upload form, price and pricing mechanism."""
    product: ProductOut = market.get_product(slug, account)
    if account.role != "admin" and product.seller != account.username:
        raise Forbidden(f"product {slug!r} belongs to another seller")
    versions = [market.get_version(slug, n, account) for n in product.versions][::-1]
    listing = product.listing
    has_published = any(v.status == "published" for v in versions)
    return {
        **(manage_extras(request, slug) if has_published else {"mechanism": None}),
        "title": f"Manage {product.title}",
        "product": product,
        "versions": versions,
        "has_published": has_published,
        "upload": {},
        "price_form": {
            "price": "" if listing is None else format_minor(listing.price_minor, code=False),
            "active": True if listing is None else listing.active,
        },
    }


def _manage_error(
    request: Request,
    sess: Any,
    market: Market,
    account: AccountOut,
    slug: str,
    exc: Any,
    **form: Any,
) -> Response:
    """The seller's manage page again, with the error and the form as it was sent."""
    ctx = manage_context(request, market, account, slug)
    ctx.update(error=exc, **form)
    return render(request, sess, "sell_manage.html", ctx, status=exc.http_status)


@router.post("/sell/products/{slug}/pricing")
def set_pricing(
    request: Request,
    sess: Sess,
    market: MarketDep,
    slug: SlugPath,
    csrf_token: Csrf = "",
    mechanism: Annotated[str, Form(max_length=16)] = "",
    config: Annotated[str, Form(max_length=100_000)] = "",
) -> Response:
    account = form_user(sess, csrf_token, "seller")
    econ = economics(request)
    try:
        if mechanism not in MECHANISMS:
            raise InvalidInput("choose a pricing mechanism from the list")
        parsed = _json_form(
            config, "the configuration", {}, "start from the example shown for the mechanism"
        )
        if not isinstance(parsed, dict):
            raise InvalidInput("the configuration must be a JSON object { ... }")
        if mechanism == "auction":
            reserve = parsed.get("reserve_minor", 0)
            units = parsed.get("units", 1)
            if set(parsed) - {"reserve_minor", "units"}:
                raise InvalidInput("an auction takes reserve_minor and units only")
            econ.open_auction(account, slug, reserve, units)
        else:
            econ.set_pricing(account, slug, mechanism, parsed)
    except DatabazaarError as exc:
        if isinstance(exc, Unauthorized | NotFound | Forbidden):
            raise
        pricing_form = {"mechanism": mechanism, "config": config}
        return _manage_error(request, sess, market, account, slug, exc, pricing_form=pricing_form)
    label = MECHANISMS[mechanism][0]
    sess.flash(f"{slug} is now sold by {label.lower()}.", "success")
    return redirect(sess, f"/sell/products/{slug}#pricing-title")


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
    return redirect(sess, f"/sell/products/{slug}")


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
def dp_offer(
    request: Request,
    sess: Sess,
    market: MarketDep,
    slug: SlugPath,
    csrf_token: Csrf = "",
    epsilon_total: Annotated[str, Form(max_length=32)] = "",
    columns: Annotated[str, Form(max_length=20_000)] = "",
) -> Response:
    """Offer (or change) the product's DP statistics and total privacy budget."""
    account = form_user(sess, csrf_token, "seller")
    econ = economics(request)
    try:
        parsed = _json_form(columns, "the columns", None, "start from the example shown")
        econ.offer_dp(account, slug, _epsilon(epsilon_total, "the total epsilon"), parsed)
    except DatabazaarError as exc:
        if isinstance(exc, Unauthorized | NotFound | Forbidden):
            raise
        dp_form = {"epsilon_total": epsilon_total, "columns": columns}
        return _manage_error(request, sess, market, account, slug, exc, dp_form=dp_form)
    sess.flash(f"{slug} now offers private statistics (total epsilon {epsilon_total}).", "success")
    return redirect(sess, f"/sell/products/{slug}#dp-title")


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
        out = economics(request).register_bundle(
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
        return _manage_error(request, sess, market, account, slug, exc, bundle_form=form)
    sess.flash(
        f"{slug} is a bundle of {len(named)} contributors, valued with {method} "
        f"(valuation {out.valuation_id}); each sale is now split by these values.",
        "success",
    )
    return redirect(sess, f"/sell/products/{slug}#bundle-title")


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
        try:
            share_bps = round(float(share) * 100)
        except ValueError:
            raise InvalidInput("the source's share is a percentage, e.g. 50") from None
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
        return _manage_error(request, sess, market, account, slug, exc, derive_form=form)
    sess.flash(
        f"{out.slug} is listed: {out.rows} rows enriched with {out.method} by {out.generator}; "
        f"{out.source_share_bps / 100:g}% of its sales go to {slug}'s contributors.",
        "success",
    )
    return redirect(sess, f"/products/{out.slug}")
