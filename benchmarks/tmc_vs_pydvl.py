"""TMC-Shapley: databazaar against pyDVL 0.10, utility evaluations per second.

Run:  .venv/bin/python benchmarks/tmc_vs_pydvl.py [--n-jobs 2] [--n-permutations 3]

Same data (``make_classification``, ``n_train`` + ``n_test`` rows, ``d`` features), same
model (``LogisticRegression`` or ``KNeighborsClassifier``), same scorer (accuracy), same
score for the empty set and failed fits (the majority-class rate of the test labels) and
the same truncation rule and the very same permutations for both (pyDVL's sampler is fed
databazaar's permutation sequence for the seed, so both evaluate the same coalitions and
their TMC estimates agree to rounding, reported as ``max_abs_value_diff_vs_pydvl``):

* ours: ``TMCShapley(truncation_tol=0.01, truncation_patience=1)``, stopping after
  ``n_permutations`` permutations;
* pyDVL: ``TMCShapleyValuation`` with ``RelativeTruncation(rtol=0.01,
  burn_in_fraction=0)`` (truncate at the first prefix within 1 % of u(D), i.e. patience 1)
  and ``MaxUpdates(n_permutations)``, inside ``joblib.parallel_config(n_jobs=...)``.

A *utility evaluation* is one call to the model's ``fit`` (counted by a subclass of the
model shared by both libraries, through per-process counter files in a directory that is
a model parameter, so copies in worker processes count too).  The rate is evaluations
divided by the wall time of ``fit``.  pyDVL is measured twice: as a user runs it, and
inside ``threadpoolctl.threadpool_limits(1)`` (only for ``n_jobs=1``), which isolates how
much of the gap is BLAS threading: databazaar's ``Utility`` limits BLAS to one thread per
fit by default (``blas_threads=1``), which is most of the speed-up for small models on
small data.

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


def _count_fit(count_dir: str | None) -> None:
    """Append one byte to this process's counter file (a few microseconds)."""
    if count_dir:
        with open(os.path.join(count_dir, f"{os.getpid()}.cnt"), "ab") as fh:
            fh.write(b"x")


class CountingLogisticRegression(LogisticRegression):
    """LogisticRegression whose ``fit`` calls are counted in files under ``count_dir``.

    The directory is a constructor parameter, so clones and copies pickled to worker
    processes count into the same place.
    """

    def __init__(self, count_dir: str | None = None, max_iter: int = 200) -> None:
        super().__init__(max_iter=max_iter)
        self.count_dir = count_dir

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> CountingLogisticRegression:
        _count_fit(self.count_dir)
        return super().fit(X, y, sample_weight=sample_weight)


class CountingKNeighborsClassifier(KNeighborsClassifier):
    """KNeighborsClassifier whose ``fit`` calls are counted in files under ``count_dir``."""

    def __init__(self, count_dir: str | None = None, n_neighbors: int = 5) -> None:
        super().__init__(n_neighbors=n_neighbors)
        self.count_dir = count_dir

    def fit(self, X: Any, y: Any) -> CountingKNeighborsClassifier:
        _count_fit(self.count_dir)
        return super().fit(X, y)


def _make_model(model: str, count_dir: str) -> Any:
    if model == "logreg":
        return CountingLogisticRegression(count_dir)
    if model == "knn":
        return CountingKNeighborsClassifier(count_dir)
    raise ValueError(f"model must be 'logreg' or 'knn', got {model!r}")


class _FitCounter:
    """Context manager: a fresh counter directory ``.dir``; ``.count`` after exit."""

    def __enter__(self) -> _FitCounter:
        self.dir = tempfile.mkdtemp(prefix="dbz-fits-")
        self.count = 0
        return self

    def __exit__(self, *exc: Any) -> None:
        self.count = sum(p.stat().st_size for p in Path(self.dir).glob("*.cnt"))
        shutil.rmtree(self.dir, ignore_errors=True)


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
    from databazaar.valuation.montecarlo import MaxSamples, TMCShapley
    from databazaar.valuation.utility import Utility

    x_tr, y_tr, x_te, y_te = data
    est = TMCShapley(
        truncation_tol=0.01,
        truncation_patience=1,
        stopping=MaxSamples(n_permutations),
        n_jobs=n_jobs,
        random_state=seed,
    )
    with _FitCounter() as counter:
        model_ = _make_model(model, counter.dir)
        utility = Utility(
            model_, x_tr, y_tr, x_te, y_te, "accuracy", default_score=_default_score(y_te)
        )
        t0 = time.perf_counter()
        est.fit(utility)
        seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "evaluations": counter.count,
        "utility_n_evaluations": utility.n_evaluations,
        "permutations": int(est.result_.params["n_samples"]),
        "values": est.result_.values,
    }


