"""Pricing mechanisms behind one interface (:class:`PricingMechanism`).

``posted`` (fixed price), ``query`` (arbitrage-free query-based pricing, Koutris et al.),
``model`` (noisy-model pricing, Chen, Koutris, Kumar), ``auction`` (sealed-bid
second-price with reserve) and ``value`` (a share of the buyer's measured value).
"""

from __future__ import annotations

from databazaar.market.pricing.auction import AuctionOutcome, Bid, SecondPriceAuction
from databazaar.market.pricing.base import (
    PricingMechanism,
    Quote,
    get_mechanism_class,
    mechanism_from_config,
    mechanism_names,
)
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
