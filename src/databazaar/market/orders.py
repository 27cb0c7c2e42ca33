"""Orders: the one booking path of every sale.

:func:`book_order` records a sale inside the caller's write transaction, in which the
caller has locked the buyer's ledger chain: it writes the order, its items and the
buyer's grants, and books the money through
:func:`databazaar.market.settlement.settle_sale` (the buyer's debit checked and applied
by one guarded ``UPDATE``; the sellers' and the fee account's credits appended as
pending credits, so concurrent purchases by different buyers share no locked row).  Plain
purchases (:meth:`Orders.purchase`), sales under a pricing mechanism, auction
clearings and bundle sales (:mod:`databazaar.market.economics`) all go through it, and
all run it under :func:`run_booking`, which retries a transaction that lost a race
(``IntegrityError``: a concurrent request with the same idempotency key won, so its
order is replayed; ``OperationalError``: deadlock, serialization failure or a busy
SQLite file, retried with jittered backoff).

The buyer's idempotency key makes a replay of the same request return the first order
without moving money again; the same key with a different request is a
:class:`~databazaar.core.errors.Conflict`.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from sqlalchemy import (
    Connection,
    Row,
    insert,
    select,
)
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from databazaar.core.errors import Conflict, InvalidInput, NotFound
from databazaar.market import access, ledger
from databazaar.market import validation as v
from databazaar.market.accounts import TOKEN_ACCOUNT, token_account, token_row_account
from databazaar.market.basket import BASKET, checked_slugs, send_basket
from databazaar.market.common import MarketBase, created
from databazaar.market.db import Database, driver_execute, pipelined
from databazaar.market.models import (
    Account,
    Grant,
    Order,
    OrderItem,
    Product,
    ProductVersion,
    Role,
    utcnow,
)
from databazaar.market.schemas import AccountOut, OrderItemOut, OrderOut
from databazaar.market.screenings import unsellable_reason
from databazaar.market.settlement import SaleItem, market_fee, settle_sale

PURCHASE_RETRIES = 5

T = TypeVar("T")


@dataclass(frozen=True)
class SaleLine:
    """One product to sell: the version sold, its price, and whether access is granted
    (``bundle``, ``derivative``: whether the product is a registered bundle or an
    enriched derivative, ``None`` if not looked up)."""

    product_id: int
    slug: str
    seller_id: int
    version_id: int
    version_number: int
    price_minor: int
    grant: bool = True
    bundle: bool | None = None
    derivative: bool | None = None

    @classmethod
    def of(
        cls, product: Product, version: ProductVersion, price_minor: int, *, grant: bool = True
    ) -> SaleLine:
        """The line selling ``version`` of ``product`` at ``price_minor``."""
        return cls(
            product.id, product.slug, product.seller_id, version.id, version.number,
            price_minor, grant,
        )  # fmt: skip


def check_sellable(
    slug: str, seller_id: int, buyer_id: int, *, on_sale: bool, granted: bool
) -> None:
    """:class:`Conflict` unless product ``slug`` (sold by ``seller_id``) is on sale to
    ``buyer_id``.

    ``on_sale`` says whether it has an active listing, ``granted`` whether the buyer
    already holds access (refused for sales that would grant it again).
    """
    if not on_sale:
        raise Conflict(f"product {slug!r} is not on sale")
    if seller_id == buyer_id:
        raise Conflict(f"product {slug!r} is your own")
    if granted:
        raise Conflict(f"you already have access to {slug!r}", hint="download it instead")


def granted_products(s: Session, buyer_id: int, product_ids: Sequence[int]) -> set[int]:
    """The ids among ``product_ids`` the buyer already has access to."""
    return set(
        s.scalars(
            select(Grant.product_id).where(
                Grant.account_id == buyer_id, Grant.product_id.in_(list(product_ids))
            )
        )
    )


def keyed_order(s: Session, buyer_id: int, key: str, req_hash: str) -> Order | None:
    """The buyer's order under an idempotency key, if any; :class:`Conflict` when the
    key was used for a different request."""
    order = s.scalar(select(Order).where(Order.buyer_id == buyer_id, Order.idempotency_key == key))
    if order is not None and order.request_hash != req_hash:
        raise Conflict(
            f"idempotency key {key!r} was already used for a different purchase",
            hint="use a new key for a new purchase",
        )
    return order


_INSERT_ORDER = insert(Order.__table__).returning(Order.__table__.c.id)
_INSERT_ORDER_ID = insert(Order.__table__).inline()  # with an id drawn from the sequence
# inline(): no implicit RETURNING of the generated key, so they can be pipelined
_INSERT_ITEMS = insert(OrderItem.__table__).inline()
_INSERT_GRANTS = insert(Grant.__table__).inline()


def book_order(
    s: Session,
    buyer_id: int,
    lines: Sequence[SaleLine],
    *,
    key: str,
    req_hash: str,
    fee_bps: int,
    mechanism: str | None = None,
    order_id: int | None = None,
) -> OrderOut:
    """Record one sale in the caller's write transaction (the buyer's chain locked).

    Writes the order, its items and the grants of the lines with ``grant``, then books
    the money (:func:`~databazaar.market.settlement.settle_sale`): debits the buyer the
    sum of the lines' prices (:class:`PaymentError` if the balance is short, and the
    caller's transaction rolls back), credits each seller its price minus the market
    fee (bundles split among their contributors) and the fee account the fees.  The
    ledger memo is ``order <id>`` (plus `` (<mechanism>)`` for a sale under a pricing
    mechanism).  Each table is written by one statement (Core ``INSERT``, no ORM unit
    of work), and the answer is built from what was written, without reading it back.

    ``order_id``: an id the caller drew from the orders' sequence (PostgreSQL, see
    :data:`_BASKET_PG`); then the order, its items and grants go to the database in the
    same round trip as the ledger rows (for lines known to be neither bundles nor
    derivatives, whose revenue splits need the order row first).  Without it the order
    is inserted first and its generated id read back.
    """
    total = sum(line.price_minor for line in lines)
    fees = [market_fee(line.price_minor, fee_bps) for line in lines]
    txn_id = str(uuid.uuid4())
    now = utcnow()
    conn = s.connection()
    order_row = {
        "buyer_id": buyer_id,
        "idempotency_key": key,
        "request_hash": req_hash,
        "total_minor": total,
        "fee_minor": sum(fees),
        "txn_id": txn_id,
        "created_at": now,
    }
    plain = all(line.bundle is False and line.derivative is False for line in lines)
    deferred_order = order_id is not None and plain
    if order_id is None:
        order_id = driver_execute(conn, _INSERT_ORDER, order_row).scalar_one()
    elif not deferred_order:
        driver_execute(conn, _INSERT_ORDER_ID, {**order_row, "id": order_id})
    grants = [
        dict(account_id=buyer_id, product_id=line.product_id, order_id=order_id, created_at=now)
        for line in lines
        if line.grant
    ]
    rows = [
        {
            "order_id": order_id,
            "product_id": line.product_id,
            "version_id": line.version_id,
            "seller_id": line.seller_id,
            "price_minor": line.price_minor,
            "fee_minor": fee,
        }
        for line, fee in zip(lines, fees, strict=True)
    ]

    def write_order(c: Connection) -> None:
        # run inside the ledger's pipeline: no result is read
        if deferred_order:
            driver_execute(c, _INSERT_ORDER_ID, {**order_row, "id": order_id})
        driver_execute(c, _INSERT_ITEMS, rows)
        if grants:
            driver_execute(c, _INSERT_GRANTS, grants)

    memo = f"order {order_id}" + (f" ({mechanism})" if mechanism else "")
    items = [
        SaleItem(
            line.product_id, line.seller_id, line.price_minor, fee, line.bundle, line.derivative
        )
        for line, fee in zip(lines, fees, strict=True)
    ]
    settle_sale(s, buyer_id, order_id, items, memo, txn_id, with_writes=write_order)
    return OrderOut(
        id=order_id,
        buyer_id=buyer_id,
        idempotency_key=key,
        total_minor=total,
        fee_minor=sum(fees),
        txn_id=txn_id,
        created_at=now,
        items=[
            OrderItemOut(
                slug=line.slug,
                version=line.version_number,
                seller_id=line.seller_id,
                price_minor=line.price_minor,
                fee_minor=fee,
            )
            for line, fee in zip(lines, fees, strict=True)
        ],
        replayed=False,
    )


def run_booking(
    db: Database,
    attempt: Callable[[Session], T],
    replay: Callable[[Session], T | None],
) -> T:
    """Run ``attempt`` in a write transaction, retrying the races of concurrent sales.

    On ``IntegrityError`` (a concurrent request with the same idempotency key won)
    ``replay`` is asked for the winner's result; on ``OperationalError`` (deadlock,
    serialization failure, busy database) the attempt is retried with jittered
    exponential backoff.  After :data:`PURCHASE_RETRIES` attempts: :class:`Conflict`.
    """
    last_exc: Exception | None = None
    for attempt_no in range(PURCHASE_RETRIES):
        try:
            with db.write() as s:
                return attempt(s)
        except IntegrityError as exc:
            last_exc = exc
            with db.read() as s:
                done = replay(s)
            if done is not None:
                return done
        except OperationalError as exc:
            last_exc = exc
            time.sleep(random.uniform(0, 0.02 * 2**attempt_no))
    raise Conflict(
        "the purchase could not be completed because of concurrent updates",
        hint="retry with the same idempotency key",
    ) from last_exc


def order_out(s: Session, order: Order, *, replayed: bool) -> OrderOut:
    """The public view of an order with its items."""
    items = s.execute(
        select(OrderItem, Product.slug, ProductVersion.number)
        .join(Product, Product.id == OrderItem.product_id)
        .join(ProductVersion, ProductVersion.id == OrderItem.version_id)
        .where(OrderItem.order_id == order.id)
        .order_by(OrderItem.id)
    ).all()
    return OrderOut(
        id=order.id,
        buyer_id=order.buyer_id,
        idempotency_key=order.idempotency_key,
        total_minor=order.total_minor,
        fee_minor=order.fee_minor,
        txn_id=order.txn_id,
        created_at=created(order.created_at),
        items=[
            OrderItemOut(
                slug=slug,
                version=num,
                seller_id=it.seller_id,
                price_minor=it.price_minor,
                fee_minor=it.fee_minor,
            )
            for it, slug, num in items
        ],
        replayed=replayed,
    )


_TOKEN_BUYER = ledger.locking_head(TOKEN_ACCOUNT, Account.id)


def _request_hash(slugs: Sequence[str]) -> str:
    return hashlib.sha256(json.dumps(sorted(slugs)).encode()).hexdigest()


@dataclass(frozen=True)
class _PurchaseRequest:
    """A purchase request whose buyer, products and idempotency key were checked."""

    buyer_id: int
    slugs: list[str]
    key: str
    req_hash: str

    @classmethod
    def checked(
        cls, account: AccountOut, slugs: Sequence[str], idempotency_key: str
    ) -> _PurchaseRequest:
        """Check the buyer's role and the input (:class:`InvalidInput`, :class:`Forbidden`)."""
        access.require_role(Role(account.role), {Role.buyer}, "buy products")
        key = v.check_idempotency_key(idempotency_key)
        clean = checked_slugs(slugs)
        return cls(account.id, clean, key, _request_hash(clean))


