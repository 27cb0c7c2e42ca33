"""Fixtures for the web pages: an app on a temp store, a live server, chromium.

``web_app`` is the real app (``create_app`` with the pages mounted) on a fresh SQLite
store in a temp data home and on a fresh PostgreSQL schema (parametrized), for
in-process tests with Starlette's ``TestClient``.
``live_server`` serves such an app with uvicorn on 127.0.0.1 and a free port in a
background thread (``DATABAZAAR_HOME`` points at its temp home while it runs).
``browser`` is Debian's chromium driven by Playwright (never a downloaded browser);
browser tests carry the ``browser`` marker and skip when chromium or Playwright is
missing, except under ``CI=true`` where they fail.  One chromium serves the whole
session (each test opens its own contexts).
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher

from databazaar.core.config import Settings
from databazaar.market.service import Market

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
SECRET = "web-test-secret-key-0123456789"
# Real Argon2id with cheap parameters, so sign-ups do not dominate the suite's time.
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def _in_ci() -> bool:
    from ci_rules import in_ci  # type: ignore[import-not-found]

    return bool(in_ci())


def build_app(home: Path, postgres: Any = None) -> Any:
    """The real app with its pages, on a fresh SQLite store under ``home``, or on a
    ``postgres_schema`` (PostgreSQL) when given."""
    from databazaar.server.app import create_app
    from databazaar.server.web import mount_web

    url = f"sqlite:///{home / 'db.sqlite'}" if postgres is None else postgres.url
    settings = Settings(home=home, secret_key=SECRET, database_url=url)
    engine_kwargs = None if postgres is None else {"connect_args": postgres.connect_args}
    market = Market.from_settings(
        settings, engine_kwargs=engine_kwargs, password_hasher=FAST_HASHER
    )
    app = create_app(settings, market=market)
    mount_web(app)  # a no-op when create_app already mounts the pages
    return app


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def web_app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """The app on SQLite and on PostgreSQL (a fresh schema): every in-process page test
    runs on both stores."""
    postgres = request.getfixturevalue("postgres_schema") if request.param != "sqlite" else None
    app = build_app(tmp_path / "home", postgres)
    yield app
    app.state.market.close()


@pytest.fixture
def client(web_app: Any) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    with TestClient(web_app) as c:
        yield c


def _csrf_of(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, "page has no form with a CSRF token"
    return match.group(1)


@pytest.fixture
def csrf_of() -> Any:
    """``csrf_of(html)``: the CSRF token embedded in a page's forms."""
    return _csrf_of


@dataclass
class LiveServer:
    url: str
    app: Any
    home: Path

    @property
    def market(self) -> Market:
        return self.app.state.market


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    import uvicorn

    home = tmp_path_factory.mktemp("web-home")
    old_home = os.environ.get("DATABAZAAR_HOME")
    os.environ["DATABAZAAR_HOME"] = str(home)
    app = build_app(home)
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, name="uvicorn-web-tests", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    try:
        yield LiveServer(url=f"http://127.0.0.1:{port}", app=app, home=home)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        app.state.market.close()
        if old_home is None:
            os.environ.pop("DATABAZAAR_HOME", None)
        else:
            os.environ["DATABAZAAR_HOME"] = old_home


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    reason = None
    if not Path(CHROMIUM).exists():
        reason = f"Debian's chromium is not installed at {CHROMIUM} (apt-get install chromium)"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = "Playwright for Python is not installed"
    if reason is not None:
        if _in_ci():
            pytest.fail(reason + " (CI=true: browser tests must run)", pytrace=False)
        pytest.skip(reason)
    pw = sync_playwright().start()
    chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    try:
        yield chromium
    finally:
        chromium.close()
        pw.stop()


def _screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    width = page.viewport_size["width"] if page.viewport_size else 0
    kind = "phone" if width and width < 600 else "desktop"
    path = ARTIFACTS / f"{name}-{kind}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture
def screenshot() -> Any:
    """``screenshot(page, name)`` saves ``test-artifacts/screenshots/<name>-<width>.png``."""
    return _screenshot
