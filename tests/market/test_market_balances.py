"""Deferred sale credits: pending until folded, counted in every balance, verified."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text

from databazaar.core.errors import PaymentError
from databazaar.market import balances, ledger
from databazaar.market.models import Account, PendingCredit
from databazaar.market.service import Market


def _cached(market: Market, account_id: int) -> int:
    with market.db.read() as s:
        return s.scalar(select(Account.balance_minor).where(Account.id == account_id))


def test_sale_credits_are_pending_until_a_seal_folds_them(market, seller, buyer, listed) -> None:
    listed(seller, "a", 1000)
    listed(seller, "b", 333)
    market.deposit(buyer.id, 5000)
    market.purchase(buyer, ["a", "b"], "k1")
    fee = market.account_by_name("@market-fee")
    # 5% fee rounded down per item: 50 + 16; the seller gets the rest
    assert market.get_account(seller.id).balance_minor == 950 + 317
    assert fee.balance_minor == 66
    assert market.get_account(buyer.id).balance_minor == 5000 - 1333
    # the purchase touched neither the seller's nor the fee account's row
    assert _cached(market, seller.id) == 0 and _cached(market, fee.id) == 0
    with market.db.read() as s:
        assert balances.pending(s) == {seller.id: 1267, fee.id: 66}
    assert market.ledger_report().ok
    with market.db.write() as s:
        ledger.seal(s)
    with market.db.read() as s:
        assert balances.pending(s) == {}
    assert _cached(market, seller.id) == 1267 and _cached(market, fee.id) == 66
    assert market.get_account(seller.id).balance_minor == 1267
    report = market.ledger_report()
    assert report.ok and report.n_seals == 1


def test_payout_folds_the_sellers_pending_credits(market, seller, buyer, listed) -> None:
    listed(seller, "a", 1000)
    market.deposit(buyer.id, 1000)
    market.purchase(buyer, ["a"], "k1")
    with pytest.raises(PaymentError, match="balance 950 is less than the payout 951"):
        market.withdraw(seller.id, 951)
    assert _cached(market, seller.id) == 0  # the refused payout changed nothing
    done = market.withdraw(seller.id, 900)
    assert done.account.balance_minor == 50 == _cached(market, seller.id)
    assert market.ledger_report().ok


def test_a_debit_beyond_the_cached_column_folds_then_pays(market, seller, buyer, listed) -> None:
    """An admin who sold (credits pending) buys with the money from that sale."""
    admin = market.create_account("root-admin", "correct-horse-9", "admin")
    listed(admin, "mine", 2000)
    listed(seller, "theirs", 1500)
    market.deposit(buyer.id, 2000)
    market.purchase(buyer, ["mine"], "k1")
    assert _cached(market, admin.id) == 0 and market.get_account(admin.id).balance_minor == 1900
    market.deposit(admin.id, 10)
    with pytest.raises(PaymentError, match=r"insufficient balance: 1910 < 2000"):
        listed(seller, "dear", 2000)
        market.purchase(admin, ["dear"], "k2")
    order = market.purchase(admin, ["theirs"], "k3")
    assert order.total_minor == 1500
    assert market.get_account(admin.id).balance_minor == 410 == _cached(market, admin.id)
    assert market.ledger_report().ok


def test_forged_or_removed_pending_credits_are_named(market, seller, buyer, listed) -> None:
    listed(seller, "a", 1000)
    market.deposit(buyer.id, 1000)
    market.purchase(buyer, ["a"], "k1")
    with market.db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO ledger_pending_credits (account_id, amount_minor, txn_id) "
                f"VALUES ({seller.id}, 500, 'made-up')"
            )
        )
    problems = [str(p) for p in market.ledger_report().problems]
    assert any("names transaction made-up, which is not on the ledger" in p for p in problems)
    assert any(f"account {seller.id} (seller-a) balance 0 + pending 1450" in p for p in problems)
    with market.db.engine.begin() as conn:
        conn.execute(text("DELETE FROM ledger_pending_credits"))
    problems = [str(p) for p in market.ledger_report().problems]
    assert problems and all("balance 0 != ledger sum" in p for p in problems)
    # a credit is never negative or zero
    with pytest.raises(Exception, match="ck_pending_credit_positive"):
        with market.db.write() as s:
            s.add(PendingCredit(account_id=seller.id, amount_minor=0, txn_id="x"))


def test_downgrade_folds_pending_credits_into_the_balances(market, seller, buyer, listed) -> None:
    from alembic import command

    from databazaar.market.db import alembic_config, current_revision, upgrade

    listed(seller, "a", 1000)
    market.deposit(buyer.id, 1000)
    market.purchase(buyer, ["a"], "k1")
    engine = market.db.engine
    command.downgrade(alembic_config(engine=engine), "0003_chains")
    assert current_revision(engine) == "0003_chains"
    with engine.connect() as conn:
        cached = dict(conn.execute(text("SELECT id, balance_minor FROM accounts")).all())
        booked = dict(
            conn.execute(
                text("SELECT account_id, SUM(amount_minor) FROM ledger_entries GROUP BY account_id")
            ).all()
        )
    assert cached[seller.id] == 950 and all(cached[a] == booked[a] for a in booked)
    upgrade(engine)
    assert market.ledger_report().ok
