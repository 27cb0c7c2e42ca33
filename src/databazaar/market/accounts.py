"""Accounts: registration, password login, API tokens.

Passwords are hashed with argon2 (:mod:`databazaar.market.access`); API tokens are
stored as a lookup id plus a hash, so the clear token exists only in the response that
issues it.  Login failures are counted per (username, client address) in the store by
:class:`~databazaar.market.throttle.LoginThrottle`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from databazaar.core.errors import Conflict, InvalidInput, NotFound, Unauthorized
from databazaar.market import access, balances
from databazaar.market import validation as v
from databazaar.market.common import FEE_ACCOUNT, FUNDING_ACCOUNT, MarketBase, created, utc
from databazaar.market.models import Account, ApiToken, Role
from databazaar.market.schemas import AccountOut, TokenOut

DEFAULT_TOKEN_TTL = timedelta(days=30)


def account_out(acc: Account, balance_minor: int) -> AccountOut:
    """The public view of an account row whose balance (cached column plus pending
    credits, :func:`databazaar.market.balances.balance`) is ``balance_minor``."""
    return AccountOut(
        id=acc.id,
        username=acc.username,
        role=acc.role.value,
        balance_minor=balance_minor,
        created_at=created(acc.created_at),
    )


def account_view(s: Session, acc: Account) -> AccountOut:
    """The public view of an account row, its pending credits summed in."""
    return account_out(acc, balances.balance(s, acc.id) or 0)


# every authenticated request runs it: built once, columns only (no ORM entities);
# the token's account and its balance for the ``lookup`` part of a token
TOKEN_ACCOUNT = (
    select(
        ApiToken.token_hash,
        ApiToken.revoked,
        ApiToken.expires_at,
        Account.id,
        Account.username,
        Account.role,
        Account.created_at,
        balances.balance_column(),
    )
    .join(Account, Account.id == ApiToken.account_id)
    .where(ApiToken.lookup == bindparam("lookup"))
)


def token_account(conn: Connection, token: str) -> AccountOut:
    """The account an API token belongs to, read on ``conn`` (one statement).

    :class:`Unauthorized` for a malformed, unknown, revoked or expired token.  Runs on
    the caller's connection, so a request can check its token inside the transaction
    that then does its work (:meth:`databazaar.market.orders.Orders.purchase_with_token`).
    """
    lookup, secret = access.split_token(token)
    return token_row_account(conn.execute(TOKEN_ACCOUNT, {"lookup": lookup}).first(), secret)


def token_row_account(row: Row[Any] | None, secret: str) -> AccountOut:
    """The account of a :data:`TOKEN_ACCOUNT` row (or of a statement extending it) for a
    token whose secret part is ``secret``; :class:`Unauthorized` if no row, or the token
    is revoked, expired or its secret does not match."""
    if row is None or row.revoked or not access.check_token_secret(row.token_hash, secret):
        raise Unauthorized("invalid API token", hint="log in again")
    expires = utc(row.expires_at)
    if expires is not None and expires <= datetime.now(UTC):
        raise Unauthorized("API token has expired", hint="log in again")
    return AccountOut(
        id=row.id,
        username=row.username,
        role=Role(row.role).value,
        balance_minor=row.balance,
        created_at=created(row.created_at),
    )


class Accounts(MarketBase):
    """Account and token actions of :class:`~databazaar.market.service.Market`."""

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
                return account_out(acc, 0)
        except IntegrityError:
            raise Conflict(f"username {username!r} is taken", hint="choose another") from None

    def get_account(self, account_id: int) -> AccountOut:
        """An account by id."""
        with self.db.read() as s:
            acc = s.get(Account, account_id)
            if acc is None:
                raise NotFound(f"account {account_id} not found")
            return account_view(s, acc)

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
            return account_view(s, acc)

    def login(
        self,
        username: str,
        password: str,
        *,
        ttl: timedelta | None = DEFAULT_TOKEN_TTL,
        client: str | None = None,
    ) -> TokenOut:
        """Check a password and issue an API token (the same error for any failure).

        After ``login_throttle.max_failures`` failures for a username from one ``client``
        address within its window, further attempts from there are refused with
        :class:`TooManyRequests` (HTTP 429) before the password is checked
        (:mod:`databazaar.market.throttle`).
        """
        acc = None
        self.login_throttle.admit(username, client)
        if isinstance(username, str) and v.USERNAME_RE.fullmatch(username):
            with self.db.read() as s:
                acc = s.scalar(select(Account).where(Account.username == username))
        ok = access.check_password(acc.password_hash if acc is not None else None, password)
        if not ok or acc is None:
            raise Unauthorized("wrong username or password")
        self.login_throttle.succeeded(username, client)
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
            return TokenOut(token=new.token, account=account_view(s, acc))

    def authenticate(self, token: str) -> AccountOut:
        """The account an API token belongs to; :class:`Unauthorized` if invalid."""
        access.split_token(token)  # a malformed token is refused without a connection
        with self.db.read_connection() as conn:
            return token_account(conn, token)

    def revoke_token(self, token: str) -> None:
        """Revoke a token (logging out)."""
        lookup, _ = access.split_token(token)
        self.authenticate(token)
        with self.db.write() as s:
            row = s.scalar(select(ApiToken).where(ApiToken.lookup == lookup))
            if row is not None:
                row.revoked = True
