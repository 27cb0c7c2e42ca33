"""Pydantic views of market objects, returned by the library and served by the API.

They are plain data (no lazy database access), so they are safe to return after the
session that built them is closed.  Money fields end in ``_minor`` and are integers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class AccountOut(BaseModel):
    """A market account as its owner (or an admin) sees it."""

    id: int
    username: str
    role: str
    balance_minor: int
    created_at: datetime


class TokenOut(BaseModel):
    """A new API token; the clear token is shown only in this response."""

    token: str
    token_type: Literal["bearer"] = "bearer"
    account: AccountOut


class ListingOut(BaseModel):
    """The price of a product on the market."""

    price_minor: int
    currency: str
    active: bool


class ColumnOut(BaseModel):
    """One column of a version's inferred schema."""

    name: str
    type: str
    nullable: bool


class SnippetOut(BaseModel):
    """One offending text of a listing: where it is, its risk and level-3 group."""

    source: str = Field(description="'card: description' or 'row <n>' (0-based)")
    text: str
    risk: float
    group: str


class FindingOut(BaseModel):
    """What the screening found in one AIR 2024 level-2 category."""

    l2: str
    l2_name: str
    action: str = Field(description="what the policy does with the category")
    fired: bool = Field(description="card flagged, or enough rows flagged (min_rows, min_share)")
    card: bool
    rows: int = Field(description="sampled rows flagged in this category")
    max_risk: float
    snippets: list[SnippetOut] = Field(default_factory=list)


class ScreeningOut(BaseModel):
    """The risk screening of a version: the badge buyers see, and the evidence.

    ``state``: ``cleared`` (the policy allowed it), ``held`` (waits for an admin),
    ``blocked`` (the policy blocks it), ``approved`` or ``rejected`` (by an admin).
    ``findings`` are shown to the product's seller and to admins only.
    """

    state: str
    decision: str
    policy_version: int
    screened_at: datetime
    rows_screened: int
    rows_total: int
    card_texts: int
    model: str
    max_risk: float
    reviewed_at: datetime | None = None
    reviewer: str | None = None
    review_note: str = ""
    findings: list[FindingOut] | None = None


class VersionOut(BaseModel):
    """One version of a product: card, schema, statistics, preview and file facts.

    ``screening`` is the listing gate's verdict (``None``: not screened, because the
    market's gate was off when the version was published).
    """

    number: int
    status: str
    description: str
    license: str
    task: str
    provenance: str
    tags: list[str]
    filename: str
    file_format: str
    sha256: str
    size_bytes: int
    n_rows: int
    n_columns: int
    columns: list[ColumnOut]
    stats: dict[str, Any]
    preview: list[dict[str, Any]]
    created_at: datetime
    published_at: datetime | None
    screening: ScreeningOut | None = None


class ProductOut(BaseModel):
    """A product with its listing, its latest visible version and its version numbers."""

    slug: str
    title: str
    seller: str
    created_at: datetime
    listing: ListingOut | None
    latest: VersionOut | None
    versions: list[int]


class ProductSummary(BaseModel):
    """A catalog row: enough to choose a product."""

    slug: str
    title: str
    seller: str
    version: int
    task: str
    license: str
    tags: list[str]
    price_minor: int
    currency: str
    n_rows: int
    n_columns: int
    description: str


class SearchHit(ProductSummary):
    """A catalog row with its relevance score (higher is better)."""

    score: float | None = None


class SearchResults(BaseModel):
    """A page of catalog results."""

    total: int
    mode: str
    hits: list[SearchHit]


class OrderItemOut(BaseModel):
    """One product in an order."""

    slug: str
    version: int
    seller_id: int
    price_minor: int
    fee_minor: int


class OrderOut(BaseModel):
    """A purchase; ``replayed`` is true when the idempotency key had been used before."""

    id: int
    buyer_id: int
    idempotency_key: str
    total_minor: int
    fee_minor: int
    txn_id: str
    created_at: datetime
    items: list[OrderItemOut]
    replayed: bool = False


class DownloadLinkOut(BaseModel):
    """An expiring signed link to one version's file (five minutes by default)."""

    url: str
    token: str
    expires_at: int = Field(description="unix time after which the link is refused")
    sha256: str
    filename: str
    bound: bool = Field(
        default=False, description="true: the download must authenticate as the same account"
    )


class LedgerReportOut(BaseModel):
    """The outcome of a ledger verification."""

    ok: bool
    n_rows: int
    n_transactions: int
    total_minor: int
    head_seq: int
    first_bad_seq: int | None
    problems: list[str]


