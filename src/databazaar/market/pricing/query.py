r"""Arbitrage-free query-based pricing over selection queries.

Reference: Koutris, Upadhyaya, Balazinska, Howe, Suciu (2012). *Query-based data
pricing.* PODS (journal version JACM 62(5), 2015), Sections 2-4.

Setting.  A product is one table :math:`R` whose priced columns :math:`X` have finite
declared domains :math:`\mathrm{dom}(X)`.  The seller prices *selection views*
:math:`V_{X=x} = \sigma_{X=x}(R)` ("every row whose ``X`` is ``x``") with integer prices
:math:`p_X(x)`.  Buyers ask *selection queries*
:math:`Q = \sigma_{X_1 \in S_1 \wedge \dots \wedge X_m \in S_m}(R)`; an unconstrained
column has :math:`S_X = \mathrm{dom}(X)`.

Determinacy.  A set of views :math:`\mathcal V` determines :math:`Q` when every database
that agrees with the real one on :math:`\mathcal V` also agrees on :math:`Q`.  The
possible databases are all subsets of :math:`\prod_X \mathrm{dom}(X)`, so a selection
answer is the table restricted to a box, and a set of selections determines :math:`Q`
exactly when their boxes cover :math:`Q`'s box (a tuple of the box outside every view
could be added or removed unseen).  For the views :math:`V_{X=x}` this gives the closed
form (proved in ``docs/economics.md``): :math:`\mathcal V` determines :math:`Q` iff for
some priced column :math:`X` it contains :math:`V_{X=x}` for every :math:`x \in S_X`.

Price.  The paper's arbitrage-free price is the cost of the cheapest determining set:

.. math::  \pi(Q) = \min_{X\ \mathrm{priced}} \sum_{x \in S_X \cap \mathrm{dom}(X)} p_X(x).

It is *arbitrage-free* (Koutris et al., the arbitrage-freeness of the cheapest
determining set): if :math:`Q_1..Q_k`
determine :math:`Q` then :math:`\pi(Q) \le \sum_i \pi(Q_i)`, because the union of the
cheapest sets of the :math:`Q_i` determines :math:`Q` (determinacy is transitive).  It is
*discount-free* when the price points themselves admit no arbitrage; :func:`QueryPricing.
inconsistent_price_points` lists the views whose listed price exceeds :math:`\pi`.

:func:`find_query_arbitrage` checks *any* price function over selection queries for
arbitrage by searching bundles of cheaper queries that determine a dearer one.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from databazaar.core.errors import InvalidInput
from databazaar.core.money import check_minor
from databazaar.market.pricing.base import PricingMechanism, Quote, register

Scalar = str | int | float | bool
MAX_COLUMNS = 32
MAX_DOMAIN = 10_000


def _scalar(v: Any, where: str) -> Scalar:
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, bool | int | str):
        return v
    if isinstance(v, float):
        if not np.isfinite(v):
            raise InvalidInput(f"{where}: values must be finite, got {v!r}")
        return int(v) if v.is_integer() else v
    raise InvalidInput(f"{where}: values must be strings or numbers, got {type(v).__name__}")


@dataclass(frozen=True)
class SelectionQuery:
    """A conjunction of ``column IN values`` predicates (unlisted columns are free)."""

    where: Mapping[str, frozenset[Scalar]]

    @classmethod
    def of(cls, **where: Any) -> SelectionQuery:
        """``SelectionQuery.of(city=["Oslo"], year=2020)`` (a scalar means one value)."""
        return cls.parse({"where": where})

    @classmethod
    def parse(cls, obj: Any) -> SelectionQuery:
        """From ``{"where": {"col": [v, ...] | v}}`` (or a :class:`SelectionQuery`)."""
        if isinstance(obj, SelectionQuery):
            return obj
        if not isinstance(obj, Mapping) or set(obj) - {"where"}:
            raise InvalidInput(
                "a selection query must be an object {'where': {column: [values]}}",
                hint='for example {"where": {"region": ["north", "east"]}}',
            )
        where = obj.get("where", {})
        if not isinstance(where, Mapping):
            raise InvalidInput("'where' must map column names to lists of values")
        if len(where) > MAX_COLUMNS:
            raise InvalidInput(f"a query may constrain at most {MAX_COLUMNS} columns")
        out: dict[str, frozenset[Scalar]] = {}
        for col, vals in where.items():
            if not isinstance(col, str) or not col:
                raise InvalidInput("column names in 'where' must be non-empty strings")
            if isinstance(vals, str | int | float | bool | np.generic):
                vals = [vals]
            if not isinstance(vals, Iterable):
                raise InvalidInput(f"values of column {col!r} must be a list")
            vals = list(vals)
            if not vals:
                raise InvalidInput(f"column {col!r} lists no values", hint="omit it to allow all")
            if len(vals) > MAX_DOMAIN:
                raise InvalidInput(f"column {col!r} lists more than {MAX_DOMAIN} values")
            out[col] = frozenset(_scalar(v, f"column {col!r}") for v in vals)
        return cls(out)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (values sorted for stable output)."""
        return {"where": {c: sorted(v, key=repr) for c, v in sorted(self.where.items())}}

    def box(self, domains: Mapping[str, frozenset[Scalar]]) -> dict[str, frozenset[Scalar]]:
        """The query's box inside the product of ``domains`` (one set per domain column)."""
        unknown = set(self.where) - set(domains)
        if unknown:
            raise InvalidInput(
                f"the query constrains columns without a declared domain: {sorted(unknown)}",
                hint=f"use columns among {sorted(domains)}",
            )
        return {c: (self.where[c] & d if c in self.where else d) for c, d in domains.items()}

    def mask(self, frame: pd.DataFrame) -> np.ndarray:
        """Which rows of ``frame`` the query selects."""
        keep = np.ones(len(frame), dtype=bool)
        for col, vals in self.where.items():
            if col not in frame.columns:
                raise InvalidInput(f"the table has no column {col!r}")
            keep &= frame[col].isin(list(vals)).to_numpy()
        return keep


