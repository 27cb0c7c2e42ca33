"""Sales under a pricing mechanism: quotes, purchases, and the sale records.

A seller chooses a mechanism of :mod:`databazaar.market.pricing` for a product (posted
price, query answers, noisy models, or a share of the buyer's measured value); buyers
get quotes and buy under it.  Every sale is booked by
:func:`~databazaar.market.orders.book_order` (the one booking path, with the same fee
rule, ledger and retries as a plain purchase) and recorded in ``econ_sales`` with its
quote and deliverable.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from databazaar.core.errors import Conflict, InvalidInput, NotFound
from databazaar.market import access, ledger
from databazaar.market import validation as v
from databazaar.market.common import (
    EconomicsBase,
    canonical_json,
    frame_from,
    latest_published,
    load_product,
    numeric_features,
    require_owner,
)
from databazaar.market.econ_models import EconBundle, EconPricing, EconSale, EconSplit
from databazaar.market.models import Order, OrderItem, Product, ProductVersion, Role
from databazaar.market.orders import (
    SaleLine,
    book_order,
    check_sellable,
    granted_products,
    keyed_order,
    run_booking,
)
from databazaar.market.pricing import (
    NoisyModelPricing,
    NoisyModelSeller,
    PostedPrice,
    PricingMechanism,
    QueryPricing,
    Quote,
    SecondPriceAuction,
    SelectionQuery,
    mechanism_from_config,
)
from databazaar.market.schemas import AccountOut, PricingOut, SaleOrderOut, SaleOut, SplitOut

MAX_ANSWER_ROWS = 10_000


def record_sale(
    s: Session,
    fee_bps: int,
    buyer_id: int,
    slug: str,
    quote: Quote,
    deliverable: dict[str, Any],
    key: str,
    req_hash: str,
) -> SaleOut:
    """Book one sale under a mechanism in the caller's write transaction (head locked).

    Datasets and auction licences grant access (refused when the buyer already has
    it); query answers and models do not.
    """
    prod = load_product(s, slug, eager=False)
    ver = latest_published(s, prod)
    grant = quote.deliverable in ("dataset", "licence")
    check_sellable(
        prod.slug,
        prod.seller_id,
        buyer_id,
        on_sale=prod.listing is not None and prod.listing.active,
        granted=grant and bool(granted_products(s, buyer_id, [prod.id])),
    )
    order = book_order(
        s,
        buyer_id,
        [SaleLine.of(prod, ver, quote.price_minor, grant=grant)],
        key=key,
        req_hash=req_hash,
        fee_bps=fee_bps,
        mechanism=quote.mechanism,
    )
    sale = EconSale(
        order_id=order.id,
        product_id=prod.id,
        buyer_id=buyer_id,
        mechanism=quote.mechanism,
        quote=quote.to_dict(),
        deliverable=deliverable,
    )
    s.add(sale)
    s.flush()
    return sale_out(s, sale, replayed=False)


def sale_out(s: Session, sale: EconSale, *, replayed: bool) -> SaleOut:
    """The public view of a sale with its order and revenue splits."""
    order = s.get_one(Order, sale.order_id)
    prod = s.get_one(Product, sale.product_id)
    splits = s.scalars(select(EconSplit).where(EconSplit.order_id == order.id)).all()
    return SaleOut(
        sale_id=sale.id,
        slug=prod.slug,
        mechanism=sale.mechanism,
        order=SaleOrderOut(
            id=order.id,
            total_minor=order.total_minor,
            fee_minor=order.fee_minor,
            txn_id=order.txn_id,
            idempotency_key=order.idempotency_key,
        ),
        quote=sale.quote,
        deliverable=sale.deliverable,
        splits=[split_out(x) for x in splits],
        replayed=replayed,
    )


def split_out(x: EconSplit) -> SplitOut:
    """The public view of a revenue split."""
    return SplitOut(
        id=x.id,
        txn_id=x.txn_id,
        order_id=x.order_id,
        valuation_id=x.valuation_id,
        total_minor=x.total_minor,
        shares=x.shares,
        rule=x.rule,
    )


class Sales(EconomicsBase):
    """Pricing and sales of :class:`~databazaar.market.economics.Economics`."""

    def set_pricing(
        self, account: AccountOut, slug: str, mechanism: str, config: Mapping[str, Any]
    ) -> PricingOut:
        """Choose the pricing mechanism of a product (its owner or an admin).

        The configuration is validated by the mechanism; query pricing is checked
        against the product's table (every value of a priced column needs a price) and
        model pricing needs the label column with at least one numeric feature.
        """
        mech = mechanism_from_config(mechanism, config)
        with self.market.db.read() as s:
            prod = load_product(s, slug, eager=False)
            require_owner(prod, account)
            ver = latest_published(s, prod)
        if isinstance(mech, QueryPricing):
            mech.check_table(self._read_version(ver))
        if isinstance(mech, NoisyModelPricing):
            frame = self._read_version(ver)
            if mech.label_column not in frame.columns:
                raise InvalidInput(f"the table has no label column {mech.label_column!r}")
            if not numeric_features(frame, mech.label_column):
                raise InvalidInput("model pricing needs at least one numeric feature column")
        with self.market.db.write() as s:
            prod = load_product(s, slug, lock=True, eager=False)
            row = s.get(EconPricing, prod.id)
            if row is None:
                s.add(EconPricing(product_id=prod.id, mechanism=mech.name, config=mech.config()))
            else:
                row.mechanism, row.config = mech.name, mech.config()
        return PricingOut(slug=slug, mechanism=mech.name, config=mech.config())

    def mechanism_for(self, slug: str) -> PricingMechanism:
        """The product's mechanism (``posted`` at the listing price when none was chosen)."""
        with self.market.db.read() as s:
            prod = load_product(s, slug, eager=False)
            row = s.get(EconPricing, prod.id)
            if row is not None:
                return mechanism_from_config(row.mechanism, row.config)
            if prod.listing is None or not prod.listing.active:
                raise Conflict(f"product {slug!r} is not on sale")
            return PostedPrice(prod.listing.price_minor)

    def _value_request(self, slug: str, request: Mapping[str, Any]) -> dict[str, Any]:
        from databazaar.market.value_search import product_value

        unknown = set(request) - {"validation", "label_column", "worth_minor", "k"}
        if unknown:
            raise InvalidInput(
                f"unknown value pricing request fields: {sorted(unknown)}",
                hint="send validation, label_column, worth_minor and optionally k",
            )
        for key in ("validation", "label_column", "worth_minor"):
            if key not in request:
                raise InvalidInput(f"value-based pricing needs {key!r}")
        val = frame_from(request["validation"], "the validation set")
        with self.market.db.read() as s:
            prod = load_product(s, slug, eager=False)
            bundle = s.get(EconBundle, prod.id)
        exclude = [bundle.group_column] if bundle is not None else []
        pv = product_value(
            self.table(slug),
            val,
            str(request["label_column"]),
            k=int(request.get("k", 5)),
            exclude=exclude,
            embedder=self._embedder,
        )
        return {"value": pv.value, "value_low": pv.ci_low, "worth_minor": request["worth_minor"]}

    def quote(self, slug: str, request: Mapping[str, Any] | None = None) -> Quote:
        """What buying ``slug`` under its mechanism would cost for ``request``."""
        return self._prepare(slug, request or {}, deliver=False)[0]

    def _prepare(
        self, slug: str, request: Mapping[str, Any], *, deliver: bool
    ) -> tuple[Quote, dict[str, Any], dict[str, Any]]:
        """``(quote, stored deliverable, response extras)``; computed outside any write."""
        if not isinstance(request, Mapping):
            raise InvalidInput("the purchase request must be a JSON object")
        mech = self.mechanism_for(slug)
        if isinstance(mech, SecondPriceAuction):
            if request:
                raise InvalidInput("auctioned products take no quote request", hint="place a bid")
            return mech.quote(), {"kind": "licence"}, {}
        if mech.name == "value":
            q = mech.quote(self._value_request(slug, request))
            return q, {"kind": "dataset"}, {}
        q = mech.quote(request)
        if isinstance(mech, QueryPricing):
            query = SelectionQuery.parse(request["query"])
            answer = mech.answer(self.table(slug), query) if deliver else None
            if answer is not None and len(answer) > MAX_ANSWER_ROWS:
                raise InvalidInput(
                    f"the answer has {len(answer)} rows, more than {MAX_ANSWER_ROWS}",
                    hint="narrow the query or buy the dataset",
                )
            if answer is None:
                return q, {}, {}
            csv = answer.to_csv(index=False).encode()
            return (
                q,
                {
                    "kind": "query-answer",
                    "query": query.to_dict(),
                    "n_rows": len(answer),
                    "sha256": hashlib.sha256(csv).hexdigest(),
                },
                {"rows": json.loads(answer.to_json(orient="records"))},
            )
        if isinstance(mech, NoisyModelPricing):
            if not deliver:
                return q, {}, {}
            frame = self.table(slug)
            with self.market.db.read() as s:
                bundle = s.get(EconBundle, load_product(s, slug, eager=False).id)
            feats = numeric_features(
                frame, mech.label_column, [bundle.group_column] if bundle else []
            )
            data = frame.dropna(subset=[mech.label_column, *feats])
            seller = NoisyModelSeller(mech.task, mech.alpha).fit(
                data[feats].to_numpy(dtype=np.float64), data[mech.label_column].to_numpy(), feats
            )
            variance = q.details["variance"]
            payload = seller.release(variance, self._seed())
            err = seller.expected_error(
                variance,
                data[feats].to_numpy(dtype=np.float64),
                data[mech.label_column].to_numpy(),
                n_draws=20,
                random_state=0,
            )
            return q, {"kind": "model", "model": payload, "expected_training_error": err}, {}
        return q, {"kind": "dataset"}, {}

    def buy(
        self,
        account: AccountOut,
        slug: str,
        request: Mapping[str, Any] | None,
        idempotency_key: str,
    ) -> SaleOut:
        """Buy ``slug`` under its pricing mechanism (one transaction; idempotent by key).

        ``request`` is the mechanism's request (``{"query": ...}``, ``{"variance": ...}``,
        ``{"validation": [...], "label_column": ..., "worth_minor": ...}``, or nothing
        for posted prices).  The buyer is debited the quoted price, the fee account
        credited the market fee, the seller side credited to the seller or split among
        a bundle's contributors (:func:`~databazaar.market.settlement.sale_postings`);
        datasets are granted, query answers returned (``rows``), models delivered
        (``deliverable.model``).
        Replaying the key with the same request returns the first sale.
        """
        access.require_role(Role(account.role), {Role.buyer}, "buy products")
        key = v.check_idempotency_key(idempotency_key)
        slug = v.check_slug(slug)
        request = dict(request or {})
        req_hash = hashlib.sha256(
            canonical_json({"econ": slug, "request": request}).encode()
        ).hexdigest()

        def replay(s: Session) -> SaleOut | None:
            return self._existing(s, account.id, key, req_hash)

        with self.market.db.read() as s:
            done = replay(s)
        if done is not None:
            return done
        quote, deliverable, extras = self._prepare(slug, request, deliver=True)
        if quote.mechanism == "auction":
            raise Conflict(
                f"product {slug!r} is sold by sealed-bid auction", hint="place a bid instead"
            )

        def attempt(s: Session) -> SaleOut:
            ledger.lock_chain(s, account.id)  # this buyer's purchases queue; the check is final
            done = replay(s)
            if done is not None:
                return done
            out = record_sale(
                s, self.market.fee_bps, account.id, slug, quote, deliverable, key, req_hash
            )
            if "rows" in extras:
                out.rows = extras["rows"]
            return out

        return run_booking(self.market.db, attempt, replay)

    def _existing(self, s: Session, buyer_id: int, key: str, req_hash: str) -> SaleOut | None:
        order = keyed_order(s, buyer_id, key, req_hash)
        if order is None:
            return None
        sale = s.scalar(select(EconSale).where(EconSale.order_id == order.id))
        if sale is None:
            raise Conflict(f"idempotency key {key!r} belongs to a plain market order")
        return sale_out(s, sale, replayed=True)

    def sale(self, account: AccountOut, sale_id: int) -> SaleOut:
        """One sale (its buyer, the seller or an admin); query answers are re-derived."""
        with self.market.db.read() as s:
            sale = s.get(EconSale, sale_id)
            prod = s.get(Product, sale.product_id) if sale is not None else None
            if (
                sale is None
                or prod is None
                or (
                    account.id not in (sale.buyer_id, prod.seller_id)
                    and account.role != Role.admin.value
                )
            ):
                raise NotFound(f"sale {sale_id} not found")
            out = sale_out(s, sale, replayed=False)
            ver = s.get_one(
                ProductVersion,
                s.scalar(select(OrderItem.version_id).where(OrderItem.order_id == sale.order_id)),
            )
        if sale.deliverable.get("kind") == "query-answer" and account.id == sale.buyer_id:
            frame = self._read_version(ver)
            query = SelectionQuery.parse(sale.deliverable["query"])
            answer = frame.loc[query.mask(frame)].reset_index(drop=True)
            out.rows = json.loads(answer.to_json(orient="records"))
        return out
