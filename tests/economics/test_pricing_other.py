"""Posted, auction and value-based pricing; the shared mechanism interface."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from databazaar.core.errors import InvalidInput
from databazaar.market.pricing import (
    PostedPrice,
    Quote,
    SecondPriceAuction,
    ValueBasedPricing,
    get_mechanism_class,
    mechanism_from_config,
    mechanism_names,
)


def test_registry_and_roundtrip() -> None:
    assert mechanism_names() == ["auction", "model", "posted", "query", "value"]
    for mech in (PostedPrice(1250), SecondPriceAuction(500, 2), ValueBasedPricing(3000, 100, 9000)):
        again = mechanism_from_config(mech.name, mech.config())
        assert again.config() == mech.config() and repr(again) == repr(mech)
    with pytest.raises(InvalidInput, match="unknown pricing mechanism"):
        get_mechanism_class("haggle")
    with pytest.raises(InvalidInput, match="bad posted pricing configuration"):
        mechanism_from_config("posted", {"price": 5})
    with pytest.raises(InvalidInput, match="JSON object"):
        mechanism_from_config("posted", [1])  # type: ignore[arg-type]


def test_posted() -> None:
    q = PostedPrice(1250).quote()
    assert q == Quote("posted", 1250, "dataset", {"posted_minor": 1250})
    assert q.to_dict()["currency"] == "USD"
    with pytest.raises(InvalidInput, match="never a float"):
        PostedPrice(12.5)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="unknown posted pricing request"):
        PostedPrice(1).quote({"discount": 1})
    with pytest.raises(InvalidInput, match="JSON object"):
        PostedPrice(1).quote([1])  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="unknown deliverable"):
        Quote("posted", 1, "hug")


def test_second_price_with_reserve() -> None:
    a = SecondPriceAuction(reserve_minor=1000)
    out = a.clear([("ann", 5000), ("bob", 3000), ("cy", 800)])
    assert out.winners == ("ann",) and out.price_minor == 3000 and out.n_eligible == 2
    # only one eligible bid: pays the reserve
    assert a.clear([("ann", 5000), ("cy", 800)]).price_minor == 1000
    # nobody above reserve: no sale
    none = a.clear([("cy", 800)])
    assert none.winners == () and none.price_minor == 0
    # ties: the earlier bid wins, at its own amount (the runner-up's)
    tie = a.clear(
        [
            {"bidder": "b", "amount_minor": 2000, "seq": 2},
            {"bidder": "a", "amount_minor": 2000, "seq": 1},
        ]
    )
    assert tie.winners == ("a",) and tie.price_minor == 2000
    # k units: top-2 win at the 3rd price
    two = SecondPriceAuction(100, units=2).clear([("a", 900), ("b", 700), ("c", 400), ("d", 50)])
    assert two.winners == ("a", "b") and two.price_minor == 400
    assert a.quote({"bids": [("ann", 5000), ("bob", 3000)]}).price_minor == 3000
    assert a.quote().price_minor == 1000


@pytest.mark.parametrize(
    ("bids", "match"),
    [
        ([("a", 1), ("a", 2)], "bid twice"),
        ([("a", 1.5)], "integer"),
        ([("a", -1)], ">= 0"),
        ([{"who": "a"}], "a bid must be"),
        (["x"], "not a bid"),
        ("ab", "must be a list"),
    ],
)
def test_auction_bad_bids(bids: object, match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        SecondPriceAuction(10).clear(bids)  # type: ignore[arg-type]


def test_auction_bad_config() -> None:
    with pytest.raises(InvalidInput, match="units"):
        SecondPriceAuction(10, units=0)
    with pytest.raises(InvalidInput, match="reserve"):
        SecondPriceAuction(-5)


@settings(max_examples=200, deadline=None)
@given(
    others=st.lists(st.integers(0, 10_000), max_size=6),
    value=st.integers(0, 10_000),
    lie=st.integers(0, 10_000),
    reserve=st.integers(0, 5_000),
    units=st.integers(1, 3),
)
def test_truthful_bidding_is_dominant(
    others: list[int], value: int, lie: int, reserve: int, units: int
) -> None:
    """Vickrey: bidding the true value is never worse than any other bid."""
    a = SecondPriceAuction(reserve, units)

    def utility(bid: int) -> int:
        # "me" bids last, so equal bids lose to earlier ones: the worst case for me
        bids = [(f"o{i}", b) for i, b in enumerate(others)] + [("me", bid)]
        out = a.clear(bids)
        return value - out.price_minor if "me" in out.winners else 0

    assert utility(value) >= utility(lie)
    assert utility(value) >= 0  # individual rationality


def test_value_based() -> None:
    vb = ValueBasedPricing(share_bps=2500, floor_minor=100, cap_minor=50_000)
    q = vb.quote({"value": 0.40, "value_low": 0.30, "worth_minor": 100_000})
    # 25% of the lower bound 0.30 * 100000 = 7500
    assert q.price_minor == 7500 and q.details["charged_on"] == 0.30
    assert vb.quote({"value": 0.40, "worth_minor": 100_000}).price_minor == 10_000
    # negative value: the floor
    low = vb.quote({"value": -0.1, "worth_minor": 100_000})
    assert low.price_minor == 100 and low.details["floor_binds"]
    # cap
    big = vb.quote({"value": 5.0, "worth_minor": 100_000})
    assert big.price_minor == 50_000 and big.details["cap_binds"]
    # individual rationality above the floor: price <= value * worth
    q = ValueBasedPricing(10_000).quote({"value": 0.123, "worth_minor": 1000})
    assert q.price_minor == 123


@pytest.mark.parametrize(
    ("request_", "match"),
    [
        ({"worth_minor": 10}, "needs 'value'"),
        ({"value": 0.1}, "needs 'worth_minor'"),
        ({"value": float("inf"), "worth_minor": 1}, "finite"),
        ({"value": "a", "worth_minor": 1}, "number"),
        ({"value": 0.1, "value_low": 0.2, "worth_minor": 1}, "above value"),
        ({"value": 0.1, "worth_minor": 1.5}, "integer"),
    ],
)
def test_value_based_errors(request_: dict, match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        ValueBasedPricing().quote(request_)


def test_value_based_bad_config() -> None:
    with pytest.raises(InvalidInput, match="share_bps"):
        ValueBasedPricing(0)
    with pytest.raises(InvalidInput, match="below floor"):
        ValueBasedPricing(100, floor_minor=10, cap_minor=5)