def _check_domains(domains: Mapping[str, Iterable[Any]]) -> dict[str, frozenset[Scalar]]:
    if not isinstance(domains, Mapping) or not domains:
        raise InvalidInput("domains must map at least one column to its list of values")
    return {
        str(c): frozenset(_scalar(v, f"domain of {c!r}") for v in vals)
        for c, vals in domains.items()
    }


def _covered(box: dict[str, frozenset[Scalar]], boxes: list[dict[str, frozenset[Scalar]]]) -> bool:
    """Whether ``box`` lies inside the union of ``boxes`` (exact recursive splitting)."""
    if any(not s for s in box.values()):
        return True
    relevant = [b for b in boxes if all(box[c] & b[c] for c in box)]
    if not relevant:
        return False
    first = relevant[0]
    col = next((c for c in box if not box[c] <= first[c]), None)
    if col is None:
        return True
    inside = {**box, col: box[col] & first[col]}
    outside = {**box, col: box[col] - first[col]}
    return _covered(inside, relevant) and _covered(outside, relevant[1:])


def determines(
    bundle: Sequence[SelectionQuery], target: SelectionQuery, domains: Mapping[str, Iterable[Any]]
) -> bool:
    """Whether the answers to ``bundle`` determine the answer to ``target``.

    Selections answer the table restricted to a box of the domain product, so the
    bundle determines the target iff the bundle's boxes cover the target's box
    (Koutris et al. 2015, instance-based determinacy, specialised to selections).
    """
    doms = _check_domains(domains)
    return _covered(target.box(doms), [q.box(doms) for q in bundle])


