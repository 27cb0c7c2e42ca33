"""Cached account balances, with the credits of sales deferred and folded in later.

The ledger (:mod:`databazaar.market.ledger`) is the truth: an account's balance is the
sum of its postings.  The market caches it so that a purchase checks and debits its
buyer with one guarded ``UPDATE`` instead of summing the ledger.  Updating the cache of
every *credited* account inside the buyer's transaction, however, makes each purchase
lock the market-fee account's row (and its seller's) until it commits, and concurrent
purchases then queue on those rows one commit at a time: a lock convoy (issue 13
measured 63 purchases/s with a p99 of 1.3 s at 32 clients on PostgreSQL).  So the
credits of a sale are **deferred**: appended as rows of ``ledger_pending_credits``
(an ``INSERT`` takes no lock another purchase waits for), and::

    balance(account) = accounts.balance_minor + sum(pending credits of the account)

:func:`fold` moves pending credits into the cached column (``DELETE ... RETURNING``,
then one ``UPDATE`` per account).  It runs when a debit is not covered by the cached
column alone, before a payout, and for every account when the ledger is sealed
(``databazaar ledger seal``, the periodic job), so the pending rows stay few.

Why this is safe:

* pending credits are positive, so the cached column never exceeds the balance: a
  debit the cached column covers is covered, and one it does not cover folds the
  payer's credits and checks again before it is refused;
* a fold deletes exactly the rows it adds (two folds never take the same row: the
  second waits for the first and then finds it gone), so money is neither lost nor
  counted twice, and :func:`databazaar.market.ledger_verify.verify` checks
  ``balance_minor + pending == sum of postings`` for every account;
* debits and immediate credits update account rows in ascending id order, and a fold
  takes one account at a time in ascending id order, so two writers never wait on each
  other in a cycle.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from databazaar.core.errors import InvalidInput, PaymentError
from databazaar.market.db import DriverResult, driver_execute
from databazaar.market.models import Account, PendingCredit, Role

_ACCOUNTS = Account.__table__
_PENDING = PendingCredit.__table__
_DEFER = insert(_PENDING).inline()  # no RETURNING of the key: it can be pipelined


def pending_sum_of(account_id: ColumnElement[int]) -> ColumnElement[int]:
    """A scalar subquery: the sum of the pending credits of ``account_id`` (0 if none)."""
    return func.coalesce(
        select(func.sum(_PENDING.c.amount_minor))
        .where(_PENDING.c.account_id == account_id)
        .scalar_subquery(),
        0,
    )


def balance_column() -> ColumnElement[int]:
    """``accounts.balance_minor`` plus the account's pending credits, for a ``SELECT``."""
    return _BALANCE


_BALANCE = (_ACCOUNTS.c.balance_minor + pending_sum_of(_ACCOUNTS.c.id)).label("balance")


def pending(session: Session, account_ids: Iterable[int] | None = None) -> dict[int, int]:
    """The pending credits per account (all accounts with any, or those of ``account_ids``)."""
    stmt = select(_PENDING.c.account_id, func.sum(_PENDING.c.amount_minor)).group_by(
        _PENDING.c.account_id
    )
    if account_ids is not None:
        stmt = stmt.where(_PENDING.c.account_id.in_(sorted(set(account_ids))))
    return {int(a): int(x) for a, x in session.execute(stmt)}


def balance(session: Session, account_id: int) -> int | None:
    """An account's balance (cached column plus pending credits); ``None`` if unknown."""
    found = session.execute(
        select(balance_column()).where(_ACCOUNTS.c.id == account_id)
    ).scalar_one_or_none()
    return None if found is None else int(found)


def fold(session: Session, account_ids: Iterable[int] | None = None) -> dict[int, int]:
    """Move pending credits into the cached balances; return what moved per account.

    With ``account_ids`` only those accounts' credits, else every account's.  Each
    account is folded by one ``DELETE ... RETURNING`` and one ``UPDATE``, in ascending
    account id order.
    """
    if account_ids is None:
        ids = sorted(session.scalars(select(_PENDING.c.account_id).distinct()))
    else:
        ids = sorted(set(account_ids))
    moved: dict[int, int] = {}
    for account_id in ids:
        amounts = session.scalars(
            delete(_PENDING)
            .where(_PENDING.c.account_id == account_id)
            .returning(_PENDING.c.amount_minor)
        ).all()
        if amounts:
            moved[account_id] = sum(amounts)
            _add(session.connection(), account_id, moved[account_id])
    return moved


