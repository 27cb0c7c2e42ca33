r"""Value-based pricing: the buyer pays a share of the value the data has *for them*.

The market measures the product's value on the buyer's own validation set with
KNN-Shapley (Jia et al. 2019; group value = the sum of the product's rows' values, i.e.
the gain in KNN utility the product brings, in units of the utility: expected fraction
of correct neighbour votes).  The buyer declares what a utility gain of 1.0 is worth to
them (``worth_minor``); the price is

.. math::  p = \min\bigl(\text{cap},\ \max\bigl(\text{floor},\
           \lfloor s \cdot \max(0, \hat v) \cdot \text{worth} \rfloor\bigr)\bigr)

with share :math:`s \in (0, 1]` set by the seller and :math:`\hat v` the *lower*
confidence bound of the value when one is available (a "credible valuation": the buyer
never pays for value the measurement cannot vouch for; cf. Wu, Jia et al., Data Shapley
as U-statistics, data-trading case study).  Since :math:`s \le 1` the buyer keeps at
least :math:`(1-s)` of the measured value whenever the floor does not bind
(individual rationality).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from fractions import Fraction
from typing import Any, ClassVar

from databazaar.core.errors import InvalidInput
from databazaar.core.money import check_minor
from databazaar.market.pricing.base import PricingMechanism, Quote, register


def _finite(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"{name} must be a number, got {value!r}")
    if not math.isfinite(float(value)):
        raise InvalidInput(f"{name} must be finite, got {value!r}")
    return float(value)


@register
class ValueBasedPricing(PricingMechanism):
    """Charge ``share_bps`` basis points of the buyer's measured value.

    Args:
        share_bps: the seller's share of the value, 1..10000 basis points.
        floor_minor: the least the seller accepts.
        cap_minor: the most a buyer is ever charged (``None``: no cap).
    """

    name = "value"
    label = "Share of measured value"
    summary = (
        "Buyers upload a validation set; they pay a share of the value the data has for "
        "their task (at least the floor, at most the cap)."
    )
    example: ClassVar[dict[str, Any]] = {"share_bps": 2000, "floor_minor": 100, "cap_minor": 50000}
    menu_order = 1
    deliverable = "dataset"
    request_fields = ("value", "value_low", "worth_minor")

    def __init__(
        self, share_bps: int = 2000, floor_minor: int = 0, cap_minor: int | None = None
    ) -> None:
        if (
            isinstance(share_bps, bool)
            or not isinstance(share_bps, int)
            or not 1 <= share_bps <= 10_000
        ):
            raise InvalidInput(f"share_bps must be an integer in 1..10000, got {share_bps!r}")
        self.share_bps = share_bps
        self.floor_minor = check_minor(floor_minor, "floor")
        self.cap_minor = None if cap_minor is None else check_minor(cap_minor, "cap")
        if self.cap_minor is not None and self.cap_minor < self.floor_minor:
            raise InvalidInput("cap_minor is below floor_minor")

    def config(self) -> dict[str, Any]:
        return {
            "share_bps": self.share_bps,
            "floor_minor": self.floor_minor,
            "cap_minor": self.cap_minor,
        }

    def quote(self, request: Mapping[str, Any] | None = None) -> Quote:
        """Price ``{"value": v, "value_low": lcb (optional), "worth_minor": w}``."""
        req = self._request(request)
        for key in ("value", "worth_minor"):
            if key not in req:
                raise InvalidInput(
                    f"a value-based quote needs {key!r}",
                    hint="value the product on your validation set first (value search)",
                )
        value = _finite(req["value"], "value")
        low = _finite(req["value_low"], "value_low") if req.get("value_low") is not None else value
        if low > value:
            raise InvalidInput("value_low is above value")
        worth = check_minor(req["worth_minor"], "worth_minor")
        basis = max(0.0, low)
        # the decimal form of the float (0.3 -> 3/10), so shares of round values stay exact
        raw = math.floor(Fraction(self.share_bps, 10_000) * Fraction(repr(basis)) * worth)
        price = max(self.floor_minor, raw)
        if self.cap_minor is not None:
            price = min(self.cap_minor, price)
        return Quote(
            self.name,
            int(price),
            self.deliverable,
            {
                "value": value,
                "value_low": low,
                "charged_on": basis,
                "worth_minor": worth,
                "share_bps": self.share_bps,
                "share_of_value_minor": int(raw),
                "floor_binds": raw < self.floor_minor,
                "cap_binds": self.cap_minor is not None and raw > self.cap_minor,
            },
        )
