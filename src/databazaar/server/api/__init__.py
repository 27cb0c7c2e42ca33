"""JSON routes of the market API, mounted under ``/api`` by the app factory.

Route groups: accounts and tokens, catalog search, products and versions, orders,
downloads, administration, the listing gate (screening policy, review queue, audit), the
market economics (pricing mechanisms, value-aware search, revenue splits, auctions, DP
statistics) under ``/api/econ``, and mixture plans (which text products to buy for a
token and money budget) under ``/api/mixture``.
"""

from fastapi import APIRouter

from databazaar.server.api import (
    admin,
    auth,
    catalog,
    downloads,
    economics,
    gate,
    mixture,
    orders,
    products,
)
from databazaar.server.api.common import errors

# Every route may refuse a malformed request (400) or invalid parameters (422).
api_router = APIRouter(responses=errors(400, 422))
# Requests are matched against the routers in this order and no two share a path, so
# the busiest writes (purchases) come first: each router passed costs a purchase CPU.
api_router.include_router(orders.router)
api_router.include_router(auth.router)
api_router.include_router(catalog.router)
api_router.include_router(products.router)
api_router.include_router(downloads.router)
api_router.include_router(admin.router)
api_router.include_router(gate.router)
api_router.include_router(economics.router)
api_router.include_router(mixture.router)

__all__ = ["api_router"]
