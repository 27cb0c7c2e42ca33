"""Per-request dependencies: the market service and the calling account.

Routes declare what they need (``MarketDep``, ``CurrentAccount``, ``OptionalAccount``,
``AdminAccount``, ``BearerToken``) and FastAPI resolves it for each request, so routes
stay thin.  Dependencies that do no I/O are ``async def``: FastAPI runs a plain ``def``
dependency in a worker thread, and that hop costs more than they do.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from databazaar.core.errors import Forbidden, Unauthorized
from databazaar.market.schemas import AccountOut
from databazaar.market.service import Market

bearer = HTTPBearer(auto_error=False, description="an API token from POST /api/auth/token")


async def get_market(request: Request) -> Market:
    """The app's :class:`Market` (created by :func:`databazaar.server.create_app`).

    ``async`` because it does no I/O: FastAPI runs a plain ``def`` dependency in a worker
    thread, a hop that costs more than the lookup."""
    return request.app.state.market


MarketDep = Annotated[Market, Depends(get_market)]
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def client_address(request: Request) -> str | None:
    """The client's address as the server saw it: the TCP peer, or what a trusted proxy
    reported (``serve`` believes ``X-Forwarded-For`` only from DATABAZAAR_TRUSTED_PROXIES)."""
    return request.client.host if request.client is not None else None


ClientAddress = Annotated[str | None, Depends(client_address)]


def optional_account(market: MarketDep, creds: Credentials) -> AccountOut | None:
    """The authenticated account, or ``None`` when no credentials were sent."""
    if creds is None:
        return None
    return market.authenticate(creds.credentials)


async def bearer_token(creds: Credentials) -> str:
    """The bearer token sent, unchecked (401 without one); for routes that check it in
    their own transaction.  ``async`` (no I/O), so it costs no worker-thread hop."""
    if creds is None:
        raise Unauthorized("authentication required", hint="send 'Authorization: Bearer <token>'")
    return creds.credentials


BearerToken = Annotated[str, Depends(bearer_token)]


def current_account(market: MarketDep, token: BearerToken) -> AccountOut:
    """The authenticated account; 401 without valid credentials."""
    return market.authenticate(token)


async def admin_account(account: Annotated[AccountOut, Depends(current_account)]) -> AccountOut:
    """The authenticated account if it is an admin; 403 otherwise."""
    if account.role != "admin":
        raise Forbidden("admin role required")
    return account


OptionalAccount = Annotated[AccountOut | None, Depends(optional_account)]
CurrentAccount = Annotated[AccountOut, Depends(current_account)]
AdminAccount = Annotated[AccountOut, Depends(admin_account)]
