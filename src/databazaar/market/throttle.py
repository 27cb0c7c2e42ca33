"""Login throttling kept in the database, shared by every server process.

Failed logins are counted per **(username, client address)** inside a sliding window
(``login_attempts`` rows, one per attempt not yet cleared by a success):

* after ``max_failures`` failures for one name from one address within ``window``
  seconds, further attempts for that name *from that address* are refused with
  :class:`~databazaar.core.errors.TooManyRequests` (429, ``Retry-After``) until the
  oldest of them is a window old;
* one address is also limited across all names, to ``max_failures * spray_factor``
  failures per window (password spraying);
* a successful login clears its (name, address) count.

Because the count is keyed by the address as well, nobody can lock a victim out: an
attacker's failures block only the attacker's own address, and the victim still logs
in from theirs.  Names count the same whether or not the account exists, so the answer
reveals nothing.  The count lives in the store, so all workers (and all hosts serving
one PostgreSQL database) share it: with ``w`` workers the bound is still
``max_failures``.

An attempt is recorded *before* the password is checked, in the same transaction as
the count (on PostgreSQL under an advisory lock of the (name, address) pair; SQLite's
writers are serialised), so concurrent attempts cannot all slip under the bound.

The client address is what the server saw on the TCP connection.  Behind a reverse
proxy, name the proxy in ``DATABAZAAR_TRUSTED_PROXIES`` so that its
``X-Forwarded-For`` is believed; from anyone else the header is ignored, so a client
cannot pick the address it is counted under.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable

from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session

from databazaar.core.errors import InvalidInput, TooManyRequests
from databazaar.market.db import Database
from databazaar.market.models import LoginAttempt

LOCAL_CLIENT = "local"
_PLAIN = re.compile(r"[\x21-\x7e]*")


def _storable(value: str) -> str:
    """``value`` if it is short plain text, else a digest of it (NUL, control characters
    and over-long strings can neither be stored as text everywhere nor be real names)."""
    if len(value) <= 64 and _PLAIN.fullmatch(value):
        return value
    return "#" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:63]


def _pair_lock_id(username: str, client: str) -> int:
    """A signed 64-bit advisory-lock id for a (name, address) pair."""
    digest = hashlib.sha256(f"{username}\x00{client}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class LoginThrottle:
    """Count failed logins per (username, client address) in the store (module docstring).

    ``max_failures=0`` turns the throttle off.  ``clock`` gives wall-clock seconds (it
    must agree between processes; tests pass a fake one).
    """

    def __init__(
        self,
        db: Database,
        max_failures: int = 5,
        window: float = 900.0,
        *,
        spray_factor: int = 10,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_failures < 0 or window <= 0 or spray_factor < 1:
            raise InvalidInput("max_failures must be >= 0, window > 0 and spray_factor >= 1")
        self.db = db
        self.max_failures = int(max_failures)
        self.window = float(window)
        self.spray_factor = int(spray_factor)
        self._clock = clock

    @staticmethod
    def _key(username: object, client: str | None) -> tuple[str, str]:
        name = (username if isinstance(username, str) else "").strip().lower()
        return _storable(name), _storable(client or LOCAL_CLIENT)

    def _refuse(self, what: str, oldest: float, now: float) -> TooManyRequests:
        wait = int(max(0.0, oldest + self.window - now)) + 1
        return TooManyRequests(
            f"too many failed logins {what}", retry_after=wait, hint=f"try again in {wait} s"
        )

    def admit(self, username: object, client: str | None) -> None:
        """Record a login attempt, or raise :class:`TooManyRequests` (nothing recorded)
        while the (name, address) pair or the address is over its bound."""
        if self.max_failures == 0:
            return
        name, addr = self._key(username, client)
        now = self._clock()
        since = now - self.window
        with self.db.write() as s:
            if self.db.dialect == "postgresql":
                s.execute(
                    text("SELECT pg_advisory_xact_lock(:k)"), {"k": _pair_lock_id(name, addr)}
                )
            s.execute(delete(LoginAttempt).where(LoginAttempt.attempted_at <= since))
            n, oldest = _recent(s, since, name, addr)
            if n >= self.max_failures:
                raise self._refuse(f"for {name!r} from this address", oldest, now)
            n, oldest = _recent(s, since, None, addr)
            if n >= self.max_failures * self.spray_factor:
                raise self._refuse("from this address", oldest, now)
            s.add(LoginAttempt(username=name, client=addr, attempted_at=now))

    def succeeded(self, username: object, client: str | None) -> None:
        """Clear the (name, address) count after a successful login."""
        if self.max_failures == 0:
            return
        name, addr = self._key(username, client)
        with self.db.write() as s:
            s.execute(
                delete(LoginAttempt).where(
                    LoginAttempt.username == name, LoginAttempt.client == addr
                )
            )

    def failures(self, username: object, client: str | None) -> int:
        """How many failures count against (name, address) now."""
        name, addr = self._key(username, client)
        with self.db.read() as s:
            return _recent(s, self._clock() - self.window, name, addr)[0]


def _recent(s: Session, since: float, name: str | None, addr: str) -> tuple[int, float]:
    """``(count, oldest time)`` of the attempts after ``since`` from ``addr`` (for ``name``,
    or for any name when it is ``None``)."""
    where = [LoginAttempt.client == addr, LoginAttempt.attempted_at > since]
    if name is not None:
        where.append(LoginAttempt.username == name)
    n, oldest = s.execute(
        select(func.count(), func.min(LoginAttempt.attempted_at)).where(*where)
    ).one()
    return int(n), float(oldest or 0.0)
