"""Verification of the ledger: every chain, seal, transaction and balance recomputed.

:func:`verify` walks the whole ledger (:mod:`databazaar.market.ledger` appends to it)
and names each inconsistency: a row whose hash does not match its contents or its
predecessor, a gap or a truncated chain (against its head), a seal that does not match
the heads it sealed, a transaction that does not sum to zero, and a cached balance
(plus pending credits, :mod:`databazaar.market.balances`) that differs from the sum of
its postings.  ``databazaar ledger verify`` and ``GET /api/admin/ledger/verify`` run it.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from databazaar.market import balances
from databazaar.market.ledger import GENESIS_HASH, row_digest, seal_digest
from databazaar.market.models import LedgerChain, LedgerEntry, LedgerSeal


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
