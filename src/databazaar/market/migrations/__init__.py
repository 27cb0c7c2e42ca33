"""Alembic migrations of the market store (run with ``databazaar db upgrade``)."""
