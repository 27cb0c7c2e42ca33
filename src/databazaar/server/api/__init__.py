"""JSON routes of the market API, mounted under ``/api`` by the app factory."""

from fastapi import APIRouter

from databazaar.server.api import admin, auth, catalog, downloads, orders, products

api_router = APIRouter()
api_router.include_router(auth.router)
api_router.include_router(catalog.router)
api_router.include_router(products.router)
api_router.include_router(orders.router)
api_router.include_router(downloads.router)
api_router.include_router(admin.router)

__all__ = ["api_router"]
