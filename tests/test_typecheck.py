"""mypy is clean on the packages listed in ``[tool.mypy] files`` (core and valuation).

The incremental cache lives under ``$DATABAZAAR_CI_CACHE`` (default
``~/.cache/databazaar-ci``), so a run after the first checks only what changed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ci_rules import require  # type: ignore[import-not-found]

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("DATABAZAAR_CI_CACHE", Path.home() / ".cache" / "databazaar-ci"))


@pytest.mark.slow
def test_mypy_is_clean_on_core_and_valuation() -> None:
    require("mypy", "the test extra: pip install -e '.[test]'")
    res = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(CACHE / "mypy")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Success: no issues found" in res.stdout
    checked = int(res.stdout.split(" in ")[-1].split()[0])
    assert checked >= 38, res.stdout  # core + valuation: 38 files when written
