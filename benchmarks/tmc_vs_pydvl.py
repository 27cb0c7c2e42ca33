"""TMC-Shapley: databazaar against pyDVL 0.10 on the same permutations, BLAS threads equal.

Run (under the shared lock, it is CPU-heavy)::

    flock /tmp/databazaar-heavy.lock .venv/bin/python benchmarks/tmc_vs_pydvl.py

For each model (``knn`` = ``KNeighborsClassifier(5)``, ``gnb`` = ``GaussianNB()``,
``logreg`` = ``LogisticRegression(max_iter=200)``) on the same ``make_classification``
data, the same scorer (accuracy), the same score for the empty set and failed fits (the
majority-class rate of the test labels), the same truncation rule (relative, ``rtol``,
patience 1) and **the very same permutations** (databazaar's ``sample_rng(seed, j)``,
handed to pyDVL through an ``npz`` file):

* pyDVL 0.10 runs ``TMCShapleyValuation`` in its own venv
  (``benchmarks/peers/.venv-pydvl``, built by ``benchmarks/peers/setup_pydvl.sh``,
  because pyDVL 0.10 needs numpy<2) as a subprocess (``benchmarks/peers/pydvl_tmc.py``);
* databazaar runs ``TMCShapley`` twice: as shipped (exact incremental prefix scans where
  the model has one, :mod:`databazaar.valuation.incremental`) and with cold refits
  (``Utility(..., incremental=False)``), the like-for-like engine comparison.

BLAS threads are equal: one for everyone (pyDVL's subprocess gets ``OMP_NUM_THREADS=1``
etc. and ``threadpool_limits(1)``; databazaar's ``Utility`` limits BLAS to one thread per
fit).  Both evaluate the same coalitions (same permutations, same truncation), which the
run checks through the values (``max_abs_value_diff_vs_pydvl``); so utility evaluations
per second compare as ``pyDVL seconds / our seconds`` at the same evaluation count
(pyDVL's counted model fits).  Times are the best of ``repeats`` runs each; the 1-minute
load average is recorded before and after.

``ratio_equal_blas`` in ``benchmarks/results/tmc_vs_pydvl.json`` is the smallest ratio
over the models that have an incremental scan; ``by_model`` holds every model's numbers
(``logreg`` has no exact incremental form, so it runs cold refits and shows the engine
alone).  ``run()`` returns the same dict.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
PEER_SCRIPT = HERE / "peers" / "pydvl_tmc.py"
MODELS = ("knn", "gnb", "logreg")
#: models with an exact incremental prefix scan in databazaar
INCREMENTAL = ("knn", "gnb")


def peer_python() -> Path:
    """pyDVL's interpreter: this checkout's peer venv, else the main checkout's."""
    for root in (HERE.parent, Path("/work/main")):
        exe = root / "benchmarks" / "peers" / ".venv-pydvl" / "bin" / "python"
        if exe.exists():
            return exe
    raise SystemExit("pyDVL's venv is missing: run bash benchmarks/peers/setup_pydvl.sh")


def make_model(name: str) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import GaussianNB
    from sklearn.neighbors import KNeighborsClassifier

    return {
        "knn": KNeighborsClassifier(n_neighbors=5),
        "gnb": GaussianNB(),
        "logreg": LogisticRegression(max_iter=200),
    }[name]


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


def default_score(y_test: np.ndarray) -> float:
    _, counts = np.unique(y_test, return_counts=True)
    return float(counts.max() / counts.sum())


def permutations(n: int, n_permutations: int, seed: int) -> np.ndarray:
    """The permutations databazaar's ``TMCShapley(random_state=seed)`` draws, in order."""
    from databazaar.valuation.montecarlo import sample_rng

    return np.stack([sample_rng(seed, j).permutation(n) for j in range(n_permutations)])


