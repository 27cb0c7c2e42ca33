"""The market store end to end on SQLite and PostgreSQL: accounts, products, purchases."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pandas as pd
import pytest
from sqlalchemy import select

from databazaar.core.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    PaymentError,
    Unauthorized,
)
from databazaar.market.db import current_revision, head_revision
from databazaar.market.models import Grant, LedgerEntry, Order
from databazaar.market.service import Market

PASSWORD = "correct-horse-9"


def test_migrations_reach_head_and_seed_system_accounts(market: Market) -> None:
    assert current_revision(market.db.engine) == head_revision()
    fee = market.account_by_name("@market-fee")
    funding = market.account_by_name("@funding")
    assert (fee.role, funding.role) == ("system", "system")
    report = market.ledger_report()
    assert report.ok and report.n_rows == 0 and report.head_seq == 0


def test_accounts_passwords_and_tokens(market: Market) -> None:
    acc = market.create_account("alice", PASSWORD, "buyer")
    assert acc.balance_minor == 0 and acc.role == "buyer"
    with pytest.raises(Conflict, match="taken"):
        market.create_account("alice", PASSWORD, "seller")
    with pytest.raises(InvalidInput, match="unknown role"):
        market.create_account("bob", PASSWORD, "emperor")
    with pytest.raises(InvalidInput, match="system accounts"):
        market.create_account("bob", PASSWORD, "system")
    with pytest.raises(InvalidInput, match="password must be"):
        market.create_account("bob", "short", "buyer")
    with pytest.raises(InvalidInput, match="invalid username"):
        market.create_account("Robert'); DROP TABLE accounts;--", PASSWORD, "buyer")

    tok = market.login("alice", PASSWORD)
    assert tok.token.startswith("dbz_") and market.authenticate(tok.token).id == acc.id
    # only a hash of the secret is stored
    from databazaar.market.models import ApiToken

    with market.db.read() as s:
        row = s.scalars(select(ApiToken)).one()
    secret = tok.token.split("_", 2)[2]
    assert secret not in row.token_hash and row.token_hash.startswith("sha256$")
    # a token stored by an earlier version (an Argon2id hash) still authenticates
    from databazaar.market.access import TOKEN_HASHER

    with market.db.write() as s:
        s.scalars(select(ApiToken)).one().token_hash = TOKEN_HASHER.hash(secret)
    assert market.authenticate(tok.token).id == acc.id
    with pytest.raises(Unauthorized, match="wrong username or password"):
        market.login("alice", "wrong-password")
    with pytest.raises(Unauthorized, match="wrong username or password"):
        market.login("nobody", PASSWORD)
    with pytest.raises(Unauthorized, match="invalid API token"):
        market.authenticate(tok.token[:-2] + "xx")
    with pytest.raises(Unauthorized, match="malformed"):
        market.authenticate("Bearer nonsense")
    market.revoke_token(tok.token)
    with pytest.raises(Unauthorized):
        market.authenticate(tok.token)
    expired = market.issue_token(acc.id, ttl=timedelta(seconds=-1))
    with pytest.raises(Unauthorized, match="expired"):
        market.authenticate(expired.token)


def test_upload_profiles_csv_parquet_jsonl(market, seller, make_csv) -> None:
    market.create_product(seller, "tables", "Three formats")
    card = {"license": "MIT", "task": "regression", "tags": ["b", "a", "a"]}
    v1 = market.add_version(seller, "tables", io.BytesIO(make_csv(20)), "t.csv", card)
    assert (v1.number, v1.status, v1.file_format) == (1, "draft", "csv")
    assert (v1.n_rows, v1.n_columns) == (20, 3)
    assert [(c.name, c.type) for c in v1.columns] == [
        ("id", "integer"),
        ("score", "float"),
        ("label", "string"),
    ]
    assert v1.tags == ["a", "b"]
    ids = v1.stats["columns"]["id"]
    assert (ids["min"], ids["max"], ids["mean"], ids["nulls"]) == (0, 19, 9.5, 0)
    assert v1.stats["columns"]["label"]["top"][0] == {"value": "cat", "count": 13}
    assert len(v1.preview) == 5 and v1.preview[0] == {"id": 0, "score": 0.0, "label": "dog"}

    lines = "\n".join(json.dumps({"text": f"t{i}", "label": i % 2}) for i in range(7))
    v3 = market.add_version(seller, "tables", io.BytesIO(lines.encode()), "t.jsonl", card)
    assert (v3.number, v3.file_format, v3.n_rows, v3.n_columns) == (2, "jsonl", 7, 2)
    assert [(c.name, c.type) for c in v3.columns] == [("text", "string"), ("label", "integer")]


def test_upload_profiles_parquet(market, seller) -> None:
    pytest.importorskip(
        "pyarrow", reason="pyarrow does not import in this environment", exc_type=ImportError
    )
    market.create_product(seller, "tables", "Parquet")
    card = {"license": "MIT", "task": "regression"}
    df = pd.DataFrame({"x": [1.5, None, 3.5], "flag": [True, False, True]})
    buf = io.BytesIO()
    df.to_parquet(buf)
    v2 = market.add_version(seller, "tables", io.BytesIO(buf.getvalue()), "t.parquet", card)
    assert v2.number == 1 and v2.file_format == "parquet"
    assert [(c.name, c.type, c.nullable) for c in v2.columns] == [
        ("x", "float", True),
        ("flag", "boolean", False),
    ]
    assert v2.stats["columns"]["x"] == {
        "count": 2, "nulls": 1, "min": 1.5, "max": 3.5, "mean": 2.5,
        "std": pytest.approx(1.41421356), "distinct": 2,
        "histogram": {  # 12 equal bins from min to max (the product page's sparkline)
            "edges": pytest.approx([1.5 + i / 6 for i in range(13)]),
            "counts": [1] + [0] * 10 + [1],
        },
    }  # fmt: skip
    assert v2.preview[1]["x"] is None


def test_files_are_content_addressed(market, seller, make_csv) -> None:
    market.create_product(seller, "same", "Same bytes")
    card = {"license": "MIT", "task": "regression"}
    a = market.add_version(seller, "same", io.BytesIO(make_csv(5)), "a.csv", card)
    b = market.add_version(seller, "same", io.BytesIO(make_csv(5)), "b.csv", card)
    import hashlib

    assert a.sha256 == b.sha256 == hashlib.sha256(make_csv(5)).hexdigest()
    stored = [p for p in market.blobs.root.rglob("*") if p.is_file()]
    assert [p.name for p in stored] == [a.sha256]
    assert stored[0].parent.name == a.sha256[:2] and market.blobs.verify(a.sha256)


def test_published_versions_are_immutable(market, seller, make_csv) -> None:
    market.create_product(seller, "frozen", "Frozen")
    card = {"license": "MIT", "task": "regression", "description": "draft text"}
    market.add_version(seller, "frozen", io.BytesIO(make_csv()), "f.csv", card)
    edited = market.update_card(seller, "frozen", 1, {"description": "better text"})
    assert edited.description == "better text"
    pub = market.publish(seller, "frozen", 1)
    assert pub.status == "published" and pub.published_at is not None
    with pytest.raises(Conflict, match="published and cannot change"):
        market.update_card(seller, "frozen", 1, {"description": "sneaky edit"})
    with pytest.raises(Conflict, match="already published"):
        market.publish(seller, "frozen", 1)
    assert market.get_version("frozen", 1).description == "better text"
    # a new version is the way to change data
    v2 = market.add_version(seller, "frozen", io.BytesIO(make_csv(3)), "f.csv", card)
    assert v2.number == 2 and v2.status == "draft"
    # the public sees only published versions; the owner sees drafts
    assert market.get_product("frozen").versions == [1]
    assert market.get_product("frozen", seller).versions == [1, 2]
    with pytest.raises(NotFound):
        market.get_version("frozen", 2)


def test_purchase_moves_money_grants_and_books_ledger(market, seller, other_seller, buyer,
                                                      listed) -> None:  # fmt: skip
    listed(seller, "alpha", 1999)
    listed(other_seller, "beta", 501)
    market.deposit(buyer.id, 5000)
    order = market.purchase(buyer, ["alpha", "beta"], "order-1")
    # fee = floor(price * 500 / 10000): 99 and 25
    assert (order.total_minor, order.fee_minor, order.replayed) == (2500, 124, False)
    assert [(i.slug, i.price_minor, i.fee_minor) for i in order.items] == [
        ("alpha", 1999, 99),
        ("beta", 501, 25),
    ]
    bal = {n: market.account_by_name(n).balance_minor for n in
           ("buyer-a", "seller-a", "seller-b", "@market-fee", "@funding")}  # fmt: skip
    assert bal == {
        "buyer-a": 2500,
        "seller-a": 1900,
        "seller-b": 476,
        "@market-fee": 124,
        "@funding": -5000,
    }
    assert sum(bal.values()) == 0
    assert market.has_access(buyer, "alpha") and market.has_access(buyer, "beta")
    with market.db.read() as s:
        rows = s.scalars(select(LedgerEntry).where(LedgerEntry.txn_id == order.txn_id)).all()
    assert sorted(r.amount_minor for r in rows) == [-2500, 124, 476, 1900]
    report = market.ledger_report()
    assert report.ok and report.n_rows == 6 and report.n_transactions == 2

    # replay: same order, no second charge
    again = market.purchase(buyer, ["beta", "alpha"], "order-1")
    assert again.replayed and again.id == order.id
    assert market.get_account(buyer.id).balance_minor == 2500
    # same key, different basket: refused
    listed(seller, "gamma", 10)
    with pytest.raises(Conflict, match="already used for a different purchase"):
        market.purchase(buyer, ["gamma"], "order-1")
    # buying what one already has
    with pytest.raises(Conflict, match="already have access"):
        market.purchase(buyer, ["alpha"], "order-2")
    with market.db.read() as s:
        assert len(s.scalars(select(Order)).all()) == 1
        assert len(s.scalars(select(Grant)).all()) == 2
    assert market.ledger_report().n_rows == 6


def test_purchase_errors_leave_store_unchanged(market, seller, buyer, listed,
                                               state_of) -> None:  # fmt: skip
    listed(seller, "pricey", 10_000)
    market.create_product(seller, "unlisted", "Not on sale")
    market.deposit(buyer.id, 999)
    before = state_of(market)
    with pytest.raises(PaymentError, match="insufficient balance: 999 < 10000"):
        market.purchase(buyer, ["pricey"], "k1")
    with pytest.raises(Conflict, match="not on sale"):
        market.purchase(buyer, ["unlisted"], "k2")
    with pytest.raises(NotFound):
        market.purchase(buyer, ["no-such-thing"], "k3")
    with pytest.raises(Forbidden, match="only a buyer"):
        market.purchase(seller, ["pricey"], "k4")
    with pytest.raises(InvalidInput, match="twice"):
        market.purchase(buyer, ["pricey", "pricey"], "k5")
    with pytest.raises(InvalidInput, match="no products"):
        market.purchase(buyer, [], "k6")
    with pytest.raises(InvalidInput, match="idempotency key"):
        market.purchase(buyer, ["pricey"], "bad key with spaces")
    with pytest.raises(InvalidInput, match="product slug"):
        market.purchase(buyer, ["x' OR '1'='1"], "k7")
    assert state_of(market) == before
    # a key that failed can be used again once the buyer can pay
    market.deposit(buyer.id, 9001)
    assert market.purchase(buyer, ["pricey"], "k1").total_minor == 10_000
    assert market.get_account(buyer.id).balance_minor == 0


def test_withdraw_and_deposit_validation(market, seller, buyer, listed) -> None:
    listed(seller, "p", 1000)
    market.deposit(buyer.id, 1000)
    market.purchase(buyer, ["p"], "k")
    assert market.withdraw(seller.id, 950).account.balance_minor == 0
    with pytest.raises(PaymentError, match="less than the payout"):
        market.withdraw(seller.id, 1)
    for bad in (0, -5, 1.5, True, 10**13):
        with pytest.raises(InvalidInput):
            market.deposit(buyer.id, bad)
    with pytest.raises(NotFound):
        market.deposit(10**9, 5)
    assert market.ledger_report().ok


def test_orders_are_private_to_their_buyer(market, seller, buyer, listed) -> None:
    listed(seller, "p", 100)
    other = market.create_account("buyer-b", PASSWORD, "buyer")
    admin = market.create_account("root", PASSWORD, "admin")
    market.deposit(buyer.id, 100)
    order = market.purchase(buyer, ["p"], "k")
    assert market.get_order(buyer, order.id).id == order.id
    assert market.get_order(admin, order.id).id == order.id
    with pytest.raises(NotFound):
        market.get_order(other, order.id)
    assert market.orders_for(other) == []
    assert [o.id for o in market.orders_for(buyer)] == [order.id]


def test_download_links_need_a_grant_and_expire(market, seller, buyer, listed) -> None:
    listed(seller, "p", 100)
    with pytest.raises(Forbidden, match="no access"):
        market.download_link(buyer, "p")
    market.deposit(buyer.id, 100)
    market.purchase(buyer, ["p"], "k")
    link = market.download_link(buyer, "p", ttl_seconds=60)
    path, filename, media = market.resolve_download(link.token)
    assert (filename, media) == ("data.csv", "text/csv") and path.read_bytes().startswith(b"id,")
    with pytest.raises(Forbidden, match="expired"):
        market.resolve_download(link.token, now=link.expires_at)
    with pytest.raises(Forbidden, match="invalid download link"):
        market.resolve_download(link.token[:-3] + "AAA")
    # a link signed by another market's key is refused
    from databazaar.market.access import LinkSigner

    forged, _ = LinkSigner("another-secret-key-xyz").sign(buyer.id, 1, 60)
    with pytest.raises(Forbidden, match="invalid download link"):
        market.resolve_download(forged)
    # the owner may always download
    assert market.download_link(seller, "p").sha256 == link.sha256


def test_seller_cannot_touch_another_sellers_product(market, seller, other_seller, listed,
                                                     make_csv, state_of) -> None:  # fmt: skip
    listed(seller, "mine", 100)
    market.create_product(seller, "draft-one", "Draft")
    market.add_version(
        seller, "draft-one", io.BytesIO(make_csv()), "d.csv", {"license": "MIT", "task": "t"}
    )
    before = state_of(market)
    with pytest.raises(Forbidden, match="belongs to another seller"):
        market.set_listing(other_seller, "mine", 1)
    with pytest.raises(Forbidden, match="belongs to another seller"):
        market.update_card(other_seller, "draft-one", 1, {"description": "mine now"})
    with pytest.raises(Forbidden, match="belongs to another seller"):
        market.publish(other_seller, "draft-one", 1)
    with pytest.raises(Forbidden, match="belongs to another seller"):
        market.add_version(
            other_seller, "mine", io.BytesIO(make_csv()), "x.csv", {"license": "MIT", "task": "t"}
        )
    with pytest.raises(Conflict, match="taken"):
        market.create_product(other_seller, "mine", "Stolen slug")
    assert state_of(market) == before
    assert market.get_product("mine").listing.price_minor == 100