def _same_permutation_sampler(seed: int, truncation: Any) -> Any:
    """A pyDVL PermutationSampler drawing exactly databazaar's permutations for ``seed``.

    databazaar draws permutation ``j`` from ``sample_rng(seed, j)``; feeding pyDVL the
    same sequence makes both libraries evaluate the same coalitions, so evaluations per
    second compare like with like and the two TMC estimates must agree.
    """
    from pydvl.valuation.samplers import PermutationSampler
    from pydvl.valuation.types import Sample

    from databazaar.valuation.montecarlo import sample_rng

    class SamePermutations(PermutationSampler):
        def generate(self, indices: Any) -> Any:
            j = 0
            while True:
                yield Sample(
                    None, np.asarray(indices)[sample_rng(seed, j).permutation(len(indices))]
                )
                j += 1

    return SamePermutations(truncation=truncation, seed=seed)


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
    limit = threadpool_limits(blas_threads) if blas_threads else nullcontext()
    with _FitCounter() as counter, parallel_config(n_jobs=n_jobs), limit:
        utility = ModelUtility(_make_model(model, counter.dir), scorer, show_warnings=False)
        truncation = RelativeTruncation(rtol=0.01, burn_in_fraction=0.0)
        valuation = TMCShapleyValuation(
            utility,
            truncation=truncation,
            is_done=MaxUpdates(n_permutations),
            seed=seed,
            show_warnings=False,
        )
        valuation.sampler = _same_permutation_sampler(seed, truncation)
        t0 = time.perf_counter()
        valuation.fit(train)
        seconds = time.perf_counter() - t0
    result = valuation.result
    values = np.empty(len(result.values))
    values[np.asarray(result.indices)] = result.values
    return {
        "seconds": seconds,
        "evaluations": counter.count,
        "permutations": int(np.max(result.counts)),
        "values": values,
    }


def interleaved_evaluation_cost(
    data: tuple[np.ndarray, ...], model: str, n_subsets: int = 60, seed: int = 0
) -> dict[str, Any]:
    """Cost of one utility evaluation in each library on the *same* random coalitions.

    Calls alternate (ours, pyDVL, ours, ...) inside ``threadpool_limits(1)``, so machine
    load hits both alike; also checks both utilities give the same score.
    """
    from pydvl.valuation import Dataset, ModelUtility, SupervisedScorer
    from pydvl.valuation.types import Sample
    from threadpoolctl import threadpool_limits

    from databazaar.valuation.utility import Utility

    x_tr, y_tr, x_te, y_te = data
    default = _default_score(y_te)
    base = {"logreg": LogisticRegression(max_iter=200), "knn": KNeighborsClassifier(5)}[model]
    ours = Utility(base, x_tr, y_tr, x_te, y_te, default_score=default, cache=False)
    scorer = SupervisedScorer("accuracy", Dataset(x_te, y_te), default=default)
    theirs = ModelUtility(base, scorer, show_warnings=False).with_dataset(Dataset(x_tr, y_tr))
    rng = np.random.default_rng(seed)
    n = x_tr.shape[0]
    subsets = [rng.permutation(n)[: rng.integers(2, n + 1)] for _ in range(n_subsets)]
    t_ours = t_theirs = 0.0
    diff = 0.0
    with threadpool_limits(1):
        for s in subsets:
            t0 = time.perf_counter()
            a = ours(s)
            t1 = time.perf_counter()
            b = theirs(Sample(None, s))
            t2 = time.perf_counter()
            t_ours += t1 - t0
            t_theirs += t2 - t1
            diff = max(diff, abs(a - b))
    return {
        "ours_ms_per_eval": 1e3 * t_ours / n_subsets,
        "pydvl_ms_per_eval": 1e3 * t_theirs / n_subsets,
        "ratio": t_theirs / t_ours,
        "max_abs_utility_diff": diff,
        "n_subsets": n_subsets,
    }