_CREDIT = (
    update(_ACCOUNTS)
    .where(_ACCOUNTS.c.id == bindparam("account"))
    .values(balance_minor=_ACCOUNTS.c.balance_minor + bindparam("amount"))
)
_DEBIT = (  # only where the cached balance covers it (system accounts may go negative)
    update(_ACCOUNTS)
    .where(
        _ACCOUNTS.c.id == bindparam("account"),
        or_(_ACCOUNTS.c.role == Role.system, _ACCOUNTS.c.balance_minor >= bindparam("amount")),
    )
    .values(balance_minor=_ACCOUNTS.c.balance_minor - bindparam("amount"))
)


def _add(conn: Connection, account_id: int, amount: int) -> None:
    driver_execute(conn, _CREDIT, {"account": account_id, "amount": amount})


def _debit(conn: Connection, account_id: int, amount: int) -> DriverResult:
    """Debit the cached balance if it covers ``amount`` (system accounts always do); the
    result's ``rowcount`` is 1 if it did (read it after a surrounding pipeline)."""
    return driver_execute(conn, _DEBIT, {"account": account_id, "amount": amount})


@dataclass
class Applied:
    """What :func:`apply` sent: the pending-credit rows for the caller to write and the
    debits whose row counts :func:`check_debits` reads."""

    deferred: list[dict[str, Any]] = field(default_factory=list)
    debits: list[tuple[int, int, DriverResult]] = field(default_factory=list)


def apply(
    session: Session, deltas: Mapping[int, int], *, txn_id: str, defer_credits: bool
) -> Applied:
    """Send one ledger transaction's net ``deltas`` per account to the balances.

    Debits (and, unless ``defer_credits``, credits) update the cached column in
    ascending account id order, each debit by one guarded ``UPDATE`` that changes
    nothing when the balance does not cover it; :func:`check_debits` must then be
    called (after the pipeline the statements may run in: :func:`~databazaar.market.db.pipelined`).
    With ``defer_credits`` the credits are returned as pending-credit rows instead, for
    the caller to write with :func:`append_pending` (with the transaction's ledger rows).
    """
    conn = session.connection()
    out = Applied()
    for account_id in sorted(deltas):
        amount = deltas[account_id]
        if amount > 0 and defer_credits:
            out.deferred.append(
                {"account_id": account_id, "amount_minor": amount, "txn_id": txn_id}
            )
        elif amount > 0:
            _add(conn, account_id, amount)
        elif amount < 0:
            out.debits.append((account_id, -amount, _debit(conn, account_id, -amount)))
    return out


def check_debits(session: Session, applied: Applied) -> None:
    """Complete the debits :func:`apply` sent: one that the cached balance did not cover
    is retried after the account's pending credits are folded, and if they do not
    suffice either, :class:`PaymentError` (``insufficient balance: <balance> <
    <amount>``) is raised, so the caller's transaction rolls back."""
    conn = session.connection()
    for account_id, amount, result in applied.debits:
        if result.rowcount == 1:
            continue
        if fold(session, [account_id]) and _debit(conn, account_id, amount).rowcount == 1:
            continue
        have = balance(session, account_id)
        if have is None:
            raise InvalidInput(f"ledger posting to unknown account(s) [{account_id}]")
        raise PaymentError(
            f"insufficient balance: {have} < {amount} (minor units)",
            hint="deposit funds first",
        )


def append_pending(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Write pending-credit rows (from :func:`apply`); nothing when there are none."""
    if rows:
        driver_execute(conn, _DEFER, rows)


def check(
    session: Session, booked: Mapping[int, int], txn_ids: Collection[str]
) -> list[tuple[int, str]]:
    """Problems of the balances against the ledger, as ``(account_id, message)``.

    ``booked`` is the sum of each account's postings and ``txn_ids`` the transactions
    on the ledger (from :func:`databazaar.market.ledger_verify.verify`'s walk).  Every pending
    credit must name a booked transaction; every account's cached balance plus its
    pending credits must equal its postings; no account but a system one is negative.
    """
    out = []
    for account_id, txn_id in session.execute(select(_PENDING.c.account_id, _PENDING.c.txn_id)):
        if txn_id not in txn_ids:
            out.append(
                (
                    account_id,
                    f"a pending credit to account {account_id} names transaction {txn_id}, "
                    "which is not on the ledger",
                )
            )
    owed = pending(session)
    rows = session.execute(
        select(
            _ACCOUNTS.c.id, _ACCOUNTS.c.username, _ACCOUNTS.c.role, _ACCOUNTS.c.balance_minor
        ).order_by(_ACCOUNTS.c.id)
    )
    for account_id, username, role, cached in rows:
        have = cached + owed.get(account_id, 0)
        if have != booked.get(account_id, 0):
            shown = f"{cached} + pending {owed[account_id]}" if account_id in owed else have
            out.append(
                (
                    account_id,
                    f"account {account_id} ({username}) balance {shown} != ledger sum "
                    f"{booked.get(account_id, 0)}",
                )
            )
        if role != Role.system and have < 0:
            out.append((account_id, f"account {account_id} has a negative balance"))
    return out
