"""Validated caching of public catalog reads, with ETags and conditional GET (304).

Anonymous ``GET /api/catalog`` and ``GET /api/products/{slug}`` answers depend only on
the URL and on the catalog's content.  The store keeps a *catalog generation*
(``catalog_state.generation``) that database triggers bump on every change to a
product, version, tag or listing, whatever process or tool made it.  So a server
process may keep the bytes of such an answer and send them again for as long as the
generation is unchanged; checking it is one primary-key read, much cheaper than the
queries and serialisation behind the answer.  Every worker checks the generation on
every request, so no worker serves a stale catalog after a change committed elsewhere.

Answers carry ``ETag`` (a hash of the body) and ``Cache-Control: no-cache``: clients
may keep them but must revalidate, and a request whose ``If-None-Match`` names the
current ETag gets ``304 Not Modified`` without a body.  Requests with an
``Authorization`` header (an owner may see drafts) and answers other than 200 are never
cached.  Entries are kept in least-recently-used order, at most ``max_entries``.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

CACHEABLE = re.compile(r"^/api/(?:catalog|products/[a-z0-9-]{1,64})$")
GENERATION_SQL = "SELECT generation FROM catalog_state WHERE id = 1"


@dataclass(frozen=True)
class _Entry:
    generation: int
    etag: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes


class CatalogGeneration:
    """Reads the store's catalog generation on a connection kept for the purpose.

    The connection comes from the engine's pool (so it has the engine's settings) and is
    in autocommit mode, so each read sees the latest commit: one statement, no pool
    checkout or transaction per request.  It is used from the event loop's thread only
    (the middleware is async), so it is never shared between threads.  After any error
    it is dropped and the next read opens a new one; :meth:`close` returns it.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._conn: Any = None

    def read(self) -> int | None:
        """The generation, or ``None`` when it cannot be read (the cache is bypassed)."""
        try:
            if self._conn is None:
                conn = self.engine.raw_connection()
                if self.engine.dialect.name == "postgresql":
                    conn.driver_connection.autocommit = True  # type: ignore[union-attr]
                self._conn = conn
            cur = self._conn.cursor()
            try:
                cur.execute(GENERATION_SQL)
                row = cur.fetchone()
            finally:
                cur.close()
            return int(row[0])
        except Exception as exc:  # an unmigrated store or a database hiccup
            log.warning("catalog cache bypassed: %s", exc.__class__.__name__)
            self.close()
            return None

    def close(self) -> None:
        """Give the connection up (it is opened again when needed)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.invalidate()
            except Exception:
                log.debug("closing the catalog generation connection failed", exc_info=True)


class CatalogCache:
    """ASGI middleware serving cached public catalog answers (see the module docstring)."""

    def __init__(
        self, app: ASGIApp, generation: CatalogGeneration, max_entries: int = 4096
    ) -> None:
        self.app = app
        self.generation = generation
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, bytes], _Entry] = OrderedDict()
        self.hits = 0
        self.misses = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "GET"
            or not CACHEABLE.match(scope["path"])
            or any(name == b"authorization" for name, _ in scope["headers"])
        ):
            await self.app(scope, receive, send)
            return
        generation = self.generation.read()
        if generation is None:
            await self.app(scope, receive, send)
            return
        key = (scope["path"], scope["query_string"])
        entry = self._entries.get(key)
        if entry is not None and entry.generation == generation:
            self.hits += 1
            self._entries.move_to_end(key)
        else:
            self.misses += 1
            entry = await self._fill(scope, receive, send, key, generation)
            if entry is None:
                return
        await self._answer(scope, send, entry)

    async def _fill(
        self, scope: Scope, receive: Receive, send: Send, key: tuple[str, bytes], generation: int
    ) -> _Entry | None:
        """Run the route; keep and return a 200 answer, pass any other one through."""
        start: Message | None = None
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, capture)
        assert start is not None
        body = b"".join(chunks)
        if start["status"] != 200:
            await send(start)
            await send({"type": "http.response.body", "body": body})
            return None
        etag = b'"' + hashlib.blake2b(body, digest_size=12).hexdigest().encode() + b'"'
        headers = [
            (k, v) for k, v in start.get("headers", []) if k not in (b"etag", b"cache-control")
        ]
        entry = _Entry(generation, etag, headers, body)
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return entry

    @staticmethod
    async def _answer(scope: Scope, send: Send, entry: _Entry) -> None:
        validators = [(b"etag", entry.etag), (b"cache-control", b"no-cache")]
        tags = {
            tag.strip().removeprefix(b"W/")
            for name, value in scope["headers"]
            if name == b"if-none-match"
            for tag in value.split(b",")
        }
        if entry.etag in tags or b"*" in tags:
            await send({"type": "http.response.start", "status": 304, "headers": validators})
            await send({"type": "http.response.body", "body": b""})
            return
        await send(
            {"type": "http.response.start", "status": 200, "headers": entry.headers + validators}
        )
        await send({"type": "http.response.body", "body": entry.body})
