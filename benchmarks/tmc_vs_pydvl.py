"""TMC-Shapley: databazaar against pyDVL 0.10, utility evaluations per second.

Run:  .venv/bin/python benchmarks/tmc_vs_pydvl.py [--n-jobs 2] [--n-permutations 4]

Same data (``make_classification``, ``n_train`` + ``n_test`` rows, ``d`` features), same
model (``LogisticRegression`` or ``KNeighborsClassifier``), same scorer (accuracy), same
score for the empty set and failed fits (the majority-class rate of the test labels) and
the same truncation rule for both:

* ours: ``TMCShapley(truncation_tol=0.01, truncation_patience=1)``, stopping after
  ``n_permutations`` permutations;
* pyDVL: ``TMCShapleyValuation`` with ``RelativeTruncation(rtol=0.01,
  burn_in_fraction=0)`` (truncate at the first prefix within 1 % of u(D), i.e. patience 1)
  and ``MaxUpdates(n_permutations)``, inside ``joblib.parallel_config(n_jobs=...)``.

A *utility evaluation* is one call to the model's ``fit`` (counted by a subclass of the
model shared by both libraries, through per-process counter files so worker processes
count too).  The rate is evaluations / wall time of ``fit``.  pyDVL is measured twice: as
a user runs it, and inside ``threadpoolctl.threadpool_limits(1)`` (only for
``n_jobs=1``), which isolates how much of the gap is BLAS threading: databazaar's
``Utility`` limits BLAS to one thread per fit by default (``blas_threads=1``), which is
most of the speed-up for small models on small data.

``run()`` returns a dict (``ours_evals_per_sec``, ``pydvl_evals_per_sec``, ``ratio`` =
ours / pyDVL, ...); ``benchmarks/knn_shapley_vs_peers.py`` calls it.  ``__main__``
prints a markdown table and writes ``benchmarks/results/tmc_vs_pydvl.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
_COUNT_DIR_ENV = "DATABAZAAR_BENCH_FIT_COUNT_DIR"


def _count_fit() -> None:
    """Append one byte to this process's counter file (a few microseconds)."""
    d = os.environ.get(_COUNT_DIR_ENV)
    if d:
        with open(os.path.join(d, f"{os.getpid()}.cnt"), "ab") as fh:
            fh.write(b"x")


class CountingLogisticRegression(LogisticRegression):
    """LogisticRegression whose ``fit`` calls are counted (the utility evaluations)."""

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> CountingLogisticRegression:
        _count_fit()
        return super().fit(X, y, sample_weight=sample_weight)


class CountingKNeighborsClassifier(KNeighborsClassifier):
    """KNeighborsClassifier whose ``fit`` calls are counted."""

    def fit(self, X: Any, y: Any) -> CountingKNeighborsClassifier:
        _count_fit()
        return super().fit(X, y)


def _make_model(model: str) -> Any:
    if model == "logreg":
        return CountingLogisticRegression(max_iter=200)
    if model == "knn":
        return CountingKNeighborsClassifier(n_neighbors=5)
    raise ValueError(f"model must be 'logreg' or 'knn', got {model!r}")


class _FitCounter:
    """Context manager: a fresh counter directory; ``.count`` after exit."""

    def __enter__(self) -> _FitCounter:
        self.dir = tempfile.mkdtemp(prefix="dbz-fits-")
        self._old = os.environ.get(_COUNT_DIR_ENV)
        os.environ[_COUNT_DIR_ENV] = self.dir
        self.count = 0
        return self

    def __exit__(self, *exc: Any) -> None:
        self.count = sum(p.stat().st_size for p in Path(self.dir).glob("*.cnt"))
        shutil.rmtree(self.dir, ignore_errors=True)
        if self._old is None:
            os.environ.pop(_COUNT_DIR_ENV, None)
        else:
            os.environ[_COUNT_DIR_ENV] = self._old