def time_pydvl(
    data: tuple[np.ndarray, ...], model: str, perms: np.ndarray, rtol: float, repeats: int
) -> dict[str, Any]:
    x_tr, y_tr, x_te, y_te = data
    env = {**os.environ, "PYTHONPATH": ""}
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = "1"
    with tempfile.TemporaryDirectory(prefix="dbz-tmc-") as tmp:
        src, out = Path(tmp) / "in.npz", Path(tmp) / "out.json"
        np.savez(
            src,
            x_train=x_tr,
            y_train=y_tr,
            x_test=x_te,
            y_test=y_te,
            permutations=perms,
            default_score=default_score(y_te),
            model=model,
            rtol=rtol,
            repeats=repeats,
        )
        subprocess.run(
            [str(peer_python()), str(PEER_SCRIPT), str(src), str(out)], check=True, env=env
        )
        res = json.loads(out.read_text())
    res["values"] = np.asarray(res["values"])
    return res


def time_ours(
    data: tuple[np.ndarray, ...],
    model: str,
    n_permutations: int,
    rtol: float,
    seed: int,
    repeats: int,
    incremental: bool,
) -> dict[str, Any]:
    from databazaar.valuation.montecarlo import MaxSamples, TMCShapley
    from databazaar.valuation.utility import Utility

    x_tr, y_tr, x_te, y_te = data
    runs = []
    for _ in range(repeats):
        utility = Utility(
            make_model(model),
            x_tr,
            y_tr,
            x_te,
            y_te,
            default_score=default_score(y_te),
            incremental=incremental,
            blas_threads=1,
        )
        est = TMCShapley(
            truncation_tol=rtol,
            truncation_patience=1,
            stopping=MaxSamples(n_permutations),
            random_state=seed,
        )
        t0 = time.perf_counter()
        est.fit(utility)
        runs.append((time.perf_counter() - t0, est.result_))
    seconds, result = min(runs, key=lambda r: r[0])
    return {
        "seconds": seconds,
        "all_seconds": [r[0] for r in runs],
        "values": result.values,
        "stderr": result.stderr,
    }


def bench_model(
    model: str,
    data: tuple[np.ndarray, ...],
    n_permutations: int,
    rtol: float,
    seed: int,
    repeats: int,
) -> dict[str, Any]:
    """One model: pyDVL, ours as shipped and ours with cold refits, same permutations."""
    perms = permutations(data[0].shape[0], n_permutations, seed)
    theirs = time_pydvl(data, model, perms, rtol, repeats)
    fast = time_ours(data, model, n_permutations, rtol, seed, repeats, incremental=True)
    cold = time_ours(data, model, n_permutations, rtol, seed, repeats, incremental=False)
    evals = theirs["fits"]
    return {
        "model": model,
        "incremental_scan": model in INCREMENTAL,
        "evaluations": evals,
        "pydvl_seconds": round(theirs["seconds"], 5),
        "ours_seconds": round(fast["seconds"], 5),
        "ours_cold_seconds": round(cold["seconds"], 5),
        "pydvl_evals_per_sec": evals / theirs["seconds"],
        "ours_evals_per_sec": evals / fast["seconds"],
        "ours_cold_evals_per_sec": evals / cold["seconds"],
        "ratio_equal_blas": theirs["seconds"] / fast["seconds"],
        "ratio_cold_equal_blas": theirs["seconds"] / cold["seconds"],
        # the same permutations and truncation: the estimates must agree
        "max_abs_value_diff_vs_pydvl": float(np.max(np.abs(fast["values"] - theirs["values"]))),
        "max_abs_value_diff_cold_vs_pydvl": float(
            np.max(np.abs(cold["values"] - theirs["values"]))
        ),
        "mean_stderr": float(np.mean(fast["stderr"][np.isfinite(fast["stderr"])])),
        "all_seconds": {
            "pydvl": theirs["all_seconds"],
            "ours": fast["all_seconds"],
            "ours_cold": cold["all_seconds"],
        },
        "pydvl_version": theirs["pydvl_version"],
    }


