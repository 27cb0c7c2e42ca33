"""Purchases: place an order (idempotent), list and read one's own orders."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from databazaar.market.schemas import OrderOut
from databazaar.server.api.common import MAX_ID, REPLAY_DOC, StrictIn, errors, mark_replay
from databazaar.server.deps import BearerToken, CurrentAccount, MarketDep

router = APIRouter(prefix="/orders", tags=["orders"])


class OrderIn(StrictIn):
    """Products to buy and a key that makes retries of this request safe."""

    products: list[str] = Field(min_length=1, max_length=50, examples=[["iris-measurements"]])
    idempotency_key: str = Field(min_length=1, max_length=128, examples=["a7f1c2d0"])


@router.post(
    "",
    status_code=201,
    response_model=OrderOut,
    responses={**errors(401, 402, 403, 404, 409, 422), **REPLAY_DOC},
)
async def place_order(
    body: OrderIn, token: BearerToken, market: MarketDep, request: Request
) -> Response:
    """Buy products: debit buyer, credit sellers and fee, grant access, in one transaction.

    Replaying the same ``idempotency_key`` returns the first order with the original
    status (201), ``replayed: true`` and the header ``Idempotent-Replayed: true``.
    """
    # The token is checked inside the purchase's transaction (one pooled connection, one
    # worker-thread hop for the whole request instead of one per dependency).  At most
    # DATABAZAAR_PURCHASE_CONCURRENCY purchases of this worker run at once; the others
    # wait here, holding no connection, lock or thread (many threads holding their
    # buyers' chain locks while they wait for the GIL made every purchase slower).
    async with request.app.state.purchase_slots:
        order = await run_in_threadpool(
            market.purchase_with_token, token, body.products, body.idempotency_key
        )
    # The order is already a validated OrderOut: answered as its JSON directly, without
    # FastAPI validating and serialising it a second time (the schema stays documented).
    answer = Response(order.model_dump_json(), status_code=201, media_type="application/json")
    mark_replay(answer, order.replayed)
    return answer


@router.get("", response_model=list[OrderOut], responses=errors(401, 422))
def my_orders(
    account: CurrentAccount,
    market: MarketDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> list[OrderOut]:
    """The caller's orders, newest first."""
    return market.orders_for(account, limit=limit, offset=offset)


@router.get("/{order_id}", response_model=OrderOut, responses=errors(401, 404, 422))
def get_order(
    order_id: Annotated[int, Path(ge=1, le=MAX_ID)], account: CurrentAccount, market: MarketDep
) -> OrderOut:
    """One of the caller's orders (another account's order answers 404)."""
    return market.get_order(account, order_id)
