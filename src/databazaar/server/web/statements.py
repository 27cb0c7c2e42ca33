"""Read-only views of the ledger and of sales that the pages show.

The market service books money (:mod:`databazaar.market.ledger`) and answers orders for
buyers, but has no query for an account's postings over time, a seller's sales or the
newest ledger rows.  These three reads are kept here, each one ``SELECT`` in a read
session of the market's database; they never write.  Everything they return is plain
data (dataclasses), safe to render after the session closed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select

from databazaar.market.models import Account, LedgerEntry, Order, OrderItem, Product
from databazaar.market.service import Market

MAX_ROWS = 1000


@dataclass(frozen=True)
class Posting:
    """One ledger row as a page shows it."""

    seq: int
    created_at: datetime
    account: str
    amount_minor: int
    kind: str
    memo: str
    txn_id: str
    row_hash: str


@dataclass(frozen=True)
class Sale:
    """One product sold by a seller: what the buyer paid, the fee and the seller's net."""

    order_id: int
    created_at: datetime
    slug: str
    title: str
    price_minor: int
    fee_minor: int

    @property
    def net_minor(self) -> int:
        return self.price_minor - self.fee_minor


def _when(value: str | datetime | None) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return datetime.now(UTC)


def _limit(limit: int) -> int:
    return max(1, min(int(limit), MAX_ROWS))


def _newest_postings(market: Market, account_id: int | None, limit: int) -> list[Posting]:
    """The newest ledger rows (of one account, or of all), newest first."""
    query = select(LedgerEntry, Account.username).join(
        Account, Account.id == LedgerEntry.account_id
    )
    if account_id is not None:
        query = query.where(LedgerEntry.account_id == account_id)
    with market.db.read() as s:
        rows = s.execute(query.order_by(LedgerEntry.seq.desc()).limit(_limit(limit))).all()
    return [
        Posting(
            seq=e.seq,
            created_at=_when(e.created_at),
            account=name,
            amount_minor=e.amount_minor,
            kind=e.kind,
            memo=e.memo,
            txn_id=e.txn_id,
            row_hash=e.row_hash,
        )
        for e, name in rows
    ]


def account_postings(market: Market, account_id: int, *, limit: int = MAX_ROWS) -> list[Posting]:
    """The ledger rows of one account, oldest first (at most the newest ``limit``)."""
    return _newest_postings(market, account_id, limit)[::-1]


def recent_ledger(market: Market, *, limit: int = 50) -> list[Posting]:
    """The newest ledger rows, newest first."""
    return _newest_postings(market, None, limit)


def seller_sales(market: Market, seller_id: int, *, limit: int = MAX_ROWS) -> list[Sale]:
    """The order lines that sold a seller's products, newest first."""
    with market.db.read() as s:
        rows = s.execute(
            select(OrderItem, Order.created_at, Product.slug, Product.title)
            .join(Order, Order.id == OrderItem.order_id)
            .join(Product, Product.id == OrderItem.product_id)
            .where(OrderItem.seller_id == seller_id)
            .order_by(OrderItem.id.desc())
            .limit(_limit(limit))
        ).all()
    return [
        Sale(
            order_id=item.order_id,
            created_at=_when(created),
            slug=slug,
            title=title,
            price_minor=item.price_minor,
            fee_minor=item.fee_minor,
        )
        for item, created, slug, title in rows
    ]


def cumulative(postings: list[Posting], kinds: tuple[str, ...]) -> list[tuple[datetime, int]]:
    """Running total of the postings of the given kinds, as ``(time, total)`` points."""
    total = 0
    points: list[tuple[datetime, int]] = []
    for p in postings:
        if p.kind in kinds:
            total += p.amount_minor
            points.append((p.created_at, total))
    return points


def order_time(market: Market, order_id: int) -> datetime | None:
    """When an order was placed."""
    with market.db.read() as s:
        value = s.scalar(select(Order.created_at).where(Order.id == order_id))
    return None if value is None else _when(value)


def sale_ids(market: Market, order_ids: list[int]) -> dict[int, int]:
    """The receipt (sale id) of each order placed under a pricing mechanism."""
    from databazaar.market.econ_models import EconSale

    if not order_ids:
        return {}
    with market.db.read() as s:
        rows = s.execute(
            select(EconSale.order_id, EconSale.id).where(EconSale.order_id.in_(order_ids))
        ).all()
    return {int(o): int(i) for o, i in rows}


def bundle_contributors(market: Market, slug: str) -> dict[str, str]:
    """``{group: username}`` of a bundle's contributors (empty when not a bundle)."""
    from databazaar.market.econ_models import EconContributor

    with market.db.read() as s:
        rows = s.execute(
            select(EconContributor.group_key, Account.username)
            .join(Account, Account.id == EconContributor.account_id)
            .join(Product, Product.id == EconContributor.product_id)
            .where(Product.slug == slug)
        ).all()
    return {str(g): str(u) for g, u in rows}


@dataclass(frozen=True)
class Membership:
    """A bundle an account contributes rows to."""

    slug: str
    title: str
    seller: str
    group: str


def bundles_of(market: Market, account_id: int) -> list[Membership]:
    """The bundles an account is a contributor of, by product."""
    from sqlalchemy.orm import aliased

    from databazaar.market.econ_models import EconContributor

    owner = aliased(Account)
    with market.db.read() as s:
        rows = s.execute(
            select(Product.slug, Product.title, owner.username, EconContributor.group_key)
            .join(EconContributor, EconContributor.product_id == Product.id)
            .join(owner, owner.id == Product.seller_id)
            .where(EconContributor.account_id == account_id)
            .order_by(Product.slug)
            .limit(MAX_ROWS)
        ).all()
    return [Membership(slug, title, seller, str(group)) for slug, title, seller, group in rows]
