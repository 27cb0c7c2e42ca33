"""The built wheel, installed into fresh virtual environments, works as a user meets it.

* core (no extras): ``databazaar --version``, ``databazaar value`` on two CSV files, and
  ``import databazaar.valuation`` without FastAPI, SQLAlchemy, matplotlib or torch
  installed; a market command names the extra it needs (exit 2).
* ``[market]``: ``databazaar demo --home DIR`` seeds DIR, ``databazaar --home DIR serve``
  serves the demo market's pages and API from the wheel (templates, static files and
  migrations are in it) and ``ledger verify`` passes.

The wheel (and sdist: the wheel is built from it) is built from this checkout on every
run.  Creating a venv and resolving its dependencies takes minutes, so each venv is kept
under ``$DATABAZAAR_CI_CACHE`` (default ``~/.cache/databazaar-ci``) keyed by the hash of
``pyproject.toml`` and ``constraints.txt``: a new key makes new venvs with everything
installed from the wheel; an existing venv gets this run's wheel reinstalled
(``--force-reinstall --no-deps``) and ``pip check`` proves its requirements are met.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("DATABAZAAR_CI_CACHE", Path.home() / ".cache" / "databazaar-ci"))
KEY = hashlib.sha256(
    (REPO / "pyproject.toml").read_bytes() + (REPO / "constraints.txt").read_bytes()
).hexdigest()[:16]

pytestmark = pytest.mark.slow


def _run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABAZAAR_", "PYTHON"))}
    env.pop("DATABASE_URL", None)
    env.update(kwargs.pop("env", {}))  # type: ignore[arg-type]
    return subprocess.run(
        cmd, capture_output=True, text=True, env=env, timeout=1200, check=False, **kwargs
    )  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sdist then wheel (from the sdist) of this checkout, built offline."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("dist")
    res = _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(src)])
    assert res.returncode == 0, res.stdout + res.stderr
    (whl,) = out.glob("databazaar-*.whl")
    import zipfile

    names = zipfile.ZipFile(whl).namelist()
    for part in ("server/web/templates/", "server/web/static/", "market/migrations/versions/"):
        assert any(f"databazaar/{part}" in n for n in names), part
    assert any(n.endswith("licenses/LICENSE") for n in names)
    return whl


def _venv(name: str, wheel: Path, extras: str = "") -> Path:
    """A venv with the wheel (and ``extras``) installed; cached per dependency key."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"venv-{name}-{KEY}"
    py = path / "bin" / "python"
    target = f"{wheel}[{extras}]" if extras else str(wheel)
    with open(CACHE / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (path / ".complete").is_file():
            for old in CACHE.glob(f"venv-{name}-*"):
                shutil.rmtree(old, ignore_errors=True)
            base = getattr(sys, "_base_executable", sys.executable)
            res = _run([base, "-m", "venv", str(path)])
            assert res.returncode == 0, res.stderr
            res = _run(
                [
                    str(py),
                    "-m",
                    "pip",
                    "install",
                    "-q",
                    "--no-compile",
                    "-c",
                    str(REPO / "constraints.txt"),
                    target,
                ]
            )
            assert res.returncode == 0, res.stdout + res.stderr
            (path / ".complete").write_text(KEY)
        else:  # this run's wheel, over the cached dependencies
            res = _run(
                [
                    str(py),
                    "-m",
                    "pip",
                    "install",
                    "-q",
                    "--no-compile",
                    "--no-deps",
                    "--force-reinstall",
                    target,
                ]
            )
            assert res.returncode == 0, res.stdout + res.stderr
        res = _run([str(py), "-m", "pip", "check"])
        assert res.returncode == 0, res.stdout + res.stderr
    return path


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two small CSV tables: two classes apart on x0; rows 0-4 of train are flipped."""
    import numpy as np

    folder = tmp_path_factory.mktemp("tables")
    rng = np.random.default_rng(0)
    for name, n, flip in (("train", 60, 5), ("test", 40, 0)):
        x = rng.normal(size=(n, 3))
        y = (x[:, 0] > 0).astype(int)
        x[:, 0] += np.where(y == 1, 1.5, -1.5)  # a margin: a flipped row sits among the other class
        y[:flip] = 1 - y[:flip]
        rows = ["a,b,c,label"] + [f"{r[0]},{r[1]},{r[2]},{t}" for r, t in zip(x, y, strict=True)]
        (folder / f"{name}.csv").write_text("\n".join(rows) + "\n")
    return folder


def test_core_install_values_without_the_market_or_lm(wheel: Path, tables: Path) -> None:
    venv = _venv("core", wheel)
    exe = str(venv / "bin" / "databazaar")
    res = _run([exe, "--version"])
    assert res.returncode == 0 and res.stdout.strip().startswith("databazaar "), res.stderr
    res = _run(
        [str(venv / "bin" / "python"), "-c",
         "import importlib.util as u, databazaar.valuation, databazaar.core.io; "
         "print([m for m in ('fastapi', 'sqlalchemy', 'torch', 'matplotlib', 'alembic') "
         "if u.find_spec(m)])"]
    )  # fmt: skip
    assert res.returncode == 0 and res.stdout.strip() == "[]", res.stdout + res.stderr
    out = tables / "values.csv"
    res = _run(
        [exe, "value", "train.csv", "--target", "label", "--test", "test.csv", "-o", str(out)],
        cwd=tables,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "knn-shapley: 60 rows valued on 40 test rows with 3 features" in res.stdout
    lines = out.read_text().splitlines()
    assert lines[0].split(",")[:2] == ["id", "value"] and len(lines) == 61
    values = {int(r.split(",")[0]): float(r.split(",")[1]) for r in lines[1:]}
    # the five flipped rows are the five lowest values
    lowest = sorted(values, key=values.__getitem__)[:5]
    assert set(lowest) == {0, 1, 2, 3, 4}, lowest
    # a market command says which extra to install, in one line, exit 2
    res = _run([exe, "--home", str(tables / "home"), "ledger", "verify"])
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines() == [
        "error: databazaar ledger needs the 'market' extra (module 'sqlalchemy' is not installed) "
        "(pip install 'databazaar[market]')"
    ]
    res = _run([exe, "lm", "--help"])
    assert res.returncode == 2 and "pip install 'databazaar[lm]'" in res.stderr
    res = _run([exe, "--help"])  # the overview lists every group, loading none
    assert res.returncode == 0 and "mixture" in res.stdout and "uncertainty" in res.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(tmp_path: Path, wheel: Path) -> Iterator[tuple[str, Path, Path]]:
    venv = _venv("market", wheel, "market")
    exe = str(venv / "bin" / "databazaar")
    home = tmp_path / "demo-home"
    res = _run([exe, "demo", "--home", str(home)], cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"databazaar --home {home} serve" in " ".join(res.stdout.split())
    port = _free_port()
    proc = subprocess.Popen(
        [exe, "--home", str(home), "serve", "--port", str(port), "--workers", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                time.sleep(0.3)
        yield url, home, venv
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_market_install_runs_the_demo_and_serves_it(served: tuple[str, Path, Path]) -> None:
    import httpx

    url, home, venv = served
    page = httpx.get(f"{url}/", timeout=10)
    assert page.status_code == 200 and "iris-measurements" in page.text
    css = [line for line in page.text.split('"') if line.startswith("/static/")]
    assert css, "the home page links no static file"
    assert httpx.get(url + css[0], timeout=10).status_code == 200
    hits = httpx.get(f"{url}/api/catalog", params={"q": "iris"}, timeout=10)
    assert hits.status_code == 200, hits.text
    assert "iris-measurements" in hits.text
    res = _run([str(venv / "bin" / "databazaar"), "--home", str(home), "ledger", "verify"])
    assert res.returncode == 0 and res.stdout.startswith("ledger OK:"), res.stdout + res.stderr
