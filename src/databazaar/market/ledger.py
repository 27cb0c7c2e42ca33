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
chain head, without :func:`verify` noticing.  Account balances are a cache of the
ledger: ``balance_minor + pending credits == sum(amount over its postings)``, where a
sale's credits (to the market-fee account and the seller) are *pending* until folded
(:mod:`databazaar.market.balances`).

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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, bindparam, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from databazaar.core.errors import InvalidInput
from databazaar.market import balances
from databazaar.market.db import driver_execute, pipelined
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
    # Debits first (each checked by one guarded UPDATE whose row count is read), then
    # the rows, the head and the deferred credits in one round trip (db.pipelined).
    deferred = balances.apply(session, delta, txn_id=txn, defer_credits=defer_credits)
    conn = session.connection()
    try:
        with pipelined(session):
            driver_execute(conn, _APPEND, rows)
            driver_execute(conn, _MOVE_HEAD, {"chain": chain_id, "new_seq": seq, "new_hash": prev})
            balances.append_pending(conn, deferred)
    except IntegrityError:  # only the accounts' foreign keys can fail here
        raise InvalidInput(f"ledger posting to unknown account(s) among {ids}") from None
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
    n_chains: int = 0
    n_seals: int = 0
    problems: list[LedgerProblem] = field(default_factory=list)

    @property
    def first_bad_seq(self) -> int | None:
        """The first row that breaks a hash chain, else the first row named at all.

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
            "n_chains": self.n_chains,
            "n_seals": self.n_seals,
            "first_bad_seq": self.first_bad_seq,
            "problems": [str(p) for p in self.problems],
        }


@dataclass
class _ChainWalk:
    """Where the walk of one chain stands."""

    last_seq: int = 0
    last_hash: str = GENESIS_HASH
    last_row: int | None = None


def _check_row(row: LedgerEntry, walk: _ChainWalk, add: Callable[[LedgerProblem], None]) -> None:
    """Check one row against the position and hash its chain expects; advance the walk."""
    expected = walk.last_seq + 1
    if row.chain_seq != expected:
        add(
            LedgerProblem(
                row.seq,
                f"sequence gap in the chain of account {row.chain_id}: expected "
                f"chain_seq={expected}, found {row.chain_seq} (rows were deleted or added)",
                chain=True,
            )
        )
    if row.prev_hash != walk.last_hash:
        add(LedgerProblem(row.seq, "prev_hash does not match the previous row's hash", chain=True))
    digest = row_digest(
        row.prev_hash,
        row.chain_id,
        row.chain_seq,
        row.txn_id,
        row.account_id,
        row.amount_minor,
        row.kind,
        row.memo,
        row.created_at,
    )
    if digest != row.row_hash:
        add(
            LedgerProblem(
                row.seq,
                "row_hash does not match the row's contents (row was edited)",
                account_id=row.account_id,
                txn_id=row.txn_id,
                chain=True,
            )
        )
    walk.last_seq, walk.last_hash, walk.last_row = row.chain_seq, row.row_hash, row.seq


def _check_seals(
    session: Session, add: Callable[[LedgerProblem], None]
) -> tuple[int, dict[tuple[int, int], str]]:
    """Walk the global chain; return its length and the positions the last seal fixed."""
    prev = GENESIS_HASH
    n = 0
    sealed: dict[tuple[int, int], str] = {}
    for s in session.scalars(select(LedgerSeal).order_by(LedgerSeal.id)):
        n += 1
        if s.prev_hash != prev or seal_digest(s.prev_hash, s.created_at, s.heads) != s.seal_hash:
            add(LedgerProblem(None, f"seal {s.id} of the global chain was altered"))
        prev = s.seal_hash
        try:
            sealed = {(int(a), int(q)): str(h) for a, q, h in json.loads(s.heads) if int(q) > 0}
        except (ValueError, TypeError):
            add(LedgerProblem(None, f"seal {s.id} of the global chain is unreadable"))
            sealed = {}
    return n, sealed


def verify(session: Session, *, max_problems: int = 100) -> LedgerReport:
    """Check the whole ledger and the balances it implies.

    Checks, chain by chain in position order: positions have no gaps, ``prev_hash``
    equals the previous row's hash and ``row_hash`` equals the recomputed digest; each
    chain ends where its head says; each transaction lies in one chain; every position
    fixed by the newest seal still holds the sealed hash, and the seals form an intact
    chain.  Then: every transaction sums to zero, the whole ledger sums to zero, every
    pending credit names a booked transaction, every account's cached balance plus its
    pending credits equals the sum of its postings, and no account other than a system
    account is negative.  Each problem names the offending row (``seq``),
    account or seal.
    """
    problems: list[LedgerProblem] = []

    def problem(p: LedgerProblem) -> None:
        if len(problems) < max_problems:
            problems.append(p)

    n_seals, sealed = _check_seals(session, problem)
    walks: dict[int, _ChainWalk] = defaultdict(_ChainWalk)
    txn_sums: dict[str, int] = defaultdict(int)
    txn_first_seq: dict[str, int] = {}
    txn_chain: dict[str, int] = {}
    account_sums: dict[int, int] = defaultdict(int)
    total = 0
    n_rows = 0
    max_seq = 0
    rows = session.execute(
        select(LedgerEntry)
        .order_by(LedgerEntry.chain_id, LedgerEntry.chain_seq)
        .execution_options(yield_per=2000)
    ).scalars()
    for row in rows:
        n_rows += 1
        max_seq = max(max_seq, row.seq)
        _check_row(row, walks[row.chain_id], problem)
        want = sealed.pop((row.chain_id, row.chain_seq), None)
        if want is not None and want != row.row_hash:
            problem(
                LedgerProblem(row.seq, "row differs from the sealed chain position", chain=True)
            )
        if txn_chain.setdefault(row.txn_id, row.chain_id) != row.chain_id:
            problem(
                LedgerProblem(
                    row.seq, f"transaction {row.txn_id} spans two chains", txn_id=row.txn_id
                )
            )
        txn_sums[row.txn_id] += row.amount_minor
        txn_first_seq.setdefault(row.txn_id, row.seq)
        account_sums[row.account_id] += row.amount_minor
        total += row.amount_minor

    for (chain_id, chain_seq), _ in sorted(sealed.items()):
        walk = walks.get(chain_id)
        problem(
            LedgerProblem(
                walk.last_row if walk else None,
                f"the chain of account {chain_id} was sealed at chain_seq={chain_seq} but "
                f"ends at chain_seq={walk.last_seq if walk else 0} (rows were deleted)",
                account_id=chain_id,
            )
        )
    for txn, s in txn_sums.items():
        if s != 0:
            problem(
                LedgerProblem(
                    txn_first_seq[txn], f"transaction {txn} sums to {s}, not 0", txn_id=txn
                )
            )
    if total != 0:
        problem(LedgerProblem(None, f"ledger sums to {total}, not 0"))

    heads = {h.account_id: h for h in session.scalars(select(LedgerChain))}
    for chain_id in sorted(set(heads) | set(walks)):
        head, walk = heads.get(chain_id), walks.get(chain_id, _ChainWalk())
        if head is None:
            problem(
                LedgerProblem(walk.last_row, f"the chain of account {chain_id} has no head row")
            )
        elif head.last_seq != walk.last_seq:
            problem(
                LedgerProblem(
                    walk.last_row,
                    f"the head of the chain of account {chain_id} says chain_seq="
                    f"{head.last_seq} but the chain ends at chain_seq={walk.last_seq}"
                    " (rows were deleted or added outside the ledger)",
                    account_id=chain_id,
                )
            )
        elif head.last_hash != walk.last_hash:
            problem(
                LedgerProblem(
                    walk.last_row,
                    f"the head of the chain of account {chain_id} does not match its last row",
                    account_id=chain_id,
                )
            )

    for account_id, message in balances.check(session, account_sums, set(txn_sums)):
        problem(LedgerProblem(None, message, account_id=account_id))

    return LedgerReport(
        ok=not problems,
        n_rows=n_rows,
        n_transactions=len(txn_sums),
        total_minor=total,
        head_seq=max_seq,
        n_chains=len(walks),
        n_seals=n_seals,
        problems=problems,
    )