class PolicyOut(BaseModel):
    """A version of the market's screening policy (AIR 2024 level-2 categories)."""

    version: int
    default_action: str
    rules: dict[str, str]
    threshold: float
    min_rows: int
    min_share: float
    created_at: datetime
    created_by: str | None
    note: str
    categories: dict[str, str] = Field(
        default_factory=dict, description="level-2 id -> name, when the gate is on"
    )


class AuditOut(BaseModel):
    """One audited gate change: who, when, what, old and new."""

    id: int
    at: datetime
    actor: str | None
    action: str
    subject: str
    policy_version: int
    old: dict[str, Any] | None
    new: dict[str, Any]
    note: str


class ReviewItemOut(BaseModel):
    """A version in the review queue with the evidence of its screening."""

    slug: str
    title: str
    seller: str
    version: int
    status: str
    n_rows: int
    screening: ScreeningOut


class DepositOut(BaseModel):
    """A deposit booked on the ledger."""

    txn_id: str
    account: AccountOut


# ---------------------------------------------------------------------- economics
class PricingOut(BaseModel):
    """A product's pricing mechanism and its configuration."""

    slug: str
    mechanism: str
    config: dict[str, Any]


class QuoteOut(BaseModel):
    """What a request would cost under a product's mechanism, and what it delivers."""

    mechanism: str
    price_minor: int
    currency: str
    deliverable: str
    details: dict[str, Any]


class SaleOrderOut(BaseModel):
    """The market order behind a sale."""

    id: int
    total_minor: int
    fee_minor: int
    txn_id: str
    idempotency_key: str


class SplitOut(BaseModel):
    """One revenue split of a bundle sale: the valuation it used and each share."""

    id: int
    txn_id: str
    order_id: int | None
    valuation_id: int
    total_minor: int
    shares: list[dict[str, Any]]
    rule: str


class SaleOut(BaseModel):
    """A sale under a pricing mechanism; ``rows`` holds a query answer for its buyer."""

    sale_id: int
    slug: str
    mechanism: str
    order: SaleOrderOut
    quote: dict[str, Any]
    deliverable: dict[str, Any]
    splits: list[SplitOut]
    replayed: bool = False
    rows: list[dict[str, Any]] | None = None


class ValuationOut(BaseModel):
    """A bundle's stored contributor valuation (values per group, method, sha256)."""

    valuation_id: int
    digest: str
    valuation: dict[str, Any]


class BundleOut(ValuationOut):
    """A registered bundle: its valuation and the account behind each group."""

    contributors: dict[str, str]


class AuctionOut(BaseModel):
    """An open sealed-bid auction."""

    auction_id: int
    slug: str
    reserve_minor: int
    units: int
    status: str


class BidOut(BaseModel):
    """A sealed bid as its bidder sees it."""

    auction_id: int
    slug: str
    amount_minor: int
    sealed: bool


class AuctionResultOut(BaseModel):
    """A closed auction: the clearing outcome and the sales to its winners."""

    auction_id: int
    outcome: dict[str, Any]
    sales: list[SaleOut]


class DpBudgetOut(BaseModel):
    """A product's DP offer: columns, total, spent and remaining epsilon."""

    slug: str
    columns: dict[str, Any]
    epsilon_total: float
    epsilon_spent: float
    epsilon_remaining: float
    n_releases: int


class DpReleaseOut(BaseModel):
    """One DP release; the statistic's own fields (``value``, ``counts``...) follow."""

    model_config = ConfigDict(extra="allow")

    statistic: str
    column: str | None
    epsilon: float
    mechanism: str
    noise_std: float | None = None
    epsilon_remaining: float


class ValueSearchOut(BaseModel):
    """Products ranked by their value for the buyer's validation set."""

    method: str
    k: int
    n_validation: int
    numeric_features: list[str]
    text_features: list[str]
    confidence: float | None
    chance: float
    products: list[dict[str, Any]]
    removal_curves: dict[str, dict[str, Any]]
    removal_curve_svg: str | None = None
    skipped: list[dict[str, str]]


class DerivativeOut(BaseModel):
    """An enriched derivative: the new product and its provenance."""

    slug: str
    source_slug: str
    source_version: int
    method: str
    generator: str
    parameters: dict[str, Any]
    source_share_bps: int
    rows: int
    provenance: str
    price_minor: int | None = None
