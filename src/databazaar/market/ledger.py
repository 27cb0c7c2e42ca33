"""The append-only, hash-chained, double-entry ledger: per-account chains, sealed.

Every movement of money is a *transaction*: a group of postings ``(account, amount)``
with ``sum(amount) == 0`` (credits positive, debits negative).  A transaction is
appended to one **chain**, that of its *payer* (the account debited the most; the
lowest id on a tie): a buyer's purchases, an account's payouts, the funding account's
deposits.  Rows of a chain sit at positions ``chain_seq = 1, 2, 3, ...`` and are
linked::

    row_hash = sha256(prev_hash | chain_id | chain_seq | txn_id | account_id | amount
                      | kind | memo | created_at)
    prev_hash = row_hash of the previous row of the chain ("0" * 64 for the first)

so changing, deleting, inserting or reordering a row changes a hash from that row on.
Each chain's head (``ledger_chains``: last position and hash) is locked while a
transaction is appended to it, so appends to one chain are linear while purchases by
different buyers do not wait on one shared row; the head also reveals a truncated
chain.  The chains are tied together by the **global chain** of seals
(:func:`seal`): a seal hashes every chain head at one moment together with the previous
seal, so a sealed position cannot later be rewritten or cut off, even together with its
chain head, without :func:`~databazaar.market.ledger_verify.verify` noticing.  Account
balances are a cache of the ledger: ``balance_minor + pending credits == sum(amount
over its postings)``, where a sale's credits (to the market-fee account and the seller)
are *pending* until folded (:mod:`databazaar.market.balances`).

Locks: a writer locks its payer's chain head, then updates the balances it debits (and
credits immediately) in ascending account id, so two writers never wait on each other
in a cycle.  A sale defers its credits, so a purchase locks only its buyer's chain head
and balance row: purchases by different buyers do not wait for each other at all.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, bindparam, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from databazaar.core.errors import InvalidInput
from databazaar.market import balances
from databazaar.market.db import driver_execute, is_foreign_key_violation, pipelined
from databazaar.market.models import Account, LedgerChain, LedgerEntry, LedgerSeal

GENESIS_HASH = "0" * 64
_CHAINS = LedgerChain.__table__
_ENTRIES = LedgerEntry.__table__
# The statements of every posting, built once (each purchase runs them: building and
# hashing SQLAlchemy expressions per call costs more CPU than the database work).
_LOCK_HEAD = (
    select(_CHAINS.c.last_seq, _CHAINS.c.last_hash)
    .where(_CHAINS.c.account_id == bindparam("chain"))
    .with_for_update()
)
_APPEND = insert(_ENTRIES).inline()  # no RETURNING of the key: it can be pipelined
_MOVE_HEAD = (
    update(_CHAINS)
    .where(_CHAINS.c.account_id == bindparam("chain"))
    .values(last_seq=bindparam("new_seq"), last_hash=bindparam("new_hash"))
)


@dataclass(frozen=True)
class Posting:
    """One leg of a ledger transaction (positive = credit, negative = debit)."""

    account_id: int
    amount_minor: int
    kind: str
    memo: str = ""


def row_digest(
    prev_hash: str,
    chain_id: int,
    chain_seq: int,
    txn_id: str,
    account_id: int,
    amount_minor: int,
    kind: str,
    memo: str,
    created_at: str,
) -> str:
    """The chained sha256 of one ledger row (see the module docstring)."""
    canonical = "|".join(
        [
            prev_hash,
            str(chain_id),
            str(chain_seq),
            txn_id,
            str(account_id),
            str(amount_minor),
            kind,
            memo,
            created_at,
        ]
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def seal_digest(prev_hash: str, created_at: str, heads: str) -> str:
    """The sha256 of one seal of the global chain."""
    return hashlib.sha256(f"{prev_hash}|{created_at}|{heads}".encode()).hexdigest()


def payer_of(postings: Sequence[Posting]) -> int:
    """The account whose chain a transaction joins: the largest debit, lowest id on a tie."""
    return min(postings, key=lambda p: (p.amount_minor, p.account_id)).account_id


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


@dataclass
class ChainHead:
    """The locked head of one account's chain: its last position and row hash."""

    account_id: int
    last_seq: int
    last_hash: str


def lock_chain(session: Session, account_id: int) -> ChainHead:
    """Lock and return the head of an account's chain, creating it on first use.

    ``FOR UPDATE`` on PostgreSQL (a second writer to the same chain waits); SQLite's
    ``BEGIN IMMEDIATE`` already serialises writers.  Raises :class:`InvalidInput` for an
    unknown account.
    """
    key = ("ledger_chain", account_id)
    cached = session.info.get(key)
    if cached is not None:  # already locked in this transaction
        return cached
    conn = session.connection()
    row = conn.execute(_LOCK_HEAD, {"chain": account_id}).first()
    if row is None:
        if not session.scalar(select(Account.id).where(Account.id == account_id)):
            raise InvalidInput(f"ledger posting to unknown account(s) {[account_id]}")
        upsert = (
            postgresql.insert
            if session.get_bind().dialect.name == "postgresql"
            else (sqlite.insert)
        )
        session.execute(
            upsert(_CHAINS)
            .values(account_id=account_id, last_seq=0, last_hash=GENESIS_HASH)
            .on_conflict_do_nothing()
        )
        row = conn.execute(_LOCK_HEAD, {"chain": account_id}).first()
        assert row is not None
    head = ChainHead(account_id, int(row.last_seq), str(row.last_hash))
    session.info[key] = head
    return head


