"""Buyer top-ups through a payment provider, booked as ledger deposits.

A :class:`PaymentProvider` turns a buyer's payment details into a settled
:class:`Payment` or refuses them with a :class:`~databazaar.core.errors.PaymentError`.
:func:`top_up` charges the provider first and then credits the buyer with the market's
one deposit path (:meth:`~databazaar.market.settlement.Settlement.deposit`, a ledger
transfer from the funding account), so a top-up is verified with the rest of the ledger
and an admin deposit remains possible beside it.

:class:`TestCardProvider` is the offline provider for development, demos and tests:
it takes card-like details, checks them as a card processor would (Luhn check digit,
expiry in the future, three- or four-digit security code) and settles a small set of
published test numbers without any network; every payment it settles is marked test
mode.  A real provider implements the same :meth:`PaymentProvider.charge`.
"""

from __future__ import annotations

import hashlib
import secrets
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, ClassVar

from databazaar.core.errors import InvalidInput, PaymentError
from databazaar.core.money import check_minor, format_minor
from databazaar.market.schemas import DepositOut

if TYPE_CHECKING:
    from databazaar.market.service import Market

#: the most one top-up may add (10,000.00 in the market currency)
MAX_TOP_UP_MINOR = 1_000_000


@dataclass(frozen=True)
class CardDetails:
    """What a buyer types into a card form (kept only for the length of one charge)."""

    number: str
    expiry: str  # "MM/YY"
    cvc: str
    holder: str = ""


@dataclass(frozen=True)
class Payment:
    """A settled charge: the provider's reference and what the statement may show."""

    provider: str
    reference: str
    amount_minor: int
    test_mode: bool
    description: str


class PaymentProvider(ABC):
    """Charges a buyer's payment method; implementations never store card numbers."""

    name: str
    test_mode: bool

    @abstractmethod
    def charge(self, amount_minor: int, card: CardDetails) -> Payment:
        """Settle ``amount_minor`` from ``card`` or raise :class:`PaymentError`."""


def luhn_ok(digits: str) -> bool:
    """The Luhn (mod 10) check digit of a card number holds."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return total % 10 == 0


def _card_number(raw: str) -> str:
    digits = "".join(ch for ch in raw if not ch.isspace() and ch != "-")
    if not digits.isdigit() or not 12 <= len(digits) <= 19:
        raise InvalidInput(
            "the card number must have 12 to 19 digits", hint="spaces between groups are fine"
        )
    if not luhn_ok(digits):
        raise InvalidInput("the card number is mistyped (its check digit does not match)")
    return digits


def _expiry(raw: str, today: date) -> tuple[int, int]:
    month_s, sep, year_s = raw.strip().partition("/")
    if not sep or not month_s.strip().isdigit() or not year_s.strip().isdigit():
        raise InvalidInput("write the expiry date as MM/YY, e.g. 04/29")
    month, year = int(month_s), int(year_s)
    year += 2000 if year < 100 else 0
    if not 1 <= month <= 12:
        raise InvalidInput("the expiry month must be from 01 to 12")
    if (year, month) < (today.year, today.month):
        raise PaymentError("the card has expired", hint="use another card")
    return month, year


class TestCardProvider(PaymentProvider):
    """An offline provider in test mode: published test numbers settle or decline.

    ``4242 4242 4242 4242`` (and any other Luhn-valid number not listed below) settles;
    ``4000 0000 0000 0002`` is declined; ``4000 0000 0000 9995`` is declined for
    insufficient funds.  Card numbers are never kept: a payment's reference is a random
    token and its description shows the last four digits only.
    """

    __test__ = False  # not a pytest test class
    name = "test-card"
    test_mode = True
    DECLINED: ClassVar[dict[str, str]] = {
        "4000000000000002": "the card was declined",
        "4000000000009995": "the card has insufficient funds",
    }

    def __init__(self, today: date | None = None) -> None:
        self._today = today

    def charge(self, amount_minor: int, card: CardDetails) -> Payment:
        amount = check_minor(amount_minor, "amount", allow_zero=False)
        if amount > MAX_TOP_UP_MINOR:
            raise InvalidInput(f"one top-up adds at most {format_minor(MAX_TOP_UP_MINOR)}")
        digits = _card_number(card.number)
        _expiry(card.expiry, self._today or datetime.now(UTC).date())
        cvc = card.cvc.strip()
        if not cvc.isdigit() or len(cvc) not in (3, 4):
            raise InvalidInput("the security code is the 3 or 4 digits on the back of the card")
        if digits in self.DECLINED:
            raise PaymentError(self.DECLINED[digits], hint="try another card")
        salt = secrets.token_hex(8)
        ref = "test_" + hashlib.sha256((salt + digits[-4:]).encode()).hexdigest()[:16]
        return Payment(
            provider=self.name,
            reference=ref,
            amount_minor=amount,
            test_mode=True,
            description=f"test card ending {digits[-4:]}",
        )


def top_up(
    market: Market, account_id: int, amount_minor: int, card: CardDetails, provider: PaymentProvider
) -> tuple[Payment, DepositOut]:
    """Charge ``provider`` and credit the buyer's account with the market's deposit path.

    The provider is charged first; only a settled payment is booked (memo names the
    provider, its reference and test mode), so a declined card leaves the ledger as it was.
    """
    payment = provider.charge(amount_minor, card)
    mode = " (test mode)" if payment.test_mode else ""
    memo = f"top-up by {payment.description}{mode}, ref {payment.reference}"
    done = market.deposit(account_id, payment.amount_minor, memo=memo)
    return payment, done
