"""The catalog: browsing and searching the products on sale.

Each product on sale appears once, with its latest published version.  Search runs
full-text (the database's index, :mod:`databazaar.market.search`), semantic (MiniLM
cosine similarity over stored card embeddings) or hybrid (reciprocal rank fusion of
both); the filters (task, license, price range, tags) apply in every mode.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import and_, func, select
from sqlalchemy.orm import defer, selectinload

from databazaar.core.errors import InvalidInput
from databazaar.market import search
from databazaar.market import validation as v
from databazaar.market.common import MarketBase
from databazaar.market.models import (
    Account,
    CardEmbedding,
    Listing,
    Product,
    ProductVersion,
    VersionStatus,
    VersionTag,
)
from databazaar.market.schemas import SearchHit, SearchResults

MAX_PAGE = 100


def catalog_stmt(
    *,
    task: str | None,
    license: str | None,
    min_price: int | None,
    max_price: int | None,
    tags: Sequence[str],
) -> Any:
    """The rows ``(version, product, listing, seller name)`` of the filtered catalog."""
    latest = (
        select(
            ProductVersion.product_id.label("pid"),
            func.max(ProductVersion.number).label("num"),
        )
        .where(ProductVersion.status == VersionStatus.published)
        .group_by(ProductVersion.product_id)
        .subquery()
    )
    stmt = (
        select(ProductVersion, Product, Listing, Account.username)
        .join(
            latest,
            and_(latest.c.pid == ProductVersion.product_id, latest.c.num == ProductVersion.number),
        )
        .join(Product, Product.id == ProductVersion.product_id)
        .join(Listing, and_(Listing.product_id == Product.id, Listing.active.is_(True)))
        .join(Account, Account.id == Product.seller_id)
        .options(
            selectinload(ProductVersion.tag_rows),
            # a catalog row never shows these large JSON columns
            defer(ProductVersion.stats),
            defer(ProductVersion.preview),
        )
    )
    if task is not None:
        stmt = stmt.where(ProductVersion.task == v.check_task(task))
    if license is not None:
        stmt = stmt.where(ProductVersion.license == v.check_license(license))
    if min_price is not None:
        stmt = stmt.where(Listing.price_minor >= v.check_price(min_price))
    if max_price is not None:
        stmt = stmt.where(Listing.price_minor <= v.check_price(max_price))
    for tag in v.check_tags(tags):
        stmt = stmt.where(
            select(VersionTag.version_id)
            .where(VersionTag.version_id == ProductVersion.id, VersionTag.tag == tag)
            .exists()
        )
    return stmt


def hit_out(
    ver: ProductVersion, prod: Product, listing: Listing, seller: str, score: float | None
) -> SearchHit:
    """One catalog row as a search hit."""
    return SearchHit(
        slug=prod.slug,
        title=prod.title,
        seller=seller,
        version=ver.number,
        task=ver.task,
        license=ver.license,
        tags=ver.tags,
        price_minor=listing.price_minor,
        currency=listing.currency,
        n_rows=ver.n_rows,
        n_columns=ver.n_columns,
        description=ver.description[:300],
        score=score,
    )


class Catalog(MarketBase):
    """Catalog search of :class:`~databazaar.market.service.Market`."""

    def search(
        self,
        q: str | None = None,
        *,
        mode: str = "fulltext",
        task: str | None = None,
        license: str | None = None,
        min_price: int | None = None,
        max_price: int | None = None,
        tags: Sequence[str] = (),
        limit: int = 20,
        offset: int = 0,
    ) -> SearchResults:
        """Search the catalog (products on sale, latest published version each).

        Without ``q`` the catalog is listed newest first.  With ``q``, ``mode`` chooses
        ``fulltext`` (database full-text index), ``semantic`` (MiniLM cosine similarity)
        or ``hybrid`` (reciprocal rank fusion of both).  Filters apply in every mode.
        """
        if mode not in search.SEARCH_MODES:
            raise InvalidInput(
                f"unknown search mode {mode!r}", hint="use fulltext, semantic or hybrid"
            )
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
            raise InvalidInput(f"limit must be between 1 and {MAX_PAGE}")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0 or offset > 10**6:
            raise InvalidInput("offset must be between 0 and 1000000")
        if min_price is not None and max_price is not None and min_price > max_price:
            raise InvalidInput("min_price is greater than max_price")
        query = search.check_query(q)
        stmt = catalog_stmt(
            task=task, license=license, min_price=min_price, max_price=max_price, tags=tags
        )
        with self.db.read() as s:
            if query is None:
                total = s.scalar(select(func.count()).select_from(stmt.subquery())) or 0
                rows = s.execute(
                    stmt.order_by(ProductVersion.published_at.desc(), Product.slug)
                    .limit(limit)
                    .offset(offset)
                ).all()
                hits = [hit_out(ver, prod, lst, seller, None) for ver, prod, lst, seller in rows]
                return SearchResults(total=total, mode="browse", hits=hits)
            scores: dict[int, float] = {}
            if mode == "fulltext":
                scores = search.fulltext_scores(s, query)
                stmt = stmt.where(ProductVersion.id.in_(list(scores) or [-1]))
                rows = s.execute(stmt).all()
            else:
                rows = s.execute(stmt).all()
        if mode != "fulltext":
            by_id = {ver.id: (ver, prod) for ver, prod, _, _ in rows}
            sem = self._semantic_scores(query, by_id)
            if mode == "semantic":
                scores = sem
            else:
                with self.db.read() as s:
                    ft = search.fulltext_scores(s, query)
                ft_rank = [i for i in sorted(ft, key=lambda i: -ft[i]) if i in by_id]
                sem_rank = sorted(sem, key=lambda i: -sem[i])
                scores = search.rrf_fuse([ft_rank, sem_rank])
        ranked = sorted(
            (r for r in rows if r[0].id in scores),
            key=lambda r: (-scores[r[0].id], r[1].slug),
        )
        hits = [
            hit_out(ver, prod, lst, seller, round(scores[ver.id], 6))
            for ver, prod, lst, seller in ranked
        ]
        return SearchResults(total=len(hits), mode=mode, hits=hits[offset : offset + limit])

    @property
    def embedder(self) -> Any:
        """The sentence encoder (MiniLM loaded on first use)."""
        with self._embedder_lock:
            if self._embedder is None:
                from databazaar.core.embeddings import MiniLMEmbedder

                self._embedder = MiniLMEmbedder()
            return self._embedder

    def _semantic_scores(
        self, query: str, versions: dict[int, tuple[ProductVersion, Product]]
    ) -> dict[int, float]:
        if not versions:
            return {}
        enc = self.embedder
        with self.db.read() as s:
            stored = {
                e.version_id: e
                for e in s.scalars(
                    select(CardEmbedding).where(CardEmbedding.version_id.in_(list(versions)))
                )
            }
        missing = [vid for vid in versions if vid not in stored or stored[vid].model != enc.name]
        vectors: dict[int, np.ndarray] = {
            vid: np.frombuffer(e.vector, dtype=np.float32)
            for vid, e in stored.items()
            if e.model == enc.name
        }
        if missing:
            texts = []
            for vid in missing:
                ver, prod = versions[vid]
                texts.append(
                    prod.title
                    + "\n"
                    + search.card_text(
                        prod.title,
                        ver.description,
                        ver.task,
                        ver.license,
                        ver.tags,
                        [c["name"] for c in ver.schema],
                        ver.provenance,
                    )
                )
            new = np.asarray(enc.encode(texts), dtype=np.float32)
            with self.db.write() as s:
                for vid, vec in zip(missing, new, strict=True):
                    row = s.get(CardEmbedding, vid)
                    if row is None:
                        row = CardEmbedding(version_id=vid)
                        s.add(row)
                    row.model = enc.name
                    row.dim = int(vec.shape[0])
                    row.vector = vec.tobytes()
                    vectors[vid] = vec
        ids = list(vectors)
        qvec = np.asarray(enc.encode([query]), dtype=np.float32)[0]
        sims = search.cosine_scores(qvec, np.stack([vectors[i] for i in ids]))
        return {vid: float(sc) for vid, sc in zip(ids, sims, strict=True)}

    # ------------------------------------------------------------------ purchases
