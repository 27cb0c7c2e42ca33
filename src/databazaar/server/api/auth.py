"""Accounts and authentication: register, log in for a token, who am I, log out."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import Field

from databazaar.market.access import MAX_PASSWORD, MIN_PASSWORD
from databazaar.market.schemas import AccountOut, TokenOut
from databazaar.market.validation import USERNAME_RE
from databazaar.server.api.common import StrictIn, errors
from databazaar.server.deps import ClientAddress, Credentials, CurrentAccount, MarketDep

router = APIRouter(tags=["accounts"])


class RegisterIn(StrictIn):
    """A new account: username, password and role."""

    username: str = Field(
        pattern=USERNAME_RE.pattern,
        min_length=3,
        max_length=32,
        examples=["alice"],
        description="3-32 characters: a lowercase letter, then lowercase letters, digits, _ . -",
    )
    password: str = Field(
        min_length=MIN_PASSWORD, max_length=MAX_PASSWORD, examples=["correct horse battery"]
    )
    role: Literal["seller", "buyer"] = "buyer"


class LoginIn(StrictIn):
    """Credentials exchanged for an API token (any wrong or malformed pair answers 401)."""

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


@router.post("/accounts", status_code=201, response_model=AccountOut, responses=errors(409, 422))
def register(body: RegisterIn, market: MarketDep) -> AccountOut:
    """Register a seller or buyer account (admins are created with the CLI)."""
    return market.create_account(body.username, body.password, body.role)


@router.post("/auth/token", response_model=TokenOut, responses=errors(401, 422, 429))
def login(body: LoginIn, market: MarketDep, client: ClientAddress) -> TokenOut:
    """Log in with a password; returns a bearer token (shown once).

    Five failed logins for a username from one address within 15 minutes make further
    attempts from that address answer 429 (with ``Retry-After``) until the window passes.
    """
    return market.login(body.username, body.password, client=client)


@router.post("/auth/logout", status_code=204, responses=errors(401))
def logout(account: CurrentAccount, creds: Credentials, market: MarketDep) -> None:
    """Revoke the token used for this request."""
    assert creds is not None
    market.revoke_token(creds.credentials)


@router.get("/me", response_model=AccountOut, responses=errors(401))
def me(account: CurrentAccount, market: MarketDep) -> AccountOut:
    """The calling account with its current balance."""
    return market.get_account(account.id)
