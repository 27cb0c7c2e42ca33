"""The listing gate: the screening policy (public read, admin edit), review queue, audit."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import Field

from databazaar.market.schemas import AuditOut, PolicyOut, ReviewItemOut, VersionOut
from databazaar.server.api.common import Slug, StrictIn, VersionNumber, errors
from databazaar.server.deps import AdminAccount, MarketDep

router = APIRouter(tags=["gate"])


class PolicyIn(StrictIn):
    """Fields of the policy to change (omitted ones stay); ``rules`` replaces all rules."""

    default_action: str | None = Field(default=None, examples=["review"])
    rules: dict[str, str] | None = Field(
        default=None,
        max_length=16,
        description="AIR 2024 level-2 id -> allow, review or block",
        examples=[{"3": "block", "8": "allow"}],
    )
    threshold: float | None = Field(default=None, description="risk at which text is flagged")
    min_rows: int | None = Field(default=None, description="flagged rows that fire a category")
    min_share: float | None = Field(
        default=None, description="share of the rows screened that must be flagged"
    )
    note: str = Field(default="", max_length=500)


class ReviewIn(StrictIn):
    """An optional note kept with the decision in the audit trail."""

    note: str = Field(default="", max_length=500)


@router.get("/gate/policy", response_model=PolicyOut, responses=errors(404, 422))
def get_policy(
    market: MarketDep,
    version: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
) -> PolicyOut:
    """The market's screening policy (the current one, or an earlier ``version``)."""
    return market.gate_policy(version)


@router.put("/admin/gate/policy", response_model=PolicyOut, responses=errors(401, 403, 409, 422))
def set_policy(body: PolicyIn, admin: AdminAccount, market: MarketDep) -> PolicyOut:
    """Change the policy: a new policy version, recorded in the audit trail."""
    return market.set_gate_policy(
        admin,
        default_action=body.default_action,
        rules=body.rules,
        threshold=body.threshold,
        min_rows=body.min_rows,
        min_share=body.min_share,
        note=body.note,
    )


@router.get("/admin/gate/audit", response_model=list[AuditOut], responses=errors(401, 403))
def audit(
    admin: AdminAccount,
    market: MarketDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[AuditOut]:
    """Policy edits and review decisions, newest first: who, when, old, new."""
    return market.gate_audit(admin, limit=limit, offset=offset)


@router.get("/admin/gate/queue", response_model=list[ReviewItemOut], responses=errors(401, 403))
def queue(
    admin: AdminAccount,
    market: MarketDep,
    state: Annotated[str, Query(max_length=10)] = "held",
) -> list[ReviewItemOut]:
    """Screened versions in a state (default ``held``) with their evidence."""
    return market.review_queue(admin, state=state)


@router.post(
    "/admin/gate/queue/{slug}/{number}/approve",
    response_model=VersionOut,
    responses=errors(401, 403, 404, 409),
)
def approve(
    slug: Slug, number: VersionNumber, body: ReviewIn, admin: AdminAccount, market: MarketDep
) -> VersionOut:
    """Approve a held version: it is published and can be bought."""
    return market.review(admin, slug, number, approve=True, note=body.note)


@router.post(
    "/admin/gate/queue/{slug}/{number}/reject",
    response_model=VersionOut,
    responses=errors(401, 403, 404, 409),
)
def reject(
    slug: Slug, number: VersionNumber, body: ReviewIn, admin: AdminAccount, market: MarketDep
) -> VersionOut:
    """Reject a held version: it is never listed or sold."""
    return market.review(admin, slug, number, approve=False, note=body.note)
