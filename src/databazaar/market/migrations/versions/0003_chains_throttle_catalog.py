"""Per-account ledger chains sealed into a global chain; login throttle; catalog generation.

* ``ledger_entries`` gains ``chain_id`` and ``chain_seq``: each transaction now lives in
  the chain of its payer (see :mod:`databazaar.market.ledger`), so purchases by
  different buyers no longer queue on the single ``ledger_head`` row, which is dropped.
  ``seq`` becomes an identity (a PostgreSQL sequence; SQLite's rowid).  Existing rows
  are first verified against the old single chain (the upgrade refuses a ledger that
  fails, naming the row), then re-chained, and the result is sealed as the first link
  of the global chain (``ledger_seals``); chain heads go to ``ledger_chains``.
* ``login_attempts``: the login throttle shared by every server process, keyed by
  username and client address (:mod:`databazaar.market.throttle`).
* ``catalog_state``: one row whose ``generation`` is bumped by triggers on every change
  to products, versions, tags and listings; cached catalog answers are valid while it
  stays the same (the server's ETag).

Revision ID: 0003_chains
Revises: 0002_econ
Create Date: 2026-11-29
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from alembic import op

from databazaar.market.ledger import GENESIS_HASH, row_digest, seal_digest

revision = "0003_chains"
down_revision = "0002_econ"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
CATALOG_TABLES = ("products", "product_versions", "version_tags", "listings")
LEDGER_COLUMNS = (
    "seq, txn_id, account_id, amount_minor, kind, memo, created_at, prev_hash, row_hash"
)


def _legacy_digest(prev: str, r: Any) -> str:
    """The row hash of revisions 0001-0002 (one global chain by ``seq``)."""
    parts = [prev, r.seq, r.txn_id, r.account_id, r.amount_minor, r.kind, r.memo, r.created_at]
    return hashlib.sha256("|".join(map(str, parts)).encode("utf-8")).hexdigest()


def _append_only(on: bool) -> None:
    """Turn the append-only guard of ``ledger_entries`` on or off (for the re-chaining)."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"ALTER TABLE ledger_entries {'ENABLE' if on else 'DISABLE'} TRIGGER ledger_append_only"
        )
        return
    for action in ("UPDATE", "DELETE"):
        if on:
            op.execute(
                f"CREATE TRIGGER ledger_no_{action.lower()} BEFORE {action} ON ledger_entries "
                "BEGIN SELECT RAISE(ABORT, 'ledger_entries is append-only'); END"
            )
        else:
            op.execute(f"DROP TRIGGER IF EXISTS ledger_no_{action.lower()}")


def _rows(conn: sa.Connection) -> list[Any]:
    return list(conn.execute(sa.text(f"SELECT {LEDGER_COLUMNS} FROM ledger_entries ORDER BY seq")))


def _check_legacy_chain(conn: sa.Connection, rows: Iterable[Any]) -> None:
    prev, expected = GENESIS_HASH, 0
    for r in rows:
        expected += 1
        if r.seq != expected or r.prev_hash != prev or _legacy_digest(prev, r) != r.row_hash:
            raise RuntimeError(
                f"ledger row seq={r.seq} fails verification; the ledger cannot be re-chained. "
                "Run `databazaar ledger verify` on the previous version and repair it first."
            )
        prev = r.row_hash
    head = conn.execute(sa.text("SELECT last_seq, last_hash FROM ledger_head")).first()
    if head is not None and (head.last_seq, head.last_hash) != (expected, prev):
        raise RuntimeError(
            f"the ledger head says seq={head.last_seq} but the ledger ends at seq={expected}; "
            "rows were deleted. Repair the ledger before upgrading."
        )


def _rechain(conn: sa.Connection, rows: list[Any]) -> dict[int, tuple[int, str]]:
    """Give every row its payer's chain position and hash; return the chain heads."""
    by_txn: dict[str, list[Any]] = {}
    for r in rows:
        by_txn.setdefault(r.txn_id, []).append(r)
    heads: dict[int, tuple[int, str]] = {}
    updates = []
    for txn_rows in by_txn.values():  # insertion order: by the transaction's first seq
        chain = min(txn_rows, key=lambda r: (r.amount_minor, r.account_id)).account_id
        pos, prev = heads.get(chain, (0, GENESIS_HASH))
        for r in txn_rows:
            pos += 1
            digest = row_digest(
                prev, chain, pos, r.txn_id, r.account_id, r.amount_minor, r.kind, r.memo,
                r.created_at,
            )  # fmt: skip
            updates.append({"s": r.seq, "c": chain, "p": pos, "ph": prev, "rh": digest})
            prev = digest
        heads[chain] = (pos, prev)
    if updates:
        conn.execute(
            sa.text(
                "UPDATE ledger_entries SET chain_id = :c, chain_seq = :p, prev_hash = :ph, "
                "row_hash = :rh WHERE seq = :s"
            ),
            updates,
        )
    return heads


def _seal(conn: sa.Connection, heads: dict[int, tuple[int, str]]) -> None:
    import json
    from datetime import UTC, datetime

    for account_id, (pos, digest) in sorted(heads.items()):
        conn.execute(
            sa.text(
                "INSERT INTO ledger_chains (account_id, last_seq, last_hash) VALUES (:a, :s, :h)"
            ),
            {"a": account_id, "s": pos, "h": digest},
        )
    if heads:
        body = json.dumps(
            [[a, pos, digest] for a, (pos, digest) in sorted(heads.items())], separators=(",", ":")
        )
        created = datetime.now(UTC).isoformat(timespec="microseconds")
        conn.execute(
            sa.text(
                "INSERT INTO ledger_seals (created_at, heads, prev_hash, seal_hash) "
                "VALUES (:c, :b, :p, :h)"
            ),
            {
                "c": created,
                "b": body,
                "p": GENESIS_HASH,
                "h": seal_digest(GENESIS_HASH, created, body),
            },
        )


