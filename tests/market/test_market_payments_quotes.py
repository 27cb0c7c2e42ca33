"""Buyer top-ups through the offline test provider, and quotes held until confirmed."""

from __future__ import annotations

import json
import os
import time
from datetime import date
from pathlib import Path

import pytest

from databazaar.core.errors import Conflict, InvalidInput, NotFound, PaymentError
from databazaar.market.payments import CardDetails, TestCardProvider, luhn_ok, top_up
from databazaar.market.quotes import QUOTE_TTL_SECONDS, QuoteBook, confirm_price
from databazaar.market.service import Market

GOOD = CardDetails("4242 4242 4242 4242", "12/39", "123", "Cy")


def test_luhn_check_digit() -> None:
    assert luhn_ok("4242424242424242") and luhn_ok("4000000000000002")
    assert not luhn_ok("4242424242424241")


def test_top_up_books_a_deposit_through_the_ledger(market: Market) -> None:
    buyer = market.create_account("carol", "correct-horse-9", "buyer")
    payment, done = top_up(market, buyer.id, 2_550, GOOD, TestCardProvider())
    assert payment.test_mode and payment.amount_minor == 2_550
    assert payment.description == "test card ending 4242"
    assert "4242424242424242" not in payment.reference  # the number is never kept
    assert done.account.balance_minor == 2_550
    assert market.get_account(buyer.id).balance_minor == 2_550
    report = market.verify_ledger()
    assert report.ok


@pytest.mark.parametrize(
    ("card", "error", "message"),
    [
        (CardDetails("4000 0000 0000 0002", "12/39", "123"), PaymentError, "declined"),
        (CardDetails("4000 0000 0000 9995", "12/39", "123"), PaymentError, "insufficient"),
        (CardDetails("4242 4242 4242 4241", "12/39", "123"), InvalidInput, "mistyped"),
        (CardDetails("4242", "12/39", "123"), InvalidInput, "12 to 19 digits"),
        (CardDetails("4242 4242 4242 4242", "10/26", "123"), PaymentError, "expired"),
        (CardDetails("4242 4242 4242 4242", "13/39", "123"), InvalidInput, "month"),
        (CardDetails("4242 4242 4242 4242", "1239", "123"), InvalidInput, "MM/YY"),
        (CardDetails("4242 4242 4242 4242", "12/39", "12"), InvalidInput, "security code"),
    ],
)
def test_refused_cards_leave_the_ledger_as_it_was(
    market: Market, card: CardDetails, error: type[Exception], message: str
) -> None:
    buyer = market.create_account("dave", "correct-horse-9", "buyer")
    rows = market.verify_ledger().n_rows
    provider = TestCardProvider(today=date(2026, 11, 30))
    with pytest.raises(error, match=message):
        top_up(market, buyer.id, 1_000, card, provider)
    assert market.get_account(buyer.id).balance_minor == 0
    assert market.verify_ledger().n_rows == rows


def test_top_up_amount_limits(market: Market) -> None:
    buyer = market.create_account("erin", "correct-horse-9", "buyer")
    for amount in (0, -5, 1_000_001):
        with pytest.raises(InvalidInput):
            top_up(market, buyer.id, amount, GOOD, TestCardProvider())


def test_quote_book_holds_a_quote_for_its_buyer_only(tmp_path: Path) -> None:
    book = QuoteBook(tmp_path / "quotes")
    held = book.hold(7, "iris", {"request": {"variance": 0.1}, "key": "k1"}, 1500, {"v": 1})
    again = book.get(7, held.token)
    assert again.price_minor == 1500 and again.request["request"] == {"variance": 0.1}
    assert 0 < again.expires_in <= QUOTE_TTL_SECONDS
    with pytest.raises(NotFound):
        book.get(8, held.token)  # another buyer's quote does not exist for them
    for bad in ("../../etc/passwd", "x" * 32, ""):
        with pytest.raises(NotFound):
            book.get(7, bad)
    book.drop(held.token)
    with pytest.raises(NotFound):
        book.get(7, held.token)


def test_expired_quotes_are_refused_and_swept(tmp_path: Path) -> None:
    book = QuoteBook(tmp_path)
    held = book.hold(1, "iris", {}, 100, {})
    path = tmp_path / f"{held.token}.json"
    record = json.loads(path.read_text())
    record["created"] = time.time() - QUOTE_TTL_SECONDS - 1
    path.write_text(json.dumps(record))
    with pytest.raises(NotFound, match="expired"):
        book.get(1, held.token)
    stale = book.hold(1, "iris", {}, 100, {})
    old = time.time() - QUOTE_TTL_SECONDS - 5
    os.utime(tmp_path / f"{stale.token}.json", (old, old))
    assert book.sweep() == 1
    assert list(tmp_path.glob("*.json")) == []


def test_a_moved_price_is_refused() -> None:
    from databazaar.market.quotes import HeldQuote

    held = HeldQuote("a" * 32, 1, "iris", {}, 1500, {}, time.time())
    confirm_price(held, 1500)
    with pytest.raises(Conflict, match=r"changed from 15\.00 USD to 16\.00 USD"):
        confirm_price(held, 1600)
