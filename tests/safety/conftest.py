"""Fixtures for the safety tests: the shared AIR-Bench 2024 folder (read-only)."""

from __future__ import annotations

from pathlib import Path

import pytest

AIR_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "air-bench-2024"


@pytest.fixture(scope="session")
def air_dir() -> Path:
    """The shared AIR-Bench 2024 files (taxonomy, judge prompts, 80 judged samples)."""
    if not (AIR_DIR / "risk_mapping.json").is_file():
        pytest.fail(f"the shared AIR-Bench data is missing at {AIR_DIR}")
    return AIR_DIR


@pytest.fixture(scope="session")
def taxonomy(air_dir: Path):  # type: ignore[no-untyped-def]
    from databazaar.safety.taxonomy import load_taxonomy

    return load_taxonomy(air_dir)
