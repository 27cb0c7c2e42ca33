"""SQLAlchemy 2 typed models of the market store.

Tables
------
``accounts``          people and system accounts, with a role and a cached balance
``api_tokens``        hashed bearer tokens (argon2); the clear token is shown once
``products``          a data product owned by one seller, identified by a slug
``product_versions``  immutable-once-published versions: card, schema, stats, preview, file
``version_tags``      tags of a version (one row per tag, for filtering)
``blobs``             content-addressed files (sha256) stored under the data home
``listings``          the price of a product on the market (integer minor units)
``orders``            purchases, with the buyer's idempotency key
``order_items``       one row per product bought in an order (seller, price, fee)
``grants``            which account may download which product
``ledger_entries``    append-only double-entry ledger, each row hash-chained in its
                      transaction's chain (one chain per paying account)
``ledger_chains``     the head (last position and hash) of each account's chain
``ledger_seals``      the global chain: each seal hashes every chain head at one moment
``ledger_pending_credits``  sale credits booked on the ledger, not yet folded into the
                      credited account's cached balance (see :mod:`~databazaar.market.balances`)
``login_attempts``    recent login attempts per (username, client address): the throttle
``catalog_state``     one row whose ``generation`` triggers bump on every catalog change
``search_docs``       the text of each published version indexed for full-text search
``card_embeddings``   MiniLM embeddings of published cards for semantic search
``gate_policies``     versions of the market's risk-screening policy (append-only)
``screenings``        the risk screening of a version at publish time, and its review
``gate_audit``        who changed the policy or reviewed a product, when, old and new
                      (append-only; see :mod:`databazaar.market.gatekeeping`)

Money is always an ``int`` count of minor units (cents); there is no float column for
money anywhere.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# BigInteger ids on PostgreSQL, plain INTEGER on SQLite (so rowid aliasing works).
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base of every market table."""

    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[Any]: JSON}


class Role(enum.StrEnum):
    """What an account may do: sell products, buy them, administer the market.

    ``system`` accounts hold the market fee and the funding source of deposits; they are
    not people and cannot log in.
    """

    seller = "seller"
    buyer = "buyer"
    admin = "admin"
    system = "system"


class VersionStatus(enum.StrEnum):
    """A version is editable while ``draft`` and frozen once it leaves that state.

    With the listing gate on (:mod:`databazaar.market.gate`), publishing screens the
    version first: it becomes ``published`` when the policy allows it, ``held`` while it
    waits for an admin's review, and ``rejected`` when the policy blocks it or an admin
    rejects it.  Only ``published`` versions are listed, bought or downloaded by others.
    """

    draft = "draft"
    held = "held"
    rejected = "rejected"
    published = "published"


