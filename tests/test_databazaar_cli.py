"""The command line as a user runs it: value CSV and Parquet files, errors, --version."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from databazaar import __version__
from databazaar.cli import app
from databazaar.valuation import ValuationResult, knn_shapley

runner = CliRunner()


def run_value(tables: dict[str, Path], *args: str):  # type: ignore[no-untyped-def]
    """``databazaar value train.csv -t grade --test test.csv ARGS`` via the Typer app."""
    base = ["value", str(tables["train_csv"]), "-t", "grade", "--test", str(tables["test_csv"])]
    return runner.invoke(app, [*base, *args])


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from sklearn.datasets import load_wine

    frame = load_wine(as_frame=True).frame
    frame["grade"] = np.array(["low", "mid", "high"])[frame.pop("target")]
    frame["seller"] = np.array(["acme", "bolt", "core"])[np.arange(len(frame)) % 3]
    rng = np.random.default_rng(0)
    frame = frame.iloc[rng.permutation(len(frame))].reset_index(drop=True)
    d = tmp_path_factory.mktemp("tables")
    train, test = frame.iloc[:120], frame.iloc[120:]
    paths = {
        "train_csv": d / "train.csv",
        "test_csv": d / "test.csv",
        "train_pq": d / "train.parquet",
        "test_pq": d / "test.parquet",
        "dir": d,
    }
    train.to_csv(paths["train_csv"], index=False)
    test.to_csv(paths["test_csv"], index=False)
    train.to_parquet(paths["train_pq"], index=False)
    test.to_parquet(paths["test_pq"], index=False)
    return paths


def _expected(tables: dict[str, Path]) -> np.ndarray:
    train = pd.read_csv(tables["train_csv"])
    test = pd.read_csv(tables["test_csv"])
    cols = [c for c in train.columns if c not in ("grade", "seller")]
    return knn_shapley(train[cols], train["grade"], test[cols], test["grade"], k=5).values


@pytest.mark.parametrize(
    ("train", "test", "out"),
    [
        ("train_csv", "test_csv", "values.csv"),
        ("train_pq", "test_pq", "values.parquet"),
        ("train_csv", "test_pq", "mixed.csv"),
    ],
)
def test_value_writes_the_same_numbers_as_the_library(
    tables: dict[str, Path], train: str, test: str, out: str
) -> None:
    dest = tables["dir"] / out
    res = runner.invoke(
        app,
        [
            "value",
            str(tables[train]),
            "--target",
            "grade",
            "--test",
            str(tables[test]),
            "--method",
            "knn-shapley",
            "-k",
            "5",
            "-o",
            str(dest),
            "--quiet",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "knn-shapley: 120 rows valued on 58 test rows with 13 features" in res.output
    assert "ignored non-numeric columns: seller" in res.output
    saved = ValuationResult.load(dest)
    np.testing.assert_allclose(saved.values, _expected(tables), atol=1e-15)
    assert saved.method == "knn-shapley" and saved.params["k"] == 5


def test_value_group_mode(tables: dict[str, Path]) -> None:
    dest = tables["dir"] / "groups.csv"
    res = run_value(tables, "--groups", "seller", "-o", str(dest), "-q")
    assert res.exit_code == 0, res.output
    saved = ValuationResult.load(dest)
    assert sorted(saved.ids.tolist()) == ["acme", "bolt", "core"]
    assert saved.values.sum() == pytest.approx(_expected(tables).sum(), abs=1e-12)


def test_value_monte_carlo_method(tables: dict[str, Path]) -> None:
    pytest.importorskip("databazaar.valuation.montecarlo")
    dest = tables["dir"] / "banzhaf.csv"
    res = run_value(
        tables,
        "--method",
        "banzhaf",
        "--budget",
        "40",
        "--model",
        "naive-bayes",
        "-o",
        str(dest),
        "-q",
        "-j",
        "1",
    )
    assert res.exit_code == 0, res.output
    saved = ValuationResult.load(dest)
    assert len(saved) == 120 and saved.method == "banzhaf-msr"
    # the numbers are the library's for the same seed, budget and model
    from databazaar.valuation.tabular import value_table

    train = pd.read_csv(tables["train_csv"])
    test = pd.read_csv(tables["test_csv"])
    lib, _prob = value_table(
        train, test, "grade", "banzhaf", model="naive-bayes", budget=40, n_jobs=1, random_state=0
    )
    order = np.argsort(saved.ids.astype(int))
    np.testing.assert_allclose(saved.values[order], lib.values, rtol=0, atol=1e-12)
    assert saved.counts[order].tolist() == lib.counts.tolist()
    # and they are values, not a constant: MSR with 40 subsets estimates every row
    assert saved.counts.min() > 0 and np.ptp(saved.values) > 0
    assert np.isfinite(saved.stderr).all()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--method", "magic"], 2, "unknown method 'magic'"),
        (["-k", "0"], 2, "k must be >= 1"),
        (["--target", "nope"], 2, "target column 'nope' is not in the training table"),
        (["--method", "threshold-knn"], 2, "threshold-knn needs a radius"),
        (["--method", "asymmetric-knn"], 2, "needs the group column and the group order"),
        (["--groups", "missing"], 2, "group column 'missing'"),
        (["--groups", "seller", "--ci", "0.9"], 2, "drop --groups to use it"),
    ],
)
def test_value_errors(tables: dict[str, Path], args: list[str], code: int, message: str) -> None:
    base = [
        "value",
        str(tables["train_csv"]),
        "--target",
        "grade",
        "--test",
        str(tables["test_csv"]),
        "-q",
    ]
    res = runner.invoke(app, base + args)
    assert res.exit_code == code
    assert message in res.output


def test_value_bad_files(tables: dict[str, Path]) -> None:
    d = tables["dir"]
    res = runner.invoke(
        app, ["value", str(d / "absent.csv"), "-t", "grade", "--test", str(tables["test_csv"])]
    )
    assert res.exit_code == 3 and "file not found" in res.output
    junk = d / "junk.parquet"
    junk.write_bytes(b"this is not parquet")
    res = runner.invoke(app, ["value", str(junk), "-t", "grade", "--test", str(tables["test_csv"])])
    assert res.exit_code == 2 and "could not read junk.parquet" in res.output
    txt = d / "data.txt"
    txt.write_text("a,b\n1,2\n")
    res = runner.invoke(app, ["value", str(txt), "-t", "grade", "--test", str(tables["test_csv"])])
    assert res.exit_code == 2 and "unsupported file type" in res.output
    nan = d / "nan.csv"
    frame = pd.read_csv(tables["train_csv"])
    frame.loc[3, "alcohol"] = np.nan
    frame.to_csv(nan, index=False)
    res = runner.invoke(app, ["value", str(nan), "-t", "grade", "--test", str(tables["test_csv"])])
    assert res.exit_code == 2 and "NaN" in res.output


def test_version_and_fast_help() -> None:
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == f"databazaar {__version__}"
    start = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from databazaar.cli import main; sys.argv=['databazaar','--help']; main()",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    took = time.perf_counter() - start
    assert proc.returncode == 0 and "value" in proc.stdout
    # lazy imports: no numpy-heavy or web module is loaded for --help
    assert took < 5.0
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, databazaar.cli; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('sklearn','torch','fastapi','sqlalchemy','numba')))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.stdout.strip() == "[]"


def test_value_asymmetric_knn_credits_groups_in_order(tables: dict[str, Path]) -> None:
    dest = tables["dir"] / "ads.csv"
    res = run_value(
        tables,
        "-m",
        "asymmetric-knn",
        "--groups",
        "seller",
        "--order",
        "core,acme,bolt",
        "-o",
        str(dest),
        "-q",
    )
    assert res.exit_code == 0, res.output
    assert "group values (in order): core=" in res.output
    saved = ValuationResult.load(dest)
    assert len(saved) == 120
    # efficiency: the values add up to the same total as KNN-Shapley's
    assert saved.values.sum() == pytest.approx(_expected(tables).sum(), abs=1e-12)
    res = run_value(
        tables, "-m", "asymmetric-knn", "--groups", "seller", "--order", "core,acme,zeta", "-q"
    )
    assert res.exit_code == 2 and "zeta" in res.output


def test_value_with_confidence_intervals(tables: dict[str, Path]) -> None:
    dest = tables["dir"] / "ci.parquet"
    res = run_value(tables, "--ci", "0.9", "-o", str(dest), "-q")
    assert res.exit_code == 0, res.output
    assert "90% CI" in res.output
    saved = ValuationResult.load(dest)
    assert saved.confidence == 0.9
    np.testing.assert_allclose(saved.values, _expected(tables), atol=1e-12)
    assert np.all(saved.ci_low <= saved.values) and np.all(saved.values <= saved.ci_high)
    assert np.all(saved.ci_high - saved.ci_low > 0)
    # K=5 on 120 rows is outside the regime the intervals are calibrated for: one line says so
    assert "warning: K=5 neighbours on N=120 points is not deletion-stable" in res.output
    assert res.output.count("warning:") == 1
    res = run_value(tables, "--ci", "0.9", "-k", "6", "-q")
    assert res.exit_code == 0 and "warning" not in res.output
    res = run_value(tables, "--ci", "0.9", "-m", "banzhaf", "-q")
    assert res.exit_code == 2 and "not available for banzhaf" in res.output


def test_tmc_shapley_with_confidence_intervals(tables: dict[str, Path]) -> None:
    dest = tables["dir"] / "tmc_ci.parquet"
    common = ["-m", "tmc-shapley", "--model", "naive-bayes", "--budget", "4", "--ci", "0.9"]
    res = run_value(tables, *common, "--ci-samples", "3", "-j", "1", "-o", str(dest), "-q")
    assert res.exit_code == 0, res.output
    assert "90% CI" in res.output
    saved = ValuationResult.load(dest)
    assert saved.method == "tmc-shapley" and saved.confidence == 0.9
    assert saved.params["ci_samples"] == {"n_outer": 3, "n_inner": 3}
    assert np.all(saved.ci_low <= saved.values) and np.all(saved.values <= saved.ci_high)
    res = run_value(tables, *common, "--ci-samples", "1", "-q")
    assert res.exit_code == 2 and "n_outer must be >= 2" in res.output


@pytest.mark.parametrize("module", ["databazaar", "databazaar.cli"])
def test_python_dash_m_runs_the_same_command(module: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", module, "--version"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"databazaar {__version__}"
    proc = subprocess.run(
        [sys.executable, "-m", module, "no-such-command"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_value_json_for_scripts(tables: dict[str, Path]) -> None:
    import json

    res = run_value(tables, "--json", "-q")
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)  # the whole output is one JSON document
    assert payload["method"] == "knn-shapley" and payload["params"]["k"] == 5
    got = np.array([r["value"] for r in sorted(payload["values"], key=lambda r: r["id"])])
    np.testing.assert_allclose(got, _expected(tables), rtol=0, atol=1e-9)


def test_output_is_not_wrapped_when_piped(capsys: pytest.CaptureFixture[str]) -> None:
    """Piped to a file, a long line stays one line (rich used to wrap it at 80 columns)."""
    from databazaar.cli import _console

    line = " ".join(f"{0.123456789 * i:.9f}" for i in range(30))  # 359 characters
    _console().print(f"[bold]values[/bold] {line}")
    out = capsys.readouterr().out
    assert out == f"values {line}\n"
