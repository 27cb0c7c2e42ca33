"""The one interface every pricing mechanism implements.

A mechanism is configured by the seller per listing (``config()`` / ``from_config``
round-trip through JSON so the choice can be stored) and answers buyers with a
:class:`Quote`: an integer price in minor units, what is delivered for it (the whole
dataset, a query answer, a noisy model, an auction licence) and the numbers that
justify the price.  Mechanisms are pure: they never touch the database; the market
books a quote with :mod:`databazaar.market.economics`.

Mechanisms (see the survey of Zhang et al. 2024, "A Survey on Data Markets", pricing
stage, and the original papers cited in each module):

==============  ==============================================================
``posted``      a fixed price (:mod:`.posted`)
``query``       arbitrage-free query-based pricing (Koutris et al. 2012/2015)
``model``       model-based pricing of noisy models (Chen, Koutris, Kumar 2019)
``auction``     sealed-bid uniform second-price auction with reserve (Vickrey 1961)
``value``       a share of the buyer's measured value (value-based pricing)
==============  ==============================================================
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from databazaar.core.errors import InvalidInput
from databazaar.core.money import check_minor

#: What a buyer receives for a quote.
DELIVERABLES = ("dataset", "query-answer", "model", "licence")


def check_keys(request: Mapping[str, Any], allowed: Iterable[str], what: str) -> None:
    """Refuse a request that is not a mapping or names keys the mechanism does not know."""
    if not isinstance(request, Mapping):
        raise InvalidInput(f"a {what} request must be a JSON object, got {type(request).__name__}")
    allowed = set(allowed)
    unknown = set(request) - allowed
    if unknown:
        raise InvalidInput(
            f"unknown {what} request fields: {', '.join(sorted(map(str, unknown)))}",
            hint=f"use {', '.join(sorted(allowed)) or 'no fields'}",
        )


@dataclass(frozen=True)
class Quote:
    """A price offer: ``price_minor`` for ``deliverable`` under ``mechanism``.

    ``details`` holds JSON-serialisable numbers that justify the price (the views that
    determine a query, the noise variance and expected error of a model, the clearing
    bids of an auction, the measured value and share ...).
    """

    mechanism: str
    price_minor: int
    deliverable: str
    details: dict[str, Any] = field(default_factory=dict)
    currency: str = "USD"

    def __post_init__(self) -> None:
        check_minor(self.price_minor)
        if self.deliverable not in DELIVERABLES:
            raise InvalidInput(f"unknown deliverable {self.deliverable!r}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly view."""
        return {
            "mechanism": self.mechanism,
            "price_minor": self.price_minor,
            "currency": self.currency,
            "deliverable": self.deliverable,
            "details": self.details,
        }


class PricingMechanism(ABC):
    """A way of pricing one listing; subclasses register under ``name``.

    Subclasses set ``name`` and ``deliverable``, take their parameters in ``__init__``
    (validated there), return them from :meth:`config` and price a buyer's request in
    :meth:`quote`.  ``from_config(m.config())`` rebuilds an equal mechanism.
    """

    name: ClassVar[str]
    deliverable: ClassVar[str]
    #: how the web pages name and explain the mechanism, an example configuration,
    #: and its place in the seller's menu
    label: ClassVar[str]
    summary: ClassVar[str]
    example: ClassVar[dict[str, Any]]
    menu_order: ClassVar[int] = 100
    #: request fields :meth:`quote` accepts
    request_fields: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """The mechanism's parameters as a JSON-serialisable dict."""

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> PricingMechanism:
        """Rebuild a mechanism from :meth:`config` output."""
        if not isinstance(config, Mapping):
            raise InvalidInput(f"the {cls.name} configuration must be a JSON object")
        try:
            return cls(**dict(config))
        except TypeError as exc:
            raise InvalidInput(f"bad {cls.name} pricing configuration: {exc}") from None

    @abstractmethod
    def quote(self, request: Mapping[str, Any] | None = None) -> Quote:
        """Price a buyer's request (fields listed in ``request_fields``)."""

    def _request(self, request: Mapping[str, Any] | None) -> Mapping[str, Any]:
        request = {} if request is None else request
        check_keys(request, self.request_fields, f"{self.name} pricing")
        return request

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config()!r})"


_REGISTRY: dict[str, type[PricingMechanism]] = {}


def register(cls: type[PricingMechanism]) -> type[PricingMechanism]:
    """Class decorator adding a mechanism to the registry under ``cls.name``."""
    _REGISTRY[cls.name] = cls
    return cls
