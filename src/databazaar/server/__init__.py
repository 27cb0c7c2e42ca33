"""The databazaar HTTP service (FastAPI): JSON API under ``/api``, OpenAPI at ``/docs``.

Build it with :func:`create_app`; run it with ``databazaar serve``.
"""

from databazaar.server.app import create_app

__all__ = ["create_app"]
