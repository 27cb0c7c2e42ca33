"""``databazaar demo --serve``: seed the demo market and serve its pages and API.

:func:`serve_demo` runs the market walk-through of
:func:`databazaar.demo.market.run_market_demo` (two sellers, three products, a buyer who
bought two of them, and the forum dump the listing gate held) into
``home`` (the demo's data home), adds an admin account so the ledger page
can be tried, then serves the web pages and the JSON API on that store with uvicorn
until interrupted, after printing the URL and the demo logins.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

DEMO_ADMIN = "admin"


def build_demo_app(
    home: Path, say: Callable[[str], None], *, gate: Any = "auto"
) -> tuple[Any, dict[str, Any]]:
    """Seed the demo store under ``home`` and return ``(app, summary)`` (not yet served).

    ``gate`` as in :func:`~databazaar.demo.market.run_market_demo`.
    """
    from databazaar.core.config import Settings
    from databazaar.demo.market import DEMO_PASSWORD, run_market_demo
    from databazaar.market.service import Market
    from databazaar.server.app import create_app
    from databazaar.server.web import mount_web

    summary = run_market_demo(Path(home), say, gate=gate)
    root = Path(summary["store"]).parent
    settings = Settings(home=root, database_url=f"sqlite:///{summary['store']}")
    if gate == "auto":  # keep the listing gate on when the tour ran it
        from databazaar.market.gate import ListingGate

        gate = ListingGate() if summary.get("screened") else None
    app = create_app(settings, market=Market.from_settings(settings, gate=gate))
    mount_web(app)
    app.state.market.create_account(DEMO_ADMIN, DEMO_PASSWORD, "admin")
    return app, summary


def serve_demo(
    home: Path | str, host: str = "127.0.0.1", port: int = 8000, say: Callable[[str], None] = print
) -> None:
    """Seed the demo market under ``home`` and serve it at ``http://host:port/``."""
    import uvicorn

    from databazaar.demo.market import DEMO_BUYER, DEMO_PASSWORD, DEMO_SELLERS

    app, _summary = build_demo_app(Path(home), say)
    shown_host = f"[{host}]" if ":" in host else host
    url = f"http://{shown_host}:{port}/"
    say(f"serving the demo market at {url} (API docs at {url}docs); press Ctrl+C to stop")
    say(
        f"log in as seller {DEMO_SELLERS[0]!r}, buyer {DEMO_BUYER!r} or admin {DEMO_ADMIN!r} "
        f"with password {DEMO_PASSWORD!r}"
    )
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning")
    finally:
        app.state.market.close()
