"""Drop two indexes that unique constraints already cover.

``ix_grants_account_id`` (``grants.account_id``) is the leading column of
``uq_grants_pair (account_id, product_id)`` and ``ix_orders_buyer_id``
(``orders.buyer_id``) that of ``uq_orders_idempotency (buyer_id, idempotency_key)``:
every lookup they served the unique indexes serve, while each purchase paid for
writing them.  With them gone the planner also looks a buyer's grant of a product up
by the pair (one index entry) instead of scanning all of the buyer's grants.

Revision ID: 0007_covered_indexes
Revises: 0006_derivatives
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0007_covered_indexes"
down_revision = "0006_derivatives"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_grants_account_id", table_name="grants")
    op.drop_index("ix_orders_buyer_id", table_name="orders")


def downgrade() -> None:
    op.create_index("ix_orders_buyer_id", "orders", ["buyer_id"])
    op.create_index("ix_grants_account_id", "grants", ["account_id"])
