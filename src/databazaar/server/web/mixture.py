"""The mixture-plan page: which market text products to buy for a token and money budget.

``GET /mixture-plan`` shows the form (products, validation texts, budgets);
``POST /mixture-plan`` runs :func:`databazaar.mixture.plan.plan_mixture` and shows the
plan (tokens, rows and cost per product, the predicted validation loss) with a "Buy
this plan" button; ``POST /mixture-plan/buy`` buys it through
:func:`databazaar.mixture.plan.buy_plan` (one order per product, idempotent) and sends
the buyer to their purchases.
"""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from starlette.responses import Response

from databazaar.core.errors import DatabazaarError, InvalidInput, Unauthorized
from databazaar.core.money import parse_decimal
from databazaar.server.web.base import Csrf, Sess, WebRoute, form_user, render
from databazaar.server.web.economics import economics
from databazaar.server.web.rendering import redirect

router = APIRouter(route_class=WebRoute, include_in_schema=False)
TITLE = "Buy a data mixture"


def _form(**values: str) -> dict[str, str]:
    base = {"products": "", "validation": "", "tokens": "100000", "money": "", "seed": "0"}
    return {**base, **values}


def _int(raw: str, what: str) -> int:
    try:
        return int(raw.replace(",", "").strip())
    except ValueError:
        raise InvalidInput(f"{what} must be a whole number, got {raw!r}") from None


@router.get("/mixture-plan")
def plan_form(request: Request, sess: Sess) -> Response:
    sess.require_account()
    return render(
        request, sess, "mixture_plan.html", {"title": TITLE, "form": _form(), "plan": None}
    )


@router.post("/mixture-plan")
def plan_page(
    request: Request,
    sess: Sess,
    csrf_token: Csrf = "",
    products: Annotated[str, Form(max_length=2000)] = "",
    validation: Annotated[str, Form(max_length=2_000_000)] = "",
    tokens: Annotated[str, Form(max_length=20)] = "",
    money: Annotated[str, Form(max_length=30)] = "",
    seed: Annotated[str, Form(max_length=10)] = "0",
) -> Response:
    from databazaar.mixture.plan import PlanSettings, plan_mixture

    account = form_user(sess, csrf_token, "buyer")
    form = _form(products=products, validation=validation, tokens=tokens, money=money, seed=seed)
    ctx: dict[str, Any] = {"title": TITLE, "form": form, "plan": None}
    try:
        slugs = [s.strip() for s in products.split(",") if s.strip()]
        texts = [t for t in validation.split("\n\n") if t.strip()]
        plan = plan_mixture(
            economics(request),
            account,
            slugs,
            texts,
            token_budget=_int(tokens, "the token budget"),
            money_budget_minor=parse_decimal(money, "money budget"),
            settings=PlanSettings(seed=_int(seed, "the seed")),
        )
    except DatabazaarError as exc:
        if isinstance(exc, Unauthorized):
            raise
        return render(
            request, sess, "mixture_plan.html", {**ctx, "error": exc}, status=exc.http_status
        )
    ctx.update(plan=plan, items=json.dumps(plan.to_buy()), key=f"plan-{uuid.uuid4().hex[:16]}")
    return render(request, sess, "mixture_plan.html", ctx)


@router.post("/mixture-plan/buy")
def buy_page(
    request: Request,
    sess: Sess,
    csrf_token: Csrf = "",
    items: Annotated[str, Form(max_length=100_000)] = "",
    key: Annotated[str, Form(max_length=100)] = "",
    max_total: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    from databazaar.mixture.plan import buy_plan

    account = form_user(sess, csrf_token, "buyer")
    try:
        try:
            lines = json.loads(items)
        except json.JSONDecodeError:
            raise InvalidInput("the plan to buy is not valid JSON") from None
        sales = buy_plan(
            economics(request), account, lines, key, max_total_minor=_int(max_total, "the cap")
        )
    except DatabazaarError as exc:
        if isinstance(exc, Unauthorized):
            raise
        ctx = {"title": TITLE, "form": _form(), "plan": None, "error": exc}
        return render(request, sess, "mixture_plan.html", ctx, status=exc.http_status)
    sess.flash(
        f"Bought the plan: {len(sales)} orders ({', '.join(s.slug for s in sales)}).", "success"
    )
    return redirect(sess, "/purchases")
