"""Query-based pricing (Koutris et al.): closed form, determinacy, arbitrage checks."""

from __future__ import annotations

import itertools

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from databazaar.core.errors import InvalidInput
from databazaar.market.pricing import (
    QueryPricing,
    SelectionQuery,
    candidate_queries,
    determines,
    find_query_arbitrage,
    mechanism_from_config,
)

POINTS = {
    "region": {"north": 300, "south": 200, "east": 250},
    "year": {2020: 100, 2021: 150},
}
DOMAINS = {c: list(p) for c, p in POINTS.items()}


def test_price_is_cheapest_cover() -> None:
    qp = QueryPricing(POINTS)
    # one region: either that view (300) or all years (250)
    assert qp.price(SelectionQuery.of(region="north")) == 250
    assert qp.price(SelectionQuery.of(region="south")) == 200
    # two years constrained to 2020: only 2020's view is needed
    assert qp.price(SelectionQuery.of(year=2020)) == 100
    # conjunction: the cheaper side
    assert qp.price(SelectionQuery.of(region=["north", "east"], year=[2021])) == 150
    # whole table: cheaper full column cover
    assert qp.price(SelectionQuery({})) == 250
    # value outside the domain selects nothing: free
    assert qp.price(SelectionQuery.of(year=1999)) == 0
    q = qp.quote({"query": {"where": {"region": ["north"]}}})
    assert q.price_minor == 250 and q.deliverable == "query-answer"
    assert q.details["determined_by"] == {"column": "year", "values": [2020, 2021]}


def test_inconsistent_points_and_roundtrip() -> None:
    qp = QueryPricing(POINTS)
    assert qp.inconsistent_price_points() == [("region", "north", 300, 250)]
    again = mechanism_from_config("query", qp.config())
    assert isinstance(again, QueryPricing) and again.price_points == qp.price_points


def test_answer_and_table_check() -> None:
    df = pd.DataFrame(
        {"region": ["north", "south", "east", "north"], "year": [2020, 2021, 2020, 2021]}
    )
    qp = QueryPricing.from_frame(df, {"region": 100, "year": 120})
    assert qp.price(SelectionQuery.of(region="north")) == 100
    assert len(qp.answer(df, {"where": {"region": ["north"]}})) == 2
    qp.check_table(df)
    with pytest.raises(InvalidInput, match="without a price"):
        QueryPricing({"region": {"north": 1}}).check_table(df)
    with pytest.raises(InvalidInput, match="no column"):
        qp.answer(df, {"where": {"city": ["x"]}})


@pytest.mark.parametrize(
    ("points", "match"),
    [
        ({}, "at least one column"),
        ({"a": {}}, "no price points"),
        ({"a": {"x": 1.5}}, "integer number of minor units"),
        ({"a": {"x": -1}}, ">= 0"),
        ({"a": [["x", 1], ["x", 2]]}, "twice"),
        ({"a": {"x": True}}, "integer"),
        ({"": {"x": 1}}, "non-empty"),
        ({"a": 5}, "must be"),
    ],
)
def test_bad_price_points(points: dict, match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        QueryPricing(points)


@pytest.mark.parametrize(
    ("request_", "match"),
    [
        ({}, "needs a 'query'"),
        ({"query": {"where": {"city": ["x"]}}, "extra": 1}, "unknown"),
        ({"query": {"where": {"region": []}}}, "lists no values"),
        ({"query": {"select": 1}}, "selection query"),
        ({"query": {"where": {"region": [float("nan")]}}}, "finite"),
        ({"query": {"where": {"region": [[1]]}}}, "strings or numbers"),
    ],
)
def test_bad_queries(request_: dict, match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        QueryPricing(POINTS).quote(request_)


def test_determines_box_cover() -> None:
    north = SelectionQuery.of(region="north")
    years = [SelectionQuery.of(year=2020), SelectionQuery.of(year=2021)]
    assert determines(years, north, DOMAINS)
    assert not determines(years[:1], north, DOMAINS)
    parts = [SelectionQuery.of(region="north", year=y) for y in (2020, 2021)]
    assert determines(parts, north, DOMAINS)
    assert determines([SelectionQuery({})], north, DOMAINS)
    with pytest.raises(InvalidInput, match="without a declared domain"):
        determines(years, SelectionQuery.of(city="x"), DOMAINS)


def _brute_force_price(points: dict, query: SelectionQuery) -> int:
    """Min cost set of views V_{X=x} whose union determines the query (enumeration)."""
    views = [(c, v, p) for c, pts in points.items() for v, p in pts.items()]
    domains = {c: list(p) for c, p in points.items()}
    best = None
    for r in range(len(views) + 1):
        for combo in itertools.combinations(views, r):
            cost = sum(p for _, _, p in combo)
            if best is not None and cost >= best:
                continue
            if determines(
                [SelectionQuery({c: frozenset([v])}) for c, v, _ in combo], query, domains
            ):
                best = cost
    assert best is not None
    return best


points_st = st.dictionaries(
    st.sampled_from(["a", "b", "c"]),
    st.dictionaries(st.integers(0, 3), st.integers(0, 50), min_size=1, max_size=3),
    min_size=1,
    max_size=2,
)


@st.composite
def query_for(draw: st.DrawFn, points: dict) -> SelectionQuery:
    where = {}
    for col, pts in points.items():
        if draw(st.booleans()):
            where[col] = frozenset(
                draw(st.lists(st.sampled_from(sorted(pts)), min_size=1, max_size=3))
            )
    return SelectionQuery(where)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), points=points_st)
