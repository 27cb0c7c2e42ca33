"""Products: create, upload versions, edit draft cards, publish, list for sale, links."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile
from pydantic import Field

from databazaar.core.errors import InvalidInput
from databazaar.core.money import Price
from databazaar.market.access import DEFAULT_LINK_TTL, MAX_LINK_TTL
from databazaar.market.schemas import DownloadLinkOut, ListingOut, ProductOut, VersionOut
from databazaar.server.api.common import Slug, StrictIn, VersionNumber, errors
from databazaar.server.deps import CurrentAccount, MarketDep, OptionalAccount

router = APIRouter(prefix="/products", tags=["products"])


class ProductIn(StrictIn):
    """A new product: its slug (URL name) and title."""

    slug: str = Field(min_length=1, max_length=64, examples=["iris-measurements"])
    title: str = Field(min_length=1, max_length=200, examples=["Iris flower measurements"])


class CardPatch(StrictIn):
    """Card fields to change on a draft version (omitted fields stay)."""

    title: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=20_000)
    license: str | None = Field(default=None, max_length=64)
    task: str | None = Field(default=None, max_length=64)
    provenance: str | None = Field(default=None, max_length=5_000)
    tags: list[str] | None = Field(default=None, max_length=20)


class ListingIn(StrictIn):
    """The price in minor units (cents) and whether the product is on sale."""

    price_minor: Price
    active: bool = True


class LinkIn(StrictIn):
    """Which version to link to (latest published by default), for how long, and whether
    only you may use the link."""

    version: int | None = Field(default=None, ge=1, le=1_000_000)
    ttl_seconds: int = Field(
        default=DEFAULT_LINK_TTL, ge=1, le=MAX_LINK_TTL, description="seconds (default 300)"
    )
    bind_to_account: bool = Field(
        default=False, description="only a request authenticated as you may use the link"
    )


@router.post("", status_code=201, response_model=ProductOut, responses=errors(401, 403, 409, 422))
def create_product(body: ProductIn, account: CurrentAccount, market: MarketDep) -> ProductOut:
    """Create an empty product (sellers and admins)."""
    return market.create_product(account, body.slug, body.title)


@router.get("/mine", response_model=list[ProductOut], responses=errors(401))
def my_products(account: CurrentAccount, market: MarketDep) -> list[ProductOut]:
    """The caller's products, drafts included."""
    return market.my_products(account)


@router.get("/{slug}", response_model=ProductOut, responses=errors(401, 404, 422))
def get_product(slug: Slug, market: MarketDep, account: OptionalAccount) -> ProductOut:
    """A product's card; its owner also sees draft versions."""
    return market.get_product(slug, account)


@router.post(
    "/{slug}/versions",
    status_code=201,
    response_model=VersionOut,
    responses=errors(401, 403, 404, 413, 422),
)
def upload_version(
    slug: Slug,
    account: CurrentAccount,
    market: MarketDep,
    file: Annotated[UploadFile, File(description="a .csv, .parquet or .jsonl table")],
    license: Annotated[str, Form(max_length=64)],
    task: Annotated[str, Form(max_length=64)],
    description: Annotated[str, Form(max_length=20_000)] = "",
    provenance: Annotated[str, Form(max_length=5_000)] = "",
    tags: Annotated[str, Form(max_length=1000, description="comma-separated")] = "",
) -> VersionOut:
    """Upload a table as a new draft version; schema, stats and preview are inferred."""
    if not file.filename:
        raise InvalidInput("the upload has no file name", hint="send a file named like data.csv")
    card = {
        "license": license,
        "task": task,
        "description": description,
        "provenance": provenance,
        "tags": tags,
    }
    return market.add_version(account, slug, file.file, file.filename, card)


@router.get("/{slug}/versions/{number}", response_model=VersionOut, responses=errors(401, 404, 422))
def get_version(
    slug: Slug, number: VersionNumber, market: MarketDep, account: OptionalAccount
) -> VersionOut:
    """One version's card (drafts only for the owner)."""
    return market.get_version(slug, number, account)


@router.patch(
    "/{slug}/versions/{number}",
    response_model=VersionOut,
    responses=errors(401, 403, 404, 409, 422),
)
def edit_card(
    slug: Slug, number: VersionNumber, body: CardPatch, account: CurrentAccount, market: MarketDep
) -> VersionOut:
    """Edit a draft version's card; published versions answer 409."""
    card = body.model_dump(exclude_none=True)
    return market.update_card(account, slug, number, card)


@router.post(
    "/{slug}/versions/{number}/publish",
    response_model=VersionOut,
    responses=errors(401, 403, 404, 409, 422),
)
def publish(
    slug: Slug, number: VersionNumber, account: CurrentAccount, market: MarketDep
) -> VersionOut:
    """Publish a draft: it becomes searchable, buyable and immutable."""
    return market.publish(account, slug, number)


@router.put("/{slug}/listing", response_model=ListingOut, responses=errors(401, 403, 404, 409, 422))
def set_listing(
    slug: Slug, body: ListingIn, account: CurrentAccount, market: MarketDep
) -> ListingOut:
    """Set the price (minor units) and put the product on or off sale."""
    return market.set_listing(account, slug, body.price_minor, active=body.active)


@router.post(
    "/{slug}/download-link",
    response_model=DownloadLinkOut,
    responses=errors(401, 403, 404, 422),
)
def download_link(
    slug: Slug, body: LinkIn, account: CurrentAccount, market: MarketDep
) -> DownloadLinkOut:
    """An expiring signed download link, for grantees, the owner and admins only."""
    return market.download_link(
        account,
        slug,
        body.version,
        ttl_seconds=body.ttl_seconds,
        bind_to_account=body.bind_to_account,
    )
