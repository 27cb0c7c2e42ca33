"""Migration 0003: an existing single-chain ledger is checked, re-chained and sealed."""

from __future__ import annotations

import hashlib
import importlib
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

from databazaar.market import ledger, ledger_verify
from databazaar.market.db import Database, current_revision, head_revision, upgrade

REV3 = importlib.import_module("databazaar.market.migrations.versions.0003_chains_throttle_catalog")


def _legacy_store(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    if request.param == "sqlite":
        db = Database.from_url(f"sqlite:///{tmp_path / 'old.db'}")
    else:
        schema = request.getfixturevalue("postgres_schema")
        db = Database.from_url(schema.url, connect_args=schema.connect_args)
    upgrade(db.engine, "0002_econ")
    return db


def _book_legacy(db: Database) -> int:
    """Book two deposits and a purchase the way revision 0002 did; return the buyer id."""
    with db.engine.begin() as conn:
        ids = dict(conn.execute(text("SELECT username, id FROM accounts")).all())
        for name, role in (("buyer-old", "buyer"), ("seller-old", "seller")):
            conn.execute(
                text(
                    "INSERT INTO accounts (username, role, balance_minor, created_at) "
                    "VALUES (:n, :r, 0, CURRENT_TIMESTAMP)"
                ),
                {"n": name, "r": role},
            )
        ids = dict(conn.execute(text("SELECT username, id FROM accounts")).all())
        txns = [
            [(ids["@funding"], -900), (ids["buyer-old"], 900)],
            [(ids["@funding"], -100), (ids["buyer-old"], 100)],
            [(ids["buyer-old"], -400), (ids["seller-old"], 380), (ids["@market-fee"], 20)],
        ]
        prev, seq = ledger.GENESIS_HASH, 0
        for postings in txns:
            txn = str(uuid.uuid4())
            for account, amount in postings:
                seq += 1
                row = {"seq": seq, "txn_id": txn, "account_id": account,
                       "amount_minor": amount, "kind": "x", "memo": "m",
                       "created_at": "2026-11-01T00:00:00.000000+00:00"}  # fmt: skip
                parts = [prev, *row.values()]
                digest = hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()
                conn.execute(
                    text(
                        "INSERT INTO ledger_entries (seq, txn_id, account_id, amount_minor, kind, "
                        "memo, created_at, prev_hash, row_hash) VALUES (:seq, :txn_id, "
                        ":account_id, :amount_minor, :kind, :memo, :created_at, :p, :h)"
                    ),
                    {**row, "p": prev, "h": digest},
                )
                conn.execute(
                    text("UPDATE accounts SET balance_minor = balance_minor + :a WHERE id = :i"),
                    {"a": amount, "i": account},
                )
                prev = digest
        conn.execute(
            text("UPDATE ledger_head SET last_seq = :s, last_hash = :h"), {"s": seq, "h": prev}
        )
    return ids["buyer-old"]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def legacy(request: pytest.FixtureRequest, tmp_path: Path):
    db = _legacy_store(request, tmp_path)
    yield db
    db.dispose()


def test_upgrade_rechains_seals_and_keeps_appending(legacy: Database) -> None:
    buyer = _book_legacy(legacy)
    assert upgrade(legacy.engine) == head_revision()
    with legacy.snapshot() as s:
        report = ledger_verify.verify(s)
    assert report.ok, [str(p) for p in report.problems]
    assert (report.n_rows, report.n_transactions, report.n_chains, report.n_seals) == (7, 3, 2, 1)
    with legacy.engine.connect() as conn:
        chains = conn.execute(
            text("SELECT seq, chain_id, chain_seq FROM ledger_entries ORDER BY seq")
        ).all()
    funding = chains[0][1]
    assert [c[1:] for c in chains] == [
        (funding, 1), (funding, 2), (funding, 3), (funding, 4), (buyer, 1), (buyer, 2), (buyer, 3)
    ]  # fmt: skip
    # new postings continue the chains and get the next row number
    with legacy.write() as s:
        ledger.post(
            s, [ledger.Posting(buyer, -50, "payout"), ledger.Posting(funding, 50, "payout")]
        )
    with legacy.snapshot() as s:
        report = ledger_verify.verify(s)
    assert report.ok and report.head_seq == 9
    with legacy.engine.connect() as conn:
        assert (
            conn.execute(text("SELECT chain_seq FROM ledger_entries WHERE seq = 9")).scalar() == 5
        )
        # the append-only guard is back in place
    with pytest.raises(Exception, match="append-only"), legacy.engine.begin() as conn:
        conn.execute(text("UPDATE ledger_entries SET memo = 'y' WHERE seq = 1"))


def test_upgrade_refuses_a_tampered_ledger(legacy: Database, tamper) -> None:
    _book_legacy(legacy)
    tamper(legacy, "UPDATE ledger_entries SET amount_minor = 1000 WHERE seq = 2")
    with pytest.raises(RuntimeError, match="ledger row seq=2 fails verification"):
        upgrade(legacy.engine)
    assert current_revision(legacy.engine) == "0002_econ"  # nothing half-done


def test_downgrade_restores_the_single_chain(legacy: Database) -> None:
    _book_legacy(legacy)
    upgrade(legacy.engine)
    upgrade_to_old = REV3.down_revision
    from alembic import command

    from databazaar.market.db import alembic_config

    command.downgrade(alembic_config(engine=legacy.engine), upgrade_to_old)
    assert current_revision(legacy.engine) == "0002_econ"
    with legacy.engine.connect() as conn:
        rows = conn.execute(text(f"SELECT {REV3.LEDGER_COLUMNS} FROM ledger_entries ORDER BY seq"))
        REV3._check_legacy_chain(conn, list(rows))  # raises if the old chain is not intact
