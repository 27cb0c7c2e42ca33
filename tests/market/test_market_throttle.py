"""The login throttle kept in the store: per (username, address), shared, not a lock-out lever."""

from __future__ import annotations

import pytest

from databazaar.core.errors import InvalidInput, TooManyRequests, Unauthorized
from databazaar.market.db import Database
from databazaar.market.service import Market
from databazaar.market.throttle import LoginThrottle

PASSWORD = "correct-horse-9"


def test_window_retry_after_and_reset(store: Database) -> None:
    now = [1000.0]
    t = LoginThrottle(store, max_failures=3, window=60.0, clock=lambda: now[0])
    for _ in range(3):
        t.admit("Alice", "10.0.0.1")  # each admitted attempt counts until a success
    with pytest.raises(TooManyRequests) as err:
        t.admit("ALICE ", "10.0.0.1")  # names are compared case-insensitively
    assert err.value.retry_after == 61 and err.value.http_status == 429
    assert t.failures("alice", "10.0.0.1") == 3  # the refused attempt was not recorded
    t.admit("bob", "10.0.0.1")  # other names are not affected
    t.admit("alice", "10.0.0.2")  # nor is the same name from another address
    now[0] += 30.0
    with pytest.raises(TooManyRequests) as err:
        t.admit("alice", "10.0.0.1")
    assert err.value.retry_after == 31
    now[0] += 30.0  # the oldest failures are now a full window old
    t.admit("alice", "10.0.0.1")
    assert t.failures("alice", "10.0.0.1") == 1
    t.admit("alice", "10.0.0.2")
    t.succeeded("alice", "10.0.0.1")  # a success clears the count of that pair only
    assert t.failures("alice", "10.0.0.1") == 0 and t.failures("alice", "10.0.0.2") == 1
    # expired attempts are deleted, so the table stays small
    now[0] += 1000.0
    t.admit("carol", None)
    with store.read() as s:
        from sqlalchemy import func, select

        from databazaar.market.models import LoginAttempt

        assert s.scalar(select(func.count()).select_from(LoginAttempt)) == 1
        assert s.scalar(select(LoginAttempt.client)) == "local"


def test_spraying_many_names_from_one_address_is_bounded(store: Database) -> None:
    t = LoginThrottle(store, max_failures=2, window=60.0, spray_factor=3, clock=lambda: 5.0)
    for i in range(6):
        t.admit(f"user-{i}", "10.9.9.9")
    with pytest.raises(TooManyRequests, match="from this address"):
        t.admit("user-new", "10.9.9.9")
    t.admit("user-new", "10.9.9.8")


def test_hostile_names_and_addresses_are_counted_safely(store: Database) -> None:
    t = LoginThrottle(store, max_failures=2, window=60.0, clock=lambda: 5.0)
    for name in ("seller\x00one", "x" * 500, "caf\u00e9 \u202e", "'; DROP TABLE accounts; --"):
        for _ in range(2):
            t.admit(name, "10.1.1.1")
        with pytest.raises(TooManyRequests):
            t.admit(name, "10.1.1.1")
        assert t.failures(name, "10.1.1.1") == 2
    t.admit("someone", "bad\x00address")
    assert t.failures("someone", "bad\x00address") == 1


def test_off_and_bad_settings(store: Database) -> None:
    off = LoginThrottle(store, max_failures=0)
    for _ in range(20):
        off.admit("x", "1.1.1.1")
    assert off.failures("x", "1.1.1.1") == 0
    for kwargs in ({"max_failures": -1}, {"window": 0}, {"spray_factor": 0}):
        with pytest.raises(InvalidInput):
            LoginThrottle(store, **kwargs)


def test_market_login_locks_the_guessers_address_not_the_victim(market: Market) -> None:
    market.create_account("victim-1", PASSWORD, "buyer")
    for _ in range(5):
        with pytest.raises(Unauthorized):
            market.login("victim-1", "guess-guess", client="203.0.113.7")
    with pytest.raises(TooManyRequests):
        market.login("victim-1", PASSWORD, client="203.0.113.7")
    # the victim, from their own address, is not locked out
    assert market.login("victim-1", PASSWORD, client="198.51.100.2").account.username == "victim-1"
    # unknown names count the same way (the answer reveals nothing)
    for _ in range(5):
        with pytest.raises(Unauthorized):
            market.login("nobody-here", "guess-guess", client="203.0.113.7")
    with pytest.raises(TooManyRequests):
        market.login("nobody-here", "guess-guess", client="203.0.113.7")
    # a success clears the count: four more failures are then allowed again
    for _ in range(4):
        with pytest.raises(Unauthorized):
            market.login("victim-1", "guess-guess", client="198.51.100.2")
    market.login("victim-1", PASSWORD, client="198.51.100.2")
    for _ in range(4):
        with pytest.raises(Unauthorized):
            market.login("victim-1", "guess-guess", client="198.51.100.2")
    assert market.login("victim-1", PASSWORD, client="198.51.100.2").token