class Orders(MarketBase):
    """Plain purchases and order reads of :class:`~databazaar.market.service.Market`."""

    def purchase(self, account: AccountOut, slugs: Sequence[str], idempotency_key: str) -> OrderOut:
        """Buy one or more products at their listed prices in one transaction.

        Replaying ``idempotency_key`` with the same products returns the original order
        (``replayed=True``) and moves no money; with different products it is a
        :class:`Conflict`.  Raises :class:`PaymentError` when the balance is short,
        :class:`Conflict` when a product is not on sale, is the buyer's own or is
        already granted, and :class:`NotFound` for an unknown slug.
        """
        request = _PurchaseRequest.checked(account, slugs, idempotency_key)
        return self._purchase(lambda _s: (request, None))

    def purchase_with_token(
        self, token: str, slugs: Sequence[str], idempotency_key: str
    ) -> OrderOut:
        """:meth:`purchase` by the account an API token belongs to, on one connection.

        The token is checked (:func:`~databazaar.market.accounts.token_account`) inside
        the purchase's own transaction, so an API purchase takes one pooled connection
        and one transaction instead of a read for the token and a write for the sale.
        Errors come in the same order as for ``authenticate`` then ``purchase``:
        :class:`Unauthorized`, then :class:`Forbidden` for a non-buyer, then bad input.
        """
        lookup, secret = access.split_token(token)  # malformed: refused before any I/O
        try:  # slugs that pass the input checks can be sent with the token's query
            ahead: list[str] | None = checked_slugs(slugs)
        except InvalidInput:
            ahead = None  # refused below, after the token and the role (in that order)

        def request(s: Session) -> tuple[_PurchaseRequest, list[Any] | None]:
            # One statement reads the token's account and locks the account's ledger
            # chain, which the purchase locks first anyway; a buyer whose chain has no
            # head yet (never paid) is read plainly and lock_chain creates the head.  On
            # PostgreSQL the basket query (its buyer named by the token) goes in the same
            # round trip, with the BEGIN: the database runs it after the lock is granted,
            # so it sees every earlier order of the buyer, as when it is sent after.  Its
            # rows are used only if the token turns out valid and its chain head existed.
            conn = s.connection()
            basket = None
            if ahead is not None and conn.dialect.name == "postgresql":
                with pipelined(s):
                    head = driver_execute(conn, _TOKEN_BUYER, {"lookup": lookup})
                    basket = send_basket(conn, ahead, lookup=lookup)
            else:
                head = driver_execute(conn, _TOKEN_BUYER, {"lookup": lookup})
            row = head.first()
            rows = None if basket is None else basket.all()
            if row is None:
                account = token_account(conn, token)
                rows = None  # read again once lock_chain holds the new head
            else:
                account = token_row_account(row, secret)
                ledger.adopt_head(s, account.id, row.last_seq, row.last_hash)
            return _PurchaseRequest.checked(account, slugs, idempotency_key), rows

        return self._purchase(request)

    def _purchase(
        self, request_in: Callable[[Session], tuple[_PurchaseRequest, list[Any] | None]]
    ) -> OrderOut:
        """Run a purchase whose checked request ``request_in`` gives inside the transaction
        (with the basket query's rows if it already ran them after locking the chain)."""
        req: _PurchaseRequest | None = None

        def replay(s: Session) -> OrderOut | None:
            if req is None:  # the request was never checked: there is nothing to replay
                return None
            order = keyed_order(s, req.buyer_id, req.key, req.req_hash)
            return None if order is None else order_out(s, order, replayed=True)

        def attempt(s: Session) -> OrderOut:
            nonlocal req
            req, rows = request_in(s)
            # This buyer's purchases queue here (only), so what follows sees every earlier
            # order of the buyer.  A replayed key is looked up only when the basket
            # cannot be sold (a replay's products are granted already, or no longer on
            # sale, ...), before anything is written: a new key costs no lookup, and a
            # key reused for another basket that can be sold fails on the orders' unique
            # key, which run_booking answers from the first order.
            ledger.lock_chain(s, req.buyer_id)
            try:
                lines, order_id = self._basket(s, req.buyer_id, req.slugs, rows)
            except (Conflict, NotFound):
                done = replay(s)
                if done is not None:
                    return done
                raise
            return book_order(
                s, req.buyer_id, lines, key=req.key, req_hash=req.req_hash,
                fee_bps=self.fee_bps, order_id=order_id,
            )  # fmt: skip

        return run_booking(self.db, attempt, replay)

    @staticmethod
    def _basket(
        s: Session, buyer_id: int, slugs: list[str], rows: list[Any] | None = None
    ) -> tuple[list[SaleLine], int | None]:
        # One query: the basket's products with their listings, their published versions,
        # the buyer's grant if it already has access, whether each is a bundle or a
        # derivative (and, on PostgreSQL, the new order's id); ``rows``: its rows when
        # the caller already ran it.
        conn = s.connection()
        postgres = conn.dialect.name == "postgresql"
        if rows is None and postgres:
            rows = send_basket(conn, slugs, buyer=buyer_id).all()
        elif rows is None:
            rows = list(conn.execute(BASKET, {"buyer": buyer_id, "slugs": slugs}).all())
        order_id = int(rows[0][-1]) if postgres and rows else None
        latest: dict[str, Row[Any]] = {}
        for row in rows:  # the newest published version of each product
            best = latest.get(row[1])
            if best is None or (row[5] is not None and (best[5] is None or row[6] > best[6])):
                latest[row[1]] = row
        lines: list[SaleLine] = []
        for slug in slugs:
            if slug not in latest:
                raise NotFound(f"product {slug!r} not found")
            pid, _, seller_id, price, active, ver_id, ver_no, granted, bundle, derived = latest[
                slug
            ][:10]
            if ver_id is None:
                gated = unsellable_reason(s, pid, slug)
                if gated is not None:
                    raise gated[0](gated[1])
                raise Conflict(f"product {slug!r} is not on sale")
            check_sellable(
                slug, seller_id, buyer_id, on_sale=price is not None and bool(active),
                granted=bool(granted),
            )  # fmt: skip
            line = SaleLine(pid, slug, seller_id, ver_id, ver_no, price)
            lines.append(replace(line, bundle=bundle is not None, derivative=derived is not None))
        return lines, order_id

    def orders_for(
        self, account: AccountOut, *, limit: int = 100, offset: int = 0
    ) -> list[OrderOut]:
        """The orders an account placed, newest first."""
        if not 1 <= limit <= 1000 or offset < 0:
            raise InvalidInput("limit must be 1-1000 and offset >= 0")
        with self.db.read() as s:
            orders = s.scalars(
                select(Order)
                .where(Order.buyer_id == account.id)
                .order_by(Order.id.desc())
                .limit(limit)
                .offset(offset)
            ).all()
            return [order_out(s, o, replayed=False) for o in orders]

    def get_order(self, account: AccountOut, order_id: int) -> OrderOut:
        """One order; only its buyer and admins may read it (others get NotFound)."""
        with self.db.read() as s:
            order = s.get(Order, order_id)
            if order is None or (order.buyer_id != account.id and account.role != Role.admin.value):
                raise NotFound(f"order {order_id} not found")
            return order_out(s, order, replayed=False)
