"""Alembic environment: runs the packaged migrations online against one engine.

The engine comes from ``config.attributes["engine"]`` when :func:`databazaar.market.db.upgrade`
calls in, else from the ``sqlalchemy.url`` option, else from the databazaar settings
(``DATABASE_URL`` or the SQLite file under the data home).
"""

from __future__ import annotations

from alembic import context

from databazaar.market.db import make_engine
from databazaar.market.models import Base

config = context.config
target_metadata = Base.metadata


def _engine():  # type: ignore[no-untyped-def]
    engine = config.attributes.get("engine")
    if engine is not None:
        return engine
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        from databazaar.core.config import get_settings

        url = get_settings().resolved_database_url
    return make_engine(url)


def run_migrations_online() -> None:
    """Run every pending migration in one transaction on the target engine."""
    engine = _engine()
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run them online")
run_migrations_online()
