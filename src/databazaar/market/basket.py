"""The basket query of a purchase: one statement reads what an order needs.

For each product of the basket (by slug): its listing, its published versions, the
buyer's grant of it if any (at most one: ``uq_grants_pair``), whether it is a bundle or
an enriched derivative and, on PostgreSQL, the new order's id drawn from the orders'
sequence.  :mod:`databazaar.market.orders` turns the rows into sale lines; this module
holds the statements and the checks of the slugs a basket names.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    String,
    and_,
    any_,
    bindparam,
    func,
    select,
)
from sqlalchemy.dialects import postgresql

from databazaar.core.errors import InvalidInput
from databazaar.market import validation as v
from databazaar.market.db import DriverResult, driver_execute
from databazaar.market.econ_models import EconBundle, EconDerivative
from databazaar.market.models import (
    ApiToken,
    Grant,
    Listing,
    Order,
    Product,
    ProductVersion,
    VersionStatus,
)

MAX_BASKET = 50


def checked_slugs(slugs: Sequence[str]) -> list[str]:
    """The basket's slugs, checked (:class:`InvalidInput`)."""
    if isinstance(slugs, str) or not isinstance(slugs, Sequence):
        raise InvalidInput("products must be a list of slugs")
    clean = [v.check_slug(x) for x in slugs]
    if not clean:
        raise InvalidInput("the order has no products")
    if len(clean) > MAX_BASKET:
        raise InvalidInput(f"at most {MAX_BASKET} products per order")
    if len(set(clean)) != len(clean):
        raise InvalidInput("the order lists a product twice")
    return clean


def _basket_select(buyer: ColumnElement[int]) -> Select[Any]:
    """The basket query without its condition on the slugs: each product with its listing,
    its published versions, ``buyer``'s grant of it if any (at most one:
    ``uq_grants_pair``) and whether it is a bundle or a derivative."""
    return (
        select(
            Product.id,
            Product.slug,
            Product.seller_id,
            Listing.price_minor,
            Listing.active,
            ProductVersion.id,
            ProductVersion.number,
            Grant.id,
            EconBundle.product_id,
            EconDerivative.product_id,
        )
        .outerjoin(Listing, Listing.product_id == Product.id)
        .outerjoin(
            ProductVersion,
            and_(
                ProductVersion.product_id == Product.id,
                ProductVersion.status == VersionStatus.published,
            ),
        )
        .outerjoin(Grant, and_(Grant.account_id == buyer, Grant.product_id == Product.id))
        .outerjoin(EconBundle, EconBundle.product_id == Product.id)
        .outerjoin(EconDerivative, EconDerivative.product_id == Product.id)
    )


BASKET = _basket_select(bindparam("buyer")).where(
    Product.slug.in_(bindparam("slugs", expanding=True))
)


# PostgreSQL: the same query also draws the order's id from the orders' sequence (an
# uncorrelated scalar subquery, evaluated once), so book_order can send the order with
# the ledger rows in one round trip instead of inserting it first to learn its id.  The
# statements run on the driver's cursor (db.driver_execute): several slugs are one array
# parameter; a basket of one product (the usual case) compares the slug with one value,
# so psycopg prepares the statement and PostgreSQL keeps one generic plan for it (index
# lookups on the unique slug, product id and grant pair), where the array form, whose
# length a generic plan cannot know, was planned anew at every purchase (a quarter of
# the database's CPU per purchase).  The buyer is an account id (``buyer``) or the
# holder of an API token (``lookup``), so the basket can be read in the round trip that
# checks the token (Orders.purchase_with_token).
_NEXT_ORDER_ID = select(
    func.nextval(func.pg_get_serial_sequence(Order.__tablename__, "id"))
).scalar_subquery()
_TOKEN_HOLDER = (
    select(ApiToken.account_id).where(ApiToken.lookup == bindparam("lookup")).scalar_subquery()
)
_BASKETS_PG = {  # (buyer named by its token, one slug) -> statement
    (by_token, one): _basket_select(_TOKEN_HOLDER if by_token else bindparam("buyer"))
    .where(
        Product.slug == bindparam("slug")
        if one
        else Product.slug == any_(bindparam("slugs", type_=postgresql.ARRAY(String)))
    )
    .add_columns(_NEXT_ORDER_ID)
    for by_token in (False, True)
    for one in (False, True)
}


def send_basket(conn: Connection, slugs: list[str], **buyer: Any) -> DriverResult:
    """Run the PostgreSQL basket query for ``slugs`` and the buyer named by ``buyer=`` (an
    account id) or ``lookup=`` (an API token's lookup part); may run in a pipeline."""
    stmt = _BASKETS_PG["lookup" in buyer, len(slugs) == 1]
    params = {"slug": slugs[0]} if len(slugs) == 1 else {"slugs": slugs}
    return driver_execute(conn, stmt, params | buyer)
