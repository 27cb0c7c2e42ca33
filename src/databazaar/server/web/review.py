"""The admin's review page of the listing gate.

Pages
-----
``/admin/review``                                held versions with their evidence
                                                 (category, risk, offending snippets),
                                                 the policy and its edit form, the audit
``/admin/review/{slug}/{number}/approve|reject`` the decision (a note is kept)
``/admin/review/policy``                         save a new policy version

Every form posts the session's CSRF token; only admins reach these pages.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Request
from starlette.responses import Response

from databazaar.core.errors import DatabazaarError, InvalidInput, Unauthorized
from databazaar.market.gate import ACTIONS, LEVEL2_IDS
from databazaar.market.service import Market
from databazaar.server.web.base import (
    Csrf,
    MarketDep,
    Sess,
    SlugPath,
    WebRoute,
    form_user,
    render,
    require_user,
)
from databazaar.server.web.rendering import redirect

router = APIRouter(route_class=WebRoute, include_in_schema=False)
Number = Annotated[int, Path(ge=1, le=1_000_000)]
Note = Annotated[str, Form(max_length=500)]


def review_context(market: Market, account: Any) -> dict[str, Any]:
    """The queue, the recently decided versions, the policy and the audit trail."""
    policy = market.gate_policy()
    categories = policy.categories or {c: "(names load with the gate)" for c in LEVEL2_IDS}
    return {
        "title": "Risk review",
        "gate_on": market.gate is not None,
        "queue": market.review_queue(account),
        "blocked": market.review_queue(account, state="blocked"),
        "policy": policy,
        "categories": categories,
        "actions": ACTIONS,
        "audit": market.gate_audit(account, limit=20),
        "policy_form": {},
    }


@router.get("/admin/review")
def review_page(request: Request, sess: Sess, market: MarketDep) -> Response:
    account = require_user(sess, "admin")
    return render(request, sess, "review.html", review_context(market, account))


def _decide(
    sess: Any, market: Market, csrf_token: str, slug: str, number: int, note: str, approve: bool
) -> Response:
    account = form_user(sess, csrf_token, "admin")
    market.review(account, slug, number, approve=approve, note=note)
    verb = "approved and published" if approve else "rejected"
    sess.flash(f"{slug} version {number} {verb}.", "success")
    return redirect(sess, "/admin/review")


@router.post("/admin/review/{slug}/{number}/approve")
def approve(
    sess: Sess,
    market: MarketDep,
    slug: SlugPath,
    number: Number,
    csrf_token: Csrf = "",
    note: Note = "",
) -> Response:
    return _decide(sess, market, csrf_token, slug, number, note, True)


@router.post("/admin/review/{slug}/{number}/reject")
def reject(
    sess: Sess,
    market: MarketDep,
    slug: SlugPath,
    number: Number,
    csrf_token: Csrf = "",
    note: Note = "",
) -> Response:
    return _decide(sess, market, csrf_token, slug, number, note, False)


def _number(text: str, what: str, kind: type) -> Any:
    try:
        return kind(text.strip())
    except ValueError:
        raise InvalidInput(f"{what} must be a number, got {text!r}") from None


@router.post("/admin/review/policy")
async def save_policy(request: Request, sess: Sess, market: MarketDep) -> Response:
    form = await request.form()
    fields = {k: str(v) for k, v in form.items() if isinstance(v, str)}
    account = form_user(sess, fields.get("csrf_token", ""), "admin")
    try:
        if any(len(v) > 500 for v in fields.values()):
            raise InvalidInput("a policy field is longer than 500 characters")
        rules = {
            key[len("rule_") :]: value
            for key, value in fields.items()
            if key.startswith("rule_") and value != "default"
        }
        policy = market.set_gate_policy(
            account,
            default_action=fields.get("default_action", ""),
            rules=rules,
            threshold=_number(fields.get("threshold", ""), "the threshold", float),
            min_rows=_number(fields.get("min_rows", ""), "the minimum of rows", int),
            min_share=_number(fields.get("min_share", ""), "the minimum share", float),
            note=fields.get("note", ""),
        )
    except DatabazaarError as exc:
        if isinstance(exc, Unauthorized):
            raise
        ctx = {**review_context(market, account), "error": exc, "policy_form": fields}
        return render(request, sess, "review.html", ctx, status=exc.http_status)
    sess.flash(f"Policy version {policy.version} is in force.", "success")
    return redirect(sess, "/admin/review#policy-title")
