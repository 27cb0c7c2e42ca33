"""Templates, formatting filters, form-value parsing and the HTML responses of the pages.

Every template is rendered by one :class:`jinja2.Environment` with autoescaping on for
all templates (whatever their file name), so any value a user supplied is HTML-escaped
unless a template marks it safe, which none does.  Responses carry a strict Content
Security Policy (own scripts and styles only, no inline script) and the usual hardening
headers.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.datastructures import URL
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from databazaar.core.money import format_minor, parse_decimal
from databazaar.server.web.session import CSRF_FIELD, WebSession
from databazaar.server.web.words import FILTERS, num

TEMPLATES_DIR = Path(__file__).with_name("templates")
STATIC_DIR = Path(__file__).with_name("static")

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def when(value: datetime | None) -> str:
    """A UTC timestamp to the minute, e.g. ``2026-11-25 19:30 UTC``."""
    if value is None:
        return "-"
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def iso(value: datetime | None) -> str:
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="seconds")


def cell(value: Any) -> str:
    """A preview-table cell: ``None`` as an empty mark, floats trimmed."""
    if value is None:
        return "∅"
    if isinstance(value, float):
        return num(value)
    return str(value)


def make_env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES_DIR)),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["money"] = format_minor
    env.filters["when"] = when
    env.filters["iso"] = iso
    env.filters["cell"] = cell
    env.filters.update(FILTERS)
    env.globals["csrf_field"] = CSRF_FIELD
    return env


def optional_money(raw: str, what: str) -> int | None:
    return None if not (raw or "").strip() else parse_decimal(raw, what)


def safe_next(raw: str | None, default: str = "/") -> str:
    """A local path to go to after login; anything pointing off-site becomes ``default``."""
    if not raw or not isinstance(raw, str) or len(raw) > 500:
        return default
    parts = urlsplit(raw)
    if parts.scheme or parts.netloc or not raw.startswith("/") or raw.startswith("//"):
        return default
    if "\\" in raw or any(ord(ch) < 32 for ch in raw):
        return default
    return raw


class Renderer:
    """Renders pages for the app's web session (one per app)."""

    def __init__(self) -> None:
        self.env = make_env()

    def page(
        self,
        request: Request,
        sess: WebSession,
        template: str,
        context: dict[str, Any] | None = None,
        *,
        status: int = 200,
    ) -> HTMLResponse:
        account = sess.account()
        ctx = {
            "account": account,
            "csrf_token": sess.csrf_token,
            "flashes": sess.pop_flashes(),
            "path": request.url.path,
            "title": "",
            "error": None,
            **(context or {}),
        }
        body = self.env.get_template(template).render(**ctx)
        response = HTMLResponse(body, status_code=status, headers=SECURITY_HEADERS)
        sess.save(response)
        return response


def redirect(sess: WebSession, url: str | URL) -> Response:
    """A 303 redirect (the browser follows it with GET) that keeps the session."""
    response = RedirectResponse(str(url), status_code=303, headers={"Cache-Control": "no-store"})
    sess.save(response)
    return response
