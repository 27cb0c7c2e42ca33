"""Purchases by API token in one transaction (``Orders.purchase_with_token``) and the
pipelined writes of the booking path (``db.pipelined``), on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from databazaar.core.errors import Conflict, Forbidden, InvalidInput, PaymentError, Unauthorized
from databazaar.market.db import pipelined
from databazaar.market.models import LedgerChain


def _head(market, account_id: int) -> tuple[int, str] | None:
    with market.db.read() as s:
        row = s.execute(
            select(LedgerChain.last_seq, LedgerChain.last_hash).where(
                LedgerChain.account_id == account_id
            )
        ).first()
    return None if row is None else (row[0], row[1])


def test_token_purchase_books_like_purchase(market, seller, buyer, listed, state_of) -> None:
    listed(seller, "first", 1000)
    listed(seller, "second", 700)
    market.deposit(buyer.id, 5000)
    token = market.issue_token(buyer.id).token
    # a deposit joins the funding account's chain: the buyer has no chain head yet
    assert _head(market, buyer.id) is None
    first = market.purchase_with_token(token, ["first"], "k-1")  # creates the buyer's head
    assert (first.total_minor, first.fee_minor, first.replayed) == (1000, 50, False)
    assert _head(market, buyer.id) is not None and _head(market, buyer.id)[0] == 3
    second = market.purchase_with_token(token, ["second"], "k-2")  # head locked with the token
    assert (second.total_minor, second.fee_minor) == (700, 35)
    assert _head(market, buyer.id)[0] == 6
    again = market.purchase_with_token(token, ["second"], "k-2")
    assert again.replayed and again.id == second.id
    assert market.get_account(buyer.id).balance_minor == 5000 - 1700
    report = market.ledger_report()
    assert report.ok and report.total_minor == 0, report.problems
    before = state_of(market)
    with pytest.raises(Conflict, match="different purchase"):
        market.purchase_with_token(token, ["first"], "k-2")
    assert state_of(market) == before


def test_token_purchase_refuses_in_the_order_of_authenticate_then_purchase(
    market, seller, buyer, listed, state_of
) -> None:
    listed(seller, "thing", 1000)
    market.deposit(buyer.id, 500)
    buyer_token = market.issue_token(buyer.id).token
    seller_token = market.issue_token(seller.id).token
    before = state_of(market)
    with pytest.raises(Unauthorized, match="malformed"):
        market.purchase_with_token("not-a-token", ["thing"], "k")
    with pytest.raises(Unauthorized, match="invalid API token"):
        market.purchase_with_token(buyer_token[:-4] + "AAAA", ["no such!"], "k")
    with pytest.raises(Forbidden):
        market.purchase_with_token(seller_token, ["thing"], "k")
    with pytest.raises(InvalidInput):
        market.purchase_with_token(buyer_token, ["thing", "thing"], "k")
    with pytest.raises(PaymentError, match="insufficient balance: 500 < 1000"):
        market.purchase_with_token(buyer_token, ["thing"], "k")
    market.revoke_token(buyer_token)
    with pytest.raises(Unauthorized):
        market.purchase_with_token(buyer_token, ["thing"], "k")
    assert state_of(market) == before


def test_a_failing_pipelined_statement_raises_sqlalchemys_error(market) -> None:
    with pytest.raises(IntegrityError), market.db.write() as s:
        conn = s.connection()
        with pipelined(s):
            conn.execute(text("UPDATE accounts SET balance_minor = balance_minor"))
            conn.execute(  # no account 999999: the foreign key refuses the row
                text(
                    "INSERT INTO ledger_pending_credits (account_id, amount_minor, txn_id) "
                    "VALUES (999999, 1, 'x')"
                )
            )


def test_token_purchase_reads_the_basket_with_the_token(
    market, seller, buyer, listed, state_of
) -> None:
    """The basket read in the token's round trip (one slug, several slugs) sees the
    buyer's grants: a product bought before is refused, with nothing written."""
    for slug, price in (("one", 100), ("two", 200), ("three", 300), ("four", 400)):
        listed(seller, slug, price)
    market.deposit(buyer.id, 5000)
    token = market.issue_token(buyer.id).token
    market.purchase_with_token(token, ["one"], "k-1")  # creates the head (no token read)
    two = market.purchase_with_token(token, ["two"], "k-2")  # one slug, with the token
    assert [i.slug for i in two.items] == ["two"] and two.total_minor == 200
    before = state_of(market)
    with pytest.raises(Conflict, match="already have access to 'two'"):
        market.purchase_with_token(token, ["three", "two"], "k-3")
    with pytest.raises(Conflict, match="already have access to 'one'"):
        market.purchase_with_token(token, ["one"], "k-4")
    assert state_of(market) == before
    both = market.purchase_with_token(token, ["four", "three"], "k-5")  # several slugs
    assert both.total_minor == 700 and not both.replayed
    assert sorted(i.slug for i in both.items) == ["four", "three"]
    assert market.get_account(buyer.id).balance_minor == 5000 - 1000
    report = market.ledger_report()
    assert report.ok and report.total_minor == 0, report.problems
