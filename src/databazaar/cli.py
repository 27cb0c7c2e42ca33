"""The ``databazaar`` command line.

Commands are thin: they parse arguments, call library functions and render results.
Heavy modules are imported inside the commands so ``databazaar --help`` stays fast.
Errors from :mod:`databazaar.core.errors` become a one-line message and the error's
exit code; anything else is a bug and shows its traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional  # noqa: UP035  (Typer needs Optional at runtime)

import typer

from databazaar import __version__
from databazaar.core.errors import DatabazaarError

app = typer.Typer(
    name="databazaar",
    help="An open data market for AI: value, price, compose, enrich and vet training data.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"databazaar {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        Optional[bool],  # noqa: UP045
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = None,
) -> None:
    """databazaar command line."""


def _console():  # type: ignore[no-untyped-def]
    from rich.console import Console

    return Console(stderr=False)


def main() -> None:
    """Entry point: run the app, turning databazaar errors into clean exits."""
    try:
        app()
    except DatabazaarError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)


_ = Path  # used by commands below
