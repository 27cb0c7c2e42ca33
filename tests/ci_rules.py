"""The one rule for optional test dependencies: a missing one skips a test on a
developer's machine, but fails it under ``CI=true`` (CI installs every extra and peer,
so a skip there would hide a test that never ran)."""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def skip_or_fail(reason: str) -> NoReturn:
    if in_ci():
        pytest.fail(f"{reason} (CI=true: this test must run)", pytrace=False)
    pytest.skip(reason)


def require(module: str, hint: str) -> ModuleType:
    """Import ``module``, or skip (fail under CI) naming ``hint`` (how to install it)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        skip_or_fail(f"{module} is not installed ({exc}); {hint}")
