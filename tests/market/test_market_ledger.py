"""The hash-chained double-entry ledger: verification, tamper detection, CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from databazaar.cli.market import db_app, ledger_app
from databazaar.market.db import Database, head_revision, upgrade
from databazaar.market.ledger import GENESIS_HASH, Posting, post, row_digest, seal
from databazaar.market.models import LedgerChain, LedgerEntry
from databazaar.market.service import Market


@pytest.fixture
def busy_market(market: Market, seller, other_seller, buyer, listed) -> Market:
    """A market with deposits and three purchases booked (17 ledger rows)."""
    listed(seller, "a", 1000)
    listed(other_seller, "b", 250)
    listed(seller, "c", 333)
    market.deposit(buyer.id, 2000)
    market.purchase(buyer, ["a"], "k1")
    market.purchase(buyer, ["b", "c"], "k2")
    second = market.create_account("buyer-z", "correct-horse-9", "buyer")
    market.deposit(second.id, 400)
    market.purchase(second, ["b"], "k1")
    return market


def _chains(market: Market) -> dict[int, list[LedgerEntry]]:
    with market.db.read() as s:
        rows = s.query(LedgerEntry).order_by(LedgerEntry.chain_id, LedgerEntry.chain_seq).all()
    chains: dict[int, list[LedgerEntry]] = {}
    for r in rows:
        chains.setdefault(r.chain_id, []).append(r)
    return chains


def test_each_payer_has_a_linear_chain(busy_market: Market, buyer) -> None:
    report = busy_market.ledger_report()
    # deposit 2 + purchase (buyer, seller, fee) 3 + purchase (buyer, 2 sellers, fee) 4
    # + deposit 2 + purchase 3 = 14 rows in 5 transactions, in 3 chains: the funding
    # account's (both deposits) and one per buyer
    assert (report.ok, report.n_rows, report.n_transactions) == (True, 14, 5)
    assert report.total_minor == 0 and report.head_seq == 14 and report.n_chains == 3
    chains = _chains(busy_market)
    funding = busy_market.account_by_name("@funding").id
    second = busy_market.account_by_name("buyer-z").id
    assert {k: len(v) for k, v in chains.items()} == {funding: 4, buyer.id: 7, second: 3}
    for chain_id, rows in chains.items():
        assert [r.chain_seq for r in rows] == list(range(1, len(rows) + 1))
        prev = GENESIS_HASH
        for r in rows:
            assert r.prev_hash == prev
            assert r.row_hash == row_digest(
                prev, chain_id, r.chain_seq, r.txn_id, r.account_id, r.amount_minor, r.kind,
                r.memo, r.created_at,
            )  # fmt: skip
            prev = r.row_hash
    with busy_market.db.read() as s:
        heads = {h.account_id: (h.last_seq, h.last_hash) for h in s.query(LedgerChain)}
    assert heads == {k: (len(v), v[-1].row_hash) for k, v in chains.items()}


def test_unbalanced_or_float_postings_are_refused(busy_market: Market) -> None:
    before = busy_market.ledger_report().n_rows
    from databazaar.core.errors import InvalidInput

    with busy_market.db.write() as s, pytest.raises(InvalidInput, match="does not balance"):
        post(s, [Posting(1, 5, "x"), Posting(2, -4, "x")])
    with busy_market.db.write() as s, pytest.raises(InvalidInput, match="integers"):
        post(s, [Posting(1, 0.5, "x"), Posting(2, -0.5, "x")])  # type: ignore[arg-type]
    with busy_market.db.write() as s, pytest.raises(InvalidInput, match="at least two"):
        post(s, [])
    assert busy_market.ledger_report().n_rows == before


def test_ledger_rows_are_append_only_in_the_database(busy_market: Market) -> None:
    for sql in (
        "UPDATE ledger_entries SET amount_minor = 1 WHERE seq = 3",
        "DELETE FROM ledger_entries WHERE seq = 14",
    ):
        with pytest.raises(DBAPIError, match="append-only"), busy_market.db.engine.begin() as c:
            c.execute(text(sql))
    assert busy_market.ledger_report().ok


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("amount_minor", "amount_minor + 1"),
        ("account_id", "1"),
        ("kind", "'refund'"),
        ("memo", "'edited'"),
        ("created_at", "'2020-01-01T00:00:00.000000+00:00'"),
        ("txn_id", "'00000000-0000-0000-0000-000000000000'"),
        ("prev_hash", "'" + "a" * 64 + "'"),
        ("row_hash", "'" + "b" * 64 + "'"),
        ("chain_seq", "chain_seq + 100"),
    ],
)
def test_editing_any_column_of_any_row_is_named(busy_market: Market, column, value, tamper) -> None:
    target = 7
    tamper(busy_market.db, f"UPDATE ledger_entries SET {column} = {value} WHERE seq = {target}")
    report = busy_market.ledger_report()
    assert not report.ok
    assert report.first_bad_seq == target
    assert any(f"ledger row seq={target}:" in str(p) for p in report.problems)


def test_deleted_and_appended_rows_are_detected(busy_market: Market, buyer, tamper) -> None:
    tamper(busy_market.db, "DELETE FROM ledger_entries WHERE seq = 5")  # buyer chain pos 3
    report = busy_market.ledger_report()
    assert not report.ok and report.first_bad_seq == 6
    assert (
        f"ledger row seq=6: sequence gap in the chain of account {buyer.id}: expected "
        "chain_seq=3, found 4" in str(report.problems[0])
    )


def _names(market: Market, problem: str) -> bool:
    """Whether verification fails and one of its problems says ``problem``."""
    report = market.ledger_report()
    return not report.ok and any(problem in str(p) for p in report.problems)


def test_truncated_chain_is_detected_by_its_head(busy_market: Market, buyer, tamper) -> None:
    tamper(busy_market.db, "DELETE FROM ledger_entries WHERE seq >= 8 AND seq <= 9")
    assert _names(
        busy_market,
        f"ledger row seq=7: the head of the chain of account {buyer.id} says chain_seq=7 "
        "but the chain ends at chain_seq=5",
    )


def test_seal_catches_a_truncation_that_also_rewrites_the_head(
    busy_market: Market, buyer, tamper
) -> None:
    with busy_market.db.write() as s:
        sealed = seal(s)
    assert busy_market.ledger_report().ok and busy_market.ledger_report().n_seals == 1
    assert f"[{buyer.id},7," in sealed.heads
    # an attacker deletes the buyer's last purchase and rewinds its chain head to match
    with busy_market.db.read() as s:
        kept = s.scalar(select(LedgerEntry.row_hash).where(LedgerEntry.seq == 5))
    tamper(busy_market.db, "DELETE FROM ledger_entries WHERE seq >= 6 AND seq <= 9")
    with busy_market.db.engine.begin() as conn:
        conn.execute(
            text("UPDATE ledger_chains SET last_seq = 3, last_hash = :h WHERE account_id = :a"),
            {"h": kept, "a": buyer.id},
        )
        conn.execute(text(f"UPDATE accounts SET balance_minor = 1000 WHERE id = {buyer.id}"))
    assert _names(
        busy_market,
        f"ledger row seq=5: the chain of account {buyer.id} was sealed at chain_seq=7 but ends "
        "at chain_seq=3 (rows were deleted)",
    )
    # and an edited seal is named too
    with busy_market.db.engine.begin() as conn:
        conn.execute(text("UPDATE ledger_seals SET heads = '[]'"))
    assert any(
        "seal 1 of the global chain was altered" in str(p)
        for p in busy_market.ledger_report().problems
    )


def test_cached_balance_edit_is_detected(busy_market: Market, buyer) -> None:
    with busy_market.db.engine.begin() as conn:
        conn.execute(text(f"UPDATE accounts SET balance_minor = 10 WHERE id = {buyer.id}"))
    report = busy_market.ledger_report()
    assert not report.ok
    assert any(f"account {buyer.id} (buyer-a) balance 10 != ledger sum" in str(p)
               for p in report.problems)  # fmt: skip


def test_cli_upgrade_and_verify(tmp_path: Path, tamper) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    runner = CliRunner()
    res = runner.invoke(db_app, ["upgrade", "--url", url])
    assert res.exit_code == 0 and f"is at revision {head_revision()}" in res.output
    res = runner.invoke(db_app, ["create-admin", "root", "--url", url],
                        input="admin-password-1\nadmin-password-1\n")  # fmt: skip
    assert res.exit_code == 0 and "admin account 'root' created" in res.output

    db = Database.from_url(url)
    upgrade(db.engine)
    market = Market(db, tmp_path / "home", secret_key="cli-secret-key-0123456")
    buyer = market.create_account("buyer-c", "correct-horse-9", "buyer")
    market.deposit(buyer.id, 700)
    market.deposit(buyer.id, 300)
    res = runner.invoke(ledger_app, ["verify", "--url", url])
    assert res.exit_code == 0, res.output
    assert "ledger OK: 4 rows, 2 transactions, sum 0, head seq 4" in res.output

    tamper(db, "UPDATE ledger_entries SET amount_minor = 7000 WHERE seq = 2")
    res = runner.invoke(ledger_app, ["verify", "--url", url])
    assert res.exit_code == 1
    assert "ledger row seq=2: row_hash does not match" in res.output
    res = runner.invoke(ledger_app, ["verify", "--url", url, "--json"])
    assert res.exit_code == 1 and '"first_bad_seq": 2' in res.output
    db.dispose()


@pytest.mark.postgres
def test_cli_verify_on_postgres(postgres_schema, tamper) -> None:
    from urllib.parse import quote

    url = f"{postgres_schema.url}?options={quote('-csearch_path=' + postgres_schema.name)}"
    runner = CliRunner()
    assert runner.invoke(db_app, ["upgrade", "--url", url]).exit_code == 0
    db = Database.from_url(url)
    market = Market(db, Path("/tmp") / postgres_schema.name, secret_key="pg-secret-key-0123456")
    buyer = market.create_account("buyer-p", "correct-horse-9", "buyer")
    market.deposit(buyer.id, 1234)
    res = runner.invoke(ledger_app, ["verify", "--url", url])
    assert res.exit_code == 0 and "2 rows" in res.output
    tamper(db, "UPDATE ledger_entries SET memo = 'x' WHERE seq = 1")
    res = runner.invoke(ledger_app, ["verify", "--url", url])
    assert res.exit_code == 1 and "ledger row seq=1:" in res.output
    db.dispose()
