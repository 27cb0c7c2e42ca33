"""parallel_map on every backend (Ray on a local 2-CPU instance) and its error paths."""

from __future__ import annotations

import functools
import operator
import sys
import types
from collections.abc import Iterator

import numpy as np
import pytest

from ci_rules import require  # type: ignore[import-not-found]
from databazaar.core import parallel
from databazaar.core.errors import InvalidInput
from databazaar.core.parallel import effective_n_jobs, parallel_map
from databazaar.valuation.montecarlo import BanzhafMSR, LeaveOneOut, MaxSamples, TMCShapley
from databazaar.valuation.utility import GameUtility


def _square(x: int) -> int:
    return x * x


@pytest.mark.parametrize(
    ("backend", "n_jobs"),
    [
        ("processes", 1),
        ("processes", 2),
        ("threads", 2),
        ("threads", 1),
        ("processes", -1),
    ],
)
def test_results_come_back_in_task_order(backend: str, n_jobs: int) -> None:
    tasks = list(range(23))[::-1]
    assert parallel_map(_square, tasks, n_jobs=n_jobs, backend=backend) == [t * t for t in tasks]


def test_closures_and_partials_cross_process_boundaries() -> None:
    offset = 5
    assert parallel_map(lambda x: x + offset, [1, 2, 3], n_jobs=2) == [6, 7, 8]
    assert parallel_map(functools.partial(operator.mul, 3), [1, 2], n_jobs=2) == [3, 6]


def test_empty_and_single_task() -> None:
    assert parallel_map(_square, [], n_jobs=2) == []
    assert parallel_map(_square, iter([4]), n_jobs=2) == [16]


def test_effective_n_jobs() -> None:
    assert effective_n_jobs(1) == 1
    assert effective_n_jobs(3, "threads") == 3
    assert effective_n_jobs(-1) >= 1
    assert effective_n_jobs(2, "ray") == 2


@pytest.mark.parametrize("backend", ["dask", "", None, "RAY", 3, "joblib", "loky", "threading"])
def test_unknown_backend(backend) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput, match="unknown backend"):
        parallel_map(_square, [1], backend=backend)


@pytest.mark.parametrize("n_jobs", [0, 1.5, "2", True, None])
def test_bad_n_jobs(n_jobs) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput, match="n_jobs"):
        parallel_map(_square, [1], n_jobs=n_jobs)


def test_missing_ray_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail
    with pytest.raises(InvalidInput, match="distributed"):
        parallel_map(_square, [1, 2], backend="ray")


def test_ray_address_connects_to_a_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict] = []
    fake = types.SimpleNamespace(
        is_initialized=lambda: bool(calls),
        init=lambda **kw: calls.append(kw),
    )
    monkeypatch.setitem(sys.modules, "ray", fake)
    parallel.ensure_ray(2, "ray://head:10001")
    assert calls == [
        {"address": "ray://head:10001", "ignore_reinit_error": True, "log_to_driver": False}
    ]
    calls.clear()
    parallel.ensure_ray(2, None)
    assert calls == [
        {
            "num_cpus": 2,
            "include_dashboard": False,
            "ignore_reinit_error": True,
            "log_to_driver": False,
        }
    ]


# -- a real local Ray ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_ray() -> Iterator[object]:
    ray = require("ray", "pip install -e '.[distributed]'")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()


@pytest.mark.slow
def test_ray_backend(local_ray) -> None:  # type: ignore[no-untyped-def]
    # Ray workers cannot import this test module: send builtins and closures (by value)
    tasks = list(range(17))
    assert parallel_map(operator.neg, tasks, n_jobs=2, backend="ray") == [-t for t in tasks]
    offset = 2
    assert parallel_map(lambda x: x - offset, [5, 6], n_jobs=2, backend="ray") == [3, 4]

    weights = np.array([1.0, 2.0, 0.5, 3.0, 0.0, 1.5])

    def make() -> GameUtility:
        return GameUtility(lambda s: float(np.sqrt(weights[list(s)].sum())), 6)

    for est in (
        TMCShapley(0.01, stopping=MaxSamples(40), random_state=3),
        BanzhafMSR(stopping=MaxSamples(200), random_state=3),
        LeaveOneOut(),
    ):
        ref_game, ray_game = make(), make()
        ref = est.fit(ref_game).result_
        est.set_params(backend="ray", n_jobs=2)
        on_ray = est.fit(ray_game).result_
        assert np.array_equal(on_ray.values, ref.values)
        assert np.array_equal(on_ray.stderr, ref.stderr)
        # counters of work done in Ray workers are added to the driver's utility
        assert ray_game.n_evaluations >= ref_game.n_evaluations > 0


# -- one vocabulary: which processes actually run the work --------------------------------


def _pid_game(log: str):  # type: ignore[no-untyped-def]
    def u(s: tuple[int, ...]) -> float:
        import os

        with open(log, "a") as fh:
            fh.write(f"{os.getpid()}\n")
        return float(len(s))

    return GameUtility(u, 8, cache=False)


def _pids(log) -> set[int]:  # type: ignore[no-untyped-def]
    return {int(line) for line in log.read_text().split()}


@pytest.mark.parametrize("backend", ["threads", "processes"])
def test_backend_threads_runs_in_one_process_processes_in_several(tmp_path, backend) -> None:  # type: ignore[no-untyped-def]
    import os

    log = tmp_path / "pids"
    est = TMCShapley(0.0, stopping=MaxSamples(16), n_jobs=2, backend=backend, batch_size=1)
    values = est.set_params(random_state=0).fit(_pid_game(str(log))).values_
    np.testing.assert_allclose(values, 1.0)  # u = |S|: every marginal is exactly 1
    pids = _pids(log)
    if backend == "threads":
        assert pids == {os.getpid()}
    else:
        assert len(pids - {os.getpid()}) >= 1 and len(pids) >= 2


@pytest.mark.parametrize("backend", ["threads", "processes"])
def test_cli_backend_flag_picks_threads_or_processes(tmp_path, monkeypatch, backend) -> None:  # type: ignore[no-untyped-def]
    """``databazaar value --backend threads`` fits every model in this process."""
    import os

    from sklearn.datasets import load_iris
    from sklearn.neighbors import KNeighborsClassifier
    from typer.testing import CliRunner

    from databazaar.cli import app

    log = tmp_path / "pids"

    class PidKNN(KNeighborsClassifier):
        def __init__(self, n_neighbors: int = 3, log: str = str(log)) -> None:
            super().__init__(n_neighbors=n_neighbors)
            self.log = log

        def fit(self, X, y):  # type: ignore[no-untyped-def]
            with open(self.log, "a") as fh:
                fh.write(f"{os.getpid()}\n")
            return super().fit(X, y)

    monkeypatch.setattr("databazaar.valuation.tabular.make_model", lambda name, k=5: PidKNN())
    frame = load_iris(as_frame=True).frame.sample(frac=1.0, random_state=0)
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    frame.iloc[:30].to_csv(train, index=False)
    frame.iloc[30:60].to_csv(test, index=False)
    args = ["value", str(train), "-t", "target", "--test", str(test), "--method"]
    args += ["tmc-shapley", "--budget", "8", "-j", "2", "--backend", backend, "-q"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    pids = _pids(log)
    if backend == "threads":
        assert pids == {os.getpid()}
    else:
        assert len(pids) >= 2