class Account(Base):
    """A market participant (or a system account) with a balance in minor units."""

    __tablename__ = "accounts"
    __table_args__ = (
        CheckConstraint("balance_minor >= 0 OR role = 'system'", name="ck_accounts_balance_nonneg"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[Role] = mapped_column(Enum(Role, name="account_role", native_enum=False))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    balance_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    tokens: Mapped[list[ApiToken]] = relationship(back_populates="account")


class ApiToken(Base):
    """A bearer token; only its argon2 hash is stored, looked up by a public prefix."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    lookup: Mapped[str] = mapped_column(String(32), unique=True)
    token_hash: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(64), default="login")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)

    account: Mapped[Account] = relationship(back_populates="tokens")


class Blob(Base):
    """A file stored once under ``<home>/blobs/<sha[:2]>/<sha>``, named by its sha256."""

    __tablename__ = "blobs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    media_type: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Product(Base):
    """A data product: a slug owned by one seller, with versions and a listing."""

    __tablename__ = "products"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    seller_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    seller: Mapped[Account] = relationship()
    versions: Mapped[list[ProductVersion]] = relationship(
        back_populates="product", order_by="ProductVersion.number"
    )
    listing: Mapped[Listing | None] = relationship(back_populates="product", uselist=False)


class ProductVersion(Base):
    """One version of a product: its card, inferred schema/stats/preview and file."""

    __tablename__ = "product_versions"
    __table_args__ = (UniqueConstraint("product_id", "number", name="uq_version_number"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    status: Mapped[VersionStatus] = mapped_column(
        Enum(VersionStatus, name="version_status", native_enum=False),
        default=VersionStatus.draft,
    )
    description: Mapped[str] = mapped_column(Text, default="")
    license: Mapped[str] = mapped_column(String(64))
    task: Mapped[str] = mapped_column(String(64))
    provenance: Mapped[str] = mapped_column(Text, default="")
    filename: Mapped[str] = mapped_column(String(200))
    file_format: Mapped[str] = mapped_column(String(16))
    blob_sha256: Mapped[str] = mapped_column(ForeignKey("blobs.sha256"))
    n_rows: Mapped[int] = mapped_column(BigInteger)
    n_columns: Mapped[int] = mapped_column(Integer)
    schema: Mapped[list[Any]] = mapped_column(JSON)
    stats: Mapped[dict[str, Any]] = mapped_column(JSON)
    preview: Mapped[list[Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    product: Mapped[Product] = relationship(back_populates="versions")
    blob: Mapped[Blob] = relationship()
    tag_rows: Mapped[list[VersionTag]] = relationship(
        cascade="all, delete-orphan", order_by="VersionTag.tag"
    )
    screening: Mapped[Screening | None] = relationship(
        back_populates="version", uselist=False, lazy="selectin"
    )

    @property
    def tags(self) -> list[str]:
        """The version's tags, sorted."""
        return [t.tag for t in self.tag_rows]


class VersionTag(Base):
    """A tag on a product version."""

    __tablename__ = "version_tags"

    version_id: Mapped[int] = mapped_column(
        ForeignKey("product_versions.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(40), primary_key=True, index=True)


class Listing(Base):
    """A product offered on the market at a price in minor units."""

    __tablename__ = "listings"
    __table_args__ = (CheckConstraint("price_minor >= 0", name="ck_listings_price_nonneg"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    product_id: Mapped[int] = mapped_column(
        ForeignKey("products.id", ondelete="CASCADE"), unique=True
    )
    price_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    product: Mapped[Product] = relationship(back_populates="listing")


class Order(Base):
    """A completed purchase of one or more products by one buyer.

    ``(buyer_id, idempotency_key)`` is unique: replaying a key returns the first order.
    ``request_hash`` fingerprints what was asked so a reused key with a different basket
    is refused instead of silently answered with the wrong order.
    """

    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint("buyer_id", "idempotency_key", name="uq_orders_idempotency"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # looked up through uq_orders_idempotency (buyer_id first): no index of its own
    buyer_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    idempotency_key: Mapped[str] = mapped_column(String(128))
    request_hash: Mapped[str] = mapped_column(String(64))
    total_minor: Mapped[int] = mapped_column(BigInteger)
    fee_minor: Mapped[int] = mapped_column(BigInteger)
    txn_id: Mapped[str] = mapped_column(String(36), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    items: Mapped[list[OrderItem]] = relationship(
        back_populates="order", order_by="OrderItem.id", cascade="all, delete-orphan"
    )


class OrderItem(Base):
    """One product in an order: the version bought, its seller, price and fee."""

    __tablename__ = "order_items"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    version_id: Mapped[int] = mapped_column(ForeignKey("product_versions.id"))
    seller_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    price_minor: Mapped[int] = mapped_column(BigInteger)
    fee_minor: Mapped[int] = mapped_column(BigInteger)

    order: Mapped[Order] = relationship(back_populates="items")
    product: Mapped[Product] = relationship()


class Grant(Base):
    """Permission for an account to download a product (all its published versions)."""

    __tablename__ = "grants"
    __table_args__ = (UniqueConstraint("account_id", "product_id", name="uq_grants_pair"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # looked up through uq_grants_pair (account_id first): no index of its own
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"))
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LedgerEntry(Base):
    """One posting of the double-entry ledger.

    A transaction (``txn_id``) is a group of postings whose ``amount_minor`` sum to zero;
    a positive amount credits the account, a negative one debits it.  All postings of
    one transaction belong to one *chain*, that of its paying account (``chain_id``), at
    consecutive positions ``chain_seq = 1, 2, 3, ...``; ``row_hash = sha256(prev_hash |
    canonical row)`` links each row to the one before it in its chain, so editing,
    deleting or reordering a row breaks that chain at that row.  ``seq`` is the row's
    global number (an identity: it names rows, it is not part of any chain).
    """

    __tablename__ = "ledger_entries"
    __table_args__ = (UniqueConstraint("chain_id", "chain_seq", name="uq_ledger_chain_position"),)

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    txn_id: Mapped[str] = mapped_column(String(36), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(16))
    memo: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[str] = mapped_column(String(32))
    chain_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    chain_seq: Mapped[int] = mapped_column(BigInteger)
    prev_hash: Mapped[str] = mapped_column(String(64))
    row_hash: Mapped[str] = mapped_column(String(64), unique=True)


class LedgerChain(Base):
    """The head of one account's chain: its last position and row hash.

    Appending a transaction locks only the head of its payer's chain, so purchases by
    different buyers do not wait for one another; the head also lets
    :func:`databazaar.market.ledger_verify.verify` detect a truncated chain.
    """

    __tablename__ = "ledger_chains"

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    last_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    last_hash: Mapped[str] = mapped_column(String(64))


class LedgerSeal(Base):
    """One link of the global chain: every chain head at one moment, hashed.

    ``seal_hash = sha256(prev_hash | created_at | heads)`` where ``heads`` is the JSON list
    ``[[account_id, last_seq, last_hash], ...]`` sorted by account.  A later truncation
    or rewrite of any sealed chain position is then detectable even if the attacker
    also rewrites the chain heads.
    """

    __tablename__ = "ledger_seals"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    created_at: Mapped[str] = mapped_column(String(32))
    heads: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True)
    seal_hash: Mapped[str] = mapped_column(String(64), unique=True)


class PendingCredit(Base):
    """A credit booked on the ledger (transaction ``txn_id``) but not yet added to the
    account's cached ``balance_minor``: the account's balance is the cached one plus its
    pending credits, and :func:`databazaar.market.balances.fold` moves them in.

    Sales credit the fee account and the seller this way, so concurrent purchases append
    rows instead of queueing on those accounts' rows.
    """

    __tablename__ = "ledger_pending_credits"
    __table_args__ = (CheckConstraint("amount_minor > 0", name="ck_pending_credit_positive"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    txn_id: Mapped[str] = mapped_column(String(36))


class LoginAttempt(Base):
    """A login attempt not yet cleared by a success (see :mod:`databazaar.market.throttle`)."""

    __tablename__ = "login_attempts"
    __table_args__ = (
        Index("ix_login_attempts_pair", "username", "client", "attempted_at"),
        Index("ix_login_attempts_client", "client", "attempted_at"),
        Index("ix_login_attempts_time", "attempted_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64))
    client: Mapped[str] = mapped_column(String(64))
    attempted_at: Mapped[float] = mapped_column(Float)


class CatalogState(Base):
    """The single row whose ``generation`` database triggers bump whenever a product,
    version, tag or listing changes: the validator of cached catalog responses."""

    __tablename__ = "catalog_state"
    __table_args__ = (CheckConstraint("id = 1", name="ck_catalog_state_single"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    generation: Mapped[int] = mapped_column(BigInteger, default=0)


class SearchDoc(Base):
    """Searchable text of a published version (mirrored into FTS5 on SQLite)."""

    __tablename__ = "search_docs"

    version_id: Mapped[int] = mapped_column(
        ForeignKey("product_versions.id", ondelete="CASCADE"), primary_key=True
    )
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)


class CardEmbedding(Base):
    """A float32 MiniLM embedding (L2-normalised) of a published card."""

    __tablename__ = "card_embeddings"

    version_id: Mapped[int] = mapped_column(
        ForeignKey("product_versions.id", ondelete="CASCADE"), primary_key=True
    )
    model: Mapped[str] = mapped_column(String(100))
    dim: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(LargeBinary)


class GatePolicy(Base):
    """One version of the market's screening policy (a new row per change).

    ``rules`` maps level-2 category ids of the AIR 2024 taxonomy to ``allow``,
    ``review`` or ``block``; categories without a rule take ``default_action``.  A
    category fires when the card, or at least ``min_rows`` sampled rows, are flagged in
    it with risk >= ``threshold`` (and at least ``min_share`` of the rows screened).
    """

    __tablename__ = "gate_policies"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    default_action: Mapped[str] = mapped_column(String(8))
    rules: Mapped[dict[str, Any]] = mapped_column(JSON)
    threshold: Mapped[float] = mapped_column(Float)
    min_rows: Mapped[int] = mapped_column(Integer)
    min_share: Mapped[float] = mapped_column(Float)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    note: Mapped[str] = mapped_column(String(500), default="")


class Screening(Base):
    """The screening of one version at publish time, the policy's decision and its review.

    ``state`` is ``cleared`` (allowed at publish), ``held`` (waiting for review),
    ``blocked`` (the policy blocks it), ``approved`` or ``rejected`` (by an admin).
    ``findings`` lists, per level-2 category with flagged text, the rows flagged, the
    largest risk, the action the policy gave it and the offending snippets.
    """

    __tablename__ = "screenings"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    version_id: Mapped[int] = mapped_column(
        ForeignKey("product_versions.id", ondelete="CASCADE"), unique=True
    )
    product_id: Mapped[int] = mapped_column(
        ForeignKey("products.id", ondelete="CASCADE"), index=True
    )
    policy_version: Mapped[int] = mapped_column(ForeignKey("gate_policies.version"))
    decision: Mapped[str] = mapped_column(String(8))
    state: Mapped[str] = mapped_column(String(10), index=True)
    max_risk: Mapped[float] = mapped_column(Float)
    findings: Mapped[list[Any]] = mapped_column(JSON)
    sample: Mapped[dict[str, Any]] = mapped_column(JSON)
    model: Mapped[str] = mapped_column(String(100))
    seconds: Mapped[float] = mapped_column(Float)
    screened_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    reviewed_by: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    reviewed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    review_note: Mapped[str] = mapped_column(String(500), default="")

    version: Mapped[ProductVersion] = relationship(back_populates="screening")
    reviewer: Mapped[Account | None] = relationship(foreign_keys=[reviewed_by], lazy="selectin")


class GateAudit(Base):
    """One audited change: a policy edit or a review decision (append-only).

    ``old`` and ``new`` are the policy (or the screening state) before and after.
    """

    __tablename__ = "gate_audit"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    action: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(100))
    policy_version: Mapped[int] = mapped_column(Integer)
    old: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    new: Mapped[dict[str, Any]] = mapped_column(JSON)
    note: Mapped[str] = mapped_column(String(500), default="")

    actor: Mapped[Account | None] = relationship(lazy="selectin")


Index("ix_orders_created", Order.created_at)
Index("ix_grants_product", Grant.product_id)
