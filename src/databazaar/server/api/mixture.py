"""Mixture-plan routes: which market text products to buy for a token and money budget.

``POST /api/mixture/plan`` runs :func:`databazaar.mixture.plan.plan_mixture` (DDO proxy
runs, seconds to a minute) and answers the plan; ``POST /api/mixture/plan/buy`` buys a
plan's lines, one order per product through the market's one booking path, idempotent
under the buyer's key.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import Field

from databazaar.market.schemas import SaleOut
from databazaar.mixture.plan import MAX_PRODUCTS, MixturePlan, PlanSettings, buy_plan, plan_mixture
from databazaar.server.api.common import StrictIn, errors
from databazaar.server.api.economics import EconDep
from databazaar.server.deps import CurrentAccount

router = APIRouter(prefix="/mixture", tags=["mixture"])


class PlanIn(StrictIn):
    """Products to mix, the buyer's validation texts and the two budgets."""

    slugs: list[str] = Field(min_length=2, max_length=MAX_PRODUCTS, examples=[["news", "code"]])
    validation: list[str | dict[str, Any]] = Field(min_length=1, max_length=5000)
    token_budget: int = Field(ge=1, le=10**12, examples=[100_000])
    money_budget_minor: int = Field(ge=1, le=10**15, examples=[5000])
    text_column: str = Field(default="text", min_length=1, max_length=200)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)


class PlanItemIn(StrictIn):
    """One line to buy: the product and its mechanism request (empty for posted)."""

    slug: str = Field(min_length=1, max_length=64)
    request: dict[str, Any] = Field(default_factory=dict)


class PlanBuyIn(StrictIn):
    """A plan's lines (``MixturePlan.lines`` slug and request), a key and a spending cap."""

    items: list[PlanItemIn] = Field(min_length=1, max_length=MAX_PRODUCTS)
    idempotency_key: str = Field(min_length=1, max_length=100, examples=["plan-1"])
    max_total_minor: int | None = Field(default=None, ge=0, le=10**15)


def plan_for(body: PlanIn, account: Any, econ: Any) -> MixturePlan:
    """Run the planner for a validated request (shared by the API and the web page)."""
    return plan_mixture(
        econ,
        account,
        body.slugs,
        body.validation,
        token_budget=body.token_budget,
        money_budget_minor=body.money_budget_minor,
        text_column=body.text_column,
        settings=PlanSettings(seed=body.seed),
    )


@router.post(
    "/plan", response_model=MixturePlan, responses=errors(401, 403, 404, 409, 413, 422)
)  # fmt: skip
def plan(body: PlanIn, account: CurrentAccount, econ: EconDep) -> MixturePlan:
    """Plan tokens, rows and cost per product; trimmed to the money budget if needed."""
    return plan_for(body, account, econ)


@router.post(
    "/plan/buy",
    status_code=201,
    response_model=list[SaleOut],
    response_model_exclude_unset=True,
    responses=errors(401, 402, 403, 404, 409, 422),
)
def buy(body: PlanBuyIn, account: CurrentAccount, econ: EconDep) -> list[SaleOut]:
    """Buy every line as its own order (key ``<idempotency_key>:<slug>``; replays are free)."""
    return buy_plan(
        econ,
        account,
        [item.model_dump() for item in body.items],
        body.idempotency_key,
        max_total_minor=body.max_total_minor,
    )
