"""The append-only, hash-chained, double-entry ledger.

Every movement of money is a *transaction*: a group of postings ``(account, amount)``
with ``sum(amount) == 0`` (credits positive, debits negative).  Postings are appended as
rows numbered ``seq = 1, 2, 3, ...`` and chained::

    row_hash[seq] = sha256(prev_hash | seq | txn_id | account_id | amount | kind | memo
                           | created_at)
    prev_hash[seq] = row_hash[seq - 1],     prev_hash[1] = "0" * 64

so changing, deleting, inserting or reordering any row changes a hash from that row on.
The single ``ledger_head`` row holds the last ``seq`` and hash; appending locks it, which
serialises writers and lets :func:`verify` detect a truncated tail.  Account balances are
a cache of the ledger: ``balance(account) == sum(amount over its postings)``.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from databazaar.core.errors import InvalidInput
from databazaar.market.models import Account, LedgerEntry, LedgerHead, Role

GENESIS_HASH = "0" * 64


@dataclass(frozen=True)
class Posting:
    """One leg of a ledger transaction (positive = credit, negative = debit)."""

    account_id: int
    amount_minor: int
    kind: str
    memo: str = ""


def row_digest(
    prev_hash: str,
    seq: int,
    txn_id: str,
    account_id: int,
    amount_minor: int,
    kind: str,
    memo: str,
    created_at: str,
) -> str:
    """The chained sha256 of one ledger row (see the module docstring)."""
    canonical = "|".join(
        [prev_hash, str(seq), txn_id, str(account_id), str(amount_minor), kind, memo, created_at]
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def lock_head(session: Session) -> LedgerHead:
    """Lock and return the ledger head (``FOR UPDATE``; SQLite relies on BEGIN IMMEDIATE)."""
    head = session.execute(
        select(LedgerHead)
        .where(LedgerHead.id == 1)
        .with_for_update()
        .execution_options(populate_existing=True)  # the locked row's current values
    ).scalar_one_or_none()
    if head is None:
        raise InvalidInput("the ledger is not initialised", hint="run `databazaar db upgrade`")
    return head


def post(session: Session, postings: Sequence[Posting], *, txn_id: str | None = None) -> str:
    """Append one balanced transaction and update the cached balances; return its id.

    The caller owns the database transaction; this function locks the ledger head.
    Raises :class:`InvalidInput` if the postings do not sum to zero or are empty.
    """
    if not postings:
        raise InvalidInput("a ledger transaction needs at least two postings")
    total = sum(p.amount_minor for p in postings)
    if total != 0:
        raise InvalidInput(f"ledger transaction does not balance (sum = {total})")
    txn = txn_id or str(uuid.uuid4())
    for p in postings:
        if isinstance(p.amount_minor, bool) or not isinstance(p.amount_minor, int):
            raise InvalidInput("ledger amounts must be integers (minor units)")
    head = lock_head(session)
    # Lock the touched accounts in ascending id order (after the head): every writer
    # takes its locks in the same order, so concurrent postings cannot deadlock.
    ids = sorted({p.account_id for p in postings})
    found = session.scalars(
        select(Account.id).where(Account.id.in_(ids)).order_by(Account.id).with_for_update()
    ).all()
    if len(found) != len(ids):
        missing = sorted(set(ids) - set(found))
        raise InvalidInput(f"ledger posting to unknown account(s) {missing}")
    seq, prev = head.last_seq, head.last_hash
    created = datetime.now(UTC).isoformat(timespec="microseconds")
    for p in postings:
        seq += 1
        digest = row_digest(prev, seq, txn, p.account_id, p.amount_minor, p.kind, p.memo, created)
        session.add(
            LedgerEntry(
                seq=seq,
                txn_id=txn,
                account_id=p.account_id,
                amount_minor=p.amount_minor,
                kind=p.kind,
                memo=p.memo,
                created_at=created,
                prev_hash=prev,
                row_hash=digest,
            )
        )
        session.execute(
            update(Account)
            .where(Account.id == p.account_id)
            .values(balance_minor=Account.balance_minor + p.amount_minor)
        )
        prev = digest
    head.last_seq = seq
    head.last_hash = prev
    session.flush()
    return txn


@dataclass
class LedgerProblem:
    """One inconsistency found by :func:`verify`; ``seq`` names the ledger row if any."""

    seq: int | None
    message: str
    account_id: int | None = None
    txn_id: str | None = None
    chain: bool = False

    def __str__(self) -> str:
        where = f"ledger row seq={self.seq}" if self.seq is not None else "ledger"
        return f"{where}: {self.message}"


@dataclass
class LedgerReport:
    """The outcome of :func:`verify`."""

    ok: bool
    n_rows: int
    n_transactions: int
    total_minor: int
    head_seq: int
    problems: list[LedgerProblem] = field(default_factory=list)

    @property
    def first_bad_seq(self) -> int | None:
        """The first row that breaks the hash chain, else the first row named at all.

        A row edited in place breaks its own hash; the transaction it belongs to then
        also fails to balance, but that problem names the transaction's first row, so
        chain problems take precedence.
        """
        chain = [p.seq for p in self.problems if p.seq is not None and p.chain]
        if chain:
            return min(chain)
        seqs = [p.seq for p in self.problems if p.seq is not None]
        return min(seqs) if seqs else None

    def to_dict(self) -> dict[str, object]:
        """A JSON-friendly summary."""
        return {
            "ok": self.ok,
            "n_rows": self.n_rows,
            "n_transactions": self.n_transactions,
            "total_minor": self.total_minor,
            "head_seq": self.head_seq,
            "first_bad_seq": self.first_bad_seq,
            "problems": [str(p) for p in self.problems],
        }


def verify(session: Session, *, max_problems: int = 100) -> LedgerReport:
    """Check the whole ledger and the balances it implies.

    Checks, row by row in ``seq`` order: the sequence has no gaps, ``prev_hash`` equals
    the previous row's hash, and ``row_hash`` equals the recomputed digest.  Then: every
    transaction sums to zero, the whole ledger sums to zero, the head names the last row,
    every account's cached balance equals the sum of its postings, and no account other
    than a system account is negative.  Each problem names the offending row (``seq``)
    or account.
    """
    problems: list[LedgerProblem] = []

    def problem(p: LedgerProblem) -> None:
        if len(problems) < max_problems:
            problems.append(p)

    expected_seq = 0
    prev = GENESIS_HASH
    txn_sums: dict[str, int] = defaultdict(int)
    txn_first_seq: dict[str, int] = {}
    account_sums: dict[int, int] = defaultdict(int)
    total = 0
    n_rows = 0
    rows = session.execute(
        select(LedgerEntry).order_by(LedgerEntry.seq).execution_options(yield_per=2000)
    ).scalars()
    for row in rows:
        n_rows += 1
        expected_seq += 1
        if row.seq != expected_seq:
            problem(
                LedgerProblem(row.seq, f"sequence gap: expected seq={expected_seq}", chain=True)
            )
            expected_seq = row.seq
        if row.prev_hash != prev:
            problem(
                LedgerProblem(
                    row.seq, "prev_hash does not match the previous row's hash", chain=True
                )
            )
        digest = row_digest(
            row.prev_hash,
            row.seq,
            row.txn_id,
            row.account_id,
            row.amount_minor,
            row.kind,
            row.memo,
            row.created_at,
        )
        if digest != row.row_hash:
            problem(
                LedgerProblem(
                    row.seq,
                    "row_hash does not match the row's contents (row was edited)",
                    account_id=row.account_id,
                    txn_id=row.txn_id,
                    chain=True,
                )
            )
        prev = row.row_hash
        txn_sums[row.txn_id] += row.amount_minor
        txn_first_seq.setdefault(row.txn_id, row.seq)
        account_sums[row.account_id] += row.amount_minor
        total += row.amount_minor

    for txn, s in txn_sums.items():
        if s != 0:
            problem(
                LedgerProblem(
                    txn_first_seq[txn], f"transaction {txn} sums to {s}, not 0", txn_id=txn
                )
            )
    if total != 0:
        problem(LedgerProblem(None, f"ledger sums to {total}, not 0"))

    head = session.get(LedgerHead, 1)
    head_seq = head.last_seq if head is not None else 0
    if head is None:
        problem(LedgerProblem(None, "ledger head row is missing"))
    else:
        if head.last_seq != expected_seq:
            problem(
                LedgerProblem(
                    head.last_seq if head.last_seq > expected_seq else expected_seq,
                    f"head says last seq={head.last_seq} but the ledger ends at seq={expected_seq}"
                    " (rows were deleted or added outside the ledger)",
                )
            )
        elif head.last_hash != prev:
            problem(LedgerProblem(expected_seq or None, "head hash does not match the last row"))

    for acc in session.execute(select(Account).order_by(Account.id)).scalars():
        booked = account_sums.get(acc.id, 0)
        if acc.balance_minor != booked:
            problem(
                LedgerProblem(
                    None,
                    f"account {acc.id} ({acc.username}) balance {acc.balance_minor} != "
                    f"ledger sum {booked}",
                    account_id=acc.id,
                )
            )
        if acc.role != Role.system and acc.balance_minor < 0:
            problem(
                LedgerProblem(None, f"account {acc.id} has a negative balance", account_id=acc.id)
            )

    return LedgerReport(
        ok=not problems,
        n_rows=n_rows,
        n_transactions=len(txn_sums),
        total_minor=total,
        head_seq=head_seq,
        problems=problems,
    )
