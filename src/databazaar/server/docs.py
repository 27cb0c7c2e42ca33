"""The API documentation pages, served from local files so they work offline.

FastAPI's default ``/docs`` and ``/redoc`` pages load Swagger UI and ReDoc from a CDN,
so they are blank on a machine without internet.  :func:`mount_docs` serves the same two
pages with the script and stylesheet files shipped by the ``fastapi-offline`` package
(installed, never copied into this repository) under ``/docs-static``, plus the site's
favicon at ``/favicon.ico``.
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from starlette.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles

from databazaar.core.errors import InvalidInput

DOCS_STATIC = "/docs-static"
FAVICON = Path(__file__).with_name("web") / "static" / "favicon.svg"


def docs_assets_dir() -> Path:
    """The folder holding ``swagger-ui-bundle.js``, ``swagger-ui.css`` and
    ``redoc.standalone.js`` (from the installed ``fastapi-offline`` package)."""
    spec = find_spec("fastapi_offline")
    if spec is None or not spec.submodule_search_locations:
        raise InvalidInput(
            "the offline API documentation needs the fastapi-offline package",
            hint="pip install fastapi-offline",
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "static"
    if not (folder / "swagger-ui-bundle.js").is_file():
        raise InvalidInput(f"fastapi-offline has no Swagger UI files in {folder}")
    return folder


#: the one remote file ReDoc's bundle asks for (a decorative logo); served as our favicon
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


def mount_docs(app: FastAPI) -> None:
    """Add ``/docs`` (Swagger UI), ``/redoc`` (ReDoc), their local assets and a favicon."""
    assets = docs_assets_dir()
    redoc_js: list[bytes] = []

    @app.get(f"{DOCS_STATIC}/redoc.standalone.js", include_in_schema=False)
    def redoc_script() -> Response:
        # ReDoc's bundle shows a logo from its CDN; point it at the favicon so the page
        # makes no request off this server (the package's file is read, not changed).
        if not redoc_js:
            text = (assets / "redoc.standalone.js").read_bytes()
            redoc_js.append(text.replace(REDOC_LOGO.encode(), b"/favicon.ico"))
        return Response(
            redoc_js[0],
            media_type="text/javascript",
            headers={"Cache-Control": "public, max-age=86400"},
        )

    app.mount(DOCS_STATIC, StaticFiles(directory=str(assets)), name="docs-static")
    title = app.title

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{title} - Swagger UI",
            swagger_js_url=f"{DOCS_STATIC}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_STATIC}/swagger-ui.css",
            swagger_favicon_url="/favicon.ico",
        )

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{title} - ReDoc",
            redoc_js_url=f"{DOCS_STATIC}/redoc.standalone.js",
            redoc_favicon_url="/favicon.ico",
            with_google_fonts=False,
        )

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(
            FAVICON.read_bytes(),
            media_type="image/svg+xml",
            headers={"Cache-Control": "public, max-age=86400"},
        )
