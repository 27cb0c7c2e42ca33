"""Pricing mechanisms behind one interface (:class:`PricingMechanism`), and their registry.

``posted`` (fixed price), ``query`` (arbitrage-free query-based pricing, Koutris et al.),
``model`` (noisy-model pricing, Chen, Koutris, Kumar), ``auction`` (sealed-bid
second-price with reserve) and ``value`` (a share of the buyer's measured value).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from databazaar.core.errors import InvalidInput
from databazaar.market.pricing.auction import AuctionOutcome, Bid, SecondPriceAuction
from databazaar.market.pricing.base import _REGISTRY, PricingMechanism, Quote
from databazaar.market.pricing.model_based import (
    ModelArbitrage,
    NoisyLinearModel,
    NoisyModelPricing,
    NoisyModelSeller,
    PriceCurve,
    check_model_price_arbitrage,
    combine_models,
)
from databazaar.market.pricing.posted import PostedPrice
from databazaar.market.pricing.query import (
    QueryArbitrage,
    QueryPricing,
    SelectionQuery,
    candidate_queries,
    determines,
    find_query_arbitrage,
)
from databazaar.market.pricing.value_based import ValueBasedPricing

__all__ = [
    "AuctionOutcome",
    "Bid",
    "ModelArbitrage",
    "NoisyLinearModel",
    "NoisyModelPricing",
    "NoisyModelSeller",
    "PostedPrice",
    "PriceCurve",
    "PricingMechanism",
    "QueryArbitrage",
    "QueryPricing",
    "Quote",
    "SecondPriceAuction",
    "SelectionQuery",
    "ValueBasedPricing",
    "candidate_queries",
    "check_model_price_arbitrage",
    "combine_models",
    "determines",
    "find_query_arbitrage",
    "get_mechanism_class",
    "mechanism_from_config",
    "mechanism_names",
]


# The registry is read here, after every mechanism module above has registered itself.
def mechanism_names() -> list[str]:
    """Names of the registered mechanisms."""
    return sorted(_REGISTRY)


def get_mechanism_class(name: str) -> type[PricingMechanism]:
    """The mechanism class registered under ``name``."""
    cls = _REGISTRY.get(name)
    if cls is None:
        raise InvalidInput(
            f"unknown pricing mechanism {name!r}", hint=f"use one of {', '.join(sorted(_REGISTRY))}"
        )
    return cls


def mechanism_from_config(name: str, config: Mapping[str, Any]) -> PricingMechanism:
    """Build the mechanism ``name`` from its stored configuration."""
    return get_mechanism_class(name).from_config(config)
