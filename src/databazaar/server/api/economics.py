"""Market economics routes: pricing mechanisms, quotes and purchases, value-aware search,
bundles and revenue splits, sealed-bid auctions, differentially private statistics.

Thin: each route parses, calls :class:`~databazaar.market.economics.Economics` and
returns its typed view (:mod:`databazaar.market.schemas`).  Mount with
``api_router.include_router(economics.router)`` (paths then start with ``/api/econ``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import Field

from databazaar.core.money import Amount, Price
from databazaar.market.economics import Economics
from databazaar.market.schemas import (
    AuctionOut,
    AuctionResultOut,
    BidOut,
    BundleOut,
    DerivativeOut,
    DpBudgetOut,
    DpReleaseOut,
    PricingOut,
    QuoteOut,
    SaleOut,
    SplitOut,
    ValuationOut,
    ValueSearchOut,
)
from databazaar.server.api.common import MAX_ID, REPLAY_DOC, Slug, StrictIn, errors, mark_replay
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


class PricingIn(StrictIn):
    """A pricing mechanism and its configuration."""

    mechanism: str = Field(examples=["query"])
    config: dict[str, Any] = Field(
        default_factory=dict,
        examples=[{"price_points": {"region": {"north": 500, "south": 300}}}],
    )


class QuoteIn(StrictIn):
    """The mechanism's request: a query, a noise variance, a validation set, or nothing."""

    request: dict[str, Any] = Field(default_factory=dict, examples=[{"variance": 0.1}])


class PurchaseIn(QuoteIn):
    """A purchase under the product's mechanism; the key makes retries safe."""

    idempotency_key: str = Field(min_length=1, max_length=128, examples=["b5e0c1"])


class ValueSearchIn(StrictIn):
    """The buyer's validation set and label; candidates default to the catalog."""

    validation: Rows = Field(min_length=1, max_length=5000)
    label_column: str = Field(min_length=1, max_length=200)
    slugs: list[str] | None = Field(default=None, max_length=50)
    task: str | None = None
    k: int = Field(default=5, ge=1, le=100)
    confidence: float | None = Field(default=0.95, gt=0, lt=1)
    svg: bool = False


class BundleIn(StrictIn):
    """A multi-seller product: contributor column, accounts, reference task, method."""

    group_column: str = Field(min_length=1, max_length=200)
    label_column: str = Field(min_length=1, max_length=200)
    contributors: dict[str, str] = Field(min_length=1, max_length=1000)
    reference: Rows = Field(min_length=1, max_length=5000)
    method: str = "knn"
    order: list[str] | None = None
    k: int = Field(default=5, ge=1, le=100)


class AuctionIn(StrictIn):
    reserve_minor: Price
    units: int = Field(default=1, ge=1, le=1000)


class BidIn(StrictIn):
    amount_minor: Amount


class DpOfferIn(StrictIn):
    epsilon_total: float = Field(gt=0, le=100)
    columns: dict[str, dict[str, Any]]


class DerivativeIn(StrictIn):
    """A new product made from this one by enrichment, and its listing."""

    slug: str = Field(min_length=1, max_length=64, examples=["qa-with-perspectives"])
    method: str = Field(examples=["dipt"], description="dipt or rationales")
    price_minor: Price
    title: str | None = Field(default=None, max_length=200)
    parameters: dict[str, Any] = Field(
        default_factory=dict, examples=[{"max_new_tokens": 96, "style": "detailed"}]
    )
    source_share_bps: int = Field(
        default=5000, ge=0, le=10_000, description="share of each sale for the source's side"
    )


class DpQueryIn(StrictIn):
    statistic: str = Field(examples=["mean"])
    column: str | None = None
    epsilon: float = Field(gt=0, le=100)


@router.get("/mechanisms", response_model=list[str])
def mechanisms() -> list[str]:
    """The pricing mechanisms a seller can choose."""
    from databazaar.market.pricing import mechanism_names

    return mechanism_names()


@router.put(
    "/products/{slug}/pricing",
    response_model=PricingOut,
    responses=errors(401, 403, 404, 409, 422),
)
def set_pricing(slug: Slug, body: PricingIn, account: CurrentAccount, econ: EconDep) -> PricingOut:
    """Choose the product's pricing mechanism (its seller or an admin)."""
    return econ.set_pricing(account, slug, body.mechanism, body.config)


@router.get("/products/{slug}/pricing", response_model=PricingOut, responses=errors(404, 409, 422))
def get_pricing(slug: Slug, econ: EconDep) -> PricingOut:
    """The product's mechanism and configuration (``posted`` at the listing by default)."""
    mech = econ.mechanism_for(slug)
    return PricingOut(slug=slug, mechanism=mech.name, config=mech.config())


@router.post("/products/{slug}/quote", response_model=QuoteOut, responses=errors(404, 409, 422))
def quote(slug: Slug, body: QuoteIn, econ: EconDep) -> QuoteOut:
    """What the request would cost under the product's mechanism."""
    return QuoteOut(**econ.quote(slug, body.request).to_dict())


@router.post(
    "/products/{slug}/purchase",
    status_code=201,
    response_model=SaleOut,
    response_model_exclude_unset=True,
    responses={**errors(401, 402, 403, 404, 409, 422), **REPLAY_DOC},
)
def purchase(
    slug: Slug, body: PurchaseIn, account: CurrentAccount, econ: EconDep, response: Response
) -> SaleOut:
    """Buy under the product's mechanism; the seller side is split for bundles.

    Replaying the same ``idempotency_key`` returns the first sale with the original
    status (201), ``replayed: true`` and the header ``Idempotent-Replayed: true``.
    """
    sale = econ.buy(account, slug, body.request, body.idempotency_key)
    mark_replay(response, sale.replayed)
    return sale


