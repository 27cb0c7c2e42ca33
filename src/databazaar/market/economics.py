"""The market's economics: pricing mechanisms, revenue splits, auctions, DP, value search.

:class:`Economics` wraps a :class:`~databazaar.market.service.Market` and adds, each in
one database transaction that leaves the store unchanged on any error:

* **pricing per listing** (:mod:`~databazaar.market.sales`): a seller chooses a
  mechanism of :mod:`databazaar.market.pricing` for a product; buyers get quotes and buy
  under it (:meth:`Economics.buy`): posted price, query answers (query-based pricing),
  noisy models (model-based pricing), or a share of their measured value (value-based);
* **auctions** (:mod:`~databazaar.market.auctions`): sealed bids, cleared by the seller
  at the second price with a reserve;
* **bundles and revenue splits** (:mod:`~databazaar.market.bundles`): a product
  assembled from several sellers' rows names its contributor column; the market values
  each contributor's group on a reference task (:mod:`databazaar.market.allocation`)
  and every sale's seller revenue is split by those values
  (:mod:`~databazaar.market.settlement`);
* **DP statistics** (:mod:`~databazaar.market.dp_offers`): per-product privacy budgets;
* **enriched derivatives** (:mod:`~databazaar.market.derivatives`): a product enriched
  with DiPT or pair rationales, listed with its provenance, whose sales pay a share to
  the source product's contributors;
* **value-aware search** over the catalog (:meth:`Economics.rank`).

Every sale is booked by :func:`~databazaar.market.orders.book_order`, the booking path
of :meth:`Market.purchase` (``orders``, ``order_items``, ``grants``, the hash-chained
ledger, the fee rule ``fee = price * fee_bps // 10000``, the same retries), so ledger
verification covers them.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from databazaar.core.errors import NotFound
from databazaar.market.auctions import Auctions
from databazaar.market.bundles import Bundles
from databazaar.market.common import frame_from, load_product
from databazaar.market.derivatives import Derivatives
from databazaar.market.dp_offers import DpOffers
from databazaar.market.econ_models import EconBundle
from databazaar.market.sales import Sales

if TYPE_CHECKING:
    from databazaar.market.service import Market
    from databazaar.market.value_search import ValueReport


class Economics(Sales, Bundles, Auctions, DpOffers, Derivatives):
    """Pricing, splits, auctions, DP and value search on top of a :class:`Market`.

    Args:
        market: the market service (its database must be migrated to ``0002_econ``).
        random_state: seed of the noise of sold models and DP releases (tests, demos);
            ``None`` draws fresh randomness.
        embedder: sentence encoder for text columns (default: the market's MiniLM).
    """

    def __init__(self, market: Market, *, random_state: Any = None, embedder: Any = None) -> None:
        self.market = market
        self._rng = np.random.default_rng(random_state)
        self._rng_lock = threading.Lock()
        self._embedder = embedder

    def rank(
        self,
        validation: Any,
        label_column: str,
        slugs: Sequence[str] | None = None,
        *,
        task: str | None = None,
        k: int = 5,
        confidence: float | None = 0.95,
        curves: bool = True,
        max_candidates: int = 20,
    ) -> tuple[ValueReport, list[dict[str, str]]]:
        """Rank products on sale by their value for the buyer's validation set.

        Candidates are ``slugs`` or the catalog (optionally one ``task``); products
        without the label column or shared features are skipped with a reason.
        Returns ``(report, skipped)``.
        """
        from databazaar.market.value_search import rank_products

        val = frame_from(validation, "the validation set")
        if slugs is None:
            hits = self.market.search(task=task, limit=min(max(max_candidates, 1), 100)).hits
            slugs = [h.slug for h in hits]
        if not slugs:
            raise NotFound("no products on sale to rank", hint="widen the task filter")
        frames: dict[str, pd.DataFrame] = {}
        prices: dict[str, int] = {}
        skipped: list[dict[str, str]] = []
        for slug in slugs:
            with self.market.db.read() as s:
                prod = load_product(s, slug, eager=False)
                if prod.listing is None or not prod.listing.active:
                    skipped.append({"slug": slug, "reason": "not on sale"})
                    continue
                prices[slug] = prod.listing.price_minor
                bundle = s.get(EconBundle, prod.id)
            frame = self.table(slug)
            if label_column not in frame.columns:
                skipped.append({"slug": slug, "reason": f"no column {label_column!r}"})
                continue
            if bundle is not None:
                frame = frame.drop(columns=[bundle.group_column])
            if not any(c in val.columns for c in frame.columns if c != label_column):
                skipped.append({"slug": slug, "reason": "no feature column shared with yours"})
                continue
            frames[slug] = frame
        if not frames:
            raise NotFound(
                f"no product on sale has the label column {label_column!r} and your features",
                hint="check the column names of your validation set",
            )
        report = rank_products(
            frames,
            val,
            label_column,
            k=k,
            prices=prices,
            embedder=self._embedder,
            confidence=confidence,
            curves=curves,
        )
        return report, skipped
