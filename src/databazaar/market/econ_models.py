"""Tables of the market economics layer, mapped on the market's declarative ``Base``.

Created by the Alembic revision ``0002_econ`` (``migrations/versions/0002_econ_economics.py``).

Tables
------
``econ_pricing``       the pricing mechanism a seller chose for a product, with its config
``econ_bundles``       a multi-seller product: the column naming each row's contributor
                       group, the label column, the allocation method and reference set
``econ_contributors``  which account contributed each group of a bundle
``econ_valuations``    a stored group valuation (values, method, parameters, sha256)
``econ_splits``        one revenue split of one sale: the valuation it used and the shares
``econ_sales``         a sale under a mechanism: the quote and what was delivered
``econ_auctions``      sealed-bid auctions of a product, and ``econ_bids`` their bids
``econ_dp_budgets``    a product's differential-privacy budget (epsilon in micro-units)
``econ_dp_releases``   every DP statistic released, with the epsilon it spent
``econ_derivatives``   an enriched derivative: its source product and version, the
                       method, generator and parameters, and the source's revenue share
                       (revision ``0006_derivatives``)

Money is integer minor units; epsilon is an integer count of 10^-6 so budget arithmetic
is exact.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from databazaar.market.models import Base, BigId, utcnow

EPS_UNIT = 1_000_000  # epsilon is stored in micro-epsilon


class EconPricing(Base):
    """The pricing mechanism of a product (``posted`` when absent)."""

    __tablename__ = "econ_pricing"

    product_id: Mapped[int] = mapped_column(
        ForeignKey("products.id", ondelete="CASCADE"), primary_key=True
    )
    mechanism: Mapped[str] = mapped_column(String(16))
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class EconBundle(Base):
    """A product whose rows come from several contributors (one group per contributor)."""

    __tablename__ = "econ_bundles"

    product_id: Mapped[int] = mapped_column(
        ForeignKey("products.id", ondelete="CASCADE"), primary_key=True
    )
    group_column: Mapped[str] = mapped_column(String(200))
    label_column: Mapped[str] = mapped_column(String(200))
    method: Mapped[str] = mapped_column(String(16))
    order: Mapped[list[Any]] = mapped_column(JSON)
    k: Mapped[int] = mapped_column(Integer)
    reference_sha256: Mapped[str] = mapped_column(ForeignKey("blobs.sha256"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class EconContributor(Base):
    """The account paid for one group of a bundle."""

    __tablename__ = "econ_contributors"

    product_id: Mapped[int] = mapped_column(
        ForeignKey("products.id", ondelete="CASCADE"), primary_key=True
    )
    group_key: Mapped[str] = mapped_column(String(200), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))


class EconValuation(Base):
    """A group valuation of a product version; ``digest`` is sha256 of ``record``."""

    __tablename__ = "econ_valuations"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"))
    version_id: Mapped[int] = mapped_column(ForeignKey("product_versions.id"))
    method: Mapped[str] = mapped_column(String(40))
    record: Mapped[dict[str, Any]] = mapped_column(JSON)
    digest: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class EconSplit(Base):
    """The split of one sale's seller revenue, booked in ledger transaction ``txn_id``."""

    __tablename__ = "econ_splits"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    txn_id: Mapped[str] = mapped_column(String(36), index=True)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"))
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    valuation_id: Mapped[int] = mapped_column(ForeignKey("econ_valuations.id"))
    total_minor: Mapped[int] = mapped_column(BigInteger)
    shares: Mapped[list[Any]] = mapped_column(JSON)
    rule: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class EconSale(Base):
    """A purchase made under a pricing mechanism (one order, one product)."""

    __tablename__ = "econ_sales"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), unique=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    buyer_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    mechanism: Mapped[str] = mapped_column(String(16))
    quote: Mapped[dict[str, Any]] = mapped_column(JSON)
    deliverable: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class EconAuction(Base):
    """A sealed-bid auction of licences of a product (``open`` until the seller closes it)."""

    __tablename__ = "econ_auctions"
    __table_args__ = (CheckConstraint("reserve_minor >= 0", name="ck_econ_auction_reserve"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"))
    reserve_minor: Mapped[int] = mapped_column(BigInteger)
    units: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(8), default="open")
    outcome: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class EconBid(Base):
    """A sealed bid; a bidder's newer bid replaces the older one while the auction is open."""

    __tablename__ = "econ_bids"
    __table_args__ = (
        UniqueConstraint("auction_id", "bidder_id", name="uq_econ_bid_bidder"),
        CheckConstraint("amount_minor >= 0", name="ck_econ_bid_amount"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    auction_id: Mapped[int] = mapped_column(ForeignKey("econ_auctions.id", ondelete="CASCADE"))
    bidder_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class EconDpBudget(Base):
    """A product's total and spent privacy budget, in micro-epsilon."""

    __tablename__ = "econ_dp_budgets"
    __table_args__ = (
        CheckConstraint(
            "epsilon_spent_micro >= 0 AND epsilon_spent_micro <= epsilon_total_micro",
            name="ck_econ_dp_budget_spent",
        ),
    )

    product_id: Mapped[int] = mapped_column(
        ForeignKey("products.id", ondelete="CASCADE"), primary_key=True
    )
    epsilon_total_micro: Mapped[int] = mapped_column(BigInteger)
    epsilon_spent_micro: Mapped[int] = mapped_column(BigInteger, default=0)
    columns: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class EconDpRelease(Base):
    """One differentially private statistic released from a product."""

    __tablename__ = "econ_dp_releases"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    statistic: Mapped[str] = mapped_column(String(16))
    column: Mapped[str | None] = mapped_column(String(200))
    epsilon_micro: Mapped[int] = mapped_column(BigInteger)
    result: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class EconDerivative(Base):
    """A product made from another one by enrichment (DiPT or pair rationales).

    ``source_share_bps`` of the seller side of every sale goes to the source product's
    side (its contributors by the source's valuation if it is a bundle, else its seller);
    see :func:`databazaar.market.settlement.sale_postings`.
    """

    __tablename__ = "econ_derivatives"
    __table_args__ = (
        CheckConstraint(
            "source_share_bps >= 0 AND source_share_bps <= 10000",
            name="ck_econ_derivative_share",
        ),
    )

    product_id: Mapped[int] = mapped_column(
        ForeignKey("products.id", ondelete="CASCADE"), primary_key=True
    )
    source_product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), index=True)
    source_version_id: Mapped[int] = mapped_column(ForeignKey("product_versions.id"))
    method: Mapped[str] = mapped_column(String(16))
    generator: Mapped[str] = mapped_column(String(200))
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    source_share_bps: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