def _catalog_triggers(create: bool) -> None:
    dialect = op.get_bind().dialect.name
    bump = "UPDATE catalog_state SET generation = generation + 1 WHERE id = 1"
    if dialect == "postgresql":
        if create:
            op.execute(
                "CREATE FUNCTION catalog_bump() RETURNS trigger LANGUAGE plpgsql AS $$ "
                f"BEGIN {bump}; RETURN NULL; END $$"
            )
        for table in CATALOG_TABLES:
            op.execute(
                f"CREATE TRIGGER catalog_bump AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON "
                f"{table} FOR EACH STATEMENT EXECUTE FUNCTION catalog_bump()"
                if create
                else f"DROP TRIGGER IF EXISTS catalog_bump ON {table}"
            )
        if not create:
            op.execute("DROP FUNCTION IF EXISTS catalog_bump()")
        return
    for table in CATALOG_TABLES:
        for action in ("INSERT", "UPDATE", "DELETE"):
            name = f"catalog_bump_{table}_{action.lower()}"
            op.execute(
                f"CREATE TRIGGER {name} AFTER {action} ON {table} BEGIN {bump}; END"
                if create
                else f"DROP TRIGGER IF EXISTS {name}"
            )


def upgrade() -> None:
    conn = op.get_bind()
    dialect = conn.dialect.name
    op.create_table(
        "login_attempts",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("client", sa.String(64), nullable=False),
        sa.Column("attempted_at", sa.Float(), nullable=False),
    )
    op.create_index(
        "ix_login_attempts_pair", "login_attempts", ["username", "client", "attempted_at"]
    )
    op.create_index("ix_login_attempts_client", "login_attempts", ["client", "attempted_at"])
    op.create_index("ix_login_attempts_time", "login_attempts", ["attempted_at"])
    op.create_table(
        "catalog_state",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("id = 1", name="ck_catalog_state_single"),
    )
    op.execute("INSERT INTO catalog_state (id, generation) VALUES (1, 0)")
    _catalog_triggers(create=True)

    op.create_table(
        "ledger_chains",
        sa.Column("account_id", ID, sa.ForeignKey("accounts.id"), primary_key=True),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_hash", sa.String(64), nullable=False),
    )
    op.create_table(
        "ledger_seals",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("heads", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("seal_hash", sa.String(64), nullable=False, unique=True),
    )
    rows = _rows(conn)
    _check_legacy_chain(conn, rows)
    _append_only(on=False)
    op.add_column("ledger_entries", sa.Column("chain_id", ID, nullable=True))
    op.add_column("ledger_entries", sa.Column("chain_seq", sa.BigInteger(), nullable=True))
    heads = _rechain(conn, rows)
    with op.batch_alter_table("ledger_entries") as batch:
        batch.alter_column("chain_id", existing_type=ID, nullable=False)
        batch.alter_column("chain_seq", existing_type=sa.BigInteger(), nullable=False)
        batch.create_unique_constraint("uq_ledger_chain_position", ["chain_id", "chain_seq"])
        batch.create_foreign_key("fk_ledger_entries_chain", "accounts", ["chain_id"], ["id"])
    if dialect == "postgresql":
        op.execute("CREATE SEQUENCE ledger_entries_seq_seq OWNED BY ledger_entries.seq")
        op.execute(
            "SELECT setval('ledger_entries_seq_seq', COALESCE(MAX(seq), 0) + 1, false) "
            "FROM ledger_entries"
        )
        op.execute(
            "ALTER TABLE ledger_entries ALTER COLUMN seq "
            "SET DEFAULT nextval('ledger_entries_seq_seq')"
        )
    _append_only(on=True)
    _seal(conn, heads)
    op.drop_table("ledger_head")


def downgrade() -> None:
    conn = op.get_bind()
    dialect = conn.dialect.name
    op.create_table(
        "ledger_head",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_hash", sa.String(64), nullable=False),
        sa.CheckConstraint("id = 1", name="ck_ledger_head_single"),
    )
    rows = _rows(conn)
    _append_only(on=False)
    if dialect == "postgresql":
        op.execute("ALTER TABLE ledger_entries ALTER COLUMN seq DROP DEFAULT")
        op.execute("DROP SEQUENCE IF EXISTS ledger_entries_seq_seq")
    # back to one chain by seq, renumbered 1..n in the order rows were appended
    prev, updates = GENESIS_HASH, []
    for n, r in enumerate(rows, start=1):
        if r.seq != n:
            raise RuntimeError("the ledger has gaps in seq; it cannot be downgraded")
        digest = _legacy_digest(prev, r)
        updates.append({"s": r.seq, "ph": prev, "rh": digest})
        prev = digest
    if updates:
        conn.execute(
            sa.text("UPDATE ledger_entries SET prev_hash = :ph, row_hash = :rh WHERE seq = :s"),
            updates,
        )
    with op.batch_alter_table("ledger_entries") as batch:
        if dialect == "postgresql":
            batch.drop_constraint("fk_ledger_entries_chain", type_="foreignkey")
        batch.drop_constraint("uq_ledger_chain_position", type_="unique")
        batch.drop_column("chain_seq")
        batch.drop_column("chain_id")
    _append_only(on=True)
    op.execute(
        sa.text("INSERT INTO ledger_head (id, last_seq, last_hash) VALUES (1, :s, :h)").bindparams(
            s=len(rows), h=prev
        )
    )
    op.drop_table("ledger_seals")
    op.drop_table("ledger_chains")
    _catalog_triggers(create=False)
    op.drop_table("catalog_state")
    op.drop_table("login_attempts")