@register
class QueryPricing(PricingMechanism):
    """Arbitrage-free prices for selection queries from per-value view prices.

    Args:
        price_points: ``{column: {value: price_minor}}`` (or ``{column: [[value,
            price_minor], ...]}`` as stored); the values of a column are its declared
            domain, so every value that can occur in the column needs a price.
    """

    name = "query"
    label = "Query-based (pay per selection)"
    summary = (
        "Buyers choose values of the priced columns and buy the matching rows; the "
        "price is arbitrage-free (Koutris et al.)."
    )
    example: ClassVar[dict[str, Any]] = {"price_points": {"city": {"Oslo": 300, "Lisbon": 200}}}
    menu_order = 2
    deliverable = "query-answer"
    request_fields = ("query",)

    def __init__(self, price_points: Mapping[str, Any]) -> None:
        if not isinstance(price_points, Mapping) or not price_points:
            raise InvalidInput(
                "query pricing needs price points for at least one column",
                hint='for example {"region": {"north": 500, "south": 300}}',
            )
        if len(price_points) > MAX_COLUMNS:
            raise InvalidInput(f"at most {MAX_COLUMNS} priced columns")
        pts: dict[str, dict[Scalar, int]] = {}
        for col, prices in price_points.items():
            if not isinstance(col, str) or not col:
                raise InvalidInput("priced column names must be non-empty strings")
            pairs = prices.items() if isinstance(prices, Mapping) else prices
            try:
                pairs = [(k, p) for k, p in pairs]
            except (TypeError, ValueError):
                raise InvalidInput(
                    f"price points of {col!r} must be {{value: price}} or [[value, price], ...]"
                ) from None
            if not pairs:
                raise InvalidInput(f"column {col!r} has no price points")
            if len(pairs) > MAX_DOMAIN:
                raise InvalidInput(f"column {col!r} has more than {MAX_DOMAIN} price points")
            col_pts: dict[Scalar, int] = {}
            for value, price in pairs:
                key = _scalar(value, f"price points of {col!r}")
                if key in col_pts:
                    raise InvalidInput(f"column {col!r} prices the value {key!r} twice")
                col_pts[key] = check_minor(price, f"price of {col}={key!r}")
            pts[col] = col_pts
        self.price_points = pts
        self.domains = {c: frozenset(p) for c, p in pts.items()}

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, price_per_value: Mapping[str, int]) -> QueryPricing:
        """Uniform per-value prices over the values each column takes in ``frame``."""
        points: dict[str, dict[Scalar, int]] = {}
        for col, price in price_per_value.items():
            if col not in frame.columns:
                raise InvalidInput(f"the table has no column {col!r}")
            values = pd.unique(frame[col].dropna())
            if len(values) > MAX_DOMAIN:
                raise InvalidInput(
                    f"column {col!r} has {len(values)} distinct values; price a coarser column"
                )
            points[col] = {_scalar(v, col): check_minor(price) for v in values}
        return cls(points)

    def config(self) -> dict[str, Any]:
        return {
            "price_points": {
                c: [[v, p] for v, p in sorted(pts.items(), key=lambda kv: repr(kv[0]))]
                for c, pts in self.price_points.items()
            }
        }

    def check_table(self, frame: pd.DataFrame) -> None:
        """Refuse a table with a priced-column value outside the declared domain."""
        for col, dom in self.domains.items():
            if col not in frame.columns:
                raise InvalidInput(f"priced column {col!r} is not in the table")
            seen = {_scalar(v, col) for v in pd.unique(frame[col].dropna())}
            extra = seen - dom
            if extra:
                raise InvalidInput(
                    f"column {col!r} has values without a price: {sorted(extra, key=repr)[:5]}",
                    hint="price every value of each priced column (JSON object keys are "
                    "strings: price numbers with [[value, price], ...])",
                )
            if frame[col].isna().any():
                raise InvalidInput(f"priced column {col!r} has missing values")

    def support(self, query: SelectionQuery) -> tuple[str, list[Scalar], int]:
        """The cheapest determining set ``(column, values, price)`` for ``query``.

        Ties go to the first priced column in declaration order.
        """
        query = SelectionQuery.parse(query)
        best: tuple[str, list[Scalar], int] | None = None
        for col, pts in self.price_points.items():
            wanted = query.where.get(col, self.domains[col]) & self.domains[col]
            cost = sum(pts[v] for v in wanted)
            if best is None or cost < best[2]:
                best = (col, sorted(wanted, key=repr), cost)
        assert best is not None
        return best

    def price(self, query: SelectionQuery | Mapping[str, Any]) -> int:
        """:math:`\\pi(Q)`, the cost of the cheapest set of views determining ``Q``."""
        return self.support(SelectionQuery.parse(query))[2]

    def quote(self, request: Mapping[str, Any] | None = None) -> Quote:
        """Price ``{"query": {"where": {...}}}`` and name the views that determine it."""
        req = self._request(request)
        if "query" not in req:
            raise InvalidInput("a query quote needs a 'query'", hint='{"query": {"where": {...}}}')
        q = SelectionQuery.parse(req["query"])
        col, values, cost = self.support(q)
        return Quote(
            self.name,
            cost,
            self.deliverable,
            {
                "query": q.to_dict(),
                "determined_by": {"column": col, "values": values},
                "n_views": len(values),
            },
        )

    def answer(
        self, frame: pd.DataFrame, query: SelectionQuery | Mapping[str, Any]
    ) -> pd.DataFrame:
        """The rows of ``frame`` the query selects (the deliverable)."""
        q = SelectionQuery.parse(query)
        return frame.loc[q.mask(frame)].reset_index(drop=True)

    def inconsistent_price_points(self) -> list[tuple[str, Scalar, int, int]]:
        """Views priced above :math:`\\pi`: ``(column, value, listed, arbitrage-free)``.

        A view :math:`V_{X=x}` listed at more than the full cover of another column can
        be bought more cheaply that way; the pricing still charges :math:`\\pi`, but the
        seller should lower the listed point.
        """
        out = []
        for col, pts in self.price_points.items():
            for value, listed in pts.items():
                fair = self.price(SelectionQuery({col: frozenset([value])}))
                if fair < listed:
                    out.append((col, value, listed, fair))
        return out


