"""Credentials and access: password and token hashing, roles, signed download links.

* Passwords are hashed with Argon2id (``argon2-cffi``'s :class:`PasswordHasher`, its
  default RFC 9106 low-memory profile).
* API tokens look like ``dbz_<lookup>_<secret>``: ``lookup`` (16 hex characters) finds
  the row, and only a SHA-256 digest of ``secret`` (32 random bytes) is stored, so a
  leaked database does not leak usable tokens.  A slow password hash buys nothing for a
  256-bit random secret (there is no dictionary to search), while it would cost every
  authenticated request several milliseconds; tokens minted before (stored as Argon2id
  hashes) are still checked with Argon2.  Digests are compared in constant time.
* Download links are ``itsdangerous`` signatures over ``(account, version, expiry)``
  with the market's secret key; a link is refused when its signature is wrong, when it
  has expired, or when the account no longer holds a grant at download time.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from itsdangerous import BadSignature, URLSafeSerializer

from databazaar.core.errors import Forbidden, InvalidInput, Unauthorized
from databazaar.market.models import Role

PASSWORD_HASHER = PasswordHasher()
TOKEN_HASHER = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)
TOKEN_PREFIX = "dbz_"
TOKEN_DIGEST_PREFIX = "sha256$"
_LOOKUP_RE = re.compile(r"[0-9a-f]{16}")
_SECRET_RE = re.compile(r"[A-Za-z0-9_-]{1,100}")
MIN_PASSWORD = 8
MAX_PASSWORD = 256
LINK_SALT = "databazaar.download.v1"
MAX_LINK_TTL = 7 * 24 * 3600
#: Lifetime of a download link unless the caller asks otherwise (five minutes).
DEFAULT_LINK_TTL = 300


@functools.cache
def _dummy_hash() -> str:
    return PASSWORD_HASHER.hash("databazaar-no-such-account")


def hash_password(password: str, hasher: PasswordHasher | None = None) -> str:
    """Argon2id hash of a password (8 to 256 characters).

    ``hasher`` overrides the cost parameters (tests use a cheap one); verification reads
    the parameters from the stored hash, so hashes of any cost verify.
    """
    if not isinstance(password, str) or not (MIN_PASSWORD <= len(password) <= MAX_PASSWORD):
        raise InvalidInput(f"password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters long")
    return (hasher or PASSWORD_HASHER).hash(password)


def check_password(stored_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches ``stored_hash`` (``False`` for accounts without one)."""
    if not stored_hash or not isinstance(password, str):
        # Spend the same time as a real check so missing accounts are not revealed.
        try:
            PASSWORD_HASHER.verify(_dummy_hash(), password if isinstance(password, str) else "")
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            pass
        return False
    try:
        return PASSWORD_HASHER.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True)
class NewToken:
    """A freshly minted token: the clear ``token`` is shown once, ``token_hash`` stored."""

    token: str
    lookup: str
    token_hash: str


def _token_digest(secret: str) -> str:
    return TOKEN_DIGEST_PREFIX + hashlib.sha256(secret.encode("utf-8")).hexdigest()


def mint_token() -> NewToken:
    """A new random API token and the digest to store for it."""
    lookup = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return NewToken(
        token=f"{TOKEN_PREFIX}{lookup}_{secret}",
        lookup=lookup,
        token_hash=_token_digest(secret),
    )


def split_token(token: str) -> tuple[str, str]:
    """``(lookup, secret)`` of a token string, or :class:`Unauthorized` if malformed."""
    if not isinstance(token, str) or not token.startswith(TOKEN_PREFIX):
        raise Unauthorized("malformed API token", hint="send 'Authorization: Bearer dbz_...'")
    body = token[len(TOKEN_PREFIX) :]
    lookup, sep, secret = body.partition("_")
    if not sep or not _LOOKUP_RE.fullmatch(lookup) or not _SECRET_RE.fullmatch(secret):
        raise Unauthorized("malformed API token", hint="send 'Authorization: Bearer dbz_...'")
    return lookup, secret


def check_token_secret(token_hash: str, secret: str) -> bool:
    """Whether ``secret`` matches a stored token digest (or a legacy Argon2 hash)."""
    if token_hash.startswith(TOKEN_DIGEST_PREFIX):
        return hmac.compare_digest(token_hash, _token_digest(secret))
    try:
        return TOKEN_HASHER.verify(token_hash, secret)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def require_role(role: Role, allowed: set[Role], action: str) -> None:
    """Raise :class:`Forbidden` unless ``role`` is one of ``allowed`` (admin always is)."""
    if role == Role.admin or role in allowed:
        return
    names = " or ".join(sorted(r.value for r in allowed))
    raise Forbidden(f"only a {names} account can {action}", hint=f"your role is {role.value}")


def load_secret_key(home: Path, configured: str | None) -> str:
    """The signing key: the configured one, else one kept in ``<home>/secret_key`` (0600)."""
    if configured:
        if len(configured) < 16:
            raise InvalidInput("DATABAZAAR_SECRET_KEY must be at least 16 characters")
        return configured
    path = Path(home) / "secret_key"
    if path.is_file():
        key = path.read_text().strip()
        if len(key) >= 16:
            return key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(key)
    tmp.chmod(0o600)
    tmp.replace(path)
    return key


@dataclass(frozen=True)
class LinkClaims:
    """What a valid download link grants: one account, one version, until ``expires``;
    a ``bound`` link works only for a request authenticated as that account."""

    account_id: int
    version_id: int
    expires: int
    bound: bool = False


class LinkSigner:
    """Signs and checks expiring download links."""

    def __init__(self, secret_key: str) -> None:
        self._serializer = URLSafeSerializer(secret_key, salt=LINK_SALT)

    def sign(
        self,
        account_id: int,
        version_id: int,
        ttl_seconds: int = DEFAULT_LINK_TTL,
        *,
        now: float | None = None,
        bound: bool = False,
    ) -> tuple[str, int]:
        """A link token valid for ``ttl_seconds`` (1 s to 7 days) and its expiry time;
        ``bound`` ties it to the account (see :class:`LinkClaims`)."""
        if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int):
            raise InvalidInput("ttl_seconds must be an integer")
        if not (1 <= ttl_seconds <= MAX_LINK_TTL):
            raise InvalidInput(f"ttl_seconds must be between 1 and {MAX_LINK_TTL}")
        expires = int(now if now is not None else time.time()) + ttl_seconds
        claims: dict[str, int] = {"a": account_id, "v": version_id, "e": expires}
        if bound:
            claims["b"] = 1
        token = self._serializer.dumps(claims)
        return str(token), expires

    def check(self, token: str, *, now: float | None = None) -> LinkClaims:
        """The claims of a valid link; :class:`Forbidden` if forged, tampered or expired."""
        if not isinstance(token, str) or len(token) > 500:
            raise Forbidden("invalid download link")
        try:
            data = self._serializer.loads(token)
        except BadSignature:
            raise Forbidden("invalid download link", hint="request a new link") from None
        try:
            claims = LinkClaims(
                int(data["a"]), int(data["v"]), int(data["e"]), bool(data.get("b", 0))
            )
        except (KeyError, TypeError, ValueError):
            raise Forbidden("invalid download link") from None
        current = now if now is not None else time.time()
        if current >= claims.expires:
            raise Forbidden("download link has expired", hint="request a new link")
        return claims
