"""Property-based API testing: schemathesis generates requests from our OpenAPI schema.

Every operation is called with generated valid and invalid data, anonymously and as a
logged-in buyer, against the real app over a seeded store on SQLite and on PostgreSQL
(where a NUL character in text would otherwise surface as a database error).  The API must never
answer 5xx, every response must match the documented status codes, content types, headers
and schemas, and every request the schema calls invalid must be refused.
Examples per operation are bounded so the run stays well under two minutes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from apihelpers import PASSWORD, build_market, table_csv  # type: ignore[import-not-found]
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from databazaar.core.config import Settings
from databazaar.market.db import Database
from databazaar.server.app import create_app

_STATE: dict[str, object] = {}


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def api_schema(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """The app's OpenAPI schema over a seeded store (SQLite, or a fresh PostgreSQL schema)."""
    import io
    import uuid

    from sqlalchemy import create_engine, text

    home: Path = tmp_path_factory.mktemp("schemathesis")
    pg_schema = None
    if request.param == "sqlite":
        db = Database.from_url(f"sqlite:///{home / 'st.db'}")
    else:
        pg_url = request.getfixturevalue("postgres_url")
        pg_schema = f"st_{uuid.uuid4().hex[:10]}"
        admin = create_engine(pg_url)
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{pg_schema}"'))
        db = Database.from_url(pg_url, connect_args={"options": f"-csearch_path={pg_schema}"})
    market = build_market(db, home)
    seller = market.create_account("seller-st", PASSWORD, "seller")
    buyer = market.create_account("buyer-st", PASSWORD, "buyer")
    market.create_product(seller, "sample", "Sample product")
    market.add_version(
        seller, "sample", io.BytesIO(table_csv()), "t.csv", {"license": "MIT", "task": "t"}
    )
    market.publish(seller, "sample", 1)
    market.set_listing(seller, "sample", 100)
    market.deposit(buyer.id, 10_000)
    _STATE["token"] = market.login("buyer-st", PASSWORD).token
    app = create_app(Settings(home=home), market=market)
    yield schemathesis.openapi.from_asgi("/openapi.json", app)
    db.dispose()
    if pg_schema is not None:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{pg_schema}" CASCADE'))
        admin.dispose()


#: Beyond "no 5xx": every status code, content type, header and body must be the one the
#: schema documents, and data the schema calls invalid (a string or a float for an
#: integer, a short password, a username off the pattern...) must be refused with a 4xx.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


def _fuzz(
    api_schema, mode: GenerationMode, max_examples: int, headers: dict[str, str]
) -> tuple[int, list[str]]:
    """Run every operation's generated cases through the checks.

    Returns how many calls were made and one message per operation that failed.
    """
    calls = 0
    failures: list[str] = []
    for result in api_schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=max_examples,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def run(case) -> None:
            nonlocal calls
            calls += 1
            case.call_and_validate(headers=headers, checks=CHECKS)

        try:
            run()
        except Unsatisfiable:
            # no way to make an invalid request (e.g. GET /api/health has no inputs)
            assert mode == GenerationMode.NEGATIVE, operation.label
        except (Exception, BaseExceptionGroup) as exc:  # a failed check: fuzz the others too
            failures.append(f"{operation.label}: {str(exc)[:600]}")
    return calls, failures


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("logged_in", [False, True], ids=["anonymous", "buyer"])
def test_api_never_answers_5xx(api_schema, mode, logged_in: bool) -> None:
    headers = {"Authorization": f"Bearer {_STATE['token']}"} if logged_in else {}
    examples = 20 if mode == GenerationMode.POSITIVE else 10
    calls, failures = _fuzz(api_schema, mode, max_examples=examples, headers=headers)
    assert not failures, "\n\n".join(failures)
    assert calls >= 17
    print(f"schemathesis {mode.value} {'buyer' if logged_in else 'anonymous'}: {calls} calls")
