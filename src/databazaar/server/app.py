"""The FastAPI application factory.

:func:`create_app` builds the app around one :class:`~databazaar.market.service.Market`:
JSON routes under ``/api`` (see :mod:`databazaar.server.api`), OpenAPI at ``/docs``, and
the error mapping in one place: a :class:`~databazaar.core.errors.DatabazaarError`
answers with its ``http_status`` and ``to_dict()`` body; FastAPI's own request
validation errors and HTTP errors (unknown route, wrong method, oversized body) answer
with the same ``{"error", "message", "hint"}`` shape.  Request bodies larger than the
upload limit (plus multipart overhead) are refused with 413 while they stream in.
The web pages (:mod:`databazaar.server.web`) are mounted too, so
``uvicorn --factory databazaar.server.app:create_app`` serves API and pages; public
catalog reads are answered from a validated cache (:mod:`databazaar.server.cache`).
:func:`serve` runs the app with uvicorn and any number of worker processes
(:func:`create_served_app`: the app with its start-up objects frozen out of the
garbage collector).
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from databazaar import __version__
from databazaar.core.config import Settings, get_settings
from databazaar.core.errors import (
    DatabazaarError,
    InvalidInput,
    TooManyRequests,
    Unauthorized,
)
from databazaar.market.service import Market
from databazaar.server.cache import CatalogCache, CatalogGeneration

MULTIPART_OVERHEAD = 256 * 1024

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    429: "too_many_requests",
}


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` with a 413.

    A declared ``Content-Length`` over the limit is refused before the body is read;
    a body streamed without one is counted as it arrives and refused once it passes
    the limit (the route's handler sees an ``HTTPException(413)``).  API clients get the
    JSON error at once; a browser posting a page form (``Accept: text/html``, outside
    ``/api``) gets the route's ``HTTPException(413)`` on its first read of the body, so
    the pages answer with their HTML error page.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _message(self) -> str:
        return f"request body is larger than the limit of {self.max_bytes} bytes"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers", [])
        for name, value in headers:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.max_bytes and _wants_page(scope, headers):
                    await self.app(scope, self._refusing_receive, send)
                    return
                if declared > self.max_bytes or declared < 0:
                    status = 413 if declared > self.max_bytes else 400
                    response = JSONResponse(
                        status_code=status,
                        content={
                            "error": _HTTP_CODES[status],
                            "message": self._message()
                            if status == 413
                            else "invalid Content-Length header",
                        },
                        headers={"Connection": "close"},
                    )
                    await response(scope, receive, send)
                    return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise StarletteHTTPException(413, self._message())
            return message

        await self.app(scope, limited_receive, send)

    async def _refusing_receive(self) -> Message:
        raise StarletteHTTPException(413, self._message())


def _wants_page(scope: Scope, headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """A browser asking for an HTML page (not the JSON API)."""
    if str(scope.get("path", "")).startswith("/api/"):
        return False
    return any(name == b"accept" and b"text/html" in value for name, value in headers)


def error_response(exc: DatabazaarError) -> JSONResponse:
    """The JSON response for a databazaar error (status from the error class)."""
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
    if isinstance(exc, TooManyRequests):
        headers = {"Retry-After": str(exc.retry_after)}
    return JSONResponse(status_code=exc.http_status, content=exc.to_dict(), headers=headers)


def _describe_validation(errors: Iterable[Any]) -> str:
    parts = []
    for err in list(errors)[:5]:
        loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body") or "request"
        parts.append(f"{loc}: {err.get('msg', 'invalid value')}")
    return "; ".join(parts) or "the request is invalid"


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    generation = getattr(app.state, "catalog_generation", None)
    if generation is not None:
        generation.close()


def create_app(
    settings: Settings | None = None,
    *,
    market: Market | None = None,
    extra_routers: Iterable[APIRouter] = (),
    web: bool = True,
    catalog_cache: bool = True,
) -> FastAPI:
    """Build the databazaar web app: the JSON API, and the web pages unless ``web=False``.

    ``settings`` default to :func:`databazaar.core.config.get_settings`; the store is
    migrated to the newest schema when the app is created.  Pass ``market`` to serve an
    existing :class:`Market` (tests do, to share one with the library).  Called without
    arguments it is the factory uvicorn's worker processes use (see :func:`serve`).
    """
    from databazaar.server.api import api_router

    settings = settings or get_settings()
    market = market or Market.from_settings(settings)

    app = FastAPI(
        lifespan=_lifespan,
        docs_url=None,  # served from local files by databazaar.server.docs (works offline)
        redoc_url=None,
        title="databazaar market API",
        version=__version__,
        description=(
            "An open data market for AI: publish data products, search the catalog, buy "
            "access on a hash-chained ledger and download through expiring signed links. "
            "Money is in integer minor units (cents). Authenticate with "
            "`Authorization: Bearer <token>` from `POST /api/auth/token`."
        ),
    )
    app.state.market = market
    app.state.settings = settings
    app.state.purchase_slots = anyio.Semaphore(settings.purchase_concurrency)

    @app.exception_handler(DatabazaarError)
    async def _databazaar_error(_request: Request, exc: DatabazaarError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(
            status_code=422,
            content={
                "error": "invalid_input",
                "message": _describe_validation(exc.errors()),
                "hint": "see the request schema at /docs",
            },
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "error" if exc.status_code >= 500 else "http")
        message = str(exc.detail)
        return JSONResponse(
            status_code=exc.status_code,
            content={"error": code, "message": message},
            headers=getattr(exc, "headers", None),
        )

    app.include_router(api_router, prefix="/api")
    from databazaar.server.docs import mount_docs

    mount_docs(app)
    for router in extra_routers:
        app.include_router(router)
    if web:
        from databazaar.server.web import mount_web

        mount_web(app)
    if catalog_cache:
        app.state.catalog_generation = CatalogGeneration(market.db.engine)
        app.add_middleware(CatalogCache, generation=app.state.catalog_generation)
    app.add_middleware(BodyLimitMiddleware, max_bytes=market.max_upload_bytes + MULTIPART_OVERHEAD)
    return app


def create_served_app() -> FastAPI:
    """The app as :func:`serve` runs it in each worker process.

    :func:`create_app`, then every object built so far (the app, its routes and models,
    the imported libraries: about 190,000 objects) is moved out of the cyclic garbage
    collector's reach with :func:`gc.freeze`.  Those objects live as long as the
    process anyway, and a full collection scanning them took 100-300 ms, during which
    the worker answered nothing: the slowest requests of a run were such pauses.
    Objects created while serving are collected as usual.
    """
    app = create_app()
    gc.collect()
    gc.freeze()
    return app


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    workers: int = 1,
    log_level: str = "info",
    access_log: bool = True,
    settings: Settings | None = None,
) -> None:
    """Serve API and pages with uvicorn in ``workers`` processes until interrupted.

    The store (``DATABASE_URL``, else the SQLite file in ``DATABAZAAR_HOME``) is migrated
    once here, before the workers start; each worker then builds the app with
    :func:`create_served_app` from the same environment.  Client addresses (used by the login
    throttle) are taken from ``X-Forwarded-For`` only when the connection comes from a
    proxy listed in ``DATABAZAAR_TRUSTED_PROXIES``.
    """
    from databazaar.market.db import Database, upgrade

    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= 64:
        raise InvalidInput("workers must be an integer from 1 to 64")
    settings = settings or get_settings()
    db = Database.from_url(settings.resolved_database_url)
    try:
        upgrade(db.engine)
    finally:
        db.dispose()
    run_uvicorn(
        "databazaar.server.app:create_served_app",
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        access_log=access_log,
        trusted_proxies=settings.trusted_proxies.strip(),
    )


class _WorkerSocket:
    """Stands for a listening socket that each worker process opens for itself.

    With one socket shared by all workers, the worker whose event loop wakes first
    accepts every waiting connection (asyncio accepts in a loop), so a client that opens
    its keep-alive connections at once lands them all on one worker and the others idle
    (seen here: 32 clients, 2 workers, one worker served every purchase).  Pickled into a
    worker, this object becomes a socket bound there with ``SO_REUSEPORT``: each worker
    has its own accept queue and the kernel spreads new connections over them.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port

    def __reduce__(self) -> tuple[Any, tuple[str, int]]:
        return (_listen_reuse_port, (self.host, self.port))


