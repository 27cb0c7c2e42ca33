"""Enriched derivatives: ``econ_derivatives``.

A derivative is a product a seller made from another product by enrichment (DiPT
perspective rationales or rationales for preference pairs, :mod:`databazaar.enrich`).
The row records its source product and version, the method, the generator model and
the parameters (the provenance on its card says the same in words), and the share of
every sale's seller side that goes to the source product's side.

Revision ID: 0006_derivatives
Revises: 0005_gate
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_derivatives"
down_revision = "0005_gate"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "econ_derivatives",
        sa.Column(
            "product_id", ID, sa.ForeignKey("products.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("source_product_id", ID, sa.ForeignKey("products.id"), nullable=False),
        sa.Column("source_version_id", ID, sa.ForeignKey("product_versions.id"), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("generator", sa.String(200), nullable=False),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("source_share_bps", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "source_share_bps >= 0 AND source_share_bps <= 10000",
            name="ck_econ_derivative_share",
        ),
    )
    op.create_index(
        "ix_econ_derivatives_source_product_id", "econ_derivatives", ["source_product_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_econ_derivatives_source_product_id", "econ_derivatives")
    op.drop_table("econ_derivatives")
