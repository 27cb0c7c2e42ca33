"""Market economics: pricing choice, bundles and contributors, valuations, revenue
splits, sales under a mechanism, sealed-bid auctions, differential-privacy budgets.

The tables are those of :mod:`databazaar.market.econ_models`; they only reference the
tables of revision 0001 and change none of them.

Revision ID: 0002_econ
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_econ"
down_revision = "0001"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def _id() -> sa.Column:
    return sa.Column("id", ID, primary_key=True, autoincrement=True)


def _product(primary_key: bool = False) -> sa.Column:
    return sa.Column(
        "product_id",
        ID,
        sa.ForeignKey("products.id", ondelete="CASCADE"),
        primary_key=primary_key,
        nullable=False,
    )


def upgrade() -> None:
    op.create_table(
        "econ_pricing",
        _product(primary_key=True),
        sa.Column("mechanism", sa.String(16), nullable=False),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "econ_bundles",
        _product(primary_key=True),
        sa.Column("group_column", sa.String(200), nullable=False),
        sa.Column("label_column", sa.String(200), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("order", sa.JSON, nullable=False),
        sa.Column("k", sa.Integer, nullable=False),
        sa.Column("reference_sha256", sa.String(64), sa.ForeignKey("blobs.sha256"), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "econ_contributors",
        _product(primary_key=True),
        sa.Column("group_key", sa.String(200), primary_key=True),
        sa.Column("account_id", ID, sa.ForeignKey("accounts.id"), nullable=False),
    )
    op.create_table(
        "econ_valuations",
        _id(),
        _product(),
        sa.Column("version_id", ID, sa.ForeignKey("product_versions.id"), nullable=False),
        sa.Column("method", sa.String(40), nullable=False),
        sa.Column("record", sa.JSON, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "econ_splits",
        _id(),
        sa.Column("txn_id", sa.String(36), nullable=False, index=True),
        sa.Column("order_id", ID, sa.ForeignKey("orders.id"), nullable=True),
        sa.Column("product_id", ID, sa.ForeignKey("products.id"), nullable=False),
        sa.Column("valuation_id", ID, sa.ForeignKey("econ_valuations.id"), nullable=False),
        sa.Column("total_minor", sa.BigInteger, nullable=False),
        sa.Column("shares", sa.JSON, nullable=False),
        sa.Column("rule", sa.String(300), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "econ_sales",
        _id(),
        sa.Column("order_id", ID, sa.ForeignKey("orders.id"), nullable=False, unique=True),
        sa.Column("product_id", ID, sa.ForeignKey("products.id"), nullable=False),
        sa.Column("buyer_id", ID, sa.ForeignKey("accounts.id"), nullable=False, index=True),
        sa.Column("mechanism", sa.String(16), nullable=False),
        sa.Column("quote", sa.JSON, nullable=False),
        sa.Column("deliverable", sa.JSON, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "econ_auctions",
        _id(),
        _product(),
        sa.Column("reserve_minor", sa.BigInteger, nullable=False),
        sa.Column("units", sa.Integer, nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("outcome", sa.JSON, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("closed_at", TS, nullable=True),
        sa.CheckConstraint("reserve_minor >= 0", name="ck_econ_auction_reserve"),
    )
    op.create_table(
        "econ_bids",
        _id(),
        sa.Column(
            "auction_id", ID, sa.ForeignKey("econ_auctions.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("bidder_id", ID, sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("auction_id", "bidder_id", name="uq_econ_bid_bidder"),
        sa.CheckConstraint("amount_minor >= 0", name="ck_econ_bid_amount"),
    )
    op.create_table(
        "econ_dp_budgets",
        _product(primary_key=True),
        sa.Column("epsilon_total_micro", sa.BigInteger, nullable=False),
        sa.Column("epsilon_spent_micro", sa.BigInteger, nullable=False),
        sa.Column("columns", sa.JSON, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.CheckConstraint(
            "epsilon_spent_micro >= 0 AND epsilon_spent_micro <= epsilon_total_micro",
            name="ck_econ_dp_budget_spent",
        ),
    )
    op.create_table(
        "econ_dp_releases",
        _id(),
        _product(),
        sa.Column("account_id", ID, sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("statistic", sa.String(16), nullable=False),
        sa.Column("column", sa.String(200), nullable=True),
        sa.Column("epsilon_micro", sa.BigInteger, nullable=False),
        sa.Column("result", sa.JSON, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_econ_auctions_product", "econ_auctions", ["product_id", "status"])
    op.create_index("ix_econ_dp_releases_product", "econ_dp_releases", ["product_id"])


def downgrade() -> None:
    op.drop_index("ix_econ_dp_releases_product", table_name="econ_dp_releases")
    op.drop_index("ix_econ_auctions_product", table_name="econ_auctions")
    for table in (
        "econ_dp_releases",
        "econ_dp_budgets",
        "econ_bids",
        "econ_auctions",
        "econ_sales",
        "econ_splits",
        "econ_valuations",
        "econ_contributors",
        "econ_bundles",
        "econ_pricing",
    ):
        op.drop_table(table)