def test_closed_form_equals_cheapest_determining_set(data: st.DataObject, points: dict) -> None:
    q = data.draw(query_for(points))
    assert QueryPricing(points).price(q) == _brute_force_price(points, q)


@settings(max_examples=150, deadline=None)
@given(data=st.data(), points=points_st)
def test_no_cheaper_bundle_determines_a_query(data: st.DataObject, points: dict) -> None:
    """Property: whenever a bundle determines Q, the bundle costs at least price(Q)."""
    qp = QueryPricing(points)
    domains = {c: list(p) for c, p in points.items()}
    target = data.draw(query_for(points))
    # a bundle built to cover the target: split it along one column, maybe widen parts
    col = data.draw(st.sampled_from(sorted(points)))
    values = sorted(target.box(qp.domains)[col])
    bundle = []
    for v in values:
        where = dict(target.where)
        where[col] = frozenset([v])
        if data.draw(st.booleans()):
            other = data.draw(st.sampled_from(sorted(points)))
            where.pop(other, None)  # widening keeps the cover
        bundle.append(SelectionQuery(where))
    bundle += data.draw(st.lists(query_for(points), max_size=2))
    assert determines(bundle, target, domains) or not values
    if determines(bundle, target, domains):
        assert qp.price(target) <= sum(qp.price(q) for q in bundle)
    # and the exhaustive checker finds nothing on the candidate family
    assert find_query_arbitrage(qp.price, domains, max_bundle=2) is None


def test_checker_catches_a_price_that_charges_for_predicates() -> None:
    """A 'premium for targeted queries' price: narrower queries cost more. Arbitrage."""

    def per_predicate(q: SelectionQuery) -> float:
        return 100.0 * (1 + len(q.where))

    found = find_query_arbitrage(per_predicate, DOMAINS)
    assert found is not None
    assert found.bundle_price < found.target_price
    assert determines(list(found.bundle), found.target, DOMAINS)
    assert found.to_dict()["target_price"] == found.target_price


def test_checker_catches_a_row_share_price_with_volume_discount() -> None:
    """Price by the number of views touched, with a bulk rate above 2 values: arbitrage."""

    def bulk(q: SelectionQuery) -> float:
        n = len(q.where.get("region", {"north", "south", "east"}))
        return 100.0 * n if n <= 1 else 100.0 * n + 150

    found = find_query_arbitrage(bulk, {"region": ["north", "south", "east"]})
    assert found is not None and len(found.bundle) >= 2


def test_candidates_and_bad_checker_args() -> None:
    cands = candidate_queries(DOMAINS)
    assert SelectionQuery({}) in cands
    assert len(cands) == len({repr(q.to_dict()) for q in cands})
    with pytest.raises(InvalidInput, match="max_bundle"):
        find_query_arbitrage(lambda q: 1.0, DOMAINS, max_bundle=0)
    with pytest.raises(InvalidInput, match="at least one column"):
        find_query_arbitrage(lambda q: 1.0, {})
