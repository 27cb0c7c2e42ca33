"""The market service: one object that owns the store and does every market action.

:class:`Market` ties together the database (:mod:`databazaar.market.db`), the
content-addressed file store, the ledger, access control and search.  Each public method
is one unit of work in its own database transaction, validates its input first, and
returns plain pydantic views (:mod:`databazaar.market.schemas`).  Anything a caller gets
wrong raises an error of :mod:`databazaar.core.errors` and leaves the store unchanged.

Purchases (:meth:`Market.purchase`) follow the survey's transaction model: in one
database transaction the buyer is debited the listed prices, each seller is credited its
price minus the market fee (``fee = price * fee_bps // 10000``, rounded down so sellers
never get less than their share), the fee account is credited the fees, and the buyer is
granted access to every product bought.  The buyer's idempotency key makes a replay of
the same request return the first order without moving money again.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from sqlalchemy import and_, func, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, defer, selectinload

from databazaar.core.config import Settings
from databazaar.core.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    PaymentError,
    Unauthorized,
)
from databazaar.market import access, ledger, search
from databazaar.market import validation as v
from databazaar.market.db import Database
from databazaar.market.models import (
    Account,
    ApiToken,
    Blob,
    CardEmbedding,
    Grant,
    Listing,
    Order,
    OrderItem,
    Product,
    ProductVersion,
    Role,
    SearchDoc,
    VersionStatus,
    VersionTag,
)
from databazaar.market.profile import MEDIA_TYPES, format_for, profile_table, read_upload
from databazaar.market.schemas import (
    AccountOut,
    ColumnOut,
    DepositOut,
    DownloadLinkOut,
    LedgerReportOut,
    ListingOut,
    OrderItemOut,
    OrderOut,
    ProductOut,
    SearchHit,
    SearchResults,
    TokenOut,
    VersionOut,
)
from databazaar.market.storage import BlobStore

FEE_ACCOUNT = "@market-fee"
FUNDING_ACCOUNT = "@funding"
MAX_BASKET = 50
MAX_PAGE = 100
DEFAULT_TOKEN_TTL = timedelta(days=30)
PURCHASE_RETRIES = 5


def _utc(dt: datetime | None) -> datetime | None:
    if dt is not None and dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt


class Market:
    """The data market over one database and one data home.

    Parameters
    ----------
    db:
        The :class:`Database` (already migrated with :func:`databazaar.market.db.upgrade`).
    home:
        The data home; files live in ``home/blobs``.
    secret_key:
        Key for download-link signatures (kept in ``home/secret_key`` if not given).
    fee_bps:
        Market fee in basis points of each item's price.
    max_upload_bytes:
        Largest accepted upload.
    embedder:
        Optional sentence encoder for semantic search; by default MiniLM is loaded the
        first time a semantic search runs.
    password_hasher:
        An ``argon2.PasswordHasher`` with other cost parameters (default: argon2-cffi's
        RFC 9106 low-memory profile).
    """

    def __init__(
        self,
        db: Database,
        home: Path,
        *,
        secret_key: str | None = None,
        fee_bps: int = 500,
        max_upload_bytes: int = 50 * 1024 * 1024,
        embedder: Any | None = None,
        password_hasher: Any | None = None,
        login_throttle: access.LoginThrottle | None = None,
    ) -> None:
        if not (0 <= fee_bps <= 10_000):
            raise InvalidInput("fee_bps must be between 0 and 10000")
        self.db = db
        self.home = Path(home)
        self.blobs = BlobStore(self.home / "blobs")
        self.signer = access.LinkSigner(access.load_secret_key(self.home, secret_key))
        self.fee_bps = fee_bps
        self.max_upload_bytes = max_upload_bytes
        self._embedder = embedder
        self._password_hasher = password_hasher
        self._embedder_lock = threading.Lock()
        self.login_throttle = login_throttle or access.LoginThrottle()

    @classmethod
    def from_settings(cls, settings: Settings, *, migrate: bool = True, **kwargs: Any) -> Market:
        """Open the market described by ``settings`` (migrating the store first)."""
        from databazaar.market.db import upgrade

        db = Database.from_url(settings.resolved_database_url)
        if migrate:
            upgrade(db.engine)
        if "login_throttle" not in kwargs:
            kwargs["login_throttle"] = access.LoginThrottle(
                settings.login_max_failures, settings.login_window_seconds
            )
        return cls(
            db,
            settings.home,
            secret_key=settings.secret_key,
            fee_bps=settings.market_fee_bps,
            max_upload_bytes=settings.max_upload_bytes,
            **kwargs,
        )

    # ------------------------------------------------------------------ accounts
    @staticmethod
    def _account_out(acc: Account) -> AccountOut:
        return AccountOut(
            id=acc.id,
            username=acc.username,
            role=acc.role.value,
            balance_minor=acc.balance_minor,
            created_at=_utc(acc.created_at) or datetime.now(UTC),
        )

    def create_account(self, username: str, password: str, role: str | Role) -> AccountOut:
        """Register an account with a password and a role (``seller``, ``buyer``, ``admin``)."""
        username = v.check_username(username)
        try:
            role = Role(role)
        except ValueError:
            raise InvalidInput(
                f"unknown role {role!r}", hint="use seller, buyer or admin"
            ) from None
        if role == Role.system:
            raise InvalidInput("system accounts cannot be created", hint="use seller or buyer")
        pw_hash = access.hash_password(password, self._password_hasher)
        try:
            with self.db.write() as s:
                if s.scalar(select(Account.id).where(Account.username == username)) is not None:
                    raise Conflict(f"username {username!r} is taken", hint="choose another")
                acc = Account(username=username, role=role, password_hash=pw_hash, balance_minor=0)
                s.add(acc)
                s.flush()
                return self._account_out(acc)
        except IntegrityError:
            raise Conflict(f"username {username!r} is taken", hint="choose another") from None

    def get_account(self, account_id: int) -> AccountOut:
        """An account by id."""
        with self.db.read() as s:
            acc = s.get(Account, account_id)
            if acc is None:
                raise NotFound(f"account {account_id} not found")
            return self._account_out(acc)

    def account_by_name(self, username: str) -> AccountOut:
        """An account by username (system accounts are named ``@market-fee``, ``@funding``)."""
        if not isinstance(username, str) or not (
            v.USERNAME_RE.fullmatch(username) or username in (FEE_ACCOUNT, FUNDING_ACCOUNT)
        ):
            raise NotFound(f"account {username!r} not found")
        with self.db.read() as s:
            acc = s.scalar(select(Account).where(Account.username == username))
            if acc is None:
                raise NotFound(f"account {username!r} not found")
            return self._account_out(acc)

    def login(
        self, username: str, password: str, *, ttl: timedelta | None = DEFAULT_TOKEN_TTL
    ) -> TokenOut:
        """Check a password and issue an API token (the same error for any failure).

        After ``login_throttle.max_failures`` failures for a username within its window,
        further attempts are refused with :class:`TooManyRequests` (HTTP 429) before the
        password is checked.
        """
        acc = None
        self.login_throttle.check(username)
        if isinstance(username, str) and v.USERNAME_RE.fullmatch(username):
            with self.db.read() as s:
                acc = s.scalar(select(Account).where(Account.username == username))
        ok = access.check_password(acc.password_hash if acc is not None else None, password)
        if not ok or acc is None:
            self.login_throttle.failed(username)
            raise Unauthorized("wrong username or password")
        self.login_throttle.succeeded(username)
        return self.issue_token(acc.id, name="login", ttl=ttl)

    def issue_token(
        self, account_id: int, *, name: str = "api", ttl: timedelta | None = DEFAULT_TOKEN_TTL
    ) -> TokenOut:
        """Mint an API token for an account; only its hash is stored."""
        name = v.check_text(name, "token name", max_len=64) or "api"
        new = access.mint_token()
        with self.db.write() as s:
            acc = s.get(Account, account_id)
            if acc is None or acc.role == Role.system:
                raise NotFound(f"account {account_id} not found")
            expires = datetime.now(UTC) + ttl if ttl is not None else None
            s.add(
                ApiToken(
                    account_id=acc.id,
                    lookup=new.lookup,
                    token_hash=new.token_hash,
                    name=name,
                    expires_at=expires,
                )
            )
            return TokenOut(token=new.token, account=self._account_out(acc))

    def authenticate(self, token: str) -> AccountOut:
        """The account an API token belongs to; :class:`Unauthorized` if invalid."""
        lookup, secret = access.split_token(token)
        with self.db.read() as s:
            row = s.scalar(select(ApiToken).where(ApiToken.lookup == lookup))
            if row is None or row.revoked or not access.check_token_secret(row.token_hash, secret):
                raise Unauthorized("invalid API token", hint="log in again")
            expires = _utc(row.expires_at)
            if expires is not None and expires <= datetime.now(UTC):
                raise Unauthorized("API token has expired", hint="log in again")
            return self._account_out(s.get_one(Account, row.account_id))

    def revoke_token(self, token: str) -> None:
        """Revoke a token (logging out)."""
        lookup, _ = access.split_token(token)
        self.authenticate(token)
        with self.db.write() as s:
            row = s.scalar(select(ApiToken).where(ApiToken.lookup == lookup))
            if row is not None:
                row.revoked = True

    def _system_account(self, s: Session, username: str) -> Account:
        acc = s.scalar(select(Account).where(Account.username == username))
        if acc is None:
            raise InvalidInput("market system accounts missing", hint="run databazaar db upgrade")
        return acc

    def deposit(self, account_id: int, amount_minor: int, *, memo: str = "deposit") -> DepositOut:
        """Credit an account from the funding account (an admin action; ledger-booked)."""
        amount = v.check_amount(amount_minor)
        memo = v.check_text(memo, "memo", max_len=200)
        with self.db.write() as s:
            acc = s.get(Account, account_id)
            if acc is None or acc.role == Role.system:
                raise NotFound(f"account {account_id} not found")
            funding = self._system_account(s, FUNDING_ACCOUNT)
            txn = ledger.post(
                s,
                [
                    ledger.Posting(funding.id, -amount, "deposit", memo),
                    ledger.Posting(acc.id, amount, "deposit", memo),
                ],
            )
            s.refresh(acc)
            return DepositOut(txn_id=txn, account=self._account_out(acc))

    def withdraw(self, account_id: int, amount_minor: int, *, memo: str = "payout") -> DepositOut:
        """Pay an account's money out to the funding account (refused beyond its balance)."""
        amount = v.check_amount(amount_minor)
        memo = v.check_text(memo, "memo", max_len=200)
        with self.db.write() as s:
            ledger.lock_head(s)
            acc = s.get(Account, account_id, with_for_update=True)
            if acc is None or acc.role == Role.system:
                raise NotFound(f"account {account_id} not found")
            s.refresh(acc)
            if acc.balance_minor < amount:
                raise PaymentError(f"balance {acc.balance_minor} is less than the payout {amount}")
            funding = self._system_account(s, FUNDING_ACCOUNT)
            txn = ledger.post(
                s,
                [
                    ledger.Posting(acc.id, -amount, "payout", memo),
                    ledger.Posting(funding.id, amount, "payout", memo),
                ],
            )
            s.refresh(acc)
            return DepositOut(txn_id=txn, account=self._account_out(acc))

    # ------------------------------------------------------------------ products
    def _version_out(self, ver: ProductVersion) -> VersionOut:
        return VersionOut(
            number=ver.number,
            status=ver.status.value,
            description=ver.description,
            license=ver.license,
            task=ver.task,
            provenance=ver.provenance,
            tags=ver.tags,
            filename=ver.filename,
            file_format=ver.file_format,
            sha256=ver.blob_sha256,
            size_bytes=ver.blob.size_bytes,
            n_rows=ver.n_rows,
            n_columns=ver.n_columns,
            columns=[ColumnOut(**c) for c in ver.schema],
            stats=ver.stats,
            preview=ver.preview,
            created_at=_utc(ver.created_at) or datetime.now(UTC),
            published_at=_utc(ver.published_at),
        )

    def _product_out(self, prod: Product, *, include_drafts: bool) -> ProductOut:
        versions = [
            ver for ver in prod.versions if include_drafts or ver.status == VersionStatus.published
        ]
        listing = prod.listing
        return ProductOut(
            slug=prod.slug,
            title=prod.title,
            seller=prod.seller.username,
            created_at=_utc(prod.created_at) or datetime.now(UTC),
            listing=ListingOut(
                price_minor=listing.price_minor, currency=listing.currency, active=listing.active
            )
            if listing is not None
            else None,
            latest=self._version_out(versions[-1]) if versions else None,
            versions=[ver.number for ver in versions],
        )

    @staticmethod
    def _load_product(s: Session, slug: str, *, lock: bool = False) -> Product:
        stmt = (
            select(Product)
            .where(Product.slug == slug)
            .options(
                selectinload(Product.versions).selectinload(ProductVersion.tag_rows),
                selectinload(Product.versions).selectinload(ProductVersion.blob),
                selectinload(Product.listing),
                selectinload(Product.seller),
            )
        )
        if lock:
            stmt = stmt.with_for_update(of=Product)
        prod = s.scalar(stmt)
        if prod is None:
            raise NotFound(f"product {slug!r} not found")
        return prod

    @staticmethod
    def _require_owner(prod: Product, account: AccountOut) -> None:
        if account.role != Role.admin.value and prod.seller_id != account.id:
            raise Forbidden(f"product {prod.slug!r} belongs to another seller")

    def create_product(self, account: AccountOut, slug: str, title: str) -> ProductOut:
        """Create an empty product owned by a seller."""
        access.require_role(Role(account.role), {Role.seller}, "create products")
        slug = v.check_slug(slug)
        title = v.check_text(title, "title", max_len=200, required=True)
        try:
            with self.db.write() as s:
                if s.scalar(select(Product.id).where(Product.slug == slug)) is not None:
                    raise Conflict(f"product slug {slug!r} is taken", hint="choose another slug")
                s.add(Product(slug=slug, title=title, seller_id=account.id))
                s.flush()
                return self._product_out(self._load_product(s, slug), include_drafts=True)
        except IntegrityError:
            raise Conflict(f"product slug {slug!r} is taken", hint="choose another slug") from None

    def _card_fields(self, card: dict[str, Any]) -> dict[str, Any]:
        allowed = {"description", "license", "task", "provenance", "tags", "title"}
        unknown = set(card) - allowed
        if unknown:
            raise InvalidInput(
                f"unknown card fields: {', '.join(sorted(unknown))}",
                hint=f"use {', '.join(sorted(allowed))}",
            )
        out: dict[str, Any] = {}
        if "description" in card:
            out["description"] = v.check_text(card["description"], "description", max_len=20_000)
        if "provenance" in card:
            out["provenance"] = v.check_text(card["provenance"], "provenance", max_len=5_000)
        if "license" in card:
            out["license"] = v.check_license(card["license"])
        if "task" in card:
            out["task"] = v.check_task(card["task"])
        if "tags" in card:
            tags = card["tags"]
            if isinstance(tags, str):
                tags = [t.strip() for t in tags.split(",") if t.strip()]
            if not isinstance(tags, list | tuple):
                raise InvalidInput("tags must be a list of strings")
            out["tags"] = v.check_tags(tags)
        if "title" in card:
            out["title"] = v.check_text(card["title"], "title", max_len=200, required=True)
        return out

    def add_version(
        self,
        account: AccountOut,
        slug: str,
        stream: BinaryIO,
        filename: str,
        card: dict[str, Any],
    ) -> VersionOut:
        """Upload a table as a new draft version of a product.

        The file (CSV, Parquet or JSONL, at most ``max_upload_bytes``) is hashed while
        streamed to a staging file, parsed, profiled (schema, statistics, preview) and
        stored under its sha256.  ``card`` must give ``license`` and ``task`` and may give
        ``description``, ``provenance`` and ``tags``.  Nothing is stored if any step fails.
        """
        access.require_role(Role(account.role), {Role.seller}, "upload data")
        slug = v.check_slug(slug)
        filename = v.check_filename(filename)
        fmt = format_for(filename)
        fields = self._card_fields(card)
        fields.pop("title", None)
        for required in ("license", "task"):
            if required not in fields:
                raise InvalidInput(f"the card needs a {required}")
        with self.db.read() as s:  # fail fast before reading a large body
            prod = self._load_product(s, slug)
            self._require_owner(prod, account)
        staged = self.blobs.stage(stream, self.max_upload_bytes)
        try:
            df = read_upload(staged.path, fmt)
            prof = profile_table(df, fmt)
            with self.db.write() as s:
                prod = self._load_product(s, slug, lock=True)
                self._require_owner(prod, account)
                number = (
                    s.scalar(
                        select(func.max(ProductVersion.number)).where(
                            ProductVersion.product_id == prod.id
                        )
                    )
                    or 0
                ) + 1
                if s.get(Blob, staged.sha256) is None:
                    s.add(
                        Blob(
                            sha256=staged.sha256,
                            size_bytes=staged.size_bytes,
                            media_type=MEDIA_TYPES[fmt],
                        )
                    )
                ver = ProductVersion(
                    product_id=prod.id,
                    number=number,
                    status=VersionStatus.draft,
                    description=fields.get("description", ""),
                    license=fields["license"],
                    task=fields["task"],
                    provenance=fields.get("provenance", ""),
                    filename=filename,
                    file_format=fmt,
                    blob_sha256=staged.sha256,
                    n_rows=prof.n_rows,
                    n_columns=prof.n_columns,
                    schema=prof.schema,
                    stats=prof.stats,
                    preview=prof.preview,
                )
                ver.tag_rows = [VersionTag(tag=t) for t in fields.get("tags", [])]
                s.add(ver)
                s.flush()
                # Commit the file inside the transaction: if the move fails, no row is
                # written; a blob without a row is harmless (content-addressed, reused).
                self.blobs.commit(staged)
                s.refresh(ver, ["blob", "tag_rows"])
                return self._version_out(ver)
        finally:
            self.blobs.discard(staged)

    def update_card(
        self, account: AccountOut, slug: str, number: int, card: dict[str, Any]
    ) -> VersionOut:
        """Edit the card of a draft version (published versions are immutable)."""
        fields = self._card_fields(card)
        with self.db.write() as s:
            prod = self._load_product(s, v.check_slug(slug), lock=True)
            self._require_owner(prod, account)
            ver = self._find_version(prod, number)
            if ver.status == VersionStatus.published:
                raise Conflict(
                    f"version {number} of {slug!r} is published and cannot change",
                    hint="upload a new version instead",
                )
            if "title" in fields:
                prod.title = fields.pop("title")
            tags = fields.pop("tags", None)
            for key, value in fields.items():
                setattr(ver, key, value)
            if tags is not None:
                ver.tag_rows = [VersionTag(tag=t) for t in tags]
            s.flush()
            s.refresh(ver, ["tag_rows"])
            return self._version_out(ver)

    @staticmethod
    def _find_version(prod: Product, number: int) -> ProductVersion:
        for ver in prod.versions:
            if ver.number == number:
                return ver
        raise NotFound(f"product {prod.slug!r} has no version {number}")

    def publish(self, account: AccountOut, slug: str, number: int) -> VersionOut:
        """Publish a draft version: it becomes searchable, buyable and immutable."""
        with self.db.write() as s:
            prod = self._load_product(s, v.check_slug(slug), lock=True)
            self._require_owner(prod, account)
            ver = self._find_version(prod, number)
            if ver.status == VersionStatus.published:
                raise Conflict(f"version {number} of {slug!r} is already published")
            ver.status = VersionStatus.published
            ver.published_at = datetime.now(UTC)
            # Only the latest published version of a product is in the search index.
            for old in s.scalars(select(SearchDoc).where(SearchDoc.product_id == prod.id)):
                s.delete(old)
            s.flush()
            columns = [c["name"] for c in ver.schema]
            s.add(
                SearchDoc(
                    version_id=ver.id,
                    product_id=prod.id,
                    title=prod.title,
                    body=search.card_text(
                        prod.title,
                        ver.description,
                        ver.task,
                        ver.license,
                        ver.tags,
                        columns,
                        ver.provenance,
                    ),
                )
            )
            s.flush()
            return self._version_out(ver)

    def set_listing(
        self,
        account: AccountOut,
        slug: str,
        price_minor: int,
        *,
        active: bool = True,
        currency: str = "USD",
    ) -> ListingOut:
        """Put a product on sale (or change its price, or withdraw it with ``active=False``)."""
        price = v.check_price(price_minor)
        if currency != "USD":
            raise InvalidInput(f"unsupported currency {currency!r}", hint="the market uses USD")
        with self.db.write() as s:
            prod = self._load_product(s, v.check_slug(slug), lock=True)
            self._require_owner(prod, account)
            if active and not any(ver.status == VersionStatus.published for ver in prod.versions):
                raise Conflict(
                    f"product {slug!r} has no published version to sell",
                    hint="publish a version first",
                )
            if prod.listing is None:
                prod.listing = Listing(price_minor=price, currency=currency, active=bool(active))
            else:
                prod.listing.price_minor = price
                prod.listing.active = bool(active)
                prod.listing.updated_at = datetime.now(UTC)
            s.flush()
            return ListingOut(price_minor=price, currency=currency, active=bool(active))

    def get_product(self, slug: str, viewer: AccountOut | None = None) -> ProductOut:
        """A product's public view; its owner and admins also see drafts."""
        with self.db.read() as s:
            prod = self._load_product(s, v.check_slug(slug))
            owner = viewer is not None and (
                viewer.role == Role.admin.value or viewer.id == prod.seller_id
            )
            if not owner and not any(
                ver.status == VersionStatus.published for ver in prod.versions
            ):
                raise NotFound(f"product {slug!r} not found")
            return self._product_out(prod, include_drafts=owner)

    def get_version(self, slug: str, number: int, viewer: AccountOut | None = None) -> VersionOut:
        """One version's card; drafts only for the owner and admins."""
        with self.db.read() as s:
            prod = self._load_product(s, v.check_slug(slug))
            ver = self._find_version(prod, number)
            owner = viewer is not None and (
                viewer.role == Role.admin.value or viewer.id == prod.seller_id
            )
            if ver.status != VersionStatus.published and not owner:
                raise NotFound(f"product {slug!r} has no version {number}")
            return self._version_out(ver)

    def my_products(self, account: AccountOut) -> list[ProductOut]:
        """The products a seller owns (all of them for an admin), drafts included."""
        with self.db.read() as s:
            stmt = select(Product.slug).order_by(Product.slug)
            if account.role != Role.admin.value:
                stmt = stmt.where(Product.seller_id == account.id)
            return [
                self._product_out(self._load_product(s, slug), include_drafts=True)
                for slug in s.scalars(stmt).all()
            ]

    # ------------------------------------------------------------------ catalog
    def _catalog_stmt(
        self,
        *,
        task: str | None,
        license: str | None,
        min_price: int | None,
        max_price: int | None,
        tags: Sequence[str],
    ) -> Any:
        latest = (
            select(
                ProductVersion.product_id.label("pid"),
                func.max(ProductVersion.number).label("num"),
            )
            .where(ProductVersion.status == VersionStatus.published)
            .group_by(ProductVersion.product_id)
            .subquery()
        )
        stmt = (
            select(ProductVersion, Product, Listing, Account.username)
            .join(
                latest,
                and_(
                    latest.c.pid == ProductVersion.product_id, latest.c.num == ProductVersion.number
                ),
            )
            .join(Product, Product.id == ProductVersion.product_id)
            .join(Listing, and_(Listing.product_id == Product.id, Listing.active.is_(True)))
            .join(Account, Account.id == Product.seller_id)
            .options(
                selectinload(ProductVersion.tag_rows),
                # a catalog row never shows these large JSON columns
                defer(ProductVersion.stats),
                defer(ProductVersion.preview),
            )
        )
        if task is not None:
            stmt = stmt.where(ProductVersion.task == v.check_task(task))
        if license is not None:
            stmt = stmt.where(ProductVersion.license == v.check_license(license))
        if min_price is not None:
            stmt = stmt.where(Listing.price_minor >= v.check_price(min_price))
        if max_price is not None:
            stmt = stmt.where(Listing.price_minor <= v.check_price(max_price))
        for tag in v.check_tags(tags):
            stmt = stmt.where(
                select(VersionTag.version_id)
                .where(VersionTag.version_id == ProductVersion.id, VersionTag.tag == tag)
                .exists()
            )
        return stmt

    @staticmethod
    def _hit(
        ver: ProductVersion, prod: Product, listing: Listing, seller: str, score: float | None
    ) -> SearchHit:
        return SearchHit(
            slug=prod.slug,
            title=prod.title,
            seller=seller,
            version=ver.number,
            task=ver.task,
            license=ver.license,
            tags=ver.tags,
            price_minor=listing.price_minor,
            currency=listing.currency,
            n_rows=ver.n_rows,
            n_columns=ver.n_columns,
            description=ver.description[:300],
            score=score,
        )

    def search(
        self,
        q: str | None = None,
        *,
        mode: str = "fulltext",
        task: str | None = None,
        license: str | None = None,
        min_price: int | None = None,
        max_price: int | None = None,
        tags: Sequence[str] = (),
        limit: int = 20,
        offset: int = 0,
    ) -> SearchResults:
        """Search the catalog (products on sale, latest published version each).

        Without ``q`` the catalog is listed newest first.  With ``q``, ``mode`` chooses
        ``fulltext`` (database full-text index), ``semantic`` (MiniLM cosine similarity)
        or ``hybrid`` (reciprocal rank fusion of both).  Filters apply in every mode.
        """
        if mode not in search.SEARCH_MODES:
            raise InvalidInput(
                f"unknown search mode {mode!r}", hint="use fulltext, semantic or hybrid"
            )
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
            raise InvalidInput(f"limit must be between 1 and {MAX_PAGE}")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0 or offset > 10**6:
            raise InvalidInput("offset must be between 0 and 1000000")
        if min_price is not None and max_price is not None and min_price > max_price:
            raise InvalidInput("min_price is greater than max_price")
        query = search.check_query(q)
        stmt = self._catalog_stmt(
            task=task, license=license, min_price=min_price, max_price=max_price, tags=tags
        )
        with self.db.read() as s:
            if query is None:
                total = s.scalar(select(func.count()).select_from(stmt.subquery())) or 0
                rows = s.execute(
                    stmt.order_by(ProductVersion.published_at.desc(), Product.slug)
                    .limit(limit)
                    .offset(offset)
                ).all()
                hits = [self._hit(ver, prod, lst, seller, None) for ver, prod, lst, seller in rows]
                return SearchResults(total=total, mode="browse", hits=hits)
            scores: dict[int, float] = {}
            if mode == "fulltext":
                scores = search.fulltext_scores(s, query)
                stmt = stmt.where(ProductVersion.id.in_(list(scores) or [-1]))
                rows = s.execute(stmt).all()
            else:
                rows = s.execute(stmt).all()
        if mode != "fulltext":
            by_id = {ver.id: (ver, prod) for ver, prod, _, _ in rows}
            sem = self._semantic_scores(query, by_id)
            if mode == "semantic":
                scores = sem
            else:
                with self.db.read() as s:
                    ft = search.fulltext_scores(s, query)
                ft_rank = [i for i in sorted(ft, key=lambda i: -ft[i]) if i in by_id]
                sem_rank = sorted(sem, key=lambda i: -sem[i])
                scores = search.rrf_fuse([ft_rank, sem_rank])
        ranked = sorted(
            (r for r in rows if r[0].id in scores),
            key=lambda r: (-scores[r[0].id], r[1].slug),
        )
        hits = [
            self._hit(ver, prod, lst, seller, round(scores[ver.id], 6))
            for ver, prod, lst, seller in ranked
        ]
        return SearchResults(total=len(hits), mode=mode, hits=hits[offset : offset + limit])

    # ------------------------------------------------------------------ semantic
    @property
    def embedder(self) -> Any:
        """The sentence encoder (MiniLM loaded on first use)."""
        with self._embedder_lock:
            if self._embedder is None:
                from databazaar.market.embeddings import MiniLMEmbedder

                self._embedder = MiniLMEmbedder()
            return self._embedder

    def _semantic_scores(
        self, query: str, versions: dict[int, tuple[ProductVersion, Product]]
    ) -> dict[int, float]:
        if not versions:
            return {}
        enc = self.embedder
        with self.db.read() as s:
            stored = {
                e.version_id: e
                for e in s.scalars(
                    select(CardEmbedding).where(CardEmbedding.version_id.in_(list(versions)))
                )
            }
        missing = [vid for vid in versions if vid not in stored or stored[vid].model != enc.name]
        vectors: dict[int, np.ndarray] = {
            vid: np.frombuffer(e.vector, dtype=np.float32)
            for vid, e in stored.items()
            if e.model == enc.name
        }
        if missing:
            texts = []
            for vid in missing:
                ver, prod = versions[vid]
                texts.append(
                    prod.title
                    + "\n"
                    + search.card_text(
                        prod.title,
                        ver.description,
                        ver.task,
                        ver.license,
                        ver.tags,
                        [c["name"] for c in ver.schema],
                        ver.provenance,
                    )
                )
            new = np.asarray(enc.encode(texts), dtype=np.float32)
            with self.db.write() as s:
                for vid, vec in zip(missing, new, strict=True):
                    row = s.get(CardEmbedding, vid)
                    if row is None:
                        row = CardEmbedding(version_id=vid)
                        s.add(row)
                    row.model = enc.name
                    row.dim = int(vec.shape[0])
                    row.vector = vec.tobytes()
                    vectors[vid] = vec
        ids = list(vectors)
        qvec = np.asarray(enc.encode([query]), dtype=np.float32)[0]
        sims = search.cosine_scores(qvec, np.stack([vectors[i] for i in ids]))
        return {vid: float(sc) for vid, sc in zip(ids, sims, strict=True)}

    # ------------------------------------------------------------------ purchases
    @staticmethod
    def _request_hash(slugs: Sequence[str]) -> str:
        return hashlib.sha256(json.dumps(sorted(slugs)).encode()).hexdigest()

    def _order_out(self, s: Session, order: Order, *, replayed: bool) -> OrderOut:
        items = s.execute(
            select(OrderItem, Product.slug, ProductVersion.number)
            .join(Product, Product.id == OrderItem.product_id)
            .join(ProductVersion, ProductVersion.id == OrderItem.version_id)
            .where(OrderItem.order_id == order.id)
            .order_by(OrderItem.id)
        ).all()
        return OrderOut(
            id=order.id,
            buyer_id=order.buyer_id,
            idempotency_key=order.idempotency_key,
            total_minor=order.total_minor,
            fee_minor=order.fee_minor,
            txn_id=order.txn_id,
            created_at=_utc(order.created_at) or datetime.now(UTC),
            items=[
                OrderItemOut(
                    slug=slug,
                    version=num,
                    seller_id=it.seller_id,
                    price_minor=it.price_minor,
                    fee_minor=it.fee_minor,
                )
                for it, slug, num in items
            ],
            replayed=replayed,
        )

    @staticmethod
    def keyed_order(s: Session, buyer_id: int, key: str, req_hash: str) -> Order | None:
        """The buyer's order under an idempotency key, if any; :class:`Conflict` when the
        key was used for a different request (shared with the economics service)."""
        order = s.scalar(
            select(Order).where(Order.buyer_id == buyer_id, Order.idempotency_key == key)
        )
        if order is not None and order.request_hash != req_hash:
            raise Conflict(
                f"idempotency key {key!r} was already used for a different purchase",
                hint="use a new key for a new purchase",
            )
        return order

    def _existing_order(
        self, s: Session, buyer_id: int, key: str, req_hash: str
    ) -> OrderOut | None:
        order = self.keyed_order(s, buyer_id, key, req_hash)
        return None if order is None else self._order_out(s, order, replayed=True)

    def purchase(self, account: AccountOut, slugs: Sequence[str], idempotency_key: str) -> OrderOut:
        """Buy one or more products in one transaction (see the module docstring).

        Replaying ``idempotency_key`` with the same products returns the original order
        (``replayed=True``) and moves no money; with different products it is a
        :class:`Conflict`.  Raises :class:`PaymentError` when the balance is short,
        :class:`Conflict` when a product is not on sale, is the buyer's own or is
        already granted, and :class:`NotFound` for an unknown slug.
        """
        access.require_role(Role(account.role), {Role.buyer}, "buy products")
        key = v.check_idempotency_key(idempotency_key)
        if isinstance(slugs, str) or not isinstance(slugs, Sequence):
            raise InvalidInput("products must be a list of slugs")
        clean = [v.check_slug(x) for x in slugs]
        if not clean:
            raise InvalidInput("the order has no products")
        if len(clean) > MAX_BASKET:
            raise InvalidInput(f"at most {MAX_BASKET} products per order")
        if len(set(clean)) != len(clean):
            raise InvalidInput("the order lists a product twice")
        req_hash = self._request_hash(clean)
        last_exc: Exception | None = None
        for _attempt in range(PURCHASE_RETRIES):
            try:
                return self._purchase_once(account.id, clean, key, req_hash)
            except IntegrityError as exc:
                # A concurrent request with the same key won the race: replay it.
                last_exc = exc
                with self.db.read() as s:
                    done = self._existing_order(s, account.id, key, req_hash)
                if done is not None:
                    return done
            except OperationalError as exc:  # deadlock / serialization / busy: retry
                last_exc = exc
                time.sleep(random.uniform(0, 0.02 * 2**_attempt))
        raise Conflict(
            "the purchase could not be completed because of concurrent updates",
            hint="retry with the same idempotency key",
        ) from last_exc

    def _purchase_once(self, buyer_id: int, slugs: list[str], key: str, req_hash: str) -> OrderOut:
        with self.db.write() as s:
            done = self._existing_order(s, buyer_id, key, req_hash)
            if done is not None:
                return done
            ledger.lock_head(s)  # serialises purchases; the order check below is now final
            done = self._existing_order(s, buyer_id, key, req_hash)
            if done is not None:
                return done
            buyer = s.get(Account, buyer_id, with_for_update=True, populate_existing=True)
            if buyer is None:
                raise NotFound(f"account {buyer_id} not found")
            # One query for the basket's products, one for their listings and versions
            # (without the large JSON columns), one for the buyer's existing grants.
            products = {
                p.slug: p
                for p in s.scalars(
                    select(Product)
                    .where(Product.slug.in_(slugs))
                    .options(
                        selectinload(Product.listing),
                        selectinload(Product.versions).options(
                            defer(ProductVersion.schema),
                            defer(ProductVersion.stats),
                            defer(ProductVersion.preview),
                        ),
                    )
                )
            }
            granted = set(
                s.scalars(
                    select(Grant.product_id).where(
                        Grant.account_id == buyer_id,
                        Grant.product_id.in_([p.id for p in products.values()]),
                    )
                )
            )
            lines: list[tuple[Product, ProductVersion, Listing]] = []
            for slug in slugs:
                prod = products.get(slug)
                if prod is None:
                    raise NotFound(f"product {slug!r} not found")
                published = [x for x in prod.versions if x.status == VersionStatus.published]
                if not published or prod.listing is None or not prod.listing.active:
                    raise Conflict(f"product {slug!r} is not on sale")
                if prod.seller_id == buyer_id:
                    raise Conflict(f"product {slug!r} is your own")
                if prod.id in granted:
                    raise Conflict(
                        f"you already have access to {slug!r}", hint="download it instead"
                    )
                lines.append((prod, published[-1], prod.listing))
            total = sum(lst.price_minor for _, _, lst in lines)
            if buyer.balance_minor < total:
                raise PaymentError(
                    f"insufficient balance: {buyer.balance_minor} < {total} (minor units)",
                    hint="deposit funds first",
                )
            fees = [lst.price_minor * self.fee_bps // 10_000 for _, _, lst in lines]
            txn_id = str(uuid.uuid4())
            order = Order(
                buyer_id=buyer_id,
                idempotency_key=key,
                request_hash=req_hash,
                total_minor=total,
                fee_minor=sum(fees),
                txn_id=txn_id,
            )
            s.add(order)
            s.flush()
            for (prod, ver, lst), fee in zip(lines, fees, strict=True):
                s.add(
                    OrderItem(
                        order_id=order.id,
                        product_id=prod.id,
                        version_id=ver.id,
                        seller_id=prod.seller_id,
                        price_minor=lst.price_minor,
                        fee_minor=fee,
                    )
                )
                s.add(Grant(account_id=buyer_id, product_id=prod.id, order_id=order.id))
            if total > 0:
                memo = f"order {order.id}"
                postings = [ledger.Posting(buyer_id, -total, "purchase", memo)]
                # the seller side: a bundle of several sellers' data splits by its latest
                # valuation (issue 6); a plain product credits its seller
                from databazaar.market.econ_service import sale_postings

                postings += sale_postings(
                    s,
                    order.id,
                    [
                        (prod.id, prod.seller_id, lst.price_minor - fee)
                        for (prod, _ver, lst), fee in zip(lines, fees, strict=True)
                    ],
                    memo,
                    txn_id,
                )
                if sum(fees):
                    fee_acc = self._system_account(s, FEE_ACCOUNT)
                    postings.append(ledger.Posting(fee_acc.id, sum(fees), "fee", memo))
                ledger.post(s, postings, txn_id=txn_id)
            s.flush()
            return self._order_out(s, order, replayed=False)

    def orders_for(
        self, account: AccountOut, *, limit: int = 100, offset: int = 0
    ) -> list[OrderOut]:
        """The orders an account placed, newest first."""
        if not 1 <= limit <= 1000 or offset < 0:
            raise InvalidInput("limit must be 1-1000 and offset >= 0")
        with self.db.read() as s:
            orders = s.scalars(
                select(Order)
                .where(Order.buyer_id == account.id)
                .order_by(Order.id.desc())
                .limit(limit)
                .offset(offset)
            ).all()
            return [self._order_out(s, o, replayed=False) for o in orders]

    def get_order(self, account: AccountOut, order_id: int) -> OrderOut:
        """One order; only its buyer and admins may read it (others get NotFound)."""
        with self.db.read() as s:
            order = s.get(Order, order_id)
            if order is None or (order.buyer_id != account.id and account.role != Role.admin.value):
                raise NotFound(f"order {order_id} not found")
            return self._order_out(s, order, replayed=False)

    def has_access(self, account: AccountOut, slug: str) -> bool:
        """Whether an account may download a product (grantee, owner or admin)."""
        with self.db.read() as s:
            prod = self._load_product(s, v.check_slug(slug))
            return self._may_download(s, account.id, account.role, prod.id, prod.seller_id)

    @staticmethod
    def _may_download(
        s: Session, account_id: int, role: str, product_id: int, seller_id: int
    ) -> bool:
        if role == Role.admin.value or account_id == seller_id:
            return True
        return (
            s.scalar(
                select(Grant.id).where(
                    Grant.account_id == account_id, Grant.product_id == product_id
                )
            )
            is not None
        )

    # ------------------------------------------------------------------ downloads
    def download_link(
        self,
        account: AccountOut,
        slug: str,
        number: int | None = None,
        *,
        ttl_seconds: int = 600,
        base_url: str = "/api/downloads/",
    ) -> DownloadLinkOut:
        """An expiring signed link to a published version (the latest by default)."""
        with self.db.read() as s:
            prod = self._load_product(s, v.check_slug(slug))
            if not self._may_download(s, account.id, account.role, prod.id, prod.seller_id):
                raise Forbidden(
                    f"you have no access to {slug!r}", hint="buy the product to download it"
                )
            owner = account.role == Role.admin.value or account.id == prod.seller_id
            candidates = [x for x in prod.versions if owner or x.status == VersionStatus.published]
            if number is None:
                if not candidates:
                    raise NotFound(f"product {slug!r} has no published version")
                ver = candidates[-1]
            else:
                ver = next((x for x in candidates if x.number == number), None)
                if ver is None:
                    raise NotFound(f"product {slug!r} has no version {number}")
            token, expires = self.signer.sign(account.id, ver.id, ttl_seconds)
            return DownloadLinkOut(
                url=base_url + token,
                token=token,
                expires_at=expires,
                sha256=ver.blob_sha256,
                filename=ver.filename,
            )

    def resolve_download(self, token: str, *, now: float | None = None) -> tuple[Path, str, str]:
        """``(path, filename, media_type)`` for a valid link whose holder still has access."""
        claims = self.signer.check(token, now=now)
        with self.db.read() as s:
            ver = s.get(ProductVersion, claims.version_id)
            acc = s.get(Account, claims.account_id)
            if ver is None or acc is None:
                raise Forbidden("invalid download link")
            prod = s.get_one(Product, ver.product_id)
            if not self._may_download(s, acc.id, acc.role.value, prod.id, prod.seller_id):
                raise Forbidden("this link's holder no longer has access")
            blob = s.get_one(Blob, ver.blob_sha256)
            path = self.blobs.path_for(blob.sha256)
            if not path.is_file():
                raise NotFound("the file is missing from the store", hint="contact the admin")
            return path, ver.filename, blob.media_type

    # ------------------------------------------------------------------ ledger
    def verify_ledger(self) -> LedgerReportOut:
        """Verify the hash chain, double entry and balances (:func:`ledger.verify`)."""
        with self.db.snapshot() as s:
            report = ledger.verify(s)
        return LedgerReportOut(**report.to_dict())  # type: ignore[arg-type]

    def ledger_report(self) -> ledger.LedgerReport:
        """The full :class:`~databazaar.market.ledger.LedgerReport`."""
        with self.db.snapshot() as s:
            return ledger.verify(s)

    def close(self) -> None:
        """Release database connections."""
        self.db.dispose()


ProgressSay = Callable[[str], None]
