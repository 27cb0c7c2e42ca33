"""The listing gate's admin side: policy versions, the review queue and the audit trail.

:class:`Gatekeeping` gives :class:`~databazaar.market.service.Market` the actions on the
gate (screening itself runs on publish, :mod:`databazaar.market.screenings`): read the
policy (public), edit it (each edit is a new policy version), read the audit trail, list
the review queue, approve (publish) or reject a held version.  Every edit and review
writes a ``gate_audit`` row (who, when, old, new, note); ``gate_policies`` and
``gate_audit`` are append-only in the database.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from databazaar.core.errors import Conflict, InvalidInput
from databazaar.market import access
from databazaar.market import validation as v
from databazaar.market.common import MarketBase, created, find_version, load_product
from databazaar.market.gate import LEVEL2_IDS, ListingGate, check_policy
from databazaar.market.models import (
    GateAudit,
    GatePolicy,
    Product,
    ProductVersion,
    Role,
    Screening,
    VersionStatus,
)
from databazaar.market.products import make_public, version_out
from databazaar.market.schemas import AuditOut, PolicyOut, ReviewItemOut, VersionOut
from databazaar.market.screenings import policy_out, policy_row, read_policy, screening_out

if TYPE_CHECKING:
    from databazaar.market.schemas import AccountOut

MAX_NOTE = 500
STATES = ("cleared", "held", "blocked", "approved", "rejected")


class Gatekeeping(MarketBase):
    """The gate's actions of :class:`~databazaar.market.service.Market`."""

    gate: ListingGate | None

    def _level2(self) -> dict[str, str]:
        return self.gate.level2 if self.gate is not None else {}

    def gate_policy(self, version: int | None = None) -> PolicyOut:
        """The current screening policy (or an earlier ``version``); public."""
        if version is not None and (isinstance(version, bool) or int(version) < 1):
            raise InvalidInput(f"policy versions start at 1, got {version!r}")
        with self.db.read() as s:
            return policy_out(s, policy_row(s, version), self._level2())

    def set_gate_policy(
        self,
        account: AccountOut,
        *,
        default_action: str | None = None,
        rules: dict[str, str] | None = None,
        threshold: float | None = None,
        min_rows: int | None = None,
        min_share: float | None = None,
        note: str = "",
    ) -> PolicyOut:
        """Write a new policy version (admins); omitted fields keep their value.

        ``rules`` replaces the whole rule map.  An edit that changes nothing writes
        nothing and returns the current policy.  The change is audited.
        """
        access.require_role(Role(account.role), {Role.admin}, "edit the screening policy")
        note = _note(note)
        level2 = tuple(self._level2()) or LEVEL2_IDS
        try:
            with self.db.write() as s:
                old = policy_row(s)
                current = read_policy(old).to_dict()
                new = check_policy(
                    current["default_action"] if default_action is None else default_action,
                    current["rules"] if rules is None else rules,
                    current["threshold"] if threshold is None else threshold,
                    current["min_rows"] if min_rows is None else min_rows,
                    current["min_share"] if min_share is None else min_share,
                    level2=level2,
                )
                if new == current:
                    return policy_out(s, old, self._level2())
                row = GatePolicy(
                    version=old.version + 1,
                    created_by=account.id,
                    created_at=datetime.now(UTC),
                    note=note,
                    **new,
                )
                s.add(row)
                s.add(
                    GateAudit(
                        at=datetime.now(UTC),
                        actor_id=account.id,
                        action="policy.set",
                        subject="policy",
                        policy_version=row.version,
                        old=current,
                        new=new,
                        note=note,
                    )
                )
                s.flush()
                return policy_out(s, row, self._level2())
        except IntegrityError:
            raise Conflict(
                "the policy was changed by someone else at the same time",
                hint="read the policy again and repeat your change",
            ) from None

    def gate_audit(
        self, account: AccountOut, *, limit: int = 100, offset: int = 0
    ) -> list[AuditOut]:
        """The audit trail of policy edits and reviews, newest first (admins)."""
        access.require_role(Role(account.role), {Role.admin}, "read the gate's audit trail")
        if not 1 <= limit <= 1000 or offset < 0:
            raise InvalidInput("limit must be 1-1000 and offset >= 0")
        with self.db.read() as s:
            rows = s.scalars(
                select(GateAudit).order_by(GateAudit.id.desc()).limit(limit).offset(offset)
            ).all()
            return [
                AuditOut(
                    id=r.id,
                    at=created(r.at),
                    actor=r.actor.username if r.actor is not None else None,
                    action=r.action,
                    subject=r.subject,
                    policy_version=r.policy_version,
                    old=r.old,
                    new=r.new,
                    note=r.note,
                )
                for r in rows
            ]

    def review_queue(self, account: AccountOut, *, state: str = "held") -> list[ReviewItemOut]:
        """Screened versions in ``state`` (default: waiting for review), oldest first."""
        access.require_role(Role(account.role), {Role.admin}, "review screened products")
        if state not in STATES:
            raise InvalidInput(f"unknown screening state {state!r}", hint=f"use one of {STATES}")
        with self.db.read() as s:
            rows = s.execute(
                select(Screening, ProductVersion, Product)
                .join(ProductVersion, ProductVersion.id == Screening.version_id)
                .join(Product, Product.id == Screening.product_id)
                .where(Screening.state == state)
                .options(selectinload(Product.seller))
                .order_by(Screening.screened_at, Screening.id)
            ).all()
            return [
                ReviewItemOut(
                    slug=prod.slug,
                    title=prod.title,
                    seller=prod.seller.username,
                    version=ver.number,
                    status=ver.status.value,
                    n_rows=ver.n_rows,
                    screening=screening_out(scr, evidence=True),
                )
                for scr, ver, prod in rows
            ]

    def held_count(self) -> int:
        """How many versions wait for review."""
        with self.db.read() as s:
            return int(
                s.scalar(
                    select(func.count()).select_from(Screening).where(Screening.state == "held")
                )
                or 0
            )

    def review(
        self, account: AccountOut, slug: str, number: int, *, approve: bool, note: str = ""
    ) -> VersionOut:
        """Approve (publish) or reject a held version (admins); the decision is audited."""
        access.require_role(Role(account.role), {Role.admin}, "review screened products")
        note = _note(note)
        if not isinstance(approve, bool):
            raise InvalidInput("approve must be true or false")
        with self.db.write() as s:
            prod = load_product(s, v.check_slug(slug), lock=True)
            ver = find_version(prod, number)
            scr = ver.screening
            if scr is None or scr.state != "held":
                state = "not screened" if scr is None else scr.state
                raise Conflict(
                    f"version {number} of {slug!r} is not waiting for review ({state})",
                    hint="only held versions can be approved or rejected",
                )
            old = {"state": scr.state, "status": ver.status.value}
            now = datetime.now(UTC)
            scr.state = "approved" if approve else "rejected"
            scr.reviewed_by = account.id
            scr.reviewed_at = now
            scr.review_note = note
            if approve:
                make_public(s, prod, ver)
            else:
                ver.status = VersionStatus.rejected
            s.add(
                GateAudit(
                    at=now,
                    actor_id=account.id,
                    action="review.approve" if approve else "review.reject",
                    subject=f"{prod.slug} v{number}",
                    policy_version=scr.policy_version,
                    old=old,
                    new={"state": scr.state, "status": ver.status.value},
                    note=note,
                )
            )
            s.flush()
            s.refresh(scr, ["reviewer"])
            return version_out(ver, evidence=True)


def _note(note: object) -> str:
    if note is None:
        return ""
    if not isinstance(note, str):
        raise InvalidInput("the note must be text")
    if len(note) > MAX_NOTE:
        raise InvalidInput(f"the note is longer than {MAX_NOTE} characters")
    return note.strip()
