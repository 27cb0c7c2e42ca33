"""Fixtures for the safety tests: the shared AIR-Bench 2024 folder (read-only):
``$DATABAZAAR_AIR_BENCH_DIR`` if set, else ``../shared/data/air-bench-2024`` beside the
checkout (:func:`databazaar.safety.taxonomy.default_data_dir`, as the package reads it)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def air_dir() -> Path:
    """The shared AIR-Bench 2024 files (taxonomy, judge prompts, 80 judged samples)."""
    from databazaar.safety.taxonomy import default_data_dir

    folder = default_data_dir()
    if folder is None or not (folder / "risk_mapping.json").is_file():
        pytest.fail(
            f"the shared AIR-Bench 2024 data is missing at {folder or '../shared/data'} "
            "(set DATABAZAAR_AIR_BENCH_DIR)"
        )
    return folder


@pytest.fixture(scope="session")
def taxonomy(air_dir: Path):  # type: ignore[no-untyped-def]
    from databazaar.safety.taxonomy import load_taxonomy

    return load_taxonomy(air_dir)