def make_data(n_train: int, n_test: int, d: int, seed: int) -> tuple[np.ndarray, ...]:
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_train + n_test,
        n_features=d,
        n_informative=max(2, d // 4),
        n_redundant=min(4, d // 4),
        flip_y=0.05,
        random_state=seed,
    )
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def _default_score(y_test: np.ndarray) -> float:
    _, counts = np.unique(y_test, return_counts=True)
    return float(counts.max() / counts.sum())


def time_ours(
    data: tuple[np.ndarray, ...], model: str, n_permutations: int, n_jobs: int, seed: int
) -> dict[str, Any]:
    from databazaar.valuation.sampling import MaxSamples, TMCShapley
    from databazaar.valuation.utility import Utility

    x_tr, y_tr, x_te, y_te = data
    utility = Utility(
        _make_model(model), x_tr, y_tr, x_te, y_te, "accuracy", default_score=_default_score(y_te)
    )
    est = TMCShapley(
        truncation_tol=0.01,
        truncation_patience=1,
        stopping=MaxSamples(n_permutations),
        n_jobs=n_jobs,
        random_state=seed,
    )
    with _FitCounter() as counter:
        t0 = time.perf_counter()
        est.fit(utility)
        seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "evaluations": counter.count,
        "utility_n_evaluations": utility.n_evaluations,
        "permutations": int(est.result_.params["n_samples"]),
    }


def time_pydvl(
    data: tuple[np.ndarray, ...],
    model: str,
    n_permutations: int,
    n_jobs: int,
    seed: int,
    blas_threads: int | None = None,
) -> dict[str, Any]:
    from contextlib import nullcontext

    from joblib import parallel_config
    from pydvl.valuation import (
        Dataset,
        MaxUpdates,
        ModelUtility,
        RelativeTruncation,
        SupervisedScorer,
        TMCShapleyValuation,
    )
    from threadpoolctl import threadpool_limits

    x_tr, y_tr, x_te, y_te = data
    train, test = Dataset(x_tr, y_tr), Dataset(x_te, y_te)
    scorer = SupervisedScorer("accuracy", test, default=_default_score(y_te), range=(0, 1))
    utility = ModelUtility(_make_model(model), scorer, show_warnings=False)
    valuation = TMCShapleyValuation(
        utility,
        truncation=RelativeTruncation(rtol=0.01, burn_in_fraction=0.0),
        is_done=MaxUpdates(n_permutations),
        seed=seed,
        show_warnings=False,
    )
    limit = threadpool_limits(blas_threads) if blas_threads else nullcontext()
    with _FitCounter() as counter, parallel_config(n_jobs=n_jobs), limit:
        t0 = time.perf_counter()
        valuation.fit(train)
        seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "evaluations": counter.count,
        "permutations": int(np.max(valuation.result.counts)),
    }


