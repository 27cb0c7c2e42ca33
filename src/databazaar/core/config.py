"""Settings from the environment (prefix ``DATABAZAAR_``) with sensible defaults.

``DATABASE_URL`` is also honoured without the prefix, as deployment tools set it so.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from databazaar.core.errors import InvalidInput


def _default_home() -> Path:
    return Path.home() / ".databazaar"


def normalize_url(url: str) -> str:
    """The one database URL normaliser: ``postgres://`` and ``postgresql://`` use the
    psycopg 3 driver; anything but SQLite and PostgreSQL is refused."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception as exc:
        raise InvalidInput(f"invalid database URL {url!r}: {exc}") from exc
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise InvalidInput(
            f"unsupported database backend {parsed.get_backend_name()!r}",
            hint="use a sqlite:/// file or a postgresql+psycopg:// URL",
        )
    return url


class Settings(BaseSettings):
    """Runtime configuration. Every field can be set as ``DATABAZAAR_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="DATABAZAAR_", extra="ignore")

    home: Path = Field(default_factory=_default_home, description="data home folder")
    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABAZAAR_DATABASE_URL", "DATABASE_URL"),
        description="SQLAlchemy URL; SQLite file under the data home when unset",
    )
    secret_key: str | None = Field(default=None, description="signing key for links/cookies")
    max_upload_bytes: int = Field(default=50 * 1024 * 1024, ge=1)
    market_fee_bps: int = Field(default=500, ge=0, le=10_000, description="fee, basis points")
    n_jobs: int = Field(default=-1, description="default parallelism for valuation")
    login_max_failures: int = Field(
        default=5, ge=0, description="failed logins per username before a lockout (0: off)"
    )
    login_window_seconds: float = Field(
        default=900.0, gt=0, description="window of the failed-login count and lockout"
    )
    gate: str = Field(
        default="off",
        pattern="^(off|minilm|tfidf)$",
        description="listing gate: screen versions on publish with the MiniLM or the "
        "TF-IDF AIR 2024 screener, or 'off'",
    )
    gate_sample_rows: int = Field(
        default=1000, ge=1, le=20_000, description="rows screened per version (seeded sample)"
    )
    air_bench_dir: Path | None = Field(
        default=None,
        description="folder with the AIR-Bench 2024 taxonomy and judge prompts (else the "
        "development checkout's ../shared/data/air-bench-2024)",
    )
    enrich_backend: str | None = Field(
        default=None,
        description="generation backend of enriched derivatives: a model folder, an "
        "OpenAI-compatible base URL or 'rule-teacher' (unset: derivatives are off)",
    )
    purchase_concurrency: int = Field(
        default=4,
        ge=1,
        le=256,
        description="purchases one server worker runs at once (more wait their turn)",
    )
    trusted_proxies: str = Field(
        default="",
        description="comma-separated addresses of reverse proxies whose X-Forwarded-For "
        "is believed ('*' for any); empty: the TCP peer is the client",
    )

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return normalize_url(self.database_url)
        return f"sqlite:///{self.home / 'databazaar.db'}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (call ``get_settings.cache_clear()`` after env changes)."""
    return Settings()
