"""The market's economics service: pricing mechanisms, revenue splits, auctions, DP.

:class:`Economics` wraps a :class:`~databazaar.market.service.Market` and adds, each in
one database transaction that leaves the store unchanged on any error:

* **pricing per listing**: a seller chooses a mechanism of
  :mod:`databazaar.market.pricing` for a product; buyers get quotes and buy under it
  (:meth:`Economics.buy`): posted price, query answers (query-based pricing), noisy
  models (model-based pricing), or a share of their measured value (value-based);
* **auctions**: sealed bids, cleared by the seller at the second price with a reserve;
* **bundles and revenue splits**: a product assembled from several sellers' rows names
  its contributor column; the market values each contributor's group on a reference
  task (:mod:`databazaar.market.allocation`) and every sale's seller revenue is split
  by those values, each split recorded with the valuation (``econ_splits``) and booked
  on the ledger with a memo citing the valuation's id and sha256;
* **DP statistics**: per-product privacy budgets (:mod:`databazaar.market.privacy`);
* **value-aware search** over the catalog (:mod:`databazaar.market.value_search`).

Sales go through the same tables as :meth:`Market.purchase` (``orders``,
``order_items``, ``grants``, the hash-chained ledger, the same fee rule
``fee = price * fee_bps // 10000``), so ledger verification covers them.
:func:`sale_postings` is the hook that lets :meth:`Market.purchase` split bundles too.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from databazaar.core.errors import Conflict, Forbidden, InvalidInput, NotFound, PaymentError
from databazaar.market import access, ledger
from databazaar.market import validation as v
from databazaar.market.allocation import (
    METHODS,
    RULE,
    contribution_values,
    split_revenue,
    valuation_digest,
    valuation_record,
)
from databazaar.market.econ_models import (
    EPS_UNIT,
    EconAuction,
    EconBid,
    EconBundle,
    EconContributor,
    EconPricing,
    EconSale,
    EconSplit,
    EconValuation,
)
from databazaar.market.models import (
    Account,
    Blob,
    Grant,
    Order,
    OrderItem,
    Product,
    ProductVersion,
    Role,
    VersionStatus,
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
from databazaar.market.privacy import PrivacyAccountant, check_columns

if TYPE_CHECKING:
    from databazaar.market.schemas import AccountOut
    from databazaar.market.service import Market
    from databazaar.market.value_search import ValueReport

FEE_ACCOUNT = "@market-fee"
MAX_ANSWER_ROWS = 10_000
MAX_REFERENCE_ROWS = 5_000


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def _frame_from(obj: Any, what: str) -> pd.DataFrame:
    if isinstance(obj, pd.DataFrame):
        frame = obj
    elif isinstance(obj, list) and all(isinstance(r, Mapping) for r in obj):
        frame = pd.DataFrame(obj)
    else:
        raise InvalidInput(f"{what} must be a list of row objects")
    if frame.empty:
        raise InvalidInput(f"{what} has no rows")
    return frame


def _features(frame: pd.DataFrame, label: str, exclude: Sequence[str] = ()) -> list[str]:
    skip = {label, *exclude}
    return [
        c
        for c in frame.columns
        if c not in skip
        and pd.api.types.is_numeric_dtype(frame[c])
        and not pd.api.types.is_bool_dtype(frame[c])
    ]


# -- the hook used by every sale (and by Market.purchase once wired) -------------------


def sale_postings(
    session: Session,
    order_id: int | None,
    items: Sequence[tuple[int, int, int]],
    memo: str,
    txn_id: str,
) -> list[ledger.Posting]:
    """Ledger credits for the seller side of a sale, splitting bundles by valuation.

    ``items`` are ``(product_id, seller_id, net_minor)`` (price minus fee).  A product
    without a registered bundle credits its seller, exactly like
    :meth:`Market.purchase`; a bundle's net amount is split by its latest valuation
    (:func:`~databazaar.market.allocation.split_revenue`), an ``econ_splits`` row
    records the valuation id, the shares and the rule, and each credit's memo cites
    the valuation id and sha256 prefix, so the hash-chained ledger covers it.
    Postings are grouped per (account, memo), sorted, zero amounts dropped.
    """
    credit: dict[tuple[int, str], int] = {}
    for product_id, seller_id, net in items:
        if net <= 0:
            continue
        bundle = session.get(EconBundle, product_id)
        val = (
            session.scalar(
                select(EconValuation)
                .where(EconValuation.product_id == product_id)
                .order_by(EconValuation.id.desc())
                .limit(1)
            )
            if bundle is not None
            else None
        )
        if val is None:
            credit[(seller_id, memo)] = credit.get((seller_id, memo), 0) + net
            continue
        contributors = {
            c.group_key: c.account_id
            for c in session.scalars(
                select(EconContributor).where(EconContributor.product_id == product_id)
            )
        }
        values = {
            str(g): float(x)
            for g, x in zip(val.record["groups"], val.record["values"], strict=True)
        }
        split = split_revenue(net, values, contributors)
        split_memo = f"{memo}; Shapley split by valuation {val.id} sha256 {val.digest[:16]}"[:200]
        for acc, amt in split.by_account().items():
            credit[(acc, split_memo)] = credit.get((acc, split_memo), 0) + amt
        session.add(
            EconSplit(
                txn_id=txn_id,
                order_id=order_id,
                product_id=product_id,
                valuation_id=val.id,
                total_minor=net,
                shares=[
                    {
                        "group": s.group,
                        "account_id": s.account,
                        "value": s.value,
                        "weight": s.weight,
                        "amount_minor": s.amount_minor,
                    }
                    for s in split.shares
                ],
                rule=RULE if not split.equal_fallback else RULE + " [equal fallback used]",
            )
        )
    return [ledger.Posting(acc, amt, "sale", m) for (acc, m), amt in sorted(credit.items()) if amt]


class Economics:
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

    # ------------------------------------------------------------------ helpers
    def _seed(self) -> int:
        """A fresh seed from the service's generator (thread-safe)."""
        with self._rng_lock:
            return int(self._rng.integers(0, 2**31 - 1))

    @staticmethod
    def _product(s: Session, slug: str, *, lock: bool = False) -> Product:
        stmt = select(Product).where(Product.slug == v.check_slug(slug))
        if lock:
            stmt = stmt.with_for_update()
        prod = s.scalar(stmt)
        if prod is None:
            raise NotFound(f"product {slug!r} not found")
        return prod

    @staticmethod
    def _published(s: Session, prod: Product) -> ProductVersion:
        ver = s.scalar(
            select(ProductVersion)
            .where(
                ProductVersion.product_id == prod.id,
                ProductVersion.status == VersionStatus.published,
            )
            .order_by(ProductVersion.number.desc())
            .limit(1)
        )
        if ver is None:
            raise Conflict(f"product {prod.slug!r} has no published version")
        return ver

    @staticmethod
    def _require_owner(prod: Product, account: AccountOut) -> None:
        if account.role != Role.admin.value and prod.seller_id != account.id:
            raise Forbidden(f"product {prod.slug!r} belongs to another seller")

    def _read_version(self, ver: ProductVersion) -> pd.DataFrame:
        from databazaar.market.profile import read_upload

        path = self.market.blobs.path_for(ver.blob_sha256)
        if not path.is_file():
            raise NotFound("the product's file is missing from the store", hint="contact the admin")
        return read_upload(path, ver.file_format)

    def table(self, slug: str) -> pd.DataFrame:
        """The latest published version of a product as a DataFrame (server side only)."""
        with self.market.db.read() as s:
            ver = self._published(s, self._product(s, slug))
        return self._read_version(ver)

    def _store_frame(self, frame: pd.DataFrame) -> str:
        """Store a table as a CSV blob (content-addressed); return its sha256."""
        data = frame.to_csv(index=False).encode()
        staged = self.market.blobs.stage(io.BytesIO(data), max(len(data), 1))
        try:
            with self.market.db.write() as s:
                if s.get(Blob, staged.sha256) is None:
                    s.add(
                        Blob(
                            sha256=staged.sha256,
                            size_bytes=staged.size_bytes,
                            media_type="text/csv",
                        )
                    )
                self.market.blobs.commit(staged)
        finally:
            self.market.blobs.discard(staged)
        return staged.sha256

    # ------------------------------------------------------------------ pricing
    def set_pricing(
        self, account: AccountOut, slug: str, mechanism: str, config: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Choose the pricing mechanism of a product (its owner or an admin).

        The configuration is validated by the mechanism; query pricing is checked
        against the product's table (every value of a priced column needs a price) and
        model pricing needs the label column with at least one numeric feature.
        """
        mech = mechanism_from_config(mechanism, config)
        with self.market.db.read() as s:
            prod = self._product(s, slug)
            self._require_owner(prod, account)
            ver = self._published(s, prod)
        if isinstance(mech, QueryPricing):
            mech.check_table(self._read_version(ver))
        if isinstance(mech, NoisyModelPricing):
            frame = self._read_version(ver)
            if mech.label_column not in frame.columns:
                raise InvalidInput(f"the table has no label column {mech.label_column!r}")
            if not _features(frame, mech.label_column):
                raise InvalidInput("model pricing needs at least one numeric feature column")
        with self.market.db.write() as s:
            prod = self._product(s, slug, lock=True)
            row = s.get(EconPricing, prod.id)
            if row is None:
                s.add(EconPricing(product_id=prod.id, mechanism=mech.name, config=mech.config()))
            else:
                row.mechanism, row.config = mech.name, mech.config()
        return {"slug": slug, "mechanism": mech.name, "config": mech.config()}

    def mechanism_for(self, slug: str) -> PricingMechanism:
        """The product's mechanism (``posted`` at the listing price when none was chosen)."""
        with self.market.db.read() as s:
            prod = self._product(s, slug)
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
        val = _frame_from(request["validation"], "the validation set")
        with self.market.db.read() as s:
            prod = self._product(s, slug)
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
                bundle = s.get(EconBundle, self._product(s, slug).id)
            feats = _features(frame, mech.label_column, [bundle.group_column] if bundle else [])
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
    ) -> dict[str, Any]:
        """Buy ``slug`` under its pricing mechanism (one transaction; idempotent by key).

        ``request`` is the mechanism's request (``{"query": ...}``, ``{"variance": ...}``,
        ``{"validation": [...], "label_column": ..., "worth_minor": ...}``, or nothing
        for posted prices).  The buyer is debited the quoted price, the fee account
        credited the market fee, the seller side credited to the seller or split among
        a bundle's contributors (:func:`sale_postings`); datasets are granted, query
        answers returned (``rows``), models delivered (``deliverable.model``).
        Replaying the key with the same request returns the first sale.
        """
        access.require_role(Role(account.role), {Role.buyer}, "buy products")
        key = v.check_idempotency_key(idempotency_key)
        slug = v.check_slug(slug)
        request = dict(request or {})
        req_hash = hashlib.sha256(
            _canonical({"econ": slug, "request": request}).encode()
        ).hexdigest()
        with self.market.db.read() as s:
            done = self._existing(s, account.id, key, req_hash)
        if done is not None:
            return done
        quote, deliverable, extras = self._prepare(slug, request, deliver=True)
        if quote.mechanism == "auction":
            raise Conflict(
                f"product {slug!r} is sold by sealed-bid auction", hint="place a bid instead"
            )
        with self.market.db.write() as s:
            ledger.lock_head(s)
            done = self._existing(s, account.id, key, req_hash)
            if done is not None:
                return done
            out = self._book(s, account.id, slug, quote, deliverable, key, req_hash)
        out.update(extras)
        return out

    def _existing(
        self, s: Session, buyer_id: int, key: str, req_hash: str
    ) -> dict[str, Any] | None:
        order = self.market.keyed_order(s, buyer_id, key, req_hash)
        if order is None:
            return None
        sale = s.scalar(select(EconSale).where(EconSale.order_id == order.id))
        if sale is None:
            raise Conflict(f"idempotency key {key!r} belongs to a plain market order")
        return self._sale_out(s, sale, replayed=True)

    def _book(
        self,
        s: Session,
        buyer_id: int,
        slug: str,
        quote: Quote,
        deliverable: dict[str, Any],
        key: str,
        req_hash: str,
    ) -> dict[str, Any]:
        """Record one sale inside the caller's write transaction (ledger head locked)."""
        buyer = s.get(Account, buyer_id, with_for_update=True)
        if buyer is None:
            raise NotFound(f"account {buyer_id} not found")
        s.refresh(buyer)
        prod = self._product(s, slug)
        ver = self._published(s, prod)
        if prod.listing is None or not prod.listing.active:
            raise Conflict(f"product {slug!r} is not on sale")
        if prod.seller_id == buyer_id:
            raise Conflict(f"product {slug!r} is your own")
        grant = quote.deliverable in ("dataset", "licence")
        if grant and s.scalar(
            select(Grant.id).where(Grant.account_id == buyer_id, Grant.product_id == prod.id)
        ):
            raise Conflict(f"you already have access to {slug!r}", hint="download it instead")
        price = quote.price_minor
        if buyer.balance_minor < price:
            raise PaymentError(
                f"insufficient balance: {buyer.balance_minor} < {price} (minor units)",
                hint="deposit funds first",
            )
        fee = price * self.market.fee_bps // 10_000
        txn_id = str(uuid.uuid4())
        order = Order(
            buyer_id=buyer_id,
            idempotency_key=key,
            request_hash=req_hash,
            total_minor=price,
            fee_minor=fee,
            txn_id=txn_id,
        )
        s.add(order)
        s.flush()
        s.add(
            OrderItem(
                order_id=order.id,
                product_id=prod.id,
                version_id=ver.id,
                seller_id=prod.seller_id,
                price_minor=price,
                fee_minor=fee,
            )
        )
        if grant:
            s.add(Grant(account_id=buyer_id, product_id=prod.id, order_id=order.id))
        if price > 0:
            memo = f"order {order.id} ({quote.mechanism})"
            postings = [ledger.Posting(buyer_id, -price, "purchase", memo)]
            postings += sale_postings(
                s, order.id, [(prod.id, prod.seller_id, price - fee)], memo, txn_id
            )
            if fee:
                fee_acc = s.scalar(select(Account).where(Account.username == FEE_ACCOUNT))
                if fee_acc is None:
                    raise InvalidInput(
                        "market system accounts missing", hint="run databazaar db upgrade"
                    )
                postings.append(ledger.Posting(fee_acc.id, fee, "fee", memo))
            ledger.post(s, postings, txn_id=txn_id)
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
        return self._sale_out(s, sale, replayed=False)

    def _sale_out(self, s: Session, sale: EconSale, *, replayed: bool) -> dict[str, Any]:
        order = s.get_one(Order, sale.order_id)
        prod = s.get_one(Product, sale.product_id)
        splits = s.scalars(select(EconSplit).where(EconSplit.order_id == order.id)).all()
        return {
            "sale_id": sale.id,
            "slug": prod.slug,
            "mechanism": sale.mechanism,
            "order": {
                "id": order.id,
                "total_minor": order.total_minor,
                "fee_minor": order.fee_minor,
                "txn_id": order.txn_id,
                "idempotency_key": order.idempotency_key,
            },
            "quote": sale.quote,
            "deliverable": sale.deliverable,
            "splits": [self._split_out(x) for x in splits],
            "replayed": replayed,
        }

    @staticmethod
    def _split_out(x: EconSplit) -> dict[str, Any]:
        return {
            "id": x.id,
            "txn_id": x.txn_id,
            "order_id": x.order_id,
            "valuation_id": x.valuation_id,
            "total_minor": x.total_minor,
            "shares": x.shares,
            "rule": x.rule,
        }

    def sale(self, account: AccountOut, sale_id: int) -> dict[str, Any]:
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
            out = self._sale_out(s, sale, replayed=False)
            ver = s.get_one(
                ProductVersion,
                s.scalar(select(OrderItem.version_id).where(OrderItem.order_id == sale.order_id)),
            )
        if sale.deliverable.get("kind") == "query-answer" and account.id == sale.buyer_id:
            frame = self._read_version(ver)
            query = SelectionQuery.parse(sale.deliverable["query"])
            answer = frame.loc[query.mask(frame)].reset_index(drop=True)
            out["rows"] = json.loads(answer.to_json(orient="records"))
        return out

    # ------------------------------------------------------------------ bundles
    def register_bundle(
        self,
        account: AccountOut,
        slug: str,
        *,
        group_column: str,
        label_column: str,
        contributors: Mapping[str, str],
        reference: Any,
        method: str = "knn",
        order: Sequence[str] | None = None,
        k: int = 5,
        random_state: int = 0,
    ) -> dict[str, Any]:
        """Declare a multi-seller product and value its contributors.

        Args:
            group_column: the column naming each row's contributor group.
            label_column: the label of the reference task.
            contributors: ``{group: username}`` for *every* group in the table.
            reference: the reference validation rows the groups are valued on (the
                product's owner vouches for them; they are stored with the bundle).
            method: ``knn``, ``exact``, ``tmc`` or ``ads`` (then ``order`` lists the
                groups, earliest first).
            k: neighbours of the KNN utility.

        Returns the stored valuation (id, sha256, values per group).
        """
        if method not in METHODS:
            raise InvalidInput(
                f"unknown allocation method {method!r}", hint=f"use {', '.join(METHODS)}"
            )
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 100:
            raise InvalidInput("k must be an integer between 1 and 100")
        ref = _frame_from(reference, "the reference set")
        if len(ref) > MAX_REFERENCE_ROWS:
            raise InvalidInput(f"the reference set has more than {MAX_REFERENCE_ROWS} rows")
        if not isinstance(contributors, Mapping) or not contributors:
            raise InvalidInput("name the contributor account of every group")
        with self.market.db.read() as s:
            prod = self._product(s, slug)
            self._require_owner(prod, account)
            ver = self._published(s, prod)
            accounts: dict[str, int] = {}
            for group, username in contributors.items():
                acc = s.scalar(select(Account).where(Account.username == str(username)))
                if acc is None or acc.role == Role.system:
                    raise NotFound(f"contributor account {username!r} not found")
                accounts[str(group)] = acc.id
        frame = self._read_version(ver)
        for col in (group_column, label_column):
            if col not in frame.columns:
                raise InvalidInput(f"the table has no column {col!r}")
        if label_column not in ref.columns:
            raise InvalidInput(f"the reference set has no label column {label_column!r}")
        frame = frame.dropna(subset=[label_column, group_column])
        groups = frame[group_column].astype(str).to_numpy()
        present = set(groups)
        missing = sorted(present - set(accounts))
        extra = sorted(set(accounts) - present)
        if missing or extra:
            raise InvalidInput(
                f"contributors must name exactly the table's groups; missing {missing[:5]}, "
                f"not in the table {extra[:5]}",
            )
        if order is not None:
            order = [str(g) for g in order]
        from databazaar.market.value_search import Featurizer

        feat = Featurizer(label_column, [group_column], self._embedder).fit(ref, [frame])
        x, x_ref = feat.transform(frame), feat.transform(ref)
        result = contribution_values(
            x,
            frame[label_column].astype(str).to_numpy(),
            groups,
            x_ref,
            ref[label_column].astype(str).to_numpy(),
            method=method,
            k=k,
            order=order,
            random_state=random_state,
        )
        record = valuation_record(result)
        record.update(
            reference_rows=len(ref),
            product_rows=len(frame),
            version=ver.number,
            features={"numeric": feat.numeric_, "text": feat.text_},
        )
        digest = valuation_digest(record)
        ref_sha = self._store_frame(ref)
        with self.market.db.write() as s:
            prod = self._product(s, slug, lock=True)
            bundle = s.get(EconBundle, prod.id)
            if bundle is None:
                bundle = EconBundle(product_id=prod.id)
                s.add(bundle)
            bundle.group_column, bundle.label_column, bundle.method = (
                group_column,
                label_column,
                method,
            )
            bundle.order, bundle.k, bundle.reference_sha256 = list(order or []), k, ref_sha
            s.execute(delete(EconContributor).where(EconContributor.product_id == prod.id))
            for group, acc_id in sorted(accounts.items()):
                s.add(EconContributor(product_id=prod.id, group_key=group, account_id=acc_id))
            val = EconValuation(
                product_id=prod.id,
                version_id=ver.id,
                method=result.method,
                record=record,
                digest=digest,
            )
            s.add(val)
            s.flush()
            return {
                "valuation_id": val.id,
                "digest": digest,
                "valuation": record,
                "contributors": dict(contributors),
            }

    def valuation(self, slug: str) -> dict[str, Any]:
        """The latest valuation of a bundle."""
        with self.market.db.read() as s:
            prod = self._product(s, slug)
            val = s.scalar(
                select(EconValuation)
                .where(EconValuation.product_id == prod.id)
                .order_by(EconValuation.id.desc())
                .limit(1)
            )
            if val is None:
                raise NotFound(
                    f"product {slug!r} is not a valued bundle", hint="register the bundle"
                )
            return {"valuation_id": val.id, "digest": val.digest, "valuation": val.record}

    def splits(self, account: AccountOut, slug: str) -> list[dict[str, Any]]:
        """Every revenue split of a product (its owner, its contributors, or an admin)."""
        with self.market.db.read() as s:
            prod = self._product(s, slug)
            members = set(
                s.scalars(
                    select(EconContributor.account_id).where(EconContributor.product_id == prod.id)
                )
            )
            if (
                account.role != Role.admin.value
                and account.id != prod.seller_id
                and account.id not in members
            ):
                raise Forbidden("only the product's seller and contributors see its revenue splits")
            rows = s.scalars(
                select(EconSplit).where(EconSplit.product_id == prod.id).order_by(EconSplit.id)
            )
            return [self._split_out(x) for x in rows]

    # ------------------------------------------------------------------ auctions
    def open_auction(
        self, account: AccountOut, slug: str, reserve_minor: int, units: int = 1
    ) -> dict[str, Any]:
        """Open a sealed-bid auction of ``units`` licences (one open auction per product)."""
        mech = SecondPriceAuction(reserve_minor, units)
        with self.market.db.write() as s:
            prod = self._product(s, slug, lock=True)
            self._require_owner(prod, account)
            self._published(s, prod)
            if prod.listing is None or not prod.listing.active:
                raise Conflict(f"product {slug!r} is not on sale", hint="list it first")
            if self._open_auction(s, prod.id) is not None:
                raise Conflict(f"product {slug!r} already has an open auction")
            auc = EconAuction(
                product_id=prod.id,
                reserve_minor=mech.reserve_minor,
                units=mech.units,
                status="open",
            )
            s.add(auc)
            row = s.get(EconPricing, prod.id)
            if row is None:
                s.add(EconPricing(product_id=prod.id, mechanism=mech.name, config=mech.config()))
            else:
                row.mechanism, row.config = mech.name, mech.config()
            s.flush()
            return {
                "auction_id": auc.id,
                "slug": slug,
                "reserve_minor": auc.reserve_minor,
                "units": auc.units,
                "status": "open",
            }

    @staticmethod
    def _open_auction(s: Session, product_id: int, *, lock: bool = False) -> EconAuction | None:
        stmt = select(EconAuction).where(
            EconAuction.product_id == product_id, EconAuction.status == "open"
        )
        if lock:
            stmt = stmt.with_for_update()
        return s.scalar(stmt)

    def place_bid(self, account: AccountOut, slug: str, amount_minor: int) -> dict[str, Any]:
        """Place (or replace) a sealed bid; the buyer must be able to pay it now."""
        access.require_role(Role(account.role), {Role.buyer}, "bid")
        amount = v.check_amount(amount_minor)
        with self.market.db.write() as s:
            prod = self._product(s, slug)
            auc = self._open_auction(s, prod.id, lock=True)
            if auc is None:
                raise NotFound(f"product {slug!r} has no open auction")
            if prod.seller_id == account.id:
                raise Conflict("you cannot bid on your own product")
            if s.scalar(
                select(Grant.id).where(Grant.account_id == account.id, Grant.product_id == prod.id)
            ):
                raise Conflict(f"you already have access to {slug!r}")
            buyer = s.get_one(Account, account.id)
            if buyer.balance_minor < amount:
                raise PaymentError(
                    f"your balance {buyer.balance_minor} cannot cover a bid of {amount}",
                    hint="deposit funds first; winners pay at most their bid",
                )
            bid = s.scalar(
                select(EconBid).where(EconBid.auction_id == auc.id, EconBid.bidder_id == account.id)
            )
            if bid is None:
                s.add(EconBid(auction_id=auc.id, bidder_id=account.id, amount_minor=amount))
            else:
                bid.amount_minor = amount
            s.flush()
            return {"auction_id": auc.id, "slug": prod.slug, "amount_minor": amount, "sealed": True}

    def close_auction(self, account: AccountOut, slug: str) -> dict[str, Any]:
        """Clear the auction and sell licences to the winners at the clearing price.

        A winner whose balance no longer covers the clearing price is disqualified and
        the auction is cleared again without that bid (documented deviation: it can
        only raise the others' price up to their own bids).
        """
        with self.market.db.write() as s:
            ledger.lock_head(s)
            prod = self._product(s, slug, lock=True)
            self._require_owner(prod, account)
            auc = self._open_auction(s, prod.id, lock=True)
            if auc is None:
                raise NotFound(f"product {slug!r} has no open auction")
            mech = SecondPriceAuction(auc.reserve_minor, auc.units)
            bids = list(
                s.scalars(select(EconBid).where(EconBid.auction_id == auc.id).order_by(EconBid.id))
            )
            disqualified: list[int] = []
            while True:
                live = [b for b in bids if b.bidder_id not in disqualified]
                outcome = mech.clear(
                    [
                        {"bidder": b.bidder_id, "amount_minor": b.amount_minor, "seq": b.id}
                        for b in live
                    ]
                )
                short = [
                    w
                    for w in outcome.winners
                    if s.get_one(Account, w).balance_minor < outcome.price_minor
                ]
                if not short:
                    break
                disqualified += short
            sales = []
            for winner in outcome.winners:
                quote = Quote(
                    "auction",
                    outcome.price_minor,
                    "licence",
                    {**outcome.to_dict(), "auction_id": auc.id},
                )
                key = f"auction-{auc.id}"
                req_hash = hashlib.sha256(_canonical({"auction": auc.id}).encode()).hexdigest()
                sales.append(
                    self._book(s, winner, prod.slug, quote, {"kind": "licence"}, key, req_hash)
                )
            auc.status = "closed"
            auc.outcome = {**outcome.to_dict(), "disqualified": disqualified}
            from datetime import UTC, datetime

            auc.closed_at = datetime.now(UTC)
            s.flush()
            return {"auction_id": auc.id, "outcome": auc.outcome, "sales": sales}

    # ------------------------------------------------------------------ privacy
    def offer_dp(
        self, account: AccountOut, slug: str, epsilon_total: float, columns: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Offer DP statistics of a product under a total privacy budget."""
        cols = check_columns(columns)
        with self.market.db.read() as s:
            prod = self._product(s, slug)
            self._require_owner(prod, account)
            ver = self._published(s, prod)
        frame = self._read_version(ver)
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise InvalidInput(f"the table has no columns {missing}")
        with self.market.db.write() as s:
            prod = self._product(s, slug, lock=True)
            PrivacyAccountant(s).set_budget(prod.id, epsilon_total, cols)
        return self.dp_budget(slug)

    def dp_budget(self, slug: str) -> dict[str, Any]:
        """The product's DP offer: columns, budget, spent and remaining epsilon."""
        with self.market.db.read() as s:
            prod = self._product(s, slug)
            acct = PrivacyAccountant(s)
            row = acct.budget(prod.id)
            return {
                "slug": slug,
                "columns": row.columns,
                "epsilon_total": row.epsilon_total_micro / EPS_UNIT,
                "epsilon_spent": row.epsilon_spent_micro / EPS_UNIT,
                "epsilon_remaining": (row.epsilon_total_micro - row.epsilon_spent_micro) / EPS_UNIT,
                "n_releases": len(acct.releases(prod.id)),
            }

    def dp_query(
        self,
        account: AccountOut,
        slug: str,
        statistic: str,
        column: str | None = None,
        epsilon: float = 0.1,
        *,
        random_state: Any = None,
    ) -> dict[str, Any]:
        """Release one DP statistic, spending ``epsilon`` of the product's budget.

        Refused with :class:`~databazaar.core.errors.BudgetExceeded` (nothing spent)
        when the budget left is smaller than ``epsilon``.
        """
        with self.market.db.read() as s:
            prod = self._product(s, slug)
            PrivacyAccountant(s).budget(prod.id)
            ver = self._published(s, prod)
        frame = self._read_version(ver)
        seed = random_state if random_state is not None else self._seed()
        with self.market.db.write() as s:
            prod = self._product(s, slug)
            return PrivacyAccountant(s).spend(
                prod.id, account.id, frame, statistic, column, epsilon, random_state=seed
            )

    # ------------------------------------------------------------------ value search
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

        val = _frame_from(validation, "the validation set")
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
                prod = self._product(s, slug)
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
