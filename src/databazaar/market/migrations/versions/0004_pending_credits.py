"""Deferred credits: ``ledger_pending_credits``.

A sale's credits to the market-fee account and to the seller are appended here instead
of updating those accounts' cached balances inside the buyer's transaction, so
concurrent purchases no longer queue on the fee account's row (see
:mod:`databazaar.market.balances`).  Existing balances are unchanged (nothing is
pending yet); the downgrade folds every pending credit into its account's cached
balance before it drops the table, so no money is lost either way.

Revision ID: 0004_pending_credits
Revises: 0003_chains
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_pending_credits"
down_revision = "0003_chains"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "ledger_pending_credits",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("account_id", ID, sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("txn_id", sa.String(36), nullable=False),
        sa.CheckConstraint("amount_minor > 0", name="ck_pending_credit_positive"),
    )
    op.create_index(
        "ix_ledger_pending_credits_account_id", "ledger_pending_credits", ["account_id"]
    )


def downgrade() -> None:
    op.execute(
        "UPDATE accounts SET balance_minor = balance_minor + COALESCE((SELECT "
        "SUM(p.amount_minor) FROM ledger_pending_credits p WHERE p.account_id = accounts.id), 0)"
    )
    op.drop_index("ix_ledger_pending_credits_account_id", "ledger_pending_credits")
    op.drop_table("ledger_pending_credits")
