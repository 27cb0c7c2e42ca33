"""Fixtures for the safety tests, on the shared AIR-Bench 2024 folder (``air_dir``, in
the top-level ``tests/conftest.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def taxonomy(air_dir: Path):  # type: ignore[no-untyped-def]
    from databazaar.safety.taxonomy import load_taxonomy

    return load_taxonomy(air_dir)
