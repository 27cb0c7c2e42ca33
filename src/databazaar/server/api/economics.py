"""Market economics routes: pricing mechanisms, quotes and purchases, value-aware search,
bundles and revenue splits, sealed-bid auctions, differentially private statistics.

Thin: each route parses, calls :class:`~databazaar.market.economics.Economics` and
returns its JSON.  Mount with ``api_router.include_router(economics.router)`` (paths
then start with ``/api/econ``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, Field

from databazaar.market.economics import Economics
from databazaar.server.api.common import MAX_ID, Slug, errors
from databazaar.server.deps import CurrentAccount, MarketDep

router = APIRouter(prefix="/econ", tags=["economics"])


def get_economics(request: Request, market: MarketDep) -> Economics:
    """The app's :class:`Economics` (created on first use around the app's market)."""
    econ = getattr(request.app.state, "economics", None)
    if econ is None or econ.market is not market:
        econ = Economics(market)
        request.app.state.economics = econ
    return econ


EconDep = Annotated[Economics, Depends(get_economics)]
Rows = list[dict[str, Any]]


class PricingIn(BaseModel):
    """A pricing mechanism and its configuration."""

    mechanism: str = Field(examples=["query"])
    config: dict[str, Any] = Field(
        default_factory=dict,
        examples=[{"price_points": {"region": {"north": 500, "south": 300}}}],
    )


class QuoteIn(BaseModel):
    """The mechanism's request: a query, a noise variance, a validation set, or nothing."""

    request: dict[str, Any] = Field(default_factory=dict, examples=[{"variance": 0.1}])


class PurchaseIn(QuoteIn):
    """A purchase under the product's mechanism; the key makes retries safe."""

    idempotency_key: str = Field(min_length=1, max_length=128, examples=["b5e0c1"])


class ValueSearchIn(BaseModel):
    """The buyer's validation set and label; candidates default to the catalog."""

    validation: Rows = Field(min_length=1, max_length=5000)
    label_column: str = Field(min_length=1, max_length=200)
    slugs: list[str] | None = Field(default=None, max_length=50)
    task: str | None = None
    k: int = Field(default=5, ge=1, le=100)
    confidence: float | None = Field(default=0.95, gt=0, lt=1)
    svg: bool = False


class BundleIn(BaseModel):
    """A multi-seller product: contributor column, accounts, reference task, method."""

    group_column: str = Field(min_length=1, max_length=200)
    label_column: str = Field(min_length=1, max_length=200)
    contributors: dict[str, str] = Field(min_length=1, max_length=1000)
    reference: Rows = Field(min_length=1, max_length=5000)
    method: str = "knn"
    order: list[str] | None = None
    k: int = Field(default=5, ge=1, le=100)


class AuctionIn(BaseModel):
    reserve_minor: int = Field(ge=0, le=10**12)
    units: int = Field(default=1, ge=1, le=1000)


class BidIn(BaseModel):
    amount_minor: int = Field(ge=1, le=10**12)


class DpOfferIn(BaseModel):
    epsilon_total: float = Field(gt=0, le=100)
    columns: dict[str, dict[str, Any]]


class DpQueryIn(BaseModel):
    statistic: str = Field(examples=["mean"])
    column: str | None = None
    epsilon: float = Field(gt=0, le=100)


@router.get("/mechanisms", response_model=list[str])
def mechanisms() -> list[str]:
    """The pricing mechanisms a seller can choose."""
    from databazaar.market.pricing import mechanism_names

    return mechanism_names()


@router.put("/products/{slug}/pricing", responses=errors(401, 403, 404, 409, 422))
def set_pricing(
    slug: Slug, body: PricingIn, account: CurrentAccount, econ: EconDep
) -> dict[str, Any]:
    """Choose the product's pricing mechanism (its seller or an admin)."""
    return econ.set_pricing(account, slug, body.mechanism, body.config)


@router.get("/products/{slug}/pricing", responses=errors(404, 409, 422))
def get_pricing(slug: Slug, econ: EconDep) -> dict[str, Any]:
    """The product's mechanism and configuration (``posted`` at the listing by default)."""
    mech = econ.mechanism_for(slug)
    return {"slug": slug, "mechanism": mech.name, "config": mech.config()}


@router.post("/products/{slug}/quote", responses=errors(404, 409, 422))
def quote(slug: Slug, body: QuoteIn, econ: EconDep) -> dict[str, Any]:
    """What the request would cost under the product's mechanism."""
    return econ.quote(slug, body.request).to_dict()