def run(
    n_train: int = 200,
    n_test: int = 100,
    d: int = 32,
    n_permutations: int = 3,
    seed: int = 0,
    model: str = "logreg",
    n_jobs: int = 1,
    repeats: int = 3,
) -> dict[str, Any]:
    """Time TMC-Shapley in databazaar and pyDVL on the same data, model and scorer.

    Returns a dict with ``ours_evals_per_sec``, ``pydvl_evals_per_sec``, ``ratio``
    (ours / pyDVL), ``pydvl_blas1_evals_per_sec`` and ``ratio_vs_pydvl_blas1`` (pyDVL with
    BLAS limited to one thread; only when ``n_jobs == 1``), ``interleaved`` (per-evaluation
    cost of both utilities on the same coalitions, alternating calls, and the largest
    difference between their scores), the raw counts and times, and the setup.  Ours and
    pyDVL-with-one-BLAS-thread are the best of ``repeats`` runs; pyDVL as a user runs it,
    which is far slower, runs once.  A default run takes under a minute on an idle
    2-core machine.
    """
    import pydvl

    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    data = make_data(n_train, n_test, d, seed)
    warnings.filterwarnings("ignore", category=RuntimeWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    # warm-up: imports, and with n_jobs > 1 the worker pool, every worker importing both
    # libraries (several tasks each, so that no worker is left cold)
    warm = 1 if n_jobs == 1 else 4 * max(n_jobs, 2)
    time_ours(data, model, warm, n_jobs, seed)
    if n_jobs != 1:
        time_pydvl(data, model, warm, n_jobs, seed)

    def best(runs: list[dict[str, Any]]) -> dict[str, Any]:
        return max(runs, key=lambda r: r["evaluations"] / r["seconds"])

    ours = best([time_ours(data, model, n_permutations, n_jobs, seed) for _ in range(repeats)])
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
        # same permutations and truncation rule: the two TMC estimates must agree
        "max_abs_value_diff_vs_pydvl": float(np.max(np.abs(ours["values"] - theirs["values"]))),
    }
    out["ratio"] = out["ours_evals_per_sec"] / out["pydvl_evals_per_sec"]
    if n_jobs == 1:
        blas1 = best(
            [
                time_pydvl(data, model, n_permutations, n_jobs, seed, blas_threads=1)
                for _ in range(repeats)
            ]
        )
        out["pydvl_blas1_seconds"] = round(blas1["seconds"], 4)
        out["pydvl_blas1_evaluations"] = blas1["evaluations"]
        out["pydvl_blas1_evals_per_sec"] = blas1["evaluations"] / blas1["seconds"]
        out["ratio_vs_pydvl_blas1"] = out["ours_evals_per_sec"] / out["pydvl_blas1_evals_per_sec"]
    out["interleaved"] = interleaved_evaluation_cost(data, model, seed=seed)
    out["repeats"] = repeats
    out["machine"] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        # other processes competing for the cores inflate the BLAS-threading penalty
        "load_average_1min_before": load_before,
    }
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
    if "max_abs_value_diff_vs_pydvl" in res:
        lines.append(
            "same permutations in both: max |TMC value ours - pyDVL| = "
            f"{res['max_abs_value_diff_vs_pydvl']:.1e}"
        )
    inter = res.get("interleaved")
    if inter:
        lines.append(
            f"same {inter['n_subsets']} coalitions, calls alternating, both with 1 BLAS "
            f"thread: ours {inter['ours_ms_per_eval']:.2f} ms, pyDVL "
            f"{inter['pydvl_ms_per_eval']:.2f} ms per evaluation ({inter['ratio']:.2f}x); "
            f"largest score difference {inter['max_abs_utility_diff']:.1e}"
        )
    if "ratio_vs_pydvl_blas1" in res:
        lines.append(f"ratio (ours / pyDVL with 1 BLAS thread): {res['ratio_vs_pydvl_blas1']:.2f}x")
    load = res.get("machine", {}).get("load_average_1min_before")
    if load is not None:
        lines.append(
            f"machine: {res['machine']['cpus']} CPUs, 1-minute load average {load:.1f} before "
            "the run (other processes on the cores inflate the multi-threaded-BLAS penalty)"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-train", type=int, default=200)
    ap.add_argument("--n-test", type=int, default=100)
    ap.add_argument("--d", type=int, default=32)
    ap.add_argument("--n-permutations", type=int, default=3)
    ap.add_argument("--model", choices=["logreg", "knn"], default="logreg")
    ap.add_argument("--n-jobs", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    res = run(
        n_train=args.n_train,
        n_test=args.n_test,
        d=args.d,
        n_permutations=args.n_permutations,
        seed=args.seed,
        model=args.model,
        n_jobs=args.n_jobs,
        repeats=args.repeats,
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "tmc_vs_pydvl.json").write_text(json.dumps(res, indent=2) + "\n")
    (RESULTS / "tmc_vs_pydvl.md").write_text(to_markdown(res))
    print(to_markdown(res))


if __name__ == "__main__":
    main()