@router.get(
    "/sales/{sale_id}",
    response_model=SaleOut,
    response_model_exclude_unset=True,
    responses=errors(401, 404, 422),
)
def get_sale(
    sale_id: Annotated[int, Path(ge=1, le=MAX_ID)], account: CurrentAccount, econ: EconDep
) -> SaleOut:
    """One sale with its quote, deliverable and splits (query answers re-derived)."""
    return econ.sale(account, sale_id)


@router.post(
    "/search/value",
    response_model=ValueSearchOut,
    response_model_exclude_unset=True,
    responses=errors(401, 404, 422),
)
def value_search(body: ValueSearchIn, account: CurrentAccount, econ: EconDep) -> ValueSearchOut:
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
    return ValueSearchOut(**report.to_dict(svg=body.svg), skipped=skipped)


@router.put(
    "/products/{slug}/bundle", response_model=BundleOut, responses=errors(401, 403, 404, 409, 422)
)
def register_bundle(
    slug: Slug, body: BundleIn, account: CurrentAccount, econ: EconDep
) -> BundleOut:
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


@router.get("/products/{slug}/valuation", response_model=ValuationOut, responses=errors(404, 422))
def valuation(slug: Slug, econ: EconDep) -> ValuationOut:
    """The bundle's latest contributor valuation (what splits are computed from)."""
    return econ.valuation(slug)


@router.get(
    "/products/{slug}/splits",
    response_model=list[SplitOut],
    responses=errors(401, 403, 404, 422),
)
def splits(slug: Slug, account: CurrentAccount, econ: EconDep) -> list[SplitOut]:
    """Every revenue split of the product (seller, contributors, admins)."""
    return econ.splits(account, slug)


@router.post(
    "/products/{slug}/auction",
    status_code=201,
    response_model=AuctionOut,
    responses=errors(401, 403, 404, 409, 422),
)
def open_auction(slug: Slug, body: AuctionIn, account: CurrentAccount, econ: EconDep) -> AuctionOut:
    """Open a sealed-bid second-price auction with a reserve."""
    return econ.open_auction(account, slug, body.reserve_minor, body.units)


@router.post(
    "/products/{slug}/bids",
    status_code=201,
    response_model=BidOut,
    responses=errors(401, 402, 403, 404, 409, 422),
)
def bid(slug: Slug, body: BidIn, account: CurrentAccount, econ: EconDep) -> BidOut:
    """Place or replace a sealed bid."""
    return econ.place_bid(account, slug, body.amount_minor)


@router.post(
    "/products/{slug}/auction/close",
    response_model=AuctionResultOut,
    response_model_exclude_unset=True,
    responses=errors(401, 403, 404, 422),
)
def close_auction(slug: Slug, account: CurrentAccount, econ: EconDep) -> AuctionResultOut:
    """Clear the auction: winners pay the clearing price and get a licence."""
    return econ.close_auction(account, slug)


@router.put(
    "/products/{slug}/dp", response_model=DpBudgetOut, responses=errors(401, 403, 404, 409, 422)
)
def offer_dp(slug: Slug, body: DpOfferIn, account: CurrentAccount, econ: EconDep) -> DpBudgetOut:
    """Offer DP statistics of the product under a total epsilon budget."""
    return econ.offer_dp(account, slug, body.epsilon_total, body.columns)


@router.get("/products/{slug}/dp", response_model=DpBudgetOut, responses=errors(404, 422))
def dp_budget(slug: Slug, econ: EconDep) -> DpBudgetOut:
    """The DP offer and the budget left."""
    return econ.dp_budget(slug)


@router.post(
    "/products/{slug}/dp/query",
    response_model=DpReleaseOut,
    response_model_exclude_unset=True,
    responses=errors(401, 403, 404, 422),
)
def dp_query(slug: Slug, body: DpQueryIn, account: CurrentAccount, econ: EconDep) -> DpReleaseOut:
    """Release one DP statistic; 403 ``budget_exceeded`` past the budget."""
    return econ.dp_query(account, slug, body.statistic, body.column, body.epsilon)


@router.post(
    "/products/{slug}/derivatives",
    status_code=201,
    response_model=DerivativeOut,
    responses=errors(401, 403, 404, 409, 422, 502),
)
def create_derivative(
    slug: Slug, body: DerivativeIn, request: Request, account: CurrentAccount, econ: EconDep
) -> DerivativeOut:
    """Enrich the product (which the caller owns or bought) and list it as a new product.

    The market's generation backend (``DATABAZAAR_ENRICH_BACKEND``) writes DiPT
    perspective rationales or pair rationales; the new product's card states its
    provenance, and each sale pays the source's share to the source's contributors.
    """
    from databazaar.core.errors import Conflict
    from databazaar.enrich.teacher import open_enrich_backend

    spec = getattr(request.app.state.settings, "enrich_backend", None)
    if not spec:
        raise Conflict(
            "this market has no enrichment backend",
            hint="the operator sets DATABAZAAR_ENRICH_BACKEND to a model folder or URL",
        )
    return econ.create_derivative(
        account,
        slug,
        body.slug,
        method=body.method,
        backend=open_enrich_backend(spec),
        price_minor=body.price_minor,
        title=body.title,
        parameters=body.parameters,
        source_share_bps=body.source_share_bps,
    )


@router.get("/products/{slug}/derivative", response_model=DerivativeOut, responses=errors(404, 422))
def get_derivative(slug: Slug, econ: EconDep) -> DerivativeOut:
    """The provenance of an enriched derivative (source, method, generator, parameters)."""
    return econ.derivative(slug)
