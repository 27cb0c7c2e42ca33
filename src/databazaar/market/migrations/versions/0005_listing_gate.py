"""The listing gate: screening policy versions, screenings of versions, the audit trail.

* ``gate_policies``: one row per policy version (``allow`` / ``review`` / ``block`` per
  AIR 2024 level-2 category, a default, the risk threshold and the minimum flagged
  rows).  Version 1 is seeded here: every category ``review``, threshold 0.8, at least 5 rows and
  2% of the rows screened.
* ``screenings``: the screening of a version at publish time (decision, state, findings
  with snippets, the sample drawn) and its review by an admin.
* ``gate_audit``: who changed the policy or reviewed a product, when, old and new.
* ``product_versions.status`` gains the values ``held`` and ``rejected`` (the column is
  a plain string of length 9, so no table change is needed for them).

``gate_policies`` and ``gate_audit`` are append-only: triggers refuse ``UPDATE`` and
``DELETE`` (as for the ledger), so the trail cannot be edited through the database API.

Revision ID: 0005_gate
Revises: 0004_pending_credits
Create Date: 2026-11-29
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0005_gate"
down_revision = "0004_pending_credits"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)
APPEND_ONLY = ("gate_policies", "gate_audit")
#: the first policy: hold anything flagged for an admin's review
SEED_POLICY = {
    "default_action": "review",
    "rules": {},
    "threshold": 0.8,
    "min_rows": 5,
    "min_share": 0.02,
}


def _append_only(create: bool) -> None:
    dialect = op.get_bind().dialect.name
    for table in APPEND_ONLY:
        if dialect == "sqlite":
            for action in ("UPDATE", "DELETE"):
                name = f"{table}_no_{action.lower()}"
                op.execute(
                    f"CREATE TRIGGER {name} BEFORE {action} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
                    if create
                    else f"DROP TRIGGER IF EXISTS {name}"
                )
        elif dialect == "postgresql":
            if create:
                op.execute(
                    f"CREATE FUNCTION {table}_append_only() RETURNS trigger LANGUAGE plpgsql "
                    f"AS $$ BEGIN RAISE EXCEPTION '{table} is append-only'; END $$"
                )
                op.execute(
                    f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                    f"FOR EACH ROW EXECUTE FUNCTION {table}_append_only()"
                )
            else:
                op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
                op.execute(f"DROP FUNCTION IF EXISTS {table}_append_only()")


def upgrade() -> None:
    op.create_table(
        "gate_policies",
        sa.Column("version", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("default_action", sa.String(8), nullable=False),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("min_rows", sa.Integer(), nullable=False),
        sa.Column("min_share", sa.Float(), nullable=False),
        sa.Column("created_by", ID, sa.ForeignKey("accounts.id")),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("note", sa.String(500), nullable=False),
    )
    op.create_table(
        "screenings",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column(
            "version_id",
            ID,
            sa.ForeignKey("product_versions.id", ondelete="CASCADE"),
            nullable=False,
            unique=True,
        ),
        sa.Column(
            "product_id", ID, sa.ForeignKey("products.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column(
            "policy_version", sa.Integer(), sa.ForeignKey("gate_policies.version"), nullable=False
        ),
        sa.Column("decision", sa.String(8), nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("max_risk", sa.Float(), nullable=False),
        sa.Column("findings", sa.JSON(), nullable=False),
        sa.Column("sample", sa.JSON(), nullable=False),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("screened_at", TS, nullable=False),
        sa.Column("reviewed_by", ID, sa.ForeignKey("accounts.id")),
        sa.Column("reviewed_at", TS),
        sa.Column("review_note", sa.String(500), nullable=False),
    )
    op.create_index("ix_screenings_product_id", "screenings", ["product_id"])
    op.create_index("ix_screenings_state", "screenings", ["state"])
    op.create_table(
        "gate_audit",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("at", TS, nullable=False),
        sa.Column("actor_id", ID, sa.ForeignKey("accounts.id")),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("subject", sa.String(100), nullable=False),
        sa.Column("policy_version", sa.Integer(), nullable=False),
        sa.Column("old", sa.JSON()),
        sa.Column("new", sa.JSON(), nullable=False),
        sa.Column("note", sa.String(500), nullable=False),
    )
    now = datetime.now(UTC)
    policies = sa.table(
        "gate_policies",
        sa.column("version", sa.Integer()),
        sa.column("default_action", sa.String()),
        sa.column("rules", sa.JSON()),
        sa.column("threshold", sa.Float()),
        sa.column("min_rows", sa.Integer()),
        sa.column("min_share", sa.Float()),
        sa.column("created_by", ID),
        sa.column("created_at", TS),
        sa.column("note", sa.String()),
    )
    op.bulk_insert(
        policies,
        [{"version": 1, **SEED_POLICY, "created_by": None, "created_at": now, "note": "initial"}],
    )
    audit = sa.table(
        "gate_audit",
        sa.column("at", TS),
        sa.column("actor_id", ID),
        sa.column("action", sa.String()),
        sa.column("subject", sa.String()),
        sa.column("policy_version", sa.Integer()),
        sa.column("old", sa.JSON()),
        sa.column("new", sa.JSON()),
        sa.column("note", sa.String()),
    )
    op.bulk_insert(
        audit,
        [
            {
                "at": now,
                "actor_id": None,
                "action": "policy.set",
                "subject": "policy",
                "policy_version": 1,
                "old": None,
                "new": SEED_POLICY,
                "note": "initial policy (migration 0004)",
            }
        ],
    )
    _append_only(True)


def downgrade() -> None:
    # versions waiting for or refused by the gate go back to drafts (0003 knows no more)
    op.execute("UPDATE product_versions SET status = 'draft' WHERE status IN ('held', 'rejected')")
    _append_only(False)
    op.drop_table("gate_audit")
    op.drop_table("screenings")
    op.drop_table("gate_policies")
