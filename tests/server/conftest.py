"""HTTP fixtures: the real FastAPI app over a real store, driven through TestClient.

``api`` is parametrized over SQLite and PostgreSQL (fresh schema each); it yields an
:class:`apihelpers.Api` wrapping the client with HTTP-only helpers.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

# The helpers module sits next to this file; make it importable under any import mode.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from apihelpers import PASSWORD, Api, build_market  # type: ignore[import-not-found]

from databazaar.core.config import Settings
from databazaar.market.db import Database
from databazaar.server.app import create_app


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Api]:
    if request.param == "sqlite":
        db = Database.from_url(f"sqlite:///{tmp_path / 'api.db'}")
    else:
        schema = request.getfixturevalue("postgres_schema")
        db = Database.from_url(schema.url, connect_args=schema.connect_args)
    market = build_market(db, tmp_path / "home")
    market.create_account("root-admin", PASSWORD, "admin")
    admin_token = market.login("root-admin", PASSWORD).token
    app = create_app(Settings(home=tmp_path / "home"), market=market)
    with TestClient(app) as client:
        yield Api(client, market, admin_token)
    db.dispose()
