"""Pages under the market's economics: product pages and private statistics.

Every handler calls :class:`databazaar.market.economics.Economics` (the same object
the JSON routes under ``/api/econ`` use, kept on the app) and renders the answer:

``/products/{slug}``                   (:mod:`databazaar.server.web.router`) with
                                       :func:`product_context`: card, statistics, price
                                       under the mechanism, value report, splits
``/products/{slug}/dp``                one differentially private statistic

Buying (posted purchases, quotes, sealed bids, receipts) lives in
:mod:`databazaar.server.web.buying`, the seller's forms in
:mod:`databazaar.server.web.selling`, value search in
:mod:`databazaar.server.web.value_pages`; the helpers they share (the mechanism and
valuation views, uploaded tables, form fields) are here.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
import uuid
from pathlib import Path as FsPath
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
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
from databazaar.core.money import parse_decimal
from databazaar.market.allocation import METHOD_DESCRIPTIONS
from databazaar.market.privacy import STATISTICS
from databazaar.market.schemas import AccountOut, VersionOut
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
)
from databazaar.server.web.pricing_forms import (
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


def mechanism_view(econ: Any, slug: str) -> dict[str, Any] | None:
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


def valuation_view(econ: Any, slug: str) -> dict[str, Any] | None:
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
    mechanism = mechanism_view(econ, slug) if on_sale else None
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
        "value_form": value_form_defaults(slug),
        "title": product.title,
        "product": product,
        "shown": shown,
        "owner": owner,
        "has_access": has_access,
        "on_sale": on_sale,
        "can_buy": can_buy,
        "mechanism": mechanism,
        "valuation": valuation_view(econ, slug),
        "splits": splits,
        "idempotency_key": uuid.uuid4().hex,
        "dp": dp_view(econ, slug) if shown is not None else None,
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


def dp_view(econ: Any, slug: str) -> dict[str, Any] | None:
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


def form_k(text: str) -> int:
    """The ``k`` field of the KNN forms: a whole number from 1 to 100."""
    if not text.strip().isdigit() or not 1 <= int(text) <= 100:
        raise InvalidInput("k must be a whole number from 1 to 100")
    return int(text)


def form_text(form: FormData, name: str, max_len: int = 200) -> str:
    value = form.get(name, "")
    if not isinstance(value, str):
        raise InvalidInput(f"the field {name} must be text")
    if len(value) > max_len:
        raise InvalidInput(f"the field {name} is too long (at most {max_len} characters)")
    return value.strip()


def buy_request(form: FormData, mechanism: dict[str, Any]) -> dict[str, Any] | None:
    """The mechanism's purchase request from the product page's buy form."""
    name = mechanism["name"]
    if name == "posted":
        return None
    if name == "value":
        frame = uploaded_table(form.get("validation"))
        label = form_text(form, "label_column")
        if not label:
            raise InvalidInput("name the label column of your validation set")
        worth = parse_decimal(form_text(form, "worth", 20), "worth of a perfect model")
        return {
            "validation": json.loads(frame.to_json(orient="records")),
            "label_column": label,
            "worth_minor": worth,
        }
    if name == "model":
        raw = form_text(form, "variance", 40)
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
def value_form_defaults(products: str = "") -> dict[str, Any]:
    return {"label_column": "", "task": "", "k": "5", "products": products}


# ---------------------------------------------------------------------- DP statistics
def epsilon_field(text: str, name: str) -> float:
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
            account, slug, statistic, column or None, epsilon_field(epsilon, "epsilon")
        )
    except DatabazaarError as exc:
        if isinstance(exc, Unauthorized | NotFound) or exc.code == "csrf_failed":
            raise
        ctx = product_context(request, market, account, slug, None)
        ctx["dp_form"] = {"statistic": statistic, "column": column, "epsilon": epsilon}
        return render(request, sess, "product.html", {**ctx, "error": exc}, status=exc.http_status)
    sess.flash(_dp_summary(slug, result.model_dump(exclude_unset=True)), "success")
    return redirect(sess, f"/products/{slug}#dp-title")
