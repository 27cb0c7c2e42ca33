"""The economics service on a real market store: sales under every mechanism, bundle
splits on the ledger, auctions, DP budgets, value-aware ranking of the catalog."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import func, select

from databazaar.core.errors import (
    BudgetExceeded,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    PaymentError,
)
from databazaar.market.common import load_product
from databazaar.market.econ_models import EconDpBudget, EconDpRelease, EconSale, EconSplit
from databazaar.market.economics import Economics
from databazaar.market.models import Grant, LedgerEntry
from databazaar.market.pricing import NoisyLinearModel
from databazaar.market.schemas import AccountOut
from databazaar.market.service import Market
from databazaar.market.settlement import SaleItem, sale_postings

from .conftest import PASSWORD, ListFn, task_frame


def _balance(market: Market, name: str) -> int:
    return market.account_by_name(name).balance_minor


def test_posted_sale_is_a_market_order(
    econ: Economics, market: Market, seller: AccountOut, buyer: AccountOut, list_table: ListFn
) -> None:
    list_table(seller, "plain", task_frame(0, 50), price=2000)
    assert econ.quote("plain").price_minor == 2000
    sale = econ.buy(buyer, "plain", None, "k-1")
    assert sale.order.total_minor == 2000 and sale.order.fee_minor == 100
    assert sale.splits == [] and sale.deliverable == {"kind": "dataset"}
    assert market.has_access(buyer, "plain")
    assert _balance(market, "seller-a") == 1900 and _balance(market, "@market-fee") == 100
    again = econ.buy(buyer, "plain", None, "k-1")
    assert again.replayed and again.sale_id == sale.sale_id
    assert _balance(market, "buyer-a") == 1_000_000 - 2000
    with pytest.raises(Conflict, match="different purchase"):
        econ.buy(buyer, "plain", {"x": 1}, "k-1")
    with pytest.raises(Conflict, match="already have access"):
        econ.buy(buyer, "plain", None, "k-2")
    assert market.verify_ledger().ok
    # the order shows up in the market's own order list
    assert [o.id for o in market.orders_for(buyer)] == [sale.order.id]


def test_query_sale_returns_answer_without_grant(
    econ: Economics, market: Market, seller: AccountOut, buyer: AccountOut, list_table: ListFn
) -> None:
    df = task_frame(0, 60)
    df["region"] = np.array(["north", "south", "east"])[np.arange(60) % 3]
    list_table(seller, "regional", df, price=5000)
    with pytest.raises(InvalidInput, match="without a price"):
        econ.set_pricing(seller, "regional", "query", {"price_points": {"region": {"north": 1}}})
    econ.set_pricing(
        seller,
        "regional",
        "query",
        {"price_points": {"region": {"north": 900, "south": 700, "east": 800}}},
    )
    q = {"query": {"where": {"region": ["north", "east"]}}}
    assert econ.quote("regional", q).price_minor == 1700
    sale = econ.buy(buyer, "regional", q, "q-1")
    assert sale.order.total_minor == 1700
    assert len(sale.rows) == 40 and {r["region"] for r in sale.rows} == {"north", "east"}
    assert sale.deliverable["n_rows"] == 40 and len(sale.deliverable["sha256"]) == 64
    assert not market.has_access(buyer, "regional")
    # the buyer can read the answer again; another buyer cannot see the sale
    assert len(econ.sale(buyer, sale.sale_id).rows) == 40
    other = market.create_account("buyer-b", PASSWORD, "buyer")
    with pytest.raises(NotFound):
        econ.sale(other, sale.sale_id)
    # a second, overlapping query is a separate purchase
    econ.buy(buyer, "regional", {"query": {"where": {"region": ["south"]}}}, "q-2")
    assert market.verify_ledger().ok


def test_model_sale_delivers_a_noisy_model(
    econ: Economics, market: Market, seller: AccountOut, buyer: AccountOut, list_table: ListFn
) -> None:
    list_table(seller, "model-data", task_frame(0, 300), price=9000)
    econ.set_pricing(
        seller,
        "model-data",
        "model",
        {"curve": [[0.01, 4000], [0.1, 1500], [1.0, 300]], "label_column": "label"},
    )
    sale = econ.buy(buyer, "model-data", {"variance": 0.1}, "m-1")
    assert sale.order.total_minor == 1500
    model = NoisyLinearModel(sale.deliverable["model"])
    test = task_frame(1000, 300)
    acc = np.mean(model.predict(test[[f"f{i}" for i in range(5)]].to_numpy()) == test["label"])
    assert acc > 0.7
    assert model.variance == pytest.approx(0.1)
    assert 0 <= sale.deliverable["expected_training_error"] < 0.5
    assert not market.has_access(buyer, "model-data")
    with pytest.raises(InvalidInput, match="no label column"):
        econ.set_pricing(seller, "model-data", "model", {"curve": [[1.0, 5]], "label_column": "y"})


def test_value_based_sale_charges_a_share_of_measured_value(
    econ: Economics, market: Market, seller: AccountOut, buyer: AccountOut, list_table: ListFn
) -> None:
    list_table(seller, "valuable", task_frame(0, 200), price=100_000)
    econ.set_pricing(seller, "valuable", "value", {"share_bps": 2000, "floor_minor": 50})
    req = {
        "validation": task_frame(2000, 60).to_dict(orient="records"),
        "label_column": "label",
        "worth_minor": 100_000,
    }
    quote = econ.quote("valuable", req)
    assert 0.3 < quote.details["value"] and quote.details["value_low"] < quote.details["value"]
    expected = int(0.2 * quote.details["value_low"] * 100_000)
    assert abs(quote.price_minor - expected) <= 1
    sale = econ.buy(buyer, "valuable", req, "v-1")
    assert sale.order.total_minor == quote.price_minor
    assert market.has_access(buyer, "valuable")
    with pytest.raises(InvalidInput, match="needs 'worth_minor'"):
        econ.quote("valuable", {"validation": req["validation"], "label_column": "label"})


def test_bundle_split_on_the_ledger(
    econ: Economics, market: Market, seller: AccountOut, buyer: AccountOut, list_table: ListFn
) -> None:
    ann = market.create_account("ann", PASSWORD, "seller")
    bob = market.create_account("bob", PASSWORD, "seller")
    market.create_account("nat", PASSWORD, "seller")
    good = task_frame(0, 150).assign(source="ann")
    copy = good.assign(source="bob")  # bob re-uploads ann's rows
    rng = np.random.default_rng(0)
    noise = pd.DataFrame(rng.normal(0, 3, size=(150, 5)), columns=[f"f{i}" for i in range(5)])
    noise["label"] = rng.choice(["yes", "no"], 150)
    noise["source"] = "nat"
    list_table(seller, "bundle", pd.concat([good, copy, noise]), price=10_000)
    ref = task_frame(2000, 80)
    with pytest.raises(InvalidInput, match="exactly the table's groups"):
        econ.register_bundle(
            seller,
            "bundle",
            group_column="source",
            label_column="label",
            contributors={"ann": "ann"},
            reference=ref,
        )
    with pytest.raises(NotFound, match="contributor account"):
        econ.register_bundle(
            seller,
            "bundle",
            group_column="source",
            label_column="label",
            contributors={"ann": "ann", "bob": "ghost", "nat": "nat"},
            reference=ref,
        )
    with pytest.raises(Forbidden):
        econ.register_bundle(
            ann,
            "bundle",
            group_column="source",
            label_column="label",
            contributors={"ann": "ann", "bob": "bob", "nat": "nat"},
            reference=ref,
        )
    reg = econ.register_bundle(
        seller,
        "bundle",
        group_column="source",
        label_column="label",
        contributors={"ann": "ann", "bob": "bob", "nat": "nat"},
        reference=ref,
    )
    vals = dict(zip(reg.valuation["groups"], reg.valuation["values"], strict=True))
    # the copy is valued like the original; noise is worth nothing (here: it hurts)
    assert vals["ann"] == pytest.approx(vals["bob"]) and vals["nat"] < 0.05 * vals["ann"]
    assert econ.valuation("bundle").digest == reg.digest

    sale = econ.buy(buyer, "bundle", None, "b-1")
    (split,) = sale.splits
    assert split.total_minor == 9500 and split.valuation_id == reg.valuation_id
    amounts = {sh["group"]: sh["amount_minor"] for sh in split.shares}
    assert sum(amounts.values()) == 9500
    assert abs(amounts["ann"] - amounts["bob"]) <= 1 and amounts["nat"] <= 300
    assert _balance(market, "ann") == amounts["ann"] and _balance(market, "nat") == amounts["nat"]
    assert _balance(market, "seller-a") == 0  # the bundler keeps nothing it did not value
    with market.db.read() as s:
        memos = {
            e.account_id: e.memo
            for e in s.scalars(select(LedgerEntry).where(LedgerEntry.txn_id == split.txn_id))
        }
    assert f"valuation {reg.valuation_id} sha256 {reg.digest[:16]}" in memos[ann.id]
    assert market.verify_ledger().ok
    assert econ.splits(bob, "bundle")[0].id == split.id
    stranger = market.create_account("zed", PASSWORD, "seller")
    with pytest.raises(Forbidden):
        econ.splits(stranger, "bundle")

    # ADS with the original first: the copy is paid about nothing
    reg2 = econ.register_bundle(
        seller,
        "bundle",
        group_column="source",
        label_column="label",
        contributors={"ann": "ann", "bob": "bob", "nat": "nat"},
        reference=ref,
        method="ads",
        order=["ann", "bob", "nat"],
    )
    other = market.create_account("buyer-c", PASSWORD, "buyer")
    market.deposit(other.id, 50_000)
    sale2 = econ.buy(other, "bundle", None, "b-2")
    shares2 = {sh["group"]: sh["amount_minor"] for sh in sale2.splits[0].shares}
    assert sale2.splits[0].valuation_id == reg2.valuation_id
    # plain Shapley paid the copier as much as the original; ADS pays it ~5%
    assert shares2["bob"] < 0.1 * shares2["ann"] and shares2["ann"] >= 8500
    assert market.verify_ledger().ok


def test_sale_postings_hook_matches_plain_purchase(
    econ: Economics, market: Market, seller: AccountOut, list_table: ListFn
) -> None:
    list_table(seller, "plain", task_frame(0, 20))
    with market.db.write() as s:
        prod_id = load_product(s, "plain", eager=False).id
        items = [SaleItem(prod_id, seller.id, 1000, 50), SaleItem(prod_id, seller.id, 50, 0)]
        postings = sale_postings(s, None, items, "order 9", "t")
        assert [(p.account_id, p.amount_minor, p.kind, p.memo) for p in postings] == [
            (seller.id, 1000, "sale", "order 9")
        ]
        assert sale_postings(s, None, [SaleItem(prod_id, seller.id, 7, 7)], "m", "t") == []


def test_payment_error_leaves_store_unchanged(
    econ: Economics, market: Market, seller: AccountOut, list_table: ListFn
) -> None:
    list_table(seller, "dear", task_frame(0, 20), price=500_000)
    poor = market.create_account("poor", PASSWORD, "buyer")
    market.deposit(poor.id, 100)
    rows_before = market.verify_ledger().n_rows
    with pytest.raises(PaymentError, match="insufficient balance"):
        econ.buy(poor, "dear", None, "p-1")
    with market.db.read() as s:
        assert s.scalar(select(func.count()).select_from(EconSale)) == 0
        assert s.scalar(select(func.count()).select_from(Grant)) == 0
    assert market.verify_ledger().n_rows == rows_before
    with pytest.raises(Forbidden):
        econ.buy(seller, "dear", None, "p-2")
    with pytest.raises(InvalidInput, match="invalid idempotency key"):
        econ.buy(poor, "dear", None, "bad key!")
    market.set_listing(seller, "dear", 10, active=False)
    with pytest.raises(Conflict, match="not on sale"):
        econ.buy(poor, "dear", None, "p-3")
    with pytest.raises(InvalidInput, match="unknown pricing mechanism"):
        econ.set_pricing(seller, "dear", "barter", {})
    with pytest.raises(NotFound):
        econ.quote("nope")


def test_sealed_bid_auction(
    econ: Economics, market: Market, seller: AccountOut, list_table: ListFn
) -> None:
    list_table(seller, "rare", task_frame(0, 20), price=1)
    bidders = {}
    for name, funds in (("amy", 10_000), ("ben", 10_000), ("cal", 10_000)):
        acc = market.create_account(name, PASSWORD, "buyer")
        market.deposit(acc.id, funds)
        bidders[name] = acc
    with pytest.raises(NotFound, match="no open auction"):
        econ.place_bid(bidders["amy"], "rare", 100)
    econ.open_auction(seller, "rare", reserve_minor=2000)
    with pytest.raises(Conflict, match="already has an open auction"):
        econ.open_auction(seller, "rare", reserve_minor=10)
    with pytest.raises(Conflict, match="sealed-bid auction"):
        econ.buy(bidders["amy"], "rare", None, "a-1")
    econ.place_bid(bidders["amy"], "rare", 6000)
    econ.place_bid(bidders["ben"], "rare", 3000)
    econ.place_bid(bidders["ben"], "rare", 4500)  # replaces the earlier bid
    econ.place_bid(bidders["cal"], "rare", 1000)  # below reserve
    with pytest.raises(PaymentError, match="cannot cover"):
        econ.place_bid(bidders["cal"], "rare", 20_000)
    with pytest.raises(Forbidden):
        econ.close_auction(bidders["amy"], "rare")
    # amy spends most of her money elsewhere before the close: she is disqualified
    other_seller = market.create_account("other-seller", PASSWORD, "seller")
    list_table(other_seller, "side", task_frame(0, 10), price=9000)
    market.purchase(bidders["amy"], ["side"], "side-1")
    out = econ.close_auction(seller, "rare")
    assert out.outcome["winners"] == [bidders["ben"].id]
    assert out.outcome["disqualified"] == [bidders["amy"].id]
    assert out.outcome["price_minor"] == 2000  # reserve: no other eligible bid left
    assert market.has_access(bidders["ben"], "rare")
    assert _balance(market, "ben") == 8000
    with pytest.raises(NotFound):
        econ.close_auction(seller, "rare")
    assert market.verify_ledger().ok


def test_dp_budget_is_enforced_and_persistent(
    econ: Economics, market: Market, seller: AccountOut, buyer: AccountOut, list_table: ListFn
) -> None:
    df = task_frame(0, 400)
    df["age"] = np.arange(400) % 90
    list_table(seller, "census", df)
    with pytest.raises(NotFound, match="no differentially private"):
        econ.dp_query(buyer, "census", "count")
    with pytest.raises(InvalidInput, match="no columns"):
        econ.offer_dp(seller, "census", 1.0, {"income": {"bounds": [0, 1]}})
    with pytest.raises(InvalidInput, match="bounds"):
        econ.offer_dp(seller, "census", 1.0, {"age": {"bounds": [5, 1]}})
    econ.offer_dp(
        seller,
        "census",
        1.0,
        {"age": {"bounds": [0, 100], "bins": 4}, "label": {"categories": ["yes", "no"]}},
    )
    r1 = econ.dp_query(buyer, "census", "mean", "age", 0.4, random_state=1)
    assert abs(r1.value - df["age"].mean()) < 5 and r1.epsilon_remaining == pytest.approx(0.6)
    r2 = econ.dp_query(buyer, "census", "histogram", "label", 0.5, random_state=2)
    assert r2.categories == ["yes", "no"] and abs(sum(r2.counts) - 400) < 30
    with pytest.raises(BudgetExceeded, match=r"only 0\.1 of the product's 1 is left"):
        econ.dp_query(buyer, "census", "count", None, 0.2)
    with pytest.raises(InvalidInput, match="not offered"):
        econ.dp_query(buyer, "census", "mean", "f0", 0.05)
    # the refusal and the failure spent nothing
    status = econ.dp_budget("census")
    assert status.epsilon_spent == pytest.approx(0.9) and status.n_releases == 2
    # a fresh service over the same store sees the same budget (persistent)
    again = Economics(market)
    with pytest.raises(BudgetExceeded):
        again.dp_query(buyer, "census", "count", None, 0.100001)
    assert again.dp_query(buyer, "census", "count", None, 0.1).epsilon_remaining == 0
    with pytest.raises(InvalidInput, match="never shrink"):
        econ.offer_dp(seller, "census", 0.5, {"age": {"bounds": [0, 100]}})
    econ.offer_dp(seller, "census", 2.0, {"age": {"bounds": [0, 100]}})
    assert econ.dp_budget("census").epsilon_remaining == pytest.approx(1.0)
    with market.db.read() as s:
        assert s.scalar(select(func.count()).select_from(EconDpRelease)) == 3
        row = s.scalar(select(EconDpBudget))
        assert row.epsilon_spent_micro == 1_000_000


def test_rank_catalog_by_value(
    econ: Economics, market: Market, seller: AccountOut, list_table: ListFn
) -> None:
    list_table(seller, "same-task", task_frame(0, 150), price=3000)
    list_table(seller, "flipped", task_frame(200, 150, flip=True), price=1000)
    list_table(seller, "shifted", task_frame(400, 150, shift=4.0), price=2000)
    other = pd.DataFrame({"city": ["a", "b"], "target": [1, 2]})
    list_table(seller, "unrelated", other, price=10)
    report, skipped = econ.rank(task_frame(2000, 60).to_dict(orient="records"), "label")
    assert report.products[0].slug == "same-task"
    assert report.products[-1].slug == "flipped"
    assert skipped == [{"slug": "unrelated", "reason": "no column 'label'"}]
    assert report.products[0].price_minor == 3000
    with pytest.raises(NotFound, match="no product on sale"):
        econ.rank(task_frame(0, 10).to_dict(orient="records"), "nonexistent")


def _two_seller_bundle(  # type: ignore[no-untyped-def]
    econ: Economics,
    market: Market,
    seller: AccountOut,
    list_table: ListFn,
    slug: str,
    frame: pd.DataFrame,
    price: int = 1000,
):
    """List ``frame`` (groups ``src`` a/b) as a bundle of two new sellers; exact KNN split."""
    ann = market.create_account(f"ann-{slug}", PASSWORD, "seller")
    bob = market.create_account(f"bob-{slug}", PASSWORD, "seller")
    list_table(seller, slug, frame, price=price)
    reg = econ.register_bundle(
        seller,
        slug,
        group_column="src",
        label_column="label",
        contributors={"a": ann.username, "b": bob.username},
        reference=task_frame(2000, 40),
        method="exact",
        k=3,
    )
    return ann, bob, reg


def test_sale_postings_hook_splits_a_bundle(
    econ: Economics, market: Market, seller: AccountOut, list_table: ListFn
) -> None:
    """What Market.purchase books once it calls the hook: per-contributor credits."""
    frame = pd.concat([task_frame(0, 80).assign(src="a"), task_frame(100, 80).assign(src="b")])
    ann, bob, reg = _two_seller_bundle(econ, market, seller, list_table, "duo", frame)
    with market.db.write() as s:
        pid = load_product(s, "duo", eager=False).id
        postings = sale_postings(s, None, [SaleItem(pid, seller.id, 1001, 0)], "order 7", "txn-7")
        assert sum(p.amount_minor for p in postings) == 1001
        assert {p.account_id for p in postings} == {ann.id, bob.id}
        assert all(p.kind == "sale" and f"valuation {reg.valuation_id}" in p.memo for p in postings)
        (row,) = s.scalars(select(EconSplit).where(EconSplit.txn_id == "txn-7")).all()
        assert row.total_minor == 1001 and row.valuation_id == reg.valuation_id
        s.rollback()


def test_auction_without_eligible_bids(
    econ: Economics, market: Market, seller: AccountOut, buyer: AccountOut, list_table: ListFn
) -> None:
    list_table(seller, "niche", task_frame(0, 20))
    econ.open_auction(seller, "niche", reserve_minor=5000, units=2)
    econ.place_bid(buyer, "niche", 4000)
    out = econ.close_auction(seller, "niche")
    assert out.outcome["winners"] == [] and out.sales == []
    assert not market.has_access(buyer, "niche")
    with pytest.raises(InvalidInput, match="units"):
        econ.open_auction(seller, "niche", reserve_minor=1, units=0)
    econ.open_auction(seller, "niche", reserve_minor=1)  # a new auction after the close


def test_market_purchase_of_a_bundle_pays_contributors_by_value(
    econ: Economics, market: Market, seller: AccountOut, buyer: AccountOut, list_table: ListFn
) -> None:
    """The plain purchase path (API, web, CLI) splits a bundle's seller side by value."""
    noise = task_frame(300, 80).assign(src="b")
    noise["label"] = np.random.default_rng(0).permutation(noise["label"].to_numpy())
    frame = pd.concat([task_frame(0, 80).assign(src="a"), noise])
    ann, bob, _ = _two_seller_bundle(econ, market, seller, list_table, "pair", frame, 2000)
    order = market.purchase(buyer, ["pair"], "pair-1")
    fee = order.fee_minor
    with market.db.read() as s:
        credits: dict[int, int] = {}
        for row in s.scalars(select(LedgerEntry).where(LedgerEntry.kind == "sale")):
            credits[row.account_id] = credits.get(row.account_id, 0) + row.amount_minor
    assert sum(credits.values()) == 2000 - fee
    assert credits.get(ann.id, 0) > credits.get(bob.id, 0)
    assert seller.id not in credits  # the listing seller is paid only as a contributor
    assert market.verify_ledger().ok
