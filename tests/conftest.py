"""Fixtures shared by every test package.

PostgreSQL
----------
``postgres_url`` is the URL of the test server: ``DATABAZAAR_TEST_POSTGRES_URL`` if set,
else ``postgresql+psycopg://postgres@127.0.0.1:5432/test``.  When the server cannot be
reached the PostgreSQL tests skip, except under ``CI=true`` where they fail: CI must run
them.  ``postgres_schema`` gives each test a fresh, uniquely named schema (dropped
afterwards) and the ``connect_args`` that put it first on the ``search_path``, so tests
never see each other's tables.

Market store
------------
``store`` is a freshly migrated market database, parametrized over SQLite (a file under
``tmp_path``) and PostgreSQL (a ``postgres_schema``; those cases carry the ``postgres``
marker); the market and economics tests build on it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _psycopg_url(url: str) -> str:
    from databazaar.core.config import normalize_url

    return normalize_url(url)


def _in_ci() -> bool:
    from ci_rules import in_ci  # type: ignore[import-not-found]

    return bool(in_ci())


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The PostgreSQL test server's URL; skips (fails under CI=true) if unreachable."""
    url = _psycopg_url(os.environ.get("DATABAZAAR_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL))
    from sqlalchemy import create_engine, text

    engine = create_engine(url, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # any driver/connection failure means "unreachable"
        message = f"PostgreSQL test server unreachable at {url}: {str(exc).splitlines()[0]}"
        if _in_ci():
            pytest.fail(message + " (CI=true: PostgreSQL tests must run)", pytrace=False)
        pytest.skip(message)
    finally:
        engine.dispose()
    return url


@dataclass
class PostgresSchema:
    """A throw-away schema on the test server."""

    url: str
    name: str
    connect_args: dict[str, Any] = field(default_factory=dict)


@pytest.fixture
def postgres_schema(postgres_url: str) -> Iterator[PostgresSchema]:
    """A fresh schema for one test, first on the ``search_path`` via ``connect_args``."""
    from sqlalchemy import create_engine, text

    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{name}"'))
    try:
        yield PostgresSchema(
            url=postgres_url, name=name, connect_args={"options": f"-csearch_path={name}"}
        )
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A freshly migrated market store on SQLite (a file) or PostgreSQL (a fresh schema).

    The PostgreSQL case carries the ``postgres`` marker and uses ``postgres_schema``.
    """
    from databazaar.market.db import Database, upgrade

    if request.param == "sqlite":
        db = Database.from_url(f"sqlite:///{tmp_path / 'market.db'}")
    else:
        schema = request.getfixturevalue("postgres_schema")
        db = Database.from_url(schema.url, connect_args=schema.connect_args)
    upgrade(db.engine)
    try:
        yield db
    finally:
        db.dispose()


@pytest.fixture
def http_subprocess() -> Iterator[Any]:
    """``start(code, probe_url, env=None) -> (proc, response)``: run ``python -c code`` (a
    server) and poll ``probe_url`` for up to 60 s; every process is stopped at teardown."""
    import subprocess
    import sys
    import time

    import httpx

    procs: list[subprocess.Popen[str]] = []

    def start(code: str, probe_url: str, env: dict[str, str] | None = None) -> Any:
        proc = subprocess.Popen(
            [sys.executable, "-c", code],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        deadline = time.monotonic() + 60
        while True:
            try:
                return proc, httpx.get(probe_url, timeout=2)
            except httpx.TransportError:
                if proc.poll() is not None:
                    raise AssertionError(f"server exited: {proc.stderr.read()}") from None
                assert time.monotonic() < deadline, "server did not start in 60 s"
                time.sleep(0.2)

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=30)


# ------------------------------------------------------------------------- LM zoo
@pytest.fixture(scope="session")
def tiny_zoo(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The zoo's tiny base model and assistant (``ZooConfig.small()``), built once.

    Built by :func:`databazaar.lm.zoo.build_zoo` and cached by config hash in
    ``DATABAZAAR_TEST_ZOO_DIR`` if set, else in pytest's cache folder
    (``.pytest_cache/d/databazaar-zoo``), else next to pytest's temporary folders, so
    later sessions (and the tests of later LM issues) reuse the same build.
    """
    from databazaar.lm.zoo import ZooConfig, build_zoo

    root = os.environ.get("DATABAZAAR_TEST_ZOO_DIR")
    if not root and getattr(request.config, "cache", None) is not None:
        root = str(request.config.cache.mkdir("databazaar-zoo"))
    if not root:
        root = str(tmp_path_factory.getbasetemp().parent / "databazaar-zoo")
    return build_zoo(ZooConfig.small(), out=Path(root))


# ------------------------------------------------------------------ AIR screener
@pytest.fixture(scope="session")
def air_dir() -> Path:
    """The shared AIR-Bench 2024 files (taxonomy, judge prompts, 80 judged samples):
    ``$DATABAZAAR_AIR_BENCH_DIR`` if set, else ``../shared/data/air-bench-2024`` beside the
    checkout (:func:`databazaar.safety.taxonomy.default_data_dir`, as the package reads it);
    the tests that need them fail without them."""
    from databazaar.safety.taxonomy import default_data_dir

    folder = default_data_dir()
    if folder is None or not (folder / "risk_mapping.json").is_file():
        pytest.fail(
            f"the shared AIR-Bench 2024 data is missing at {folder or '../shared/data'} "
            "(set DATABAZAAR_AIR_BENCH_DIR)"
        )
    return folder


@pytest.fixture(scope="session")
def air_screener(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, air_dir: Path
) -> Any:
    """``(taxonomy, screener)``: the MiniLM AIR 2024 screener, trained once and cached.

    The taxonomy is read from the shared AIR-Bench folder (the tests fail without it);
    the screener is :func:`databazaar.safety.screen.cached_screener`'s, kept in
    ``DATABAZAAR_TEST_SCREENER_DIR`` if set, else in pytest's cache folder
    (``.pytest_cache/d/databazaar-screener``), so later sessions reuse it.
    """
    from databazaar.safety.screen import cached_screener
    from databazaar.safety.taxonomy import load_taxonomy

    root = os.environ.get("DATABAZAAR_TEST_SCREENER_DIR")
    cache = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider
    if not root and cache is not None:
        root = str(cache.mkdir("databazaar-screener"))
    if not root:
        root = str(tmp_path_factory.getbasetemp().parent / "databazaar-screener")
    taxonomy = load_taxonomy(air_dir)
    return taxonomy, cached_screener(taxonomy, cache_dir=Path(root))


# ------------------------------------------------- tiny policy (preference tests)
_POLICY_TEXTS = [
    "<|user|>\nWhat is 2 + 3?\n<|assistant|>\n5",
    "<|user|>\nName a fruit.\n<|assistant|>\napple",
    "The first answer is correct and the second one is wrong.",
    "Given the prompt: which answer is better and follows the prompt? Explain why.",
] * 4


@pytest.fixture(scope="session")
def tiny_policy():  # type: ignore[no-untyped-def]
    """``(model, tokenizer)``: a fresh 1-layer GPT-2 with the default chat template."""
    from databazaar.lm import ModelConfig, build_model, set_chat_template, train_bpe_tokenizer

    tok = set_chat_template(train_bpe_tokenizer(_POLICY_TEXTS, vocab_size=300))
    model = build_model(
        ModelConfig(n_layer=1, n_embd=32, n_head=2, n_positions=256),
        vocab_size=len(tok),
        seed=0,
        eos_token_id=tok.eos_token_id,
    )
    return model, tok
