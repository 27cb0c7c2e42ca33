"""Concurrent purchases: 8 workers x 250 purchases on PostgreSQL with shared balances.

The plan mixes first purchases, exact replays of an idempotency key (racing the
original from another worker) and reuses of a key with a different basket, over buyers
whose balances are shared by every worker and too small to buy everything.  Afterwards
every invariant is checked against the database itself.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from sqlalchemy import func, select, text

from databazaar.core.errors import Conflict, PaymentError
from databazaar.market import balances, ledger
from databazaar.market.db import Database, upgrade
from databazaar.market.models import Account, Grant, LedgerEntry, Order, OrderItem, Role
from databazaar.market.schemas import AccountOut, OrderOut
from databazaar.market.service import Market

FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@dataclass(frozen=True)
class Request:
    buyer: int  # index into the buyer list
    slugs: tuple[str, ...]
    key: str


def _plan(n_buyers: int, slugs: list[str], n_requests: int, seed: int) -> list[Request]:
    """First purchases, exact replays (~25%) and mismatched key reuses (~5%), shuffled."""
    rng = random.Random(seed)
    pairs = [(b, s) for b in range(n_buyers) for s in slugs]
    rng.shuffle(pairs)
    originals: list[Request] = []
    n_orig = int(n_requests * 0.70)
    by_buyer: dict[int, list[str]] = defaultdict(list)
    for b, s in pairs:
        by_buyer[b].append(s)
    buyers = list(by_buyer)
    while len(originals) < n_orig:
        buyers = [b for b in buyers if by_buyer[b]]
        assert buyers, "not enough (buyer, product) pairs for the plan"
        b = rng.choice(buyers)
        k = min(rng.choice([1, 1, 2, 3]), len(by_buyer[b]))
        basket = tuple(by_buyer[b].pop() for _ in range(k))
        originals.append(Request(b, basket, f"key-{uuid.uuid4().hex}"))
    replays = [rng.choice(originals) for _ in range(int(n_requests * 0.25))]
    mismatched = []
    while len(originals) + len(replays) + len(mismatched) < n_requests:
        orig = rng.choice(originals)
        mismatched.append(Request(orig.buyer, (rng.choice(slugs),), orig.key))
    plan = originals + replays + mismatched
    rng.shuffle(plan)
    return plan


def _run(market: Market, buyers: list[AccountOut], plan: list[Request], n_workers: int):
    results: list[tuple[Request, str, OrderOut | None]] = []
    lock = threading.Lock()
    errors: list[BaseException] = []
    barrier = threading.Barrier(n_workers)

    def worker(chunk: list[Request]) -> None:
        barrier.wait()
        for req in chunk:
            try:
                order = market.purchase(buyers[req.buyer], list(req.slugs), req.key)
                outcome = "replayed" if order.replayed else "new"
            except PaymentError:
                order, outcome = None, "payment"
            except Conflict as exc:
                order = None
                outcome = "key-conflict" if "different purchase" in exc.message else "conflict"
            except BaseException as exc:  # anything else is a bug: collect it
                with lock:
                    errors.append(exc)
                continue
            with lock:
                results.append((req, outcome, order))

    chunks = [plan[i::n_workers] for i in range(n_workers)]
    threads = [threading.Thread(target=worker, args=(c,)) for c in chunks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, f"unexpected errors: {errors[:3]!r}"
    return results


def _check_invariants(market: Market, buyers, deposits, results) -> dict[str, int]:
    outcomes = Counter(o for _, o, _ in results)
    # every key maps to at most one order, and every success for a key saw that order
    by_key: dict[tuple[int, str], set[int]] = defaultdict(set)
    firsts: Counter[tuple[int, str]] = Counter()
    for req, outcome, order in results:
        if order is not None:
            by_key[(req.buyer, req.key)].add(order.id)
            if outcome == "new":
                firsts[(req.buyer, req.key)] += 1
    assert all(len(ids) == 1 for ids in by_key.values())
    assert all(n == 1 for n in firsts.values())

    with market.db.read() as s:
        orders = s.scalars(select(Order)).all()
        assert len(orders) == outcomes["new"] == len(by_key)
        keys = Counter((o.buyer_id, o.idempotency_key) for o in orders)
        assert max(keys.values()) == 1
        # each paid order booked exactly one ledger transaction (free ones book none)
        txn_rows = Counter(s.scalars(select(LedgerEntry.txn_id)).all())
        paid = [o for o in orders if o.total_minor > 0]
        assert sum(o.txn_id in txn_rows for o in orders) == len(paid)
        for o in paid:
            assert o.total_minor == -s.scalar(
                select(LedgerEntry.amount_minor).where(
                    LedgerEntry.txn_id == o.txn_id, LedgerEntry.account_id == o.buyer_id
                )
            )
        # grants == order items, no (buyer, product) counted twice
        n_items = s.scalar(select(func.count()).select_from(OrderItem))
        n_grants = s.scalar(select(func.count()).select_from(Grant))
        assert n_items == n_grants
        # balances: buyers = deposit - spent; sellers = sum(price - fee); fee = sum(fee)
        spent = Counter()
        for o in orders:
            spent[o.buyer_id] += o.total_minor
        for b, dep in zip(buyers, deposits, strict=True):
            bal = s.get(Account, b.id).balance_minor
            assert bal == dep - spent[b.id] and bal >= 0
        earned = Counter()
        fees = 0
        for it in s.scalars(select(OrderItem)).all():
            earned[it.seller_id] += it.price_minor - it.fee_minor
            fees += it.fee_minor
        # the sellers' and the fee account's credits are pending until folded
        fee_id = s.scalar(select(Account.id).where(Account.username == "@market-fee"))
        assert {a: balances.balance(s, a) for a in earned} == dict(earned)
        assert balances.balance(s, fee_id) == fees
        assert s.get(Account, fee_id).balance_minor == 0 < fees
        negative = s.scalar(
            select(func.count())
            .select_from(Account)
            .where(Account.role != Role.system, Account.balance_minor < 0)
        )
        assert negative == 0
    report = market.ledger_report()
    assert report.ok, [str(p) for p in report.problems[:5]]
    assert report.total_minor == 0
    assert report.n_transactions == len(paid) + len(buyers)  # purchases + deposits
    # sealing folds every pending credit into the cached balances
    with market.db.write() as s:
        ledger.seal(s)
    with market.db.read() as s:
        assert balances.pending(s) == {}
        cached = {a: b for a, b in s.execute(select(Account.id, Account.balance_minor))}
    assert {a: cached[a] for a in earned} == dict(earned) and cached[fee_id] == fees
    assert market.ledger_report().ok
    return dict(outcomes)


def _seed(market: Market, n_sellers: int, n_products: int, n_buyers: int, make_csv, rng):
    sellers = [
        market.create_account(f"seller-{i}", "correct-horse-9", "seller") for i in range(n_sellers)
    ]
    slugs = []
    import io

    for j in range(n_products):
        owner = sellers[j % n_sellers]
        slug = f"product-{j}"
        market.create_product(owner, slug, f"Product {j}")
        market.add_version(
            owner, slug, io.BytesIO(make_csv(5, j)), "d.csv", {"license": "MIT", "task": "t"}
        )
        market.publish(owner, slug, 1)
        market.set_listing(owner, slug, rng.choice([0, 99, 250, 1000, 1999, 3333]))
        slugs.append(slug)
    buyers = [
        market.create_account(f"buyer-{i}", "correct-horse-9", "buyer") for i in range(n_buyers)
    ]
    deposits = [rng.randrange(5_000, 60_000) for _ in buyers]
    for b, d in zip(buyers, deposits, strict=True):
        market.deposit(b.id, d)
    return buyers, deposits, slugs


@pytest.mark.postgres
@pytest.mark.slow
def test_8_workers_x_250_purchases_on_postgres(postgres_schema, tmp_path: Path, make_csv):
    db = Database.from_url(
        postgres_schema.url, connect_args=postgres_schema.connect_args, pool_size=10
    )
    upgrade(db.engine)
    market = Market(db, tmp_path, secret_key="concurrency-key-0123456", password_hasher=FAST_HASHER)
    rng = random.Random(7)
    buyers, deposits, slugs = _seed(market, 5, 80, 40, make_csv, rng)
    plan = _plan(len(buyers), slugs, 8 * 250, seed=11)
    started = time.perf_counter()
    results = _run(market, buyers, plan, n_workers=8)
    elapsed = time.perf_counter() - started
    assert len(results) == 2000
    outcomes = _check_invariants(market, buyers, deposits, results)
    print(f"8x250 purchases on PostgreSQL in {elapsed:.1f} s: {outcomes}")
    # the plan really exercised every path
    assert outcomes["new"] > 700 and outcomes["replayed"] > 300
    assert outcomes["payment"] > 0 and outcomes["key-conflict"] > 0

    # editing any ledger row by SQL makes verify fail and name the row
    # (a row that exists: sequence numbers have gaps where a racing insert rolled back)
    with db.engine.connect() as conn:
        seqs = conn.execute(text("SELECT seq FROM ledger_entries ORDER BY seq")).scalars().all()
    target = seqs[len(seqs) // 2]
    with db.engine.begin() as conn:
        conn.execute(text("ALTER TABLE ledger_entries DISABLE TRIGGER ledger_append_only"))
        conn.execute(
            text("UPDATE ledger_entries SET amount_minor = amount_minor - 1 WHERE seq = :s"),
            {"s": target},
        )
    report = market.ledger_report()
    assert not report.ok and report.first_bad_seq == target
    assert any(f"ledger row seq={target}:" in str(p) for p in report.problems)
    db.dispose()


def _run_plan(db: Database, home: Path, make_csv, sizes: tuple[int, int, int], workers: int,
              per_worker: int, seed: int):  # fmt: skip
    """Seed ``(sellers, products, buyers)``, run the plan, check the invariants."""
    upgrade(db.engine)
    market = Market(db, home, secret_key="concurrency-key-0123456", password_hasher=FAST_HASHER)
    buyers, deposits, slugs = _seed(market, *sizes, make_csv, random.Random(seed))
    plan = _plan(len(buyers), slugs, workers * per_worker, seed=seed + 2)
    results = _run(market, buyers, plan, n_workers=workers)
    assert len(results) == workers * per_worker
    return market, results, _check_invariants(market, buyers, deposits, results)


def test_concurrent_purchases_on_sqlite(tmp_path: Path, make_csv) -> None:
    """The same invariants on SQLite (writers queue on BEGIN IMMEDIATE), smaller."""
    db = Database.from_url(f"sqlite:///{tmp_path / 'c.db'}")
    _, _, outcomes = _run_plan(db, tmp_path, make_csv, (3, 20, 12), 4, 40, seed=3)
    assert outcomes["new"] > 50 and outcomes["replayed"] > 20
    db.dispose()


@pytest.mark.postgres
def test_concurrent_purchases_on_postgres_reduced(postgres_schema, tmp_path: Path, make_csv):
    """The CI-cheap cut of the 10,000-purchase benchmark: 8 workers x 40 on PostgreSQL.

    Each buyer's purchases form its own chain (plus the funding account's chain of
    deposits), so buyers do not queue on one ledger row; the invariants still hold.
    """
    db = Database.from_url(postgres_schema.url, connect_args=postgres_schema.connect_args)
    market, results, outcomes = _run_plan(db, tmp_path, make_csv, (3, 40, 16), 8, 40, seed=13)
    assert outcomes["new"] > 120 and outcomes["replayed"] > 40
    paying = {o.buyer_id for _, outcome, o in results if outcome == "new" and o.total_minor > 0}
    assert market.ledger_report().n_chains == len(paying) + 1
    db.dispose()
