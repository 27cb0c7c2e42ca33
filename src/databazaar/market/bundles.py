"""Bundles: products assembled from several sellers' rows, valued per contributor.

A bundle names its contributor column and the account behind each group; the market
values each group on a reference task the seller vouches for
(:func:`~databazaar.market.allocation.contribution_values`: KNN-Shapley, exact or
Monte Carlo Shapley, or Asymmetric Data Shapley over an order of the groups) and stores
the valuation with its sha256.  Every later sale's seller revenue is split by the
latest valuation (:func:`~databazaar.market.settlement.sale_postings`).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
from sqlalchemy import delete, select

from databazaar.core.errors import Forbidden, InvalidInput, NotFound
from databazaar.market.allocation import (
    METHODS,
    contribution_values,
    valuation_digest,
    valuation_record,
)
from databazaar.market.common import (
    EconomicsBase,
    frame_from,
    latest_published,
    load_product,
    require_owner,
)
from databazaar.market.econ_models import EconBundle, EconContributor, EconSplit, EconValuation
from databazaar.market.models import Account, Blob, Role
from databazaar.market.sales import split_out
from databazaar.market.schemas import AccountOut, BundleOut, SplitOut, ValuationOut
from databazaar.market.settlement import latest_valuation

MAX_REFERENCE_ROWS = 5_000


class Bundles(EconomicsBase):
    """Bundle registration, valuations and splits of
    :class:`~databazaar.market.economics.Economics`."""

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
    ) -> BundleOut:
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
        ref = frame_from(reference, "the reference set")
        if len(ref) > MAX_REFERENCE_ROWS:
            raise InvalidInput(f"the reference set has more than {MAX_REFERENCE_ROWS} rows")
        if not isinstance(contributors, Mapping) or not contributors:
            raise InvalidInput("name the contributor account of every group")
        with self.market.db.read() as s:
            prod = load_product(s, slug, eager=False)
            require_owner(prod, account)
            ver = latest_published(s, prod)
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
            prod = load_product(s, slug, lock=True, eager=False)
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
            return BundleOut(
                valuation_id=val.id,
                digest=digest,
                valuation=record,
                contributors={str(g): str(u) for g, u in contributors.items()},
            )

    def valuation(self, slug: str) -> ValuationOut:
        """The latest valuation of a bundle."""
        with self.market.db.read() as s:
            prod = load_product(s, slug, eager=False)
            val = latest_valuation(s, prod.id)
            if val is None:
                raise NotFound(
                    f"product {slug!r} is not a valued bundle", hint="register the bundle"
                )
            return ValuationOut(valuation_id=val.id, digest=val.digest, valuation=val.record)

    def splits(self, account: AccountOut, slug: str) -> list[SplitOut]:
        """Every revenue split of a product (its owner, its contributors, or an admin)."""
        with self.market.db.read() as s:
            prod = load_product(s, slug, eager=False)
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
            return [split_out(x) for x in rows]
