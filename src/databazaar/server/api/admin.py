"""Administration: deposits and ledger verification (admin role), and health."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from databazaar.core.money import Amount
from databazaar.market.schemas import DepositOut, LedgerReportOut
from databazaar.server.api.common import MAX_ID, StrictIn, errors
from databazaar.server.deps import AdminAccount, MarketDep

router = APIRouter(tags=["admin"])


class DepositIn(StrictIn):
    """Funds to credit to an account, in minor units."""

    account_id: int = Field(ge=1, le=MAX_ID)
    amount_minor: Amount
    memo: str = Field(default="deposit", max_length=200)


class HealthOut(BaseModel):
    """Liveness answer."""

    status: str
    database: str


@router.get("/health", response_model=HealthOut)
def health(market: MarketDep) -> HealthOut:
    """Liveness and the database backend in use."""
    return HealthOut(status="ok", database=market.db.dialect)


@router.post(
    "/admin/deposits",
    status_code=201,
    response_model=DepositOut,
    responses=errors(401, 403, 404, 422),
)
def deposit(body: DepositIn, admin: AdminAccount, market: MarketDep) -> DepositOut:
    """Credit an account from the funding account (booked on the ledger)."""
    return market.deposit(body.account_id, body.amount_minor, memo=body.memo)


@router.get("/admin/ledger/verify", response_model=LedgerReportOut, responses=errors(401, 403))
def verify_ledger(admin: AdminAccount, market: MarketDep) -> LedgerReportOut:
    """Verify the ledger's hash chain, double entry and balances."""
    return market.verify_ledger()
