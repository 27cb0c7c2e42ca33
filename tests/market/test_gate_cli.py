"""``databazaar gate``: policy, edits (audited), queue, review, and clean one-line errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from databazaar.cli import app
from databazaar.core.config import get_settings

PASSWORD = "correct-horse-9"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    from databazaar.market import open_market

    monkeypatch.setenv("DATABAZAAR_HOME", str(tmp_path))
    monkeypatch.setenv("DATABAZAAR_PASSWORD", PASSWORD)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    get_settings.cache_clear()
    market = open_market()
    market.create_account("root", PASSWORD, "admin")
    market.create_account("sally", PASSWORD, "seller")
    market.close()
    yield tmp_path
    get_settings.cache_clear()


def run(*args: str) -> object:
    return CliRunner().invoke(app, ["gate", *args])


def test_policy_edit_queue_and_audit(home: Path) -> None:
    res = run("policy")
    assert res.exit_code == 0 and res.output.startswith("policy v1 (by system")
    assert "default review, threshold 0.8, min rows 5, min share 0.02" in res.output
    res = run("set", "--user", "root", "--rule", "16=block", "--rule", "8=allow",
              "--threshold", "0.7", "--note", "no crime for sale")  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "policy v2 (by root" in res.output and "threshold 0.7" in res.output
    assert "16: block" in res.output and "note: no crime for sale" in res.output
    res = run("set", "--user", "root", "--rule", "3=review")  # keeps the other rules
    assert "policy v3" in res.output and "block" in res.output and "allow" in res.output
    res = run("set", "--user", "root", "--clear-rules", "--json")
    assert res.exit_code == 0 and '"rules": {}' in res.output and '"version": 4' in res.output
    assert "no versions are held" in run("queue", "--user", "root").output
    audit = run("audit", "--user", "root", "--limit", "2")
    assert audit.exit_code == 0 and audit.output.count("policy.set") == 2
    assert "root policy.set policy (policy v4)" in audit.output
    assert "v2" in run("policy", "--version", "2").output


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("set", "--user", "root", "--rule", "16:block"), 2, "a rule is ID=ACTION"),
        (("set", "--user", "root", "--rule", "99=block"), 2, "unknown level-2 category"),
        (("set", "--user", "root", "--threshold", "3"), 2, "threshold must be between 0 and 1"),
        (("set", "--user", "sally", "--default", "block"), 5, "admin"),
        (("queue", "--user", "sally"), 5, "admin"),
        (("approve", "nope", "1", "--user", "root"), 3, "product 'nope' not found"),
        (("policy", "--version", "7"), 3, "policy version 7 not found"),
    ],
)
def test_errors_are_one_clear_line(home: Path, args: tuple, code: int, message: str) -> None:
    res = run(*args)
    assert res.exit_code == code, res.output
    assert message in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert "policy v1" in run("policy").output  # nothing was written
