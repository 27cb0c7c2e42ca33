"""Browser sessions: a signed cookie holding the login token and the CSRF token.

The cookie is an ``itsdangerous`` :class:`~itsdangerous.URLSafeTimedSerializer`
signature (keyed with the market's secret key, salted for this purpose) over a small
JSON object:

``t``
    the market API token issued at login (:meth:`Market.login`); the account is
    re-authenticated from it on every request, so revoking the token (log out) or its
    expiry ends the session;
``c``
    the CSRF token (32 random bytes, URL-safe) that every form must post back in the
    ``csrf_token`` field (synchronizer-token pattern); a new one is minted at login
    and logout so a token seen before login is useless after it;
``f``
    one-shot flash messages shown on the next page.

The cookie is ``HttpOnly`` and ``SameSite=Lax``; it is also ``Secure`` (and named with
the ``__Host-`` prefix, which binds it to the host and path ``/``) whenever the request
came over HTTPS, or always when the app sets ``web_cookie_secure``.  A cookie whose
signature is wrong or older than :data:`SESSION_MAX_AGE` is ignored.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any

from fastapi import Request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.responses import Response

from databazaar.core.errors import Forbidden, Unauthorized
from databazaar.market.schemas import AccountOut

SESSION_SALT = "databazaar.web.session.v1"
SESSION_MAX_AGE = 12 * 3600
COOKIE_NAME = "dbz_session"
SECURE_COOKIE_NAME = "__Host-dbz_session"
CSRF_FIELD = "csrf_token"
MAX_FLASHES = 5


class CsrfError(Forbidden):
    """A form was posted without the session's CSRF token (or with a wrong one)."""

    code = "csrf_failed"


def make_serializer(secret_key: str) -> URLSafeTimedSerializer:
    """The cookie signer for a secret key."""
    return URLSafeTimedSerializer(secret_key, salt=SESSION_SALT)


def is_secure(request: Request) -> bool:
    """Whether cookies for this request should carry ``Secure``."""
    forced = getattr(request.app.state, "web_cookie_secure", None)
    if forced is not None:
        return bool(forced)
    return request.url.scheme == "https"


class WebSession:
    """The session of one request; call :meth:`save` on the response to persist changes."""

    def __init__(self, request: Request, serializer: URLSafeTimedSerializer) -> None:
        self.request = request
        self._serializer = serializer
        self.secure = is_secure(request)
        self.cookie_name = SECURE_COOKIE_NAME if self.secure else COOKIE_NAME
        self.data: dict[str, Any] = self._load(request.cookies.get(self.cookie_name))
        self.dirty = False
        if not isinstance(self.data.get("c"), str) or len(self.data["c"]) < 32:
            self.data["c"] = secrets.token_urlsafe(32)
            self.dirty = True
        self._account: AccountOut | None = None
        self._account_checked = False

    def _load(self, raw: str | None) -> dict[str, Any]:
        if not raw or len(raw) > 4096:
            return {}
        try:
            data = self._serializer.loads(raw, max_age=SESSION_MAX_AGE)
        except BadSignature:
            return {}
        return data if isinstance(data, dict) else {}

    # ------------------------------------------------------------------ CSRF
    @property
    def csrf_token(self) -> str:
        """The token every form of this session posts back."""
        return str(self.data["c"])

    def check_csrf(self, submitted: object) -> None:
        """Raise :class:`CsrfError` unless ``submitted`` equals the session's token."""
        if not isinstance(submitted, str) or not submitted:
            raise CsrfError(
                "this form was sent without its security token",
                hint="reload the page and submit the form again",
            )
        if not hmac.compare_digest(submitted.encode(), self.csrf_token.encode()):
            raise CsrfError(
                "this form's security token does not match your session",
                hint="reload the page and submit the form again",
            )

    # ------------------------------------------------------------------ login state
    @property
    def token(self) -> str | None:
        tok = self.data.get("t")
        return tok if isinstance(tok, str) else None

    def account(self) -> AccountOut | None:
        """The logged-in account (re-checked against the market once per request)."""
        if self._account_checked:
            return self._account
        self._account_checked = True
        tok = self.token
        if tok is None:
            return None
        market = self.request.app.state.market
        try:
            self._account = market.authenticate(tok)
        except Unauthorized:
            # Revoked or expired: forget it so the next page shows the visitor as logged out.
            self.data.pop("t", None)
            self.dirty = True
            self._account = None
        return self._account

    def require_account(self) -> AccountOut:
        acc = self.account()
        if acc is None:
            raise Unauthorized("please log in to see this page")
        return acc

    def log_in(self, token: str, account: AccountOut) -> None:
        """Start a logged-in session (new CSRF token: no fixation across login)."""
        self.data = {"t": token, "c": secrets.token_urlsafe(32), "f": self.data.get("f", [])}
        self._account = account
        self._account_checked = True
        self.dirty = True

    def log_out(self) -> str | None:
        """End the session; returns the token so the caller can revoke it."""
        tok = self.token
        self.data = {"c": secrets.token_urlsafe(32), "f": self.data.get("f", [])}
        self._account = None
        self._account_checked = True
        self.dirty = True
        return tok

    # ------------------------------------------------------------------ flash
    def flash(self, message: str, kind: str = "info") -> None:
        """Queue a message for the next page shown to this visitor."""
        flashes = list(self.data.get("f") or [])[-(MAX_FLASHES - 1) :]
        flashes.append([kind, message[:300]])
        self.data["f"] = flashes
        self.dirty = True

    def pop_flashes(self) -> list[tuple[str, str]]:
        flashes = self.data.pop("f", None) or []
        if flashes:
            self.dirty = True
        out = []
        for item in flashes:
            if isinstance(item, list) and len(item) == 2:
                out.append((str(item[0]), str(item[1])))
        return out

    # ------------------------------------------------------------------ cookie
    def save(self, response: Response) -> Response:
        """Write the cookie on ``response`` if the session changed."""
        if self.dirty:
            response.set_cookie(
                self.cookie_name,
                self._serializer.dumps(self.data),
                max_age=SESSION_MAX_AGE,
                path="/",
                secure=self.secure,
                httponly=True,
                samesite="lax",
            )
        return response
