"""Value-aware search pages, open to visitors (their validation file is never stored).

``GET /value-search``   the form (also on the home page and each product page)
``POST /value-search``  products on sale ranked by KNN-Shapley value for the visitor's
                        labelled rows, in accuracy points with 95% intervals, charts, a
                        note when the ranked pool changed since their last search, and a
                        Buy link per product
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from starlette.responses import Response

from databazaar.core.errors import DatabazaarError, InvalidInput, Unauthorized
from databazaar.server.web.base import (
    Csrf,
    Sess,
    WebRoute,
    render,
)
from databazaar.server.web.economics import (
    economics,
    form_k,
    svg_data_uri,
    uploaded_table,
    value_form_defaults,
)

router = APIRouter(route_class=WebRoute, include_in_schema=False)


@router.get("/value-search")
def value_search_form(
    request: Request,
    sess: Sess,
    products: Annotated[str, Query(max_length=2000)] = "",
) -> Response:
    """Open to visitors: their file is parsed through a temporary file deleted at once
    (:func:`~databazaar.server.web.economics.uploaded_table`) and never stored."""
    return render(
        request,
        sess,
        "value_search.html",
        {"title": "Value-aware search", "form": value_form_defaults(products), "report": None},
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
        neighbours = form_k(k)
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
