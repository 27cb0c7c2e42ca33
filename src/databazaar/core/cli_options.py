"""Typer option types shared by every command that logs in to the market.

They live here rather than in :mod:`databazaar.cli` so that sub-apps which the CLI package
itself imports while it starts (``mixture.cli``) can use them without an import cycle.
Importing this module costs only ``typer``.
"""

from __future__ import annotations

from typing import Annotated

import typer

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url", help="SQLAlchemy URL (default: DATABASE_URL or DATABAZAAR_HOME's SQLite)"
    ),
]
UserOption = Annotated[str, typer.Option("--user", help="your username")]
PasswordOption = Annotated[
    str,
    typer.Option(
        "--password",
        prompt=True,
        hide_input=True,
        envvar="DATABAZAAR_PASSWORD",
        help="your password (prompted; or DATABAZAAR_PASSWORD)",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="print JSON")]
