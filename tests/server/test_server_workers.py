"""``databazaar serve --workers 2`` in a real subprocess on 127.0.0.1.

Two uvicorn worker processes serve the API *and* the web pages; the login throttle and
the catalog cache live in the store, so both workers agree: the failed-login bound holds
across workers, a victim still logs in from another address (a client bound to
127.0.0.2), a forged ``X-Forwarded-For`` changes nothing, and a catalog change made
through one worker invalidates the cached answer (ETag) of the other.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from apihelpers import PASSWORD, Api  # type: ignore[import-not-found]

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _workers_of(pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


_SUPERVISOR: dict[str, int] = {}  # the pid of the process the workers are children of


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("workers-home")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATABAZAAR_")}
    env.pop("DATABASE_URL", None)
    env.update(DATABAZAAR_HOME=str(home), DATABAZAAR_SECRET_KEY="workers-test-secret-0123")
    cmd = [sys.executable, "-c", "from databazaar.cli import app; app()", "serve", "--workers", "2",
           "--port", str(port), "--log-level", "warning", "--no-access-log"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    _SUPERVISOR["pid"] = proc.pid
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, "the server exited during start-up"
            assert time.monotonic() < deadline, "the server did not start within 120 s"
            time.sleep(0.3)
        # wait until both workers answer, then hand over
        while len(_workers_of(proc.pid)) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.3)
        yield base
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)


def _fresh(base: str, address: str = "127.0.0.1") -> httpx.Client:
    """A client on a new connection from ``address`` (any 127/8 address is loopback)."""
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=base, transport=transport, timeout=30)


def _login(base: str, username: str, password: str, address: str = "127.0.0.1",
           headers: dict[str, str] | None = None) -> httpx.Response:  # fmt: skip
    with _fresh(base, address) as c:  # a new connection each time: workers take turns
        return c.post(
            "/api/auth/token", json={"username": username, "password": password}, headers=headers
        )


def test_two_workers_serve_api_and_pages(server: str) -> None:
    with _fresh(server) as c:
        assert c.get("/api/health").json()["status"] == "ok"
        page = c.get("/", headers={"Accept": "text/html"})
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert "<form" in page.text
        assert c.get("/login").status_code == 200
        assert c.get("/static/style.css").status_code in (200, 404)


def test_login_throttle_holds_across_workers_and_spares_the_victim(server: str) -> None:
    with _fresh(server) as c:
        r = c.post("/api/accounts", json={"username": "victim", "password": PASSWORD})
        assert r.status_code == 201, r.text
    for _ in range(5):
        assert _login(server, "victim", "wrong-guess-1").status_code == 401
    # every further attempt from the guesser's address is refused, on whichever worker
    for _ in range(6):
        r = _login(server, "victim", PASSWORD)
        assert r.status_code == 429, r.text
        assert int(r.headers["Retry-After"]) >= 1
    # a forged X-Forwarded-For does not move the guesser to another address
    r = _login(server, "victim", PASSWORD, headers={"X-Forwarded-For": "127.0.0.9"})
    assert r.status_code == 429
    # the victim, from their own address, logs in
    r = _login(server, "victim", PASSWORD, address="127.0.0.2")
    assert r.status_code == 200 and r.json()["account"]["username"] == "victim"
    # from there, a success clears the count: 4 failures, success, 4 failures, success
    for _ in range(2):
        for _ in range(4):
            assert _login(server, "victim", "wrong-guess-1", address="127.0.0.2").status_code == 401
        assert _login(server, "victim", PASSWORD, address="127.0.0.2").status_code == 200


def test_catalog_cache_is_coherent_across_workers(server: str) -> None:
    with _fresh(server, "127.0.0.3") as c:
        c.post("/api/accounts", json={"username": "seller-w", "password": PASSWORD,
                                      "role": "seller"})  # fmt: skip
        token = c.post("/api/auth/token", json={"username": "seller-w", "password": PASSWORD})
        seller = {"Authorization": f"Bearer {token.json()['token']}"}
        first = c.get("/api/catalog")
        etag = first.headers["etag"]
        assert first.headers["cache-control"] == "no-cache"
    # revalidation answers 304 on every worker while nothing changed
    for _ in range(4):
        with _fresh(server) as c:
            r = c.get("/api/catalog", headers={"If-None-Match": etag})
            assert r.status_code == 304 and r.content == b"" and r.headers["etag"] == etag
    with _fresh(server, "127.0.0.3") as c:
        Api(c, None, "").product(seller, "fresh-data", 700)  # via whichever worker
    for _ in range(4):
        with _fresh(server) as c:
            r = c.get("/api/catalog", headers={"If-None-Match": etag})
            assert r.status_code == 200 and r.headers["etag"] != etag
            assert [h["slug"] for h in r.json()["hits"]] == ["fresh-data"]
            detail = c.get("/api/products/fresh-data")
            assert detail.status_code == 200 and detail.json()["listing"]["price_minor"] == 700


def test_the_served_app_freezes_its_start_up_objects(tmp_path, monkeypatch) -> None:
    import gc

    from databazaar.core.config import get_settings
    from databazaar.server.app import create_served_app

    monkeypatch.setenv("DATABAZAAR_HOME", str(tmp_path))
    monkeypatch.setenv("DATABAZAAR_DATABASE_URL", f"sqlite:///{tmp_path / 'served.db'}")
    get_settings.cache_clear()
    gc.unfreeze()
    try:
        app = create_served_app()
        assert gc.get_freeze_count() > 10_000  # the app, its models and libraries
        assert "/api/orders" in app.openapi()["paths"]
    finally:
        gc.unfreeze()
        get_settings.cache_clear()


def _sockets_on(pid: int, port: int, state: str) -> int:
    """How many TCP sockets on local ``port`` in ``state`` (``01`` established, ``0A``
    listening) process ``pid`` holds."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == state and fields[9] in inodes:
                count += 1
    return count


def test_connections_opened_at_once_are_spread_over_both_workers(server: str) -> None:
    # A load generator opens its keep-alive connections together; with one shared
    # listening socket the first worker to wake accepted all of them.  Each worker now
    # listens on its own SO_REUSEPORT socket, so both get a share.
    port = int(server.rsplit(":", 1)[1])
    deadline = time.monotonic() + 60
    while True:  # the workers that listen (the supervisor's other child is multiprocessing's)
        workers = [w for w in _workers_of(_SUPERVISOR["pid"]) if _sockets_on(w, port, "0A")]
        if len(workers) == 2:
            break
        assert time.monotonic() < deadline, f"listening workers: {workers}"
        time.sleep(0.2)
    clients = []
    for _ in range(16):  # all connects in flight at once, as a load generator does
        c = socket.socket()
        c.setblocking(False)
        c.connect_ex(("127.0.0.1", port))
        clients.append(c)
    try:
        for c in clients:
            c.setblocking(True)
            c.settimeout(30)
        for c in clients:
            c.sendall(f"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        for c in clients:
            assert c.recv(65536).startswith(b"HTTP/1.1 200")
        held = [_sockets_on(w, port, "01") for w in workers]
    finally:
        for c in clients:
            c.close()
    assert sum(held) == 16, held
    # 16 connections hashed over 2 sockets: fewer than 2 on one worker has odds ~3e-4
    assert min(held) >= 2, f"connections per worker: {held}"