def _listen_reuse_port(host: str, port: int, *, listen: bool = True) -> Any:
    """A TCP socket bound to ``host:port`` with ``SO_REUSEPORT`` and ``TCP_NODELAY``,
    listening unless ``listen`` is false."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    if listen:
        sock.listen(2048)
    return sock


def run_uvicorn(
    factory: str,
    *,
    host: str,
    port: int,
    workers: int,
    log_level: str = "info",
    access_log: bool = True,
    trusted_proxies: str = "",
) -> None:
    """Run the app factory named ``module:function`` with uvicorn in ``workers`` processes.

    Sockets are opened here with ``TCP_NODELAY``: the socket uvicorn opens for several
    workers has protocol number 0, so asyncio does not set ``TCP_NODELAY`` on the
    connections it accepts, and an answer written in two parts (head, body) then waits
    about 40 ms for the client's delayed ACK (Linux copies the option from the listening
    socket to every accepted one).  With several workers on a system with
    ``SO_REUSEPORT`` (Linux), each worker listens on its own socket
    (:class:`_WorkerSocket`), so connections are spread over the workers; the port is
    checked (and, for port 0, chosen) here first.  ``X-Forwarded-For`` is believed
    only from ``trusted_proxies`` (comma-separated; empty: never).
    """
    import socket

    import uvicorn
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config(
        factory,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        access_log=access_log,
        proxy_headers=bool(trusted_proxies),
        forwarded_allow_ips=trusted_proxies or None,
    )
    if workers > 1 and hasattr(socket, "SO_REUSEPORT"):
        probe = _listen_reuse_port(host, port, listen=False)  # fails if the port is taken
        port = probe.getsockname()[1]
        probe.close()
        config.port = port
        Multiprocess(config, sockets=[_WorkerSocket(host, port)]).run()  # type: ignore[list-item]
        return
    sock = config.bind_socket()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if workers > 1:
        Multiprocess(config, sockets=[sock]).run()
    else:
        uvicorn.Server(config).run(sockets=[sock])