def run(
    n_train: int = 200,
    n_test: int = 100,
    d: int = 32,
    n_permutations: int = 4,
    seed: int = 0,
    model: str = "logreg",
    n_jobs: int = 1,
) -> dict[str, Any]:
    """Time TMC-Shapley in databazaar and pyDVL on the same data, model and scorer.

    Returns a dict with ``ours_evals_per_sec``, ``pydvl_evals_per_sec``, ``ratio``
    (ours / pyDVL), ``pydvl_blas1_evals_per_sec`` and ``ratio_vs_pydvl_blas1`` (pyDVL with
    BLAS limited to one thread; only when ``n_jobs == 1``), the raw counts and times, and
    the setup.  A default run takes well under a minute on two cores.
    """
    import pydvl

    data = make_data(n_train, n_test, d, seed)
    warnings.filterwarnings("ignore", category=RuntimeWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    time_ours(data, model, 1, n_jobs, seed)  # warm-up: imports (and the worker pool)
    if n_jobs != 1:
        time_pydvl(data, model, 1, n_jobs, seed)

    ours = time_ours(data, model, n_permutations, n_jobs, seed)
    theirs = time_pydvl(data, model, n_permutations, n_jobs, seed)
    out: dict[str, Any] = {
        "n_train": n_train,
        "n_test": n_test,
        "d": d,
        "model": model,
        "scorer": "accuracy",
        "n_permutations": n_permutations,
        "n_jobs": n_jobs,
        "truncation": "relative, rtol=0.01, patience 1 (both)",
        "pydvl_version": pydvl.__version__,
        "ours_seconds": round(ours["seconds"], 4),
        "ours_evaluations": ours["evaluations"],
        "ours_permutations": ours["permutations"],
        "pydvl_seconds": round(theirs["seconds"], 4),
        "pydvl_evaluations": theirs["evaluations"],
        "pydvl_permutations": theirs["permutations"],
        "ours_evals_per_sec": ours["evaluations"] / ours["seconds"],
        "pydvl_evals_per_sec": theirs["evaluations"] / theirs["seconds"],
        "ours_permutations_per_sec": ours["permutations"] / ours["seconds"],
        "pydvl_permutations_per_sec": theirs["permutations"] / theirs["seconds"],
    }
    out["ratio"] = out["ours_evals_per_sec"] / out["pydvl_evals_per_sec"]
    if n_jobs == 1:
        blas1 = time_pydvl(data, model, n_permutations, n_jobs, seed, blas_threads=1)
        out["pydvl_blas1_seconds"] = round(blas1["seconds"], 4)
        out["pydvl_blas1_evaluations"] = blas1["evaluations"]
        out["pydvl_blas1_evals_per_sec"] = blas1["evaluations"] / blas1["seconds"]
        out["ratio_vs_pydvl_blas1"] = out["ours_evals_per_sec"] / out["pydvl_blas1_evals_per_sec"]
    out["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version()}
    return out


def to_markdown(res: dict[str, Any]) -> str:
    lines = [
        f"TMC-Shapley, {res['model']} on make_classification "
        f"(n_train={res['n_train']}, n_test={res['n_test']}, d={res['d']}), "
        f"{res['n_permutations']} permutations, n_jobs={res['n_jobs']}, "
        f"truncation {res['truncation']}",
        "",
        "| implementation | utility evaluations | seconds | evaluations / s |",
        "|---|---:|---:|---:|",
        f"| databazaar | {res['ours_evaluations']} | {res['ours_seconds']:.2f} "
        f"| {res['ours_evals_per_sec']:.1f} |",
        f"| pyDVL {res['pydvl_version']} | {res['pydvl_evaluations']} "
        f"| {res['pydvl_seconds']:.2f} | {res['pydvl_evals_per_sec']:.1f} |",
    ]
    if "pydvl_blas1_evals_per_sec" in res:
        lines.append(
            f"| pyDVL {res['pydvl_version']}, BLAS limited to 1 thread "
            f"| {res['pydvl_blas1_evaluations']} | {res['pydvl_blas1_seconds']:.2f} "
            f"| {res['pydvl_blas1_evals_per_sec']:.1f} |"
        )
    lines += ["", f"ratio (ours / pyDVL): {res['ratio']:.2f}x"]
    if "ratio_vs_pydvl_blas1" in res:
        lines.append(f"ratio (ours / pyDVL with 1 BLAS thread): {res['ratio_vs_pydvl_blas1']:.2f}x")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-train", type=int, default=200)
    ap.add_argument("--n-test", type=int, default=100)
    ap.add_argument("--d", type=int, default=32)
    ap.add_argument("--n-permutations", type=int, default=4)
    ap.add_argument("--model", choices=["logreg", "knn"], default="logreg")
    ap.add_argument("--n-jobs", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    res = run(
        n_train=args.n_train,
        n_test=args.n_test,
        d=args.d,
        n_permutations=args.n_permutations,
        seed=args.seed,
        model=args.model,
        n_jobs=args.n_jobs,
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "tmc_vs_pydvl.json").write_text(json.dumps(res, indent=2) + "\n")
    (RESULTS / "tmc_vs_pydvl.md").write_text(to_markdown(res))
    print(to_markdown(res))


if __name__ == "__main__":
    main()