def locking_head(stmt: Select[Any], account_id: ColumnElement[int]) -> Select[Any]:
    """``stmt`` joined to the chain head of ``account_id``, which it locks (``FOR UPDATE``).

    Lets a caller lock an account's chain in the statement that reads the account (one
    round trip instead of two); it then hands the row's ``last_seq`` and ``last_hash``
    to :func:`adopt_head`.  The join finds no head for an account whose chain was
    never used: :func:`lock_chain` creates it.
    """
    return (
        stmt.add_columns(_CHAINS.c.last_seq, _CHAINS.c.last_hash)
        .join(_CHAINS, _CHAINS.c.account_id == account_id)
        .with_for_update(of=_CHAINS)
    )


def adopt_head(session: Session, account_id: int, last_seq: int, last_hash: str) -> ChainHead:
    """Record the head of a chain the caller locked itself (see :func:`locking_head`),
    so :func:`lock_chain` and :func:`post` in this transaction do not lock it again."""
    head = ChainHead(account_id, int(last_seq), str(last_hash))
    session.info[("ledger_chain", account_id)] = head
    return head


def post(
    session: Session,
    postings: Sequence[Posting],
    *,
    txn_id: str | None = None,
    defer_credits: bool = False,
    with_writes: Callable[[Connection], None] | None = None,
) -> str:
    """Append one balanced transaction and update the balances; return its id.

    The caller owns the database transaction; this function locks the payer's chain
    head (see the module docstring), appends the rows and applies the balances
    (:func:`databazaar.market.balances.apply`: debits checked against the payer's
    balance, :class:`~databazaar.core.errors.PaymentError` when short; credits
    appended as pending credits with ``defer_credits``).  Raises :class:`InvalidInput`
    if the postings are empty, not integers, do not sum to zero or name an unknown
    account.
    """
    if not postings:
        raise InvalidInput("a ledger transaction needs at least two postings")
    for p in postings:
        if isinstance(p.amount_minor, bool) or not isinstance(p.amount_minor, int):
            raise InvalidInput("ledger amounts must be integers (minor units)")
    total = sum(p.amount_minor for p in postings)
    if total != 0:
        raise InvalidInput(f"ledger transaction does not balance (sum = {total})")
    txn = txn_id or str(uuid.uuid4())
    ids = sorted({p.account_id for p in postings})
    chain_id = payer_of(postings)
    head = lock_chain(session, chain_id)
    session.flush()  # the caller's pending ORM rows first, so their errors stay theirs
    seq, prev = head.last_seq, head.last_hash
    created = _now()
    rows = []
    for p in postings:
        seq += 1
        digest = row_digest(
            prev, chain_id, seq, txn, p.account_id, p.amount_minor, p.kind, p.memo, created
        )
        rows.append(
            {
                "txn_id": txn,
                "account_id": p.account_id,
                "amount_minor": p.amount_minor,
                "kind": p.kind,
                "memo": p.memo,
                "created_at": created,
                "chain_id": chain_id,
                "chain_seq": seq,
                "prev_hash": prev,
                "row_hash": digest,
            }
        )
        prev = digest
    delta: dict[int, int] = defaultdict(int)
    for p in postings:
        delta[p.account_id] += p.amount_minor
    # The debits (guarded UPDATEs), the rows, the head and the deferred credits in one
    # round trip (db.pipelined); then the debits' row counts are checked (a short
    # balance raises PaymentError and the caller's transaction rolls all of it back).
    conn = session.connection()
    try:
        with pipelined(session):
            if with_writes is not None:
                with_writes(conn)
            applied = balances.apply(session, delta, txn_id=txn, defer_credits=defer_credits)
            driver_execute(conn, _APPEND, rows)
            driver_execute(conn, _MOVE_HEAD, {"chain": chain_id, "new_seq": seq, "new_hash": prev})
            balances.append_pending(conn, applied.deferred)
    except IntegrityError as exc:  # an account's foreign key, or the caller's writes
        if not is_foreign_key_violation(exc):
            raise
        raise InvalidInput(f"ledger posting to unknown account(s) among {ids}") from None
    balances.check_debits(session, applied)
    head.last_seq, head.last_hash = seq, prev
    return txn


def seal(session: Session) -> LedgerSeal:
    """Fold every pending credit, append a seal of every chain head to the global chain
    and return it (the periodic job: ``databazaar ledger seal``).

    Two concurrent sealers would both extend the same seal; the unique ``prev_hash``
    makes the second fail (retry it).
    """
    balances.fold(session)
    last = session.scalars(select(LedgerSeal).order_by(LedgerSeal.id.desc()).limit(1)).first()
    prev = last.seal_hash if last is not None else GENESIS_HASH
    heads = json.dumps(
        [
            [h.account_id, h.last_seq, h.last_hash]
            for h in session.scalars(select(LedgerChain).order_by(LedgerChain.account_id))
        ],
        separators=(",", ":"),
    )
    created = _now()
    row = LedgerSeal(
        created_at=created, heads=heads, prev_hash=prev, seal_hash=seal_digest(prev, created, heads)
    )
    session.add(row)
    session.flush()
    return row