@router.post(
    "/products/{slug}/purchase", status_code=201, responses=errors(401, 402, 403, 404, 409, 422)
)
def purchase(
    slug: Slug, body: PurchaseIn, account: CurrentAccount, econ: EconDep
) -> dict[str, Any]:
    """Buy under the product's mechanism; the seller side is split for bundles."""
    return econ.buy(account, slug, body.request, body.idempotency_key)


@router.get("/sales/{sale_id}", responses=errors(401, 404, 422))
def get_sale(
    sale_id: Annotated[int, Path(ge=1, le=MAX_ID)], account: CurrentAccount, econ: EconDep
) -> dict[str, Any]:
    """One sale with its quote, deliverable and splits (query answers re-derived)."""
    return econ.sale(account, sale_id)


@router.post("/search/value", responses=errors(401, 404, 422))
def value_search(body: ValueSearchIn, account: CurrentAccount, econ: EconDep) -> dict[str, Any]:
    """Rank products by KNN-Shapley value for the caller's validation set."""
    report, skipped = econ.rank(
        body.validation,
        body.label_column,
        body.slugs,
        task=body.task,
        k=body.k,
        confidence=body.confidence,
        curves=body.svg,
    )
    out = report.to_dict(svg=body.svg)
    out["skipped"] = skipped
    return out


@router.put("/products/{slug}/bundle", responses=errors(401, 403, 404, 409, 422))
def register_bundle(
    slug: Slug, body: BundleIn, account: CurrentAccount, econ: EconDep
) -> dict[str, Any]:
    """Declare the product's contributors and value them on a reference task."""
    return econ.register_bundle(
        account,
        slug,
        group_column=body.group_column,
        label_column=body.label_column,
        contributors=body.contributors,
        reference=body.reference,
        method=body.method,
        order=body.order,
        k=body.k,
    )


@router.get("/products/{slug}/valuation", responses=errors(404, 422))
def valuation(slug: Slug, econ: EconDep) -> dict[str, Any]:
    """The bundle's latest contributor valuation (what splits are computed from)."""
    return econ.valuation(slug)


@router.get("/products/{slug}/splits", responses=errors(401, 403, 404, 422))
def splits(slug: Slug, account: CurrentAccount, econ: EconDep) -> list[dict[str, Any]]:
    """Every revenue split of the product (seller, contributors, admins)."""
    return econ.splits(account, slug)


@router.post("/products/{slug}/auction", status_code=201, responses=errors(401, 403, 404, 409, 422))
def open_auction(
    slug: Slug, body: AuctionIn, account: CurrentAccount, econ: EconDep
) -> dict[str, Any]:
    """Open a sealed-bid second-price auction with a reserve."""
    return econ.open_auction(account, slug, body.reserve_minor, body.units)


@router.post(
    "/products/{slug}/bids", status_code=201, responses=errors(401, 402, 403, 404, 409, 422)
)
def bid(slug: Slug, body: BidIn, account: CurrentAccount, econ: EconDep) -> dict[str, Any]:
    """Place or replace a sealed bid."""
    return econ.place_bid(account, slug, body.amount_minor)


@router.post("/products/{slug}/auction/close", responses=errors(401, 403, 404, 422))
def close_auction(slug: Slug, account: CurrentAccount, econ: EconDep) -> dict[str, Any]:
    """Clear the auction: winners pay the clearing price and get a licence."""
    return econ.close_auction(account, slug)


@router.put("/products/{slug}/dp", responses=errors(401, 403, 404, 409, 422))
def offer_dp(slug: Slug, body: DpOfferIn, account: CurrentAccount, econ: EconDep) -> dict[str, Any]:
    """Offer DP statistics of the product under a total epsilon budget."""
    return econ.offer_dp(account, slug, body.epsilon_total, body.columns)


@router.get("/products/{slug}/dp", responses=errors(404, 422))
def dp_budget(slug: Slug, econ: EconDep) -> dict[str, Any]:
    """The DP offer and the budget left."""
    return econ.dp_budget(slug)


@router.post("/products/{slug}/dp/query", responses=errors(401, 403, 404, 422))
def dp_query(slug: Slug, body: DpQueryIn, account: CurrentAccount, econ: EconDep) -> dict[str, Any]:
    """Release one DP statistic; 403 ``budget_exceeded`` past the budget."""
    return econ.dp_query(account, slug, body.statistic, body.column, body.epsilon)
