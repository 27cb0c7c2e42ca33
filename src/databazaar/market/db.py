"""Engines, sessions and migrations for the market store.

SQLite is the default (a file under the data home); PostgreSQL is used when
``DATABASE_URL`` names it (driver psycopg 3).  On SQLite every connection turns on
foreign keys, WAL and a busy timeout, and write transactions start with
``BEGIN IMMEDIATE`` so two writers queue instead of failing when they upgrade a read lock.

Migrations are Alembic scripts shipped inside the package
(``databazaar/market/migrations``); :func:`upgrade` runs them with a configuration built
in code, so ``databazaar db upgrade`` works from an installed wheel.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from databazaar.core.config import normalize_url
from databazaar.core.errors import NotFound

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy (not the driver) decide where transactions begin.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        if engine.url.database not in (None, "", ":memory:"):
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


@contextmanager
def pipelined(session: Session) -> Iterator[None]:
    """Send the statements run in the block to the database together: one round trip.

    On PostgreSQL the block runs in psycopg's pipeline mode: each statement is queued
    and the block waits once, at its end, for all of their results; on SQLite (in
    process, no round trips) it changes nothing.  Only statements whose results are not
    read inside the block may run in it (``UPDATE`` and ``INSERT ... inline()``
    statements, which fetch no generated key, without ``RETURNING``); the ``rowcount``
    of a statement run by :func:`driver_execute` in the block is read after it.
    An error of any of them is raised at the end of the block as the SQLAlchemy
    exception the statement would have raised (``IntegrityError``,
    ``OperationalError``, ...), so callers handle it alike on both stores.
    """
    conn = session.connection()
    if conn.dialect.name != "postgresql":
        yield
        return
    dbapi = conn.dialect.loaded_dbapi
    try:
        with conn.connection.driver_connection.pipeline():  # type: ignore[union-attr]
            yield
    except dbapi.Error as exc:
        raise DBAPIError.instance(None, None, exc, dbapi.Error, dialect=conn.dialect) from exc


# (statement id, dialect, parameter names, rows) -> (statement kept alive, compiled or None)
_DRIVER_SQL: dict[tuple[int, str, frozenset[str], int], tuple[Any, Any]] = {}


class DriverResult:
    """What :func:`driver_execute` returns: the affected row count and, for a statement
    with ``RETURNING``, its first row's first column.  Inside :func:`pipelined` both are
    known only after the block."""

    __slots__ = ("_cursor", "_result", "_rowcount")

    def __init__(self, cursor: Any = None, result: Any = None, *, eager: bool = False) -> None:
        self._cursor, self._result = cursor, result
        # SQLite's count is read at once (its cursor is reused); PostgreSQL's only
        # after a surrounding pipeline delivered it
        self._rowcount = result.rowcount if eager and not result.returns_rows else None

    @property
    def rowcount(self) -> int:
        if self._rowcount is not None:
            return int(self._rowcount)
        return int((self._cursor or self._result).rowcount)

    def all(self) -> list[Any]:
        """Every row (attribute access by column name)."""
        if self._result is not None:
            return list(self._result.all())
        return list(self._cursor.fetchall())

    def first(self) -> Any:
        """The first row (attribute access by column name), or ``None``."""
        if self._result is not None:
            return self._result.first()
        return self._cursor.fetchone()

    def scalar_one(self) -> Any:
        if self._result is not None:
            return self._result.scalar_one()
        row = self._cursor.fetchone()
        if row is None:
            raise LookupError("the statement returned no row")
        return row[0]


def _driver_sql(stmt: Any, dialect: Any, keys: frozenset[str], n_rows: int) -> Any:
    """``stmt`` compiled for ``dialect`` with the parameters ``keys`` (cached), or
    ``None`` when SQLAlchemy must run it (it evaluates column defaults in Python).

    An ``INSERT`` of ``n_rows`` > 1 rows is compiled as one multi-row ``VALUES`` whose
    parameters are named ``r<i>_<key>`` (one statement, not one per row)."""
    cache_key = (id(stmt), dialect.name, keys, n_rows)
    if cache_key not in _DRIVER_SQL:
        target = stmt
        if n_rows > 1:
            cols = stmt.table.c
            target = stmt.values(
                [
                    {k: bindparam(f"r{i}_{k}", type_=cols[k].type) for k in sorted(keys)}
                    for i in range(n_rows)
                ]
            )
        compiled = target.compile(dialect=dialect, column_keys=sorted(keys))
        plain = not (compiled.insert_prefetch or compiled.update_prefetch) and not getattr(
            compiled, "positional", False
        )
        _DRIVER_SQL[cache_key] = (stmt, compiled if plain else None)
    return _DRIVER_SQL[cache_key][1]


def _named_rows() -> Any:
    from psycopg.rows import namedtuple_row

    return namedtuple_row


def driver_execute(conn: Connection, stmt: Any, params: Any) -> DriverResult:
    """Run a Core ``INSERT``/``UPDATE``/``SELECT`` on PostgreSQL's driver cursor directly.

    The hot write path of a purchase runs about ten statements; SQLAlchemy's work per
    execution (cache key, execution context, result set-up) cost more CPU than the
    database's.  Here the statement (a module-level constant: the cache is keyed by its
    identity) is compiled once per dialect and parameter set, and each call only binds
    the parameters (with the types' bind processors, literal binds included) and hands
    the SQL to psycopg's cursor, inside the caller's transaction.  ``params`` is one
    mapping or a list of them with the same keys (an ``INSERT`` of several rows runs as
    one multi-row ``VALUES``); it may run inside :func:`pipelined`.  A driver error is
    raised as the SQLAlchemy exception the statement would have raised
    (``IntegrityError``, ...).  On SQLite (in process, little overhead) and for a
    statement whose column defaults SQLAlchemy evaluates in Python, it is the plain
    ``conn.execute(stmt, params)``.
    """
    rows = params if isinstance(params, list) else [params]
    postgres = conn.dialect.name == "postgresql"
    keys = frozenset(rows[0]) if rows else frozenset()
    multi = len(rows) > 1
    if not postgres or not rows or (multi and not getattr(stmt, "is_insert", False)):
        return DriverResult(result=conn.execute(stmt, params), eager=not postgres)
    if multi and any(frozenset(r) != keys for r in rows):
        return DriverResult(result=conn.execute(stmt, params))
    compiled = _driver_sql(stmt, conn.dialect, keys, len(rows))
    if compiled is None:
        return DriverResult(result=conn.execute(stmt, params))
    flat = (
        {f"r{i}_{k}": v for i, row in enumerate(rows) for k, v in row.items()} if multi else rows[0]
    )
    values = compiled.construct_params(flat, _check=False)
    for key, proc in compiled._bind_processors.items():
        if key in values and values[key] is not None:
            values[key] = proc(values[key])
    driver = conn.connection.driver_connection
    # rows as named tuples: attribute access by column name, as SQLAlchemy's rows
    selects = getattr(stmt, "is_select", False)
    cursor = driver.cursor(row_factory=_named_rows()) if selects else driver.cursor()  # type: ignore[union-attr]
    dbapi = conn.dialect.loaded_dbapi
    try:
        cursor.execute(compiled.string, values)
    except dbapi.Error as exc:
        raise DBAPIError.instance(
            compiled.string, values, exc, dbapi.Error, dialect=conn.dialect
        ) from exc
    return DriverResult(cursor=cursor)


def is_foreign_key_violation(exc: DBAPIError) -> bool:
    """Whether a driver error is a foreign key violation (PostgreSQL SQLSTATE 23503,
    SQLite's ``FOREIGN KEY constraint failed``), not another integrity error."""
    orig = exc.orig
    return getattr(orig, "sqlstate", None) == "23503" or "FOREIGN KEY constraint" in str(orig)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url`` with the per-backend settings described in the module doc.

    Extra keyword arguments go to :func:`sqlalchemy.create_engine` (for instance
    ``connect_args={"options": "-csearch_path=myschema"}`` on PostgreSQL).
    """
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        db = parsed.database
        if db and db != ":memory:":
            Path(db).parent.mkdir(parents=True, exist_ok=True)
        kwargs.setdefault("connect_args", {}).setdefault("check_same_thread", False)
        engine = create_engine(url, **kwargs)
        _sqlite_setup(engine)
    else:
        kwargs.setdefault("pool_pre_ping", True)
        kwargs.setdefault("pool_size", 10)
        kwargs.setdefault("max_overflow", 10)
        engine = create_engine(url, **kwargs)
    return engine


class Database:
    """An engine plus read and write session factories.

    ``with db.read() as s`` gives a session for queries (in autocommit mode on
    PostgreSQL: never write through it); ``with db.write() as s`` gives one inside a
    transaction that commits on success and rolls back on any exception.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        writer = engine.execution_options(sqlite_begin="IMMEDIATE")
        reader = engine
        if self.dialect == "postgresql":
            # Each statement of a READ COMMITTED transaction sees its own snapshot, so a
            # read loses nothing in autocommit; it saves the BEGIN and the ROLLBACK, and
            # psycopg drops every prepared statement of a connection on a ROLLBACK
            # (with one more round trip, DEALLOCATE ALL): reads would otherwise cost the
            # next request on that connection its prepared statements.
            reader = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._reader = reader
        self._read = sessionmaker(bind=reader, expire_on_commit=False)
        self._write = sessionmaker(bind=writer, expire_on_commit=False)

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> Database:
        """Build a :class:`Database` for a URL (see :func:`make_engine`)."""
        return cls(make_engine(url, **kwargs))

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reads; it is closed (and its transaction ended) on exit."""
        with self._read() as session:
            yield session

    @contextmanager
    def read_connection(self) -> Iterator[Connection]:
        """A Core connection for a few reads (like :meth:`read`, without an ORM session)."""
        with self._reader.connect() as conn:
            yield conn

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session in one transaction: commit on success, roll back on error."""
        with self._write() as session, session.begin():
            yield session

    @contextmanager
    def snapshot(self) -> Iterator[Session]:
        """A read session that sees one consistent snapshot for all its queries.

        PostgreSQL runs it as ``REPEATABLE READ, READ ONLY``; SQLite (WAL) keeps one
        read transaction open, which is already a snapshot.
        """
        if self.dialect == "postgresql":
            engine = self.engine.execution_options(
                isolation_level="REPEATABLE READ", postgresql_readonly=True
            )
            with Session(bind=engine, expire_on_commit=False) as session, session.begin():
                yield session
        else:
            with self._read() as session, session.begin():
                yield session

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def alembic_config(engine: Engine | None = None, url: str | None = None) -> Any:
    """An Alembic ``Config`` pointing at the packaged migrations.

    With ``engine`` the migrations run on that engine's connection (so connection
    options such as a PostgreSQL ``search_path`` apply); otherwise on ``url``.
    """
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    if engine is not None:
        cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine_or_url: Engine | str, revision: str = "head") -> str:
    """Apply migrations up to ``revision``; return the revision the store is now at."""
    from alembic import command

    engine = make_engine(engine_or_url) if isinstance(engine_or_url, str) else engine_or_url
    cfg = alembic_config(engine=engine)
    command.upgrade(cfg, revision)
    return current_revision(engine) or "base"


def current_revision(engine: Engine) -> str | None:
    """The Alembic revision the database is at, or ``None`` before any migration."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    """The newest revision shipped with this package."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def explain_store_error(exc: BaseException) -> NotFound | None:
    """A one-line :class:`~databazaar.core.errors.NotFound` for a store that cannot be
    used as it is (the folder or server is missing, or ``db upgrade`` never ran), or
    ``None`` when ``exc`` is anything else.  The CLI prints it instead of a traceback."""
    from sqlalchemy.exc import DBAPIError

    if not isinstance(exc, DBAPIError):
        return None
    text = str(exc.orig)
    lowered = text.lower()
    if "no such table" in lowered or ("relation" in lowered and "does not exist" in lowered):
        return NotFound(
            f"the store is not initialised ({text.splitlines()[0]})",
            hint="run `databazaar db upgrade` first, with the same --home or DATABASE_URL",
        )
    if "unable to open database file" in lowered:
        return NotFound(
            "the store's SQLite file cannot be opened (its folder does not exist)",
            hint="check --home / DATABAZAAR_HOME, then run `databazaar db upgrade`",
        )
    if "connection" in lowered and ("refused" in lowered or "failed" in lowered):
        return NotFound(
            f"cannot connect to the store's database server: {text.splitlines()[0]}",
            hint="check DATABASE_URL and that the server runs",
        )
    return None
