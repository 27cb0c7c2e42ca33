"""Data products: creation, versioned uploads with data cards, publishing, listings.

An upload is streamed to a staging file while hashed, parsed, profiled (schema,
statistics, preview; :mod:`databazaar.market.profile`) and stored content-addressed
under its sha256; a version is a draft until published, and immutable afterwards.
Only the latest published version of a product is in the search index.  With a
listing gate (:mod:`databazaar.market.gatekeeping`) publishing screens the version
first and may hold it for review or refuse it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, BinaryIO

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from databazaar.core.errors import Conflict, InvalidInput, NotFound
from databazaar.core.io import read_table, table_format
from databazaar.market import access, search
from databazaar.market import validation as v
from databazaar.market.common import (
    MarketBase,
    created,
    find_version,
    is_owner,
    load_product,
    require_owner,
    utc,
)
from databazaar.market.models import (
    Blob,
    Listing,
    Product,
    ProductVersion,
    Role,
    SearchDoc,
    VersionStatus,
    VersionTag,
)
from databazaar.market.profile import MEDIA_TYPES, profile_table
from databazaar.market.schemas import AccountOut, ColumnOut, ListingOut, ProductOut, VersionOut
from databazaar.market.screenings import (
    apply_screening,
    require_draft,
    screen_draft,
    screening_out,
)

CARD_FIELDS = ("description", "license", "task", "provenance", "tags", "title")


def version_out(ver: ProductVersion, *, evidence: bool = False) -> VersionOut:
    """The public view of a version (its blob and tags loaded).

    ``evidence`` adds the screening's findings (for the seller and admins).
    """
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
        created_at=created(ver.created_at),
        published_at=utc(ver.published_at),
        screening=None
        if ver.screening is None
        else screening_out(ver.screening, evidence=evidence),
    )


def product_out(prod: Product, *, include_drafts: bool) -> ProductOut:
    """The public view of a product (drafts only with ``include_drafts``)."""
    versions = [
        ver for ver in prod.versions if include_drafts or ver.status == VersionStatus.published
    ]
    listing = prod.listing
    return ProductOut(
        slug=prod.slug,
        title=prod.title,
        seller=prod.seller.username,
        created_at=created(prod.created_at),
        listing=ListingOut(
            price_minor=listing.price_minor, currency=listing.currency, active=listing.active
        )
        if listing is not None
        else None,
        latest=version_out(versions[-1], evidence=include_drafts) if versions else None,
        versions=[ver.number for ver in versions],
    )


def make_public(s: Session, prod: Product, ver: ProductVersion) -> None:
    """Publish ``ver`` in the caller's transaction and index the newest published version.

    Only the latest published version of a product is in the search index (a version
    approved after a newer one was published leaves the index as it is).
    """
    ver.status = VersionStatus.published
    ver.published_at = datetime.now(UTC)
    s.flush()
    newest = max(
        (x for x in prod.versions if x.status == VersionStatus.published),
        key=lambda x: x.number,
    )
    if newest is not ver:
        return
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


def card_fields(card: dict[str, Any]) -> dict[str, Any]:
    """Validate the fields of a data card (unknown fields are refused)."""
    unknown = set(card) - set(CARD_FIELDS)
    if unknown:
        raise InvalidInput(
            f"unknown card fields: {', '.join(sorted(unknown))}",
            hint=f"use {', '.join(sorted(CARD_FIELDS))}",
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


class Products(MarketBase):
    """Product actions of :class:`~databazaar.market.service.Market`."""

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
                return product_out(load_product(s, slug), include_drafts=True)
        except IntegrityError:
            raise Conflict(f"product slug {slug!r} is taken", hint="choose another slug") from None

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
        fmt = table_format(filename)
        fields = card_fields(card)
        fields.pop("title", None)
        for required in ("license", "task"):
            if required not in fields:
                raise InvalidInput(f"the card needs a {required}")
        with self.db.read() as s:  # fail fast before reading a large body
            prod = load_product(s, slug)
            require_owner(prod, account)
        staged = self.blobs.stage(stream, self.max_upload_bytes)
        try:
            df = read_table(staged.path, fmt)
            prof = profile_table(df, fmt)
            with self.db.write() as s:
                prod = load_product(s, slug, lock=True)
                require_owner(prod, account)
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
                return version_out(ver, evidence=True)
        finally:
            self.blobs.discard(staged)

    def update_card(
        self, account: AccountOut, slug: str, number: int, card: dict[str, Any]
    ) -> VersionOut:
        """Edit the card of a draft version (published versions are immutable)."""
        fields = card_fields(card)
        with self.db.write() as s:
            prod = load_product(s, v.check_slug(slug), lock=True)
            require_owner(prod, account)
            ver = find_version(prod, number)
            if ver.status != VersionStatus.draft:
                raise Conflict(
                    f"version {number} of {slug!r} is {ver.status.value} and cannot change",
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
            return version_out(ver, evidence=True)

    def publish(self, account: AccountOut, slug: str, number: int) -> VersionOut:
        """Publish a draft version: it becomes searchable, buyable and immutable.

        With a listing gate the card and a sample of rows are screened first (outside
        the transaction) and the market's policy decides: the version is published,
        ``held`` for an admin's review, or ``rejected``; the answer's ``screening``
        says which and why.
        """
        pending = None
        if self.gate is not None:
            pending = screen_draft(self.db, self.blobs, self.gate, account, slug, number)
        with self.db.write() as s:
            prod = load_product(s, v.check_slug(slug), lock=True)
            require_owner(prod, account)
            ver = find_version(prod, number)
            require_draft(slug, ver)
            if pending is None or apply_screening(s, prod, ver, pending):
                make_public(s, prod, ver)
            return version_out(ver, evidence=True)

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
            prod = load_product(s, v.check_slug(slug), lock=True)
            require_owner(prod, account)
            # a held version may be priced; it is sold only once an admin approves it
            sellable = (VersionStatus.published, VersionStatus.held)
            if active and not any(ver.status in sellable for ver in prod.versions):
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
            prod = load_product(s, v.check_slug(slug))
            owner = is_owner(prod, viewer)
            if not owner and not any(
                ver.status == VersionStatus.published for ver in prod.versions
            ):
                raise NotFound(f"product {slug!r} not found")
            return product_out(prod, include_drafts=owner)

    def get_version(self, slug: str, number: int, viewer: AccountOut | None = None) -> VersionOut:
        """One version's card; drafts only for the owner and admins."""
        with self.db.read() as s:
            prod = load_product(s, v.check_slug(slug))
            ver = find_version(prod, number)
            owner = is_owner(prod, viewer)
            if ver.status != VersionStatus.published and not owner:
                raise NotFound(f"product {slug!r} has no version {number}")
            return version_out(ver, evidence=owner)

    def my_products(self, account: AccountOut) -> list[ProductOut]:
        """The products a seller owns (all of them for an admin), drafts included."""
        with self.db.read() as s:
            stmt = select(Product.slug).order_by(Product.slug)
            if account.role != Role.admin.value:
                stmt = stmt.where(Product.seller_id == account.id)
            return [
                product_out(load_product(s, slug), include_drafts=True)
                for slug in s.scalars(stmt).all()
            ]
