"""The FastAPI application factory.

:func:`create_app` builds the app around one :class:`~databazaar.market.service.Market`:
JSON routes under ``/api`` (see :mod:`databazaar.server.api`), OpenAPI at ``/docs``, one
exception handler mapping :class:`~databazaar.core.errors.DatabazaarError` to its HTTP
status, and a body-size guard that refuses oversized requests with 413 before they are
buffered.  Further route groups (HTML pages) attach with ``app.include_router``; the
factory takes ``extra_routers`` for that.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from databazaar import __version__
from databazaar.core.config import Settings, get_settings
from databazaar.core.errors import DatabazaarError, Unauthorized
from databazaar.market.service import Market

MULTIPART_OVERHEAD = 256 * 1024


class _BodyTooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` with 413, counting streamed chunks too."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _reject(self, send: Send) -> None:
        body = json.dumps(
            {
                "error": "payload_too_large",
                "message": f"request body is larger than the limit of {self.max_bytes} bytes",
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_bytes:
                    await self._reject(send)
                    return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await self._reject(send)


def _error_response(exc: DatabazaarError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
    return JSONResponse(status_code=exc.http_status, content=exc.to_dict(), headers=headers)


def create_app(
    settings: Settings | None = None,
    *,
    market: Market | None = None,
    extra_routers: Iterable[APIRouter] = (),
) -> FastAPI:
    """Build the databazaar web app.

    ``settings`` default to :func:`databazaar.core.config.get_settings`; the store is
    migrated to the newest schema when the app is created.  Pass ``market`` to serve an
    existing :class:`Market` (tests do, to share one with the library).
    """
    from databazaar.server.api import api_router

    settings = settings or get_settings()
    market = market or Market.from_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        yield

    app = FastAPI(
        title="databazaar market API",
        version=__version__,
        description=(
            "An open data market for AI: publish data products, search the catalog, buy "
            "access on a hash-chained ledger and download through expiring signed links. "
            "Money is in integer minor units (cents)."
        ),
        lifespan=lifespan,
    )
    app.state.market = market
    app.state.settings = settings

    @app.exception_handler(DatabazaarError)
    async def _databazaar_error(_request: Request, exc: DatabazaarError) -> JSONResponse:
        return _error_response(exc)

    app.include_router(api_router, prefix="/api")
    for router in extra_routers:
        app.include_router(router)
    app.add_middleware(
        BodyLimitMiddleware, max_bytes=market.max_upload_bytes + MULTIPART_OVERHEAD
    )
    return app
