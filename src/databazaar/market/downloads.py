"""Downloads: who may fetch a product's files, and expiring signed links to them.

A link is an HMAC-signed token naming the account and the version with an expiry
(:class:`~databazaar.market.access.LinkSigner`); resolving it checks the signature, the
expiry and that the holder still has access (grantee, owner or admin).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from databazaar.core.errors import Forbidden, InvalidInput, NotFound
from databazaar.market import validation as v
from databazaar.market.access import DEFAULT_LINK_TTL
from databazaar.market.common import MarketBase, is_owner, load_product
from databazaar.market.models import (
    Account,
    Blob,
    Grant,
    Product,
    ProductVersion,
    Role,
    VersionStatus,
)
from databazaar.market.schemas import AccountOut, DownloadLinkOut


def may_download(s: Session, account_id: int, role: str, product_id: int, seller_id: int) -> bool:
    """Whether an account may fetch a product's files (admin, its seller, or a grantee)."""
    if role == Role.admin.value or account_id == seller_id:
        return True
    return (
        s.scalar(
            select(Grant.id).where(Grant.account_id == account_id, Grant.product_id == product_id)
        )
        is not None
    )


class Downloads(MarketBase):
    """Access checks and download links of :class:`~databazaar.market.service.Market`."""

    def has_access(self, account: AccountOut, slug: str) -> bool:
        """Whether an account may download a product (grantee, owner or admin)."""
        with self.db.read() as s:
            prod = load_product(s, v.check_slug(slug))
            return may_download(s, account.id, account.role, prod.id, prod.seller_id)

    def download_link(
        self,
        account: AccountOut,
        slug: str,
        number: int | None = None,
        *,
        ttl_seconds: int = DEFAULT_LINK_TTL,
        base_url: str = "/api/downloads/",
        bind_to_account: bool = False,
    ) -> DownloadLinkOut:
        """An expiring signed link to a published version (the latest by default).

        Links live :data:`~databazaar.market.access.DEFAULT_LINK_TTL` seconds (five
        minutes) unless ``ttl_seconds`` says otherwise (at most 7 days).  Anyone holding
        a plain link can fetch the file until it expires (and while the account keeps
        access); with ``bind_to_account`` the link works only for a request that also
        authenticates as the same account (:meth:`resolve_download` with ``account``).
        """
        if not isinstance(bind_to_account, bool):
            raise InvalidInput("bind_to_account must be true or false")
        with self.db.read() as s:
            prod = load_product(s, v.check_slug(slug))
            if not may_download(s, account.id, account.role, prod.id, prod.seller_id):
                raise Forbidden(
                    f"you have no access to {slug!r}", hint="buy the product to download it"
                )
            owner = is_owner(prod, account)
            candidates = [x for x in prod.versions if owner or x.status == VersionStatus.published]
            if number is None:
                if not candidates:
                    raise NotFound(f"product {slug!r} has no published version")
                ver = candidates[-1]
            else:
                ver = next((x for x in candidates if x.number == number), None)
                if ver is None:
                    raise NotFound(f"product {slug!r} has no version {number}")
            token, expires = self.signer.sign(
                account.id, ver.id, ttl_seconds, bound=bind_to_account
            )
            return DownloadLinkOut(
                url=base_url + token,
                token=token,
                expires_at=expires,
                sha256=ver.blob_sha256,
                filename=ver.filename,
                bound=bind_to_account,
            )

    def resolve_download(
        self, token: str, *, now: float | None = None, account: AccountOut | None = None
    ) -> tuple[Path, str, str]:
        """``(path, filename, media_type)`` for a valid link whose holder still has access.

        A link bound to its account also needs ``account`` to be that account.
        """
        claims = self.signer.check(token, now=now)
        if claims.bound and (account is None or account.id != claims.account_id):
            raise Forbidden(
                "this download link is bound to the account that requested it",
                hint="send that account's API token with the download",
            )
        with self.db.read() as s:
            ver = s.get(ProductVersion, claims.version_id)
            acc = s.get(Account, claims.account_id)
            if ver is None or acc is None:
                raise Forbidden("invalid download link")
            prod = s.get_one(Product, ver.product_id)
            if not may_download(s, acc.id, acc.role.value, prod.id, prod.seller_id):
                raise Forbidden("this link's holder no longer has access")
            blob = s.get_one(Blob, ver.blob_sha256)
            path = self.blobs.path_for(blob.sha256)
            if not path.is_file():
                raise NotFound("the file is missing from the store", hint="contact the admin")
            return path, ver.filename, blob.media_type
