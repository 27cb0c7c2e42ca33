"""Time pyDVL 0.10's TMC-Shapley on given data and *given* permutations.

Runs in pyDVL's own venv (pyDVL 0.10 needs numpy<2)::

    benchmarks/peers/.venv-pydvl/bin/python benchmarks/peers/pydvl_tmc.py in.npz out.json

``in.npz`` holds ``x_train, y_train, x_test, y_test``, ``permutations`` (one row per
permutation, the rows databazaar draws for its seed), ``default_score`` (the score of the
empty set and of failed fits), ``model`` (``knn``, ``gnb`` or ``logreg``), ``rtol``
(relative truncation tolerance) and ``repeats``.  pyDVL's ``TMCShapleyValuation`` runs
with ``RelativeTruncation(rtol, burn_in_fraction=0)`` (truncate at the first prefix
within ``rtol`` of u(D), i.e. patience 1), ``MaxUpdates(len(permutations))``, a sampler
that yields exactly the given permutations, ``n_jobs=1`` and BLAS limited to one thread
(``threadpoolctl``; the caller also sets ``OMP_NUM_THREADS=1`` and friends).  Model fits
are counted by subclasses that count ``fit`` calls.  ``out.json``: ``seconds`` (best of
``repeats`` runs of ``valuation.fit``), ``fits`` (model fits in that run), ``values``
(input order) and the pyDVL version.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import numpy as np


def _counting(cls: type) -> type:
    class Counting(cls):  # type: ignore[misc, valid-type]
        fits = 0

        def fit(self, X: Any, y: Any, **kw: Any) -> Any:
            Counting.fits += 1
            return super().fit(X, y, **kw)

    Counting.__name__ = f"Counting{cls.__name__}"
    return Counting


def _model(name: str) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import GaussianNB
    from sklearn.neighbors import KNeighborsClassifier

    if name == "knn":
        return _counting(KNeighborsClassifier)(n_neighbors=5)
    if name == "gnb":
        return _counting(GaussianNB)()
    if name == "logreg":
        return _counting(LogisticRegression)(max_iter=200)
    raise SystemExit(f"unknown model {name!r}")


def run_once(data: Any) -> dict[str, Any]:
    from joblib import parallel_config
    from pydvl.valuation import (
        Dataset,
        MaxUpdates,
        ModelUtility,
        RelativeTruncation,
        SupervisedScorer,
        TMCShapleyValuation,
    )
    from pydvl.valuation.samplers import PermutationSampler
    from pydvl.valuation.types import Sample

    perms = np.asarray(data["permutations"])

    class GivenPermutations(PermutationSampler):
        def generate(self, indices: Any) -> Any:
            idx = np.asarray(indices)
            for row in perms:
                yield Sample(None, idx[row])
            while True:  # never reached: MaxUpdates stops first
                yield Sample(None, idx)

    default = float(data["default_score"])
    test = Dataset(data["x_test"], data["y_test"])
    train = Dataset(data["x_train"], data["y_train"])
    scorer = SupervisedScorer("accuracy", test, default=default, range=(0, 1))
    model = _model(str(data["model"]))
    type(model).fits = 0
    with parallel_config(n_jobs=1):
        utility = ModelUtility(model, scorer, show_warnings=False)
        truncation = RelativeTruncation(rtol=float(data["rtol"]), burn_in_fraction=0.0)
        valuation = TMCShapleyValuation(
            utility,
            truncation=truncation,
            is_done=MaxUpdates(len(perms)),
            seed=0,
            show_warnings=False,
        )
        valuation.sampler = GivenPermutations(truncation=truncation, seed=0)
        t0 = time.perf_counter()
        valuation.fit(train)
        seconds = time.perf_counter() - t0
    result = valuation.result
    values = np.empty(len(result.values))
    values[np.asarray(result.indices)] = result.values
    return {"seconds": seconds, "fits": int(type(model).fits), "values": values.tolist()}


def main() -> None:
    import warnings

    import pydvl
    from threadpoolctl import threadpool_limits

    warnings.filterwarnings("ignore")
    data = dict(np.load(sys.argv[1], allow_pickle=False))
    with threadpool_limits(1):
        runs = [run_once(data) for _ in range(int(data["repeats"]))]
    best = min(runs, key=lambda r: r["seconds"])
    best["all_seconds"] = [r["seconds"] for r in runs]
    best["pydvl_version"] = pydvl.__version__
    with open(sys.argv[2], "w") as fh:
        json.dump(best, fh)


if __name__ == "__main__":
    main()
