"""The listing gate's publish hook and the screening views (see :mod:`.gatekeeping`).

Publishing (:meth:`~databazaar.market.products.Products.publish`) with a gate calls
:func:`screen_draft` *before* its write transaction (screening takes seconds; no lock is
held meanwhile) and :func:`apply_screening` inside it: the card must be the one screened
(else :class:`Conflict`, publish again), the current policy decides
(:func:`databazaar.market.gate.decide`) and the verdict is stored in ``screenings``.  A
``held`` version waits for an admin; a ``blocked`` one becomes ``rejected``.
:func:`unsellable_reason` tells a buyer why a gated product cannot be bought.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from databazaar.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from databazaar.core.io import read_table
from databazaar.market import validation as v
from databazaar.market.common import (
    canonical_json,
    created,
    find_version,
    load_product,
    require_owner,
    utc,
)
from databazaar.market.gate import ListingGate, Policy, Screened, decide, sample_seed
from databazaar.market.models import GatePolicy, Product, ProductVersion, Screening, VersionStatus
from databazaar.market.schemas import FindingOut, PolicyOut, ScreeningOut

if TYPE_CHECKING:
    from databazaar.market.schemas import AccountOut
    from databazaar.market.storage import BlobStore


# ---------------------------------------------------------------------- views
def screening_out(scr: Screening, *, evidence: bool) -> ScreeningOut:
    """The public view of a screening; the findings only with ``evidence``."""
    sample = scr.sample or {}
    return ScreeningOut(
        state=scr.state,
        decision=scr.decision,
        policy_version=scr.policy_version,
        screened_at=created(scr.screened_at),
        rows_screened=int(sample.get("rows_screened", 0)),
        rows_total=int(sample.get("rows_total", 0)),
        card_texts=int(sample.get("card_texts", 0)),
        model=scr.model,
        max_risk=scr.max_risk,
        reviewed_at=utc(scr.reviewed_at),
        reviewer=scr.reviewer.username if scr.reviewer is not None else None,
        review_note=scr.review_note,
        findings=[FindingOut(**f) for f in scr.findings] if evidence else None,
    )


def policy_row(s: Session, version: int | None = None) -> GatePolicy:
    stmt = select(GatePolicy)
    if version is None:
        stmt = stmt.order_by(GatePolicy.version.desc()).limit(1)
    else:
        stmt = stmt.where(GatePolicy.version == version)
    row = s.scalar(stmt)
    if row is None:
        if version is not None:
            raise NotFound(f"policy version {version} not found")
        raise InvalidInput("the market has no screening policy", hint="run databazaar db upgrade")
    return row


def read_policy(row: GatePolicy) -> Policy:
    return Policy(
        row.version, row.default_action, dict(row.rules), row.threshold, row.min_rows, row.min_share
    )


def policy_out(s: Session, row: GatePolicy, names: dict[str, str]) -> PolicyOut:
    creator = None
    if row.created_by is not None:
        from databazaar.market.models import Account

        acc = s.get(Account, row.created_by)
        creator = acc.username if acc is not None else None
    return PolicyOut(
        version=row.version,
        default_action=row.default_action,
        rules=dict(row.rules),
        threshold=row.threshold,
        min_rows=row.min_rows,
        min_share=row.min_share,
        created_at=created(row.created_at),
        created_by=creator,
        note=row.note,
        categories=names,
    )


# ------------------------------------------------------------------ publishing
@dataclass
class PendingScreen:
    """A draft screened outside the publish transaction, and the card it was."""

    screened: Screened
    fingerprint: str


def card_fingerprint(prod: Product, ver: ProductVersion) -> str:
    """A digest of everything screened: title, card fields, tags and the file."""
    blob = canonical_json(
        [prod.title, ver.description, ver.provenance, ver.tags, ver.task, ver.blob_sha256]
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def require_draft(slug: str, ver: ProductVersion) -> None:
    """:class:`Conflict` unless the version is still a draft (publishable)."""
    if ver.status == VersionStatus.draft:
        return
    what = {
        VersionStatus.published: "is already published",
        VersionStatus.held: "is held for risk review",
        VersionStatus.rejected: "was refused by the risk screening",
    }[ver.status]
    raise Conflict(f"version {ver.number} of {slug!r} {what}", hint="upload a new version")


def screen_draft(
    db: Any, blobs: BlobStore, gate: ListingGate, account: AccountOut, slug: str, number: int
) -> PendingScreen:
    """Screen a draft's card and a sample of its rows (outside any transaction)."""
    with db.read() as s:
        prod = load_product(s, v.check_slug(slug))
        require_owner(prod, account)
        ver = find_version(prod, number)
        require_draft(slug, ver)
        card = {
            "title": prod.title,
            "description": ver.description,
            "provenance": ver.provenance,
            "tags": ver.tags,
        }
        fingerprint = card_fingerprint(prod, ver)
        sha, fmt = ver.blob_sha256, ver.file_format
    path = blobs.path_for(sha)
    if not path.is_file():
        raise NotFound("the version's file is missing from the store", hint="contact the admin")
    frame = read_table(path, fmt)
    return PendingScreen(gate.screen(card, frame, seed=sample_seed(sha)), fingerprint)


def apply_screening(s: Session, prod: Product, ver: ProductVersion, pending: PendingScreen) -> bool:
    """Store the current policy's verdict on a screened draft; whether it may go public.

    A held version becomes ``held`` and a blocked one ``rejected``; the caller publishes
    a cleared one.  :class:`Conflict` when the card changed after it was screened.
    """
    if card_fingerprint(prod, ver) != pending.fingerprint:
        raise Conflict(
            f"the card of version {ver.number} of {prod.slug!r} changed while it was screened",
            hint="publish again",
        )
    policy = read_policy(policy_row(s))
    verdict = decide(pending.screened, policy)
    scr = Screening(
        version_id=ver.id,
        product_id=prod.id,
        policy_version=policy.version,
        decision=verdict.decision,
        state=verdict.state,
        max_risk=verdict.max_risk,
        findings=verdict.findings,
        sample=pending.screened.texts.sample(),
        model=pending.screened.model,
        seconds=pending.screened.seconds,
        screened_at=datetime.now(UTC),
        review_note="",
    )
    s.add(scr)
    ver.screening = scr
    if verdict.state == "held":
        ver.status = VersionStatus.held
    elif verdict.state == "blocked":
        ver.status = VersionStatus.rejected
    s.flush()
    return verdict.state == "cleared"


def unsellable_reason(s: Session, product_id: int, slug: str) -> tuple[type[Exception], str] | None:
    """Why a product without a published version cannot be bought, if the gate says so.

    ``(Conflict, ...)`` while its newest screened version is held, ``(Forbidden, ...)``
    when it was blocked or rejected; ``None`` when the gate has no say.
    """
    scr = s.scalar(
        select(Screening)
        .where(Screening.product_id == product_id)
        .order_by(Screening.id.desc())
        .limit(1)
    )
    if scr is None or scr.state in ("cleared", "approved"):
        return None
    if scr.state == "held":
        return Conflict, (
            f"product {slug!r} is held for risk review (policy v{scr.policy_version}) "
            "and cannot be bought until an admin approves it"
        )
    return Forbidden, (
        f"product {slug!r} was refused by the market's risk screening "
        f"(policy v{scr.policy_version}) and cannot be bought"
    )
