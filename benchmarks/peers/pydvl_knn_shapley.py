"""Time pyDVL 0.10's exact KNN-Shapley (``KNNShapleyValuation``) on one data set.

It runs in pyDVL's own venv (``benchmarks/peers/.venv-pydvl``, built by
``setup_pydvl.sh``: pyDVL 0.10 needs numpy < 2), as a script with the same npz interface
as ``odv_knn_shapley.py``::

    benchmarks/peers/.venv-pydvl/bin/python benchmarks/peers/pydvl_knn_shapley.py \
        data.npz out.npz --k 5 [--n-jobs 2]

``run()`` does the same in-process for code already inside that venv.

What pyDVL computes (``pydvl/valuation/methods/knn_shapley.py``): it fits a
``KNeighborsClassifier(n_neighbors=K)``, asks it for *all* N neighbours of every test
point (``kneighbors(x_test, n_neighbors=N)``), and runs the recursion of Jia et al.
(2019, Theorem 1) per test point j from the farthest training point inwards::

    s[a_N] = 1[y_{a_N} = y_j] / N
    s[a_i] = s[a_{i+1}] + (1[y_{a_i} = y_j] - 1[y_{a_{i+1}} = y_j]) / max(K, i)

in a pure-Python double loop, then **averages** over the test points.  Test points are
split over ``n_jobs`` joblib workers; here ``n_jobs=1`` unless told otherwise, so the
timing is pyDVL's single-core speed.  The timed region is ``valuation.fit(data)``
(neighbour search plus recursion); building the ``Dataset`` objects is excluded.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def run(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    k: int,
    n_jobs: int = 1,
) -> tuple[np.ndarray, float, float]:
    """pyDVL KNN-Shapley values (input order, float64), the wall seconds ``fit`` took and
    the CPU seconds of this process during it (all of it for ``n_jobs=1``)."""
    from joblib import parallel_config
    from pydvl.valuation.dataset import Dataset
    from pydvl.valuation.methods.knn_shapley import KNNShapleyValuation
    from sklearn.neighbors import KNeighborsClassifier

    train = Dataset(np.asarray(x_train), np.asarray(y_train))
    test = Dataset(np.asarray(x_test), np.asarray(y_test))
    valuation = KNNShapleyValuation(
        KNeighborsClassifier(n_neighbors=k), test_data=test, progress=False
    )
    with parallel_config(n_jobs=n_jobs):
        # warm-up on a slice: starts joblib's worker pool (reused by the timed fit), so the
        # time is pyDVL's valuation, not process start-up of a fresh interpreter
        warm = KNNShapleyValuation(
            KNeighborsClassifier(n_neighbors=k),
            test_data=Dataset(np.asarray(x_test)[:20], np.asarray(y_test)[:20]),
            progress=False,
        )
        warm.fit(Dataset(np.asarray(x_train)[:200], np.asarray(y_train)[:200]))
        t0, c0 = time.perf_counter(), time.process_time()
        valuation.fit(train)
        seconds = time.perf_counter() - t0
        cpu_seconds = time.process_time() - c0

    result = valuation.result
    values = np.empty(len(train), dtype=np.float64)
    values[np.asarray(result.indices, dtype=np.int64)] = result.values
    return values, seconds, cpu_seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="npz with x_train, y_train, x_test, y_test")
    parser.add_argument("out", help="npz to write values and seconds to")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--n-jobs", type=int, default=1)
    args = parser.parse_args(argv)
    with np.load(args.data, allow_pickle=False) as d:
        arrays = [d[name] for name in ("x_train", "y_train", "x_test", "y_test")]
    values, seconds, cpu_seconds = run(*arrays, k=args.k, n_jobs=args.n_jobs)

    import pydvl

    np.savez(
        args.out,
        values=values,
        seconds=seconds,
        cpu_seconds=cpu_seconds,
        k=args.k,
        n_jobs=args.n_jobs,
        pydvl_version=pydvl.__version__,
    )
    print(f"pydvl knn-shapley: n={len(values)} m={len(arrays[2])} k={args.k} {seconds:.3f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