# -- arbitrage checking ---------------------------------------------------------------


@dataclass(frozen=True)
class QueryArbitrage:
    """A witness: ``bundle`` determines ``target`` but costs less."""

    target: SelectionQuery
    target_price: float
    bundle: tuple[SelectionQuery, ...]
    bundle_price: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target.to_dict(),
            "target_price": self.target_price,
            "bundle": [q.to_dict() for q in self.bundle],
            "bundle_price": self.bundle_price,
        }


def candidate_queries(
    domains: Mapping[str, Iterable[Any]], *, max_values: int = 2, pairs: bool = True
) -> list[SelectionQuery]:
    """A systematic family of selection queries over small ``domains``.

    The whole table; every ``column IN S`` with ``|S| <= max_values`` (and every
    complement of one value); and, with ``pairs``, every conjunction of two one-value
    predicates on different columns.
    """
    doms = _check_domains(domains)
    out: list[SelectionQuery] = [SelectionQuery({})]
    for col, dom in doms.items():
        vals = sorted(dom, key=repr)
        for r in range(1, min(max_values, len(vals)) + 1):
            out += [SelectionQuery({col: frozenset(c)}) for c in itertools.combinations(vals, r)]
        if len(vals) > max_values + 1:
            out += [SelectionQuery({col: dom - {v}}) for v in vals]
    if pairs:
        cols = list(doms)
        for a, b in itertools.combinations(cols, 2):
            for va in sorted(doms[a], key=repr):
                for vb in sorted(doms[b], key=repr):
                    out.append(SelectionQuery({a: frozenset([va]), b: frozenset([vb])}))
    unique: dict[Hashable, SelectionQuery] = {}
    for q in out:
        unique.setdefault(
            tuple(sorted((c, tuple(sorted(v, key=repr))) for c, v in q.where.items())), q
        )
    return list(unique.values())


def find_query_arbitrage(
    price_fn: Callable[[SelectionQuery], float],
    domains: Mapping[str, Iterable[Any]],
    candidates: Sequence[SelectionQuery] | None = None,
    *,
    max_bundle: int = 3,
) -> QueryArbitrage | None:
    """Search for arbitrage in any price function over selection queries.

    For every candidate target :math:`Q`, look for a bundle of at most ``max_bundle``
    other candidates that determines :math:`Q` (:func:`determines`) and costs strictly
    less than :math:`\\pi(Q)` (Koutris et al. 2015, arbitrage-freeness).  Returns the first witness
    found (the target with the largest saving is searched first), or ``None``.

    Args:
        price_fn: the price of a query (any real number; for :class:`QueryPricing`
            pass ``pricing.price``).
        domains: the column domains of the table.
        candidates: queries to combine (default :func:`candidate_queries`).
        max_bundle: largest bundle size searched.
    """
    doms = _check_domains(domains)
    if isinstance(max_bundle, bool) or not isinstance(max_bundle, int) or not 1 <= max_bundle <= 6:
        raise InvalidInput("max_bundle must be an integer between 1 and 6")
    cands = list(candidates) if candidates is not None else candidate_queries(doms)
    prices = [float(price_fn(q)) for q in cands]
    boxes = [q.box(doms) for q in cands]
    order = sorted(range(len(cands)), key=lambda i: -prices[i])
    for t in order:
        target_box, target_price = boxes[t], prices[t]
        useful = [
            i
            for i in range(len(cands))
            if i != t
            and prices[i] < target_price
            and all(target_box[c] & boxes[i][c] for c in target_box)
        ]
        useful.sort(key=lambda i: prices[i])
        for r in range(1, max_bundle + 1):
            for combo in itertools.combinations(useful, r):
                cost = sum(prices[i] for i in combo)
                if cost >= target_price:
                    continue
                if _covered(target_box, [boxes[i] for i in combo]):
                    return QueryArbitrage(
                        cands[t], target_price, tuple(cands[i] for i in combo), cost
                    )
    return None
