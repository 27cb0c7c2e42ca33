"""Initial market schema: accounts, products, versions, files, orders, grants, ledger.

Besides the tables of :mod:`databazaar.market.models` this revision creates

* the full-text index: an FTS5 table ``search_fts`` kept in sync with ``search_docs`` by
  triggers on SQLite, a GIN expression index over ``to_tsvector('english', ...)`` on
  PostgreSQL;
* append-only guards: triggers refusing ``UPDATE`` and ``DELETE`` on ``ledger_entries``;
* the seed rows: the ledger head (``seq = 0``, genesis hash) and the two system
  accounts ``@market-fee`` (collects fees) and ``@funding`` (source of deposits).

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)
GENESIS_HASH = "0" * 64
PG_TSVECTOR = "to_tsvector('english', title || ' ' || body)"


def _id() -> sa.Column:
    return sa.Column("id", ID, primary_key=True, autoincrement=True)


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.create_table(
        "accounts",
        _id(),
        sa.Column("username", sa.String(64), nullable=False, unique=True),
        sa.Column(
            "role",
            sa.Enum("seller", "buyer", "admin", "system", name="account_role", native_enum=False),
            nullable=False,
        ),
        sa.Column("password_hash", sa.String(255)),
        sa.Column("balance_minor", sa.BigInteger(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.CheckConstraint(
            "balance_minor >= 0 OR role = 'system'", name="ck_accounts_balance_nonneg"
        ),
    )
    op.create_table(
        "blobs",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("media_type", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "ledger_head",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_hash", sa.String(64), nullable=False),
        sa.CheckConstraint("id = 1", name="ck_ledger_head_single"),
    )
    op.create_table(
        "api_tokens",
        _id(),
        sa.Column(
            "account_id", ID, sa.ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("lookup", sa.String(32), nullable=False, unique=True),
        sa.Column("token_hash", sa.String(255), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS),
        sa.Column("revoked", sa.Boolean(), nullable=False),
    )
    op.create_table(
        "ledger_entries",
        sa.Column("seq", ID, primary_key=True, autoincrement=False),
        sa.Column("txn_id", sa.String(36), nullable=False),
        sa.Column("account_id", ID, sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("memo", sa.String(200), nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("row_hash", sa.String(64), nullable=False, unique=True),
    )
    op.create_index("ix_ledger_entries_account_id", "ledger_entries", ["account_id"])
    op.create_index("ix_ledger_entries_txn_id", "ledger_entries", ["txn_id"])
    op.create_table(
        "orders",
        _id(),
        sa.Column("buyer_id", ID, sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("idempotency_key", sa.String(128), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("total_minor", sa.BigInteger(), nullable=False),
        sa.Column("fee_minor", sa.BigInteger(), nullable=False),
        sa.Column("txn_id", sa.String(36), nullable=False, unique=True),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("buyer_id", "idempotency_key", name="uq_orders_idempotency"),
    )
    op.create_index("ix_orders_buyer_id", "orders", ["buyer_id"])
    op.create_index("ix_orders_created", "orders", ["created_at"])
    op.create_table(
        "products",
        _id(),
        sa.Column("slug", sa.String(64), nullable=False, unique=True),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("seller_id", ID, sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_products_seller_id", "products", ["seller_id"])
    op.create_table(
        "grants",
        _id(),
        sa.Column("account_id", ID, sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column(
            "product_id", ID, sa.ForeignKey("products.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("order_id", ID, sa.ForeignKey("orders.id")),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("account_id", "product_id", name="uq_grants_pair"),
    )
    op.create_index("ix_grants_account_id", "grants", ["account_id"])
    op.create_index("ix_grants_product", "grants", ["product_id"])
    op.create_table(
        "listings",
        _id(),
        sa.Column(
            "product_id",
            ID,
            sa.ForeignKey("products.id", ondelete="CASCADE"),
            nullable=False,
            unique=True,
        ),
        sa.Column("price_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.CheckConstraint("price_minor >= 0", name="ck_listings_price_nonneg"),
    )
    op.create_table(
        "product_versions",
        _id(),
        sa.Column(
            "product_id", ID, sa.ForeignKey("products.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column(
            "status",
            sa.Enum("draft", "published", name="version_status", native_enum=False),
            nullable=False,
        ),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("license", sa.String(64), nullable=False),
        sa.Column("task", sa.String(64), nullable=False),
        sa.Column("provenance", sa.Text(), nullable=False),
        sa.Column("filename", sa.String(200), nullable=False),
        sa.Column("file_format", sa.String(16), nullable=False),
        sa.Column("blob_sha256", sa.String(64), sa.ForeignKey("blobs.sha256"), nullable=False),
        sa.Column("n_rows", sa.BigInteger(), nullable=False),
        sa.Column("n_columns", sa.Integer(), nullable=False),
        sa.Column("schema", sa.JSON(), nullable=False),
        sa.Column("stats", sa.JSON(), nullable=False),
        sa.Column("preview", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("published_at", TS),
        sa.UniqueConstraint("product_id", "number", name="uq_version_number"),
    )
    op.create_table(
        "card_embeddings",
        sa.Column(
            "version_id",
            ID,
            sa.ForeignKey("product_versions.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
    )
    op.create_table(
        "order_items",
        _id(),
        sa.Column("order_id", ID, sa.ForeignKey("orders.id", ondelete="CASCADE"), nullable=False),
        sa.Column("product_id", ID, sa.ForeignKey("products.id"), nullable=False),
        sa.Column("version_id", ID, sa.ForeignKey("product_versions.id"), nullable=False),
        sa.Column("seller_id", ID, sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("price_minor", sa.BigInteger(), nullable=False),
        sa.Column("fee_minor", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_order_items_order_id", "order_items", ["order_id"])
    op.create_table(
        "search_docs",
        sa.Column(
            "version_id",
            ID,
            sa.ForeignKey("product_versions.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "product_id", ID, sa.ForeignKey("products.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
    )
    op.create_table(
        "version_tags",
        sa.Column(
            "version_id",
            ID,
            sa.ForeignKey("product_versions.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("tag", sa.String(40), primary_key=True),
    )
    op.create_index("ix_version_tags_tag", "version_tags", ["tag"])

    if dialect == "sqlite":
        op.execute(
            "CREATE VIRTUAL TABLE search_fts USING fts5("
            "title, body, content='search_docs', content_rowid='version_id', "
            "tokenize='porter unicode61')"
        )
        op.execute(
            "CREATE TRIGGER search_docs_ai AFTER INSERT ON search_docs BEGIN "
            "INSERT INTO search_fts(rowid, title, body) "
            "VALUES (new.version_id, new.title, new.body); END"
        )
        op.execute(
            "CREATE TRIGGER search_docs_ad AFTER DELETE ON search_docs BEGIN "
            "INSERT INTO search_fts(search_fts, rowid, title, body) "
            "VALUES ('delete', old.version_id, old.title, old.body); END"
        )
        op.execute(
            "CREATE TRIGGER search_docs_au AFTER UPDATE ON search_docs BEGIN "
            "INSERT INTO search_fts(search_fts, rowid, title, body) "
            "VALUES ('delete', old.version_id, old.title, old.body); "
            "INSERT INTO search_fts(rowid, title, body) "
            "VALUES (new.version_id, new.title, new.body); END"
        )
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER ledger_no_{action.lower()} BEFORE {action} ON ledger_entries "
                "BEGIN SELECT RAISE(ABORT, 'ledger_entries is append-only'); END"
            )
    elif dialect == "postgresql":
        op.execute(f"CREATE INDEX ix_search_docs_fts ON search_docs USING GIN ({PG_TSVECTOR})")
        op.execute(
            "CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION 'ledger_entries is append-only'; END $$"
        )
        op.execute(
            "CREATE TRIGGER ledger_append_only BEFORE UPDATE OR DELETE ON ledger_entries "
            "FOR EACH ROW EXECUTE FUNCTION ledger_append_only()"
        )

    now = datetime.now(UTC)
    ledger_head = sa.table(
        "ledger_head",
        sa.column("id", sa.Integer()),
        sa.column("last_seq", sa.BigInteger()),
        sa.column("last_hash", sa.String()),
    )
    op.bulk_insert(ledger_head, [{"id": 1, "last_seq": 0, "last_hash": GENESIS_HASH}])
    accounts = sa.table(
        "accounts",
        sa.column("username", sa.String()),
        sa.column("role", sa.String()),
        sa.column("password_hash", sa.String()),
        sa.column("balance_minor", sa.BigInteger()),
        sa.column("created_at", TS),
    )
    op.bulk_insert(
        accounts,
        [
            {
                "username": name,
                "role": "system",
                "password_hash": None,
                "balance_minor": 0,
                "created_at": now,
            }
            for name in ("@market-fee", "@funding")
        ],
    )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        op.execute("DROP TABLE IF EXISTS search_fts")
    for table in (
        "version_tags",
        "search_docs",
        "order_items",
        "card_embeddings",
        "product_versions",
        "listings",
        "grants",
        "products",
        "orders",
        "ledger_entries",
        "api_tokens",
        "ledger_head",
        "blobs",
        "accounts",
    ):
        op.drop_table(table)
    if dialect == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS ledger_append_only()")
