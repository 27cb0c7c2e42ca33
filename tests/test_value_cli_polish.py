"""`databazaar value` as a new user meets it: compiled kernels cached on disk, warnings for
degenerate targets, errors that name the offending columns."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from databazaar.cli import app
from databazaar.core.errors import InvalidInput
from databazaar.valuation import knn_regression_shapley, knn_shapley, threshold_knn_shapley
from databazaar.valuation._validate import check_features

runner = CliRunner()


@pytest.fixture
def tables(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.integers(0, 5, size=(60, 3)), columns=["a", "b", "c"])
    frame["label"] = rng.integers(0, 2, 60)
    frame["city"] = ["paris", "oslo"] * 30
    frame["shop"] = "main"
    frame[:45].to_csv(tmp_path / "train.csv", index=False)
    frame[45:].to_csv(tmp_path / "test.csv", index=False)
    one = frame[:45].assign(label=1)
    one.to_csv(tmp_path / "one.csv", index=False)
    return tmp_path


def value(d: Path, train: str, *args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(
        app, ["value", str(d / train), "-t", "label", "--test", str(d / "test.csv"), "-q", *args]
    )


@pytest.mark.slow
def test_second_call_loads_compiled_kernels_from_the_cache(tables: Path, tmp_path: Path) -> None:
    """numba compiles the kernels once (cache=True); a second process only loads them."""
    cache = tmp_path / "numba-cache"
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache), "NUMBA_DEBUG_CACHE": "1"}
    cmd = [
        sys.executable,
        "-c",
        "import sys; from databazaar.cli import main; main()",
        "value",
        str(tables / "train.csv"),
        "-t",
        "label",
        "--test",
        str(tables / "test.csv"),
        "-q",
    ]
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert "data saved" in first.stdout and "classification_accumulate" in first.stdout
    saved = sorted(p.name for p in cache.rglob("*.nbi"))
    assert any("classification_accumulate" in name for name in saved)
    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    assert "data loaded" in second.stdout
    assert "saved" not in second.stdout  # nothing was compiled again
    assert sorted(p.name for p in cache.rglob("*.nbi")) == saved


def test_one_class_target_warns(tables: Path) -> None:
    res = value(tables, "one.csv")
    assert res.exit_code == 0, res.output
    assert "warning: the target has one class (1)" in " ".join(res.output.split())
    res = value(tables, "one.csv", "-m", "loo", "-j", "1")
    assert "the target has one class" in " ".join(res.output.split())


def test_k_at_least_the_training_rows_warns(tables: Path) -> None:
    res = value(tables, "train.csv", "-k", "45")
    assert res.exit_code == 0, res.output
    assert "warning: k=45 >= the 45 training rows" in " ".join(res.output.split())
    quiet = value(tables, "train.csv", "-k", "44")
    assert "warning" not in quiet.output


def test_library_warnings_and_values_when_k_exceeds_n() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, 3, size=(4, 2)).astype(float), np.array([0, 1, 1, 0])
    xt, yt = rng.integers(0, 3, size=(3, 2)).astype(float), np.array([0, 1, 1])
    with pytest.warns(UserWarning, match="k=5 >= the 4 training rows"):
        res = knn_shapley(x, y, xt, yt, k=5)
    # every point is always among the K nearest: value = mean over test points of c / K
    np.testing.assert_allclose(res.values, (y[:, None] == yt[None]).mean(1) / 5, atol=1e-15)
    with pytest.warns(UserWarning, match="k=4 >= the 4 training rows"):
        knn_regression_shapley(x, y.astype(float), xt, yt.astype(float), k=4)
    with pytest.warns(UserWarning, match="one class"):
        threshold_knn_shapley(x, np.zeros(4), xt, yt, tau=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        knn_shapley(x, y, xt, yt, k=3)  # no warning for a sound problem


def test_non_numeric_feature_error_names_the_columns(tables: Path) -> None:
    res = value(tables, "train.csv", "--features", "a,city,shop")
    assert res.exit_code == 2
    text = " ".join(res.output.split())
    assert "non-numeric column(s) 'city', 'shop'" in text and "'a'" not in text
    frame = pd.DataFrame({"x": [1.0, 2.0], "name": ["u", "v"], "y": [3, 4]})
    with pytest.raises(InvalidInput, match=r"non-numeric column\(s\) 'name'"):
        check_features(frame, "x_train")
    with pytest.raises(InvalidInput, match=r"not numeric in column\(s\) 1"):
        check_features(np.array([[1.0, "a"], [2.0, "b"]], dtype=object), "x_train")
