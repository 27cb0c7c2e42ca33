"""Exact KNN-Shapley: databazaar against pyDVL 0.10 and OpenDataVal 1.3, side by side.

Run:  .venv/bin/python benchmarks/knn_shapley_vs_peers.py [--quick]

For N in (2k, 5k, 20k), M = 500 test points, d = 32 (make_classification, 3 classes,
K = 5) it times

* databazaar ``knn_shapley`` with 1 and 2 worker threads,
* pyDVL's ``KNNShapleyValuation`` with joblib n_jobs 1 and 2,
* OpenDataVal's ``KNNShapley`` in its own virtual environment (its pins on torch, numpy
  and pandas exclude ours; ``benchmarks/peers/setup_opendataval.sh`` builds it), when
  that environment exists,

each the best of ``repeats`` runs after a warm-up, and compares values.  Then one scale
run of ours alone (N = 1,000,000, M = 1,000) in a child process whose peak RSS is read
from the OS, and TMC-Shapley utility evaluations per second against pyDVL
(``benchmarks/tmc_vs_pydvl.py``).  Writes ``benchmarks/results/knn_shapley.json`` and
``knn_shapley.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
ODV_PYTHON = HERE / "peers" / ".venv-odv" / "bin" / "python"
K = 5


def make_data(n_train: int, n_test: int, d: int, seed: int = 0):  # type: ignore[no-untyped-def]
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_train + n_test,
        d,
        n_informative=d // 2,
        n_redundant=4,
        n_classes=3,
        flip_y=0.05,
        random_state=seed,
    )
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def best_of(fn, repeats: int):  # type: ignore[no-untyped-def]
    times = []
    out = None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def time_ours(data, n_jobs: int, repeats: int):  # type: ignore[no-untyped-def]
    from databazaar.valuation.knn import knn_shapley

    knn_shapley(*[a[:200] for a in data], k=K, n_jobs=n_jobs)  # compile / warm caches
    return best_of(lambda: knn_shapley(*data, k=K, n_jobs=n_jobs).values, repeats)


def time_pydvl(data, n_jobs: int, repeats: int):  # type: ignore[no-untyped-def]
    import warnings

    from joblib import parallel_config
    from sklearn.neighbors import KNeighborsClassifier

    warnings.filterwarnings("ignore", category=FutureWarning)
    from pydvl.valuation import Dataset, KNNShapleyValuation

    xtr, ytr, xte, yte = data

    def run():  # type: ignore[no-untyped-def]
        val = KNNShapleyValuation(
            KNeighborsClassifier(n_neighbors=K), Dataset(xte, yte), progress=False
        )
        with parallel_config(n_jobs=n_jobs):
            val.fit(Dataset(xtr, ytr))
        return val.result.values

    return best_of(run, repeats)


def time_opendataval(data, repeats: int):  # type: ignore[no-untyped-def]
    if not ODV_PYTHON.exists():
        return None, None, "peer env missing: run benchmarks/peers/setup_opendataval.sh"
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        xtr, ytr, xte, yte = data
        np.savez(src, x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
        best = None
        values = None
        for _ in range(repeats):
            proc = subprocess.run(
                [
                    str(ODV_PYTHON),
                    str(HERE / "peers" / "odv_knn_shapley.py"),
                    str(src),
                    str(dst),
                    "--k",
                    str(K),
                ],
                capture_output=True,
                text=True,
                timeout=1800,
            )
            if proc.returncode != 0:
                return None, None, f"OpenDataVal failed: {proc.stderr.strip()[-300:]}"
            out = np.load(dst)
            secs = float(out["seconds"])
            best = secs if best is None else min(best, secs)
            values = out["values"]
        return best, values, None


SCALE_CHILD = r"""
import json, resource, sys, time
import numpy as np
sys.path.insert(0, sys.argv[1])
from knn_shapley_vs_peers import make_data
from databazaar.valuation.knn import knn_shapley
n, m = int(sys.argv[2]), int(sys.argv[3])
data = make_data(n, m, 32, seed=1)
knn_shapley(*[a[:500] for a in data], k=5, n_jobs=2)
t = time.perf_counter()
res = knn_shapley(*data, k=5, n_jobs=2)
secs = time.perf_counter() - t
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
print(json.dumps({"seconds": secs, "peak_rss_gib": rss, "sum": float(res.values.sum())}))
"""


def scale_run(n: int, m: int) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", SCALE_CHILD, str(HERE), str(n), str(m)],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


LOAD_AT_START = os.getloadavg()[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, no scale run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-scale", action="store_true")
    ap.add_argument("--no-tmc", action="store_true")
    args = ap.parse_args()
    sizes = [2000, 5000] if args.quick else [2000, 5000, 20000]
    m, d = (100 if args.quick else 500), 32
    rows = []
    max_diff = 0.0
    odv_note = None
    for n in sizes:
        data = make_data(n, m, d)
        t1, ours = time_ours(data, 1, args.repeats)
        t2, ours2 = time_ours(data, 2, args.repeats)
        assert np.array_equal(ours, ours2) or np.abs(ours - ours2).max() < 1e-14
        p_reps = 1 if n >= 20000 else args.repeats
        p1, theirs = time_pydvl(data, 1, p_reps)
        p2, _ = time_pydvl(data, 2, p_reps)
        diff = float(np.abs(ours - theirs).max())
        max_diff = max(max_diff, diff)
        o_t, o_vals, odv_note = time_opendataval(data, 1)
        o_diff = float(np.abs(ours - o_vals).max()) if o_vals is not None else None
        row = {
            "n_train": n,
            "n_test": m,
            "d": d,
            "ours_1_thread_s": t1,
            "ours_2_threads_s": t2,
            "pydvl_1_job_s": p1,
            "pydvl_2_jobs_s": p2,
            "opendataval_s": o_t,
            "max_abs_diff_vs_pydvl": diff,
            "max_abs_diff_vs_opendataval": o_diff,
            "speedup_vs_pydvl": min(p1, p2) / min(t1, t2),
            "speedup_vs_pydvl_same_cores": p2 / t2,
            "speedup_vs_opendataval": (o_t / min(t1, t2)) if o_t else None,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    by_n = {r["n_train"]: r for r in rows}
    out: dict = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "date": time.strftime("%Y-%m-%d"),
            "load_average_at_start": LOAD_AT_START,
            "load_average_at_end": os.getloadavg()[0],
        },
        "k": K,
        "rows": rows,
        "speedup_vs_pydvl_n5000": by_n[5000]["speedup_vs_pydvl"],
        "max_abs_diff_vs_pydvl": max_diff,
        "opendataval_note": odv_note,
    }
    if not (args.quick or args.no_scale):
        sc = scale_run(1_000_000, 1_000)
        print(json.dumps(sc), flush=True)
        out["scale_run_seconds"] = sc["seconds"]
        out["scale_run_peak_rss_gib"] = sc["peak_rss_gib"]
        out["scale_run"] = {"n_train": 1_000_000, "n_test": 1_000, "d": 32, "n_jobs": 2}
    if not args.no_tmc:
        sys.path.insert(0, str(HERE))
        try:
            import tmc_vs_pydvl

            out["tmc"] = tmc_vs_pydvl.run()
            print(json.dumps(out["tmc"]), flush=True)
        except ImportError as exc:
            out["tmc"] = {"error": str(exc)}
    RESULTS.mkdir(exist_ok=True)
    name = "knn_shapley_quick" if args.quick else "knn_shapley"
    (RESULTS / f"{name}.json").write_text(json.dumps(out, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(to_markdown(out))
    print(to_markdown(out))


def _fmt(x: float | None, spec: str = ".3f") -> str:
    return "n/a" if x is None else format(x, spec)


def to_markdown(out: dict) -> str:
    lines = [
        "# Exact KNN-Shapley: databazaar vs pyDVL 0.10 vs OpenDataVal 1.3",
        "",
        f"K={out['k']}, make_classification (3 classes), d=32; best of repeated runs; "
        f"{out['machine']['cpus']} CPUs; {out['machine']['date']}; 1-min load average "
        f"{out['machine']['load_average_at_start']:.1f} at start, "
        f"{out['machine']['load_average_at_end']:.1f} at end (other work shared the cores).",
        "",
        "| N | M | ours 1 thr (s) | ours 2 thr (s) | pyDVL 1 job (s) | pyDVL 2 jobs (s) | "
        "OpenDataVal (s) | speedup vs pyDVL | speedup vs ODV | max abs diff pyDVL | "
        "max abs diff ODV |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in out["rows"]:
        lines.append(
            f"| {r['n_train']} | {r['n_test']} | {r['ours_1_thread_s']:.4f} | "
            f"{r['ours_2_threads_s']:.4f} | {r['pydvl_1_job_s']:.3f} | {r['pydvl_2_jobs_s']:.3f} | "
            f"{_fmt(r['opendataval_s'])} | {r['speedup_vs_pydvl']:.1f}x | "
            f"{_fmt(r['speedup_vs_opendataval'], '.1f')}x | {r['max_abs_diff_vs_pydvl']:.1e} | "
            f"{_fmt(r['max_abs_diff_vs_opendataval'], '.1e')} |"
        )
    lines += [
        "",
        "speedup = fastest pyDVL configuration / fastest of ours (same machine, same run).",
    ]
    if out.get("opendataval_note"):
        lines.append(f"OpenDataVal: {out['opendataval_note']}")
    if "scale_run_seconds" in out:
        lines += [
            "",
            f"Scale run (ours alone): N=1,000,000, M=1,000, d=32, 2 threads: "
            f"{out['scale_run_seconds']:.1f} s, peak RSS {out['scale_run_peak_rss_gib']:.2f} GiB.",
        ]
    tmc = out.get("tmc")
    if tmc and "error" not in tmc:
        lines += [
            "",
            "## TMC-Shapley utility evaluations per second",
            "",
            "```",
            json.dumps(tmc, indent=2),
            "```",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    _ = resource
    main()