def run(
    n_train: int = 200,
    n_test: int = 100,
    d: int = 32,
    n_permutations: int = 5,
    rtol: float = 0.01,
    seed: int = 0,
    repeats: int = 3,
    models: tuple[str, ...] = MODELS,
) -> dict[str, Any]:
    """Benchmark every model; see the module docstring for what is measured."""
    load_before = os.getloadavg()[0]
    data = make_data(n_train, n_test, d, seed)
    warnings.filterwarnings("ignore", category=RuntimeWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    time_ours(data, models[0], 1, rtol, seed, 1, incremental=True)  # warm-up (numba, imports)
    by_model = {m: bench_model(m, data, n_permutations, rtol, seed, repeats) for m in models}
    gaining = [m for m in models if m in INCREMENTAL]
    return {
        "ratio_equal_blas": min(by_model[m]["ratio_equal_blas"] for m in gaining),
        "ratio_equal_blas_models": gaining,
        "by_model": by_model,
        "setup": {
            "data": "make_classification",
            "n_train": n_train,
            "n_test": n_test,
            "d": d,
            "n_permutations": n_permutations,
            "truncation": f"relative, rtol={rtol}, patience 1 (both)",
            "blas_threads": 1,
            "n_jobs": 1,
            "seed": seed,
            "repeats": repeats,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_1min_before": load_before,
            "load_average_1min_after": os.getloadavg()[0],
        },
    }


def to_markdown(res: dict[str, Any]) -> str:
    s = res["setup"]
    lines = [
        f"TMC-Shapley on {s['data']} (n_train={s['n_train']}, n_test={s['n_test']}, "
        f"d={s['d']}), the same {s['n_permutations']} permutations for both, truncation "
        f"{s['truncation']}, 1 BLAS thread and n_jobs=1 for both, best of {s['repeats']}",
        "",
        "| model | exact incremental scan | utility evaluations | pyDVL s | ours s | "
        "ours cold-refit s | ratio (pyDVL s / ours s) | cold ratio | max abs value diff |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m, r in res["by_model"].items():
        lines.append(
            f"| {m} | {'yes' if r['incremental_scan'] else 'no (cold refits)'} "
            f"| {r['evaluations']} | {r['pydvl_seconds']:.3f} | {r['ours_seconds']:.3f} "
            f"| {r['ours_cold_seconds']:.3f} | {r['ratio_equal_blas']:.1f}x "
            f"| {r['ratio_cold_equal_blas']:.2f}x | {r['max_abs_value_diff_vs_pydvl']:.1e} |"
        )
    mach = res["machine"]
    load = mach["load_average_1min_before"], mach["load_average_1min_after"]
    lines += [
        "",
        f"ratio_equal_blas (smallest over {', '.join(res['ratio_equal_blas_models'])}): "
        f"{res['ratio_equal_blas']:.1f}x",
        "Models with an exact incremental form gain; logistic regression has none and runs "
        "the same cold refits as pyDVL (its ratio is the engine alone).",
        f"machine: {mach['cpus']} CPUs, 1-minute load average {load[0]:.2f} before and "
        f"{load[1]:.2f} after the run",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-train", type=int, default=200)
    ap.add_argument("--n-test", type=int, default=100)
    ap.add_argument("--d", type=int, default=32)
    ap.add_argument("--n-permutations", type=int, default=5)
    ap.add_argument("--rtol", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--models", default=",".join(MODELS))
    args = ap.parse_args()
    res = run(
        n_train=args.n_train,
        n_test=args.n_test,
        d=args.d,
        n_permutations=args.n_permutations,
        rtol=args.rtol,
        seed=args.seed,
        repeats=args.repeats,
        models=tuple(args.models.split(",")),
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "tmc_vs_pydvl.json").write_text(json.dumps(res, indent=2) + "\n")
    (RESULTS / "tmc_vs_pydvl.md").write_text(to_markdown(res))
    print(to_markdown(res))


if __name__ == "__main__":
    main()
