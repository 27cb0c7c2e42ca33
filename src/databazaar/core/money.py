"""Money: integer minor units, one limit, one parser, one formatter.

Every amount in databazaar is an ``int`` of minor units (cents of the market currency):
never a float, never a bool, never a numeric string.  :data:`MAX_MINOR` (10^12 minor
units, ten billion USD) bounds every price, deposit, bid and reserve.  The pydantic
types :data:`Price` and :data:`Amount` enforce the same rule at the HTTP edge in strict
mode (``true``, ``"600"`` and ``500.0`` are refused with 422, not coerced), and
:func:`check_minor` enforces it in the library.  :func:`format_minor` is the one place
an amount becomes text, and :func:`parse_decimal` the one place a person's typed amount
(``12.50``) becomes minor units.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import Field, StrictInt

from databazaar.core.errors import InvalidInput

#: Largest amount of money anywhere in the market (10^12 minor units).
MAX_MINOR = 10**12
#: The market's currency and its number of decimal places.
CURRENCY = "USD"
CURRENCY_SYMBOL = "$"
MINOR_DIGITS = 2
_SCALE = 10**MINOR_DIGITS

#: A price or reserve in minor units: a strict integer in ``[0, MAX_MINOR]``.
Price = Annotated[StrictInt, Field(ge=0, le=MAX_MINOR, description="minor units (cents), integer")]
#: A positive amount (deposit, bid) in minor units: a strict integer in ``[1, MAX_MINOR]``.
Amount = Annotated[
    StrictInt, Field(ge=1, le=MAX_MINOR, description="minor units (cents), integer > 0")
]


def check_minor(value: Any, what: str = "price", *, allow_zero: bool = True) -> int:
    """An amount of money in integer minor units; floats, bools and strings are refused."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(
            f"{what} must be an integer number of minor units (cents), got {value!r}",
            hint="money is never a float: 12.50 USD is 1250",
        )
    if value < 0 or (value == 0 and not allow_zero):
        raise InvalidInput(f"{what} must be {'>= 0' if allow_zero else '> 0'}, got {value}")
    if value > MAX_MINOR:
        raise InvalidInput(f"{what} {value} is larger than the limit {MAX_MINOR}")
    return value


def format_minor(minor: int | None, currency: str = CURRENCY, *, code: bool = True) -> str:
    """``1250`` -> ``"12.50 USD"`` (``"12.50"`` without ``code``); integer arithmetic."""
    if minor is None:
        return "-"
    sign = "-" if minor < 0 else ""
    whole, cents = divmod(abs(int(minor)), _SCALE)
    text = f"{sign}{whole:,}.{cents:0{MINOR_DIGITS}d}"
    return f"{text} {currency}" if code else text


def parse_decimal(raw: str | None, what: str = "price") -> int:
    """An amount typed by a person (``12``, ``12.5``, ``$1,200.00``, ``12.50 USD``) in
    minor units; more decimals than the currency has, negatives and values above
    :data:`MAX_MINOR` are refused."""
    text = (raw or "").strip().removeprefix(CURRENCY_SYMBOL).removesuffix(CURRENCY)
    text = text.replace(",", "").strip()
    if not text:
        raise InvalidInput(f"enter a {what}", hint="for example 12.50")
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise InvalidInput(f"{what} {raw!r} is not a number", hint="for example 12.50") from None
    if not amount.is_finite() or amount < 0:
        raise InvalidInput(f"{what} must be zero or more")
    minor = amount * _SCALE
    if minor != minor.to_integral_value():
        raise InvalidInput(
            f"{what} has more than {MINOR_DIGITS} decimals", hint="use cents at most"
        )
    value = int(minor)
    if value > MAX_MINOR:
        raise InvalidInput(f"{what} is too large")
    return value
