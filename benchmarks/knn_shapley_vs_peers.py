"""Exact KNN-Shapley: databazaar against pyDVL 0.10 and OpenDataVal 1.3, side by side.

Run (under the shared heavy-job lock, so timings do not overlap other heavy work)::

    flock /tmp/databazaar-heavy.lock .venv/bin/python benchmarks/knn_shapley_vs_peers.py [--quick]

Speed: for N in (2k, 5k, 20k), M = 1,000 test points, d = 32 (make_classification,
3 classes, K = 5: continuous features, no distance ties) it times

* databazaar ``knn_shapley`` with 1 and 2 worker threads,
* pyDVL's ``KNNShapleyValuation`` with joblib n_jobs 1 and 2, in its own venv
  (``benchmarks/peers/.venv-pydvl``: pyDVL 0.10 needs numpy < 2; built by
  ``benchmarks/peers/setup_pydvl.sh``), called through ``peers/pydvl_knn_shapley.py``,
  which times ``fit`` alone,
* OpenDataVal's ``KNNShapley`` in its own venv (``peers/setup_opendataval.sh``), when
  that environment exists,

each the best of ``repeats`` runs after a warm-up, and compares values.

Ties: on scikit-learn's digits (8x8 images, integer pixels 0..16: exact distance ties
for every test image) it compares ours with pyDVL (``max_abs_diff_vs_pydvl_tied``: the
tie rule, not an error), and permutes the training rows for both
(``row_permutation_max_diff``: ours, must be <= 1e-12; ``pydvl_row_permutation_max_diff``:
pyDVL's values move with the row order).

Then one scale run of ours alone (N = 1,000,000, M = 1,000) in a child process whose
peak RSS is read from the OS.  Writes ``benchmarks/results/knn_shapley.json`` and ``.md``
with the 1-minute load average at start and end.
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
PYDVL_PYTHON = Path(
    os.environ.get("DATABAZAAR_PYDVL_PYTHON", HERE / "peers" / ".venv-pydvl" / "bin" / "python")
)
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


def time_ours(data, n_jobs: int, repeats: int):  # type: ignore[no-untyped-def]
    """Best wall seconds, best CPU seconds (all threads of this process) and the values."""
    from databazaar.valuation.knn import knn_shapley

    knn_shapley(*[a[:200] for a in data], k=K, n_jobs=n_jobs)  # compile / warm caches
    walls, cpus, out = [], [], None
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        out = knn_shapley(*data, k=K, n_jobs=n_jobs).values
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return min(walls), min(cpus), out


def run_peer(python: Path, script: str, data, extra: list[str]):  # type: ignore[no-untyped-def]
    """Run a peer script on ``data`` via npz files; returns (seconds it timed, values),
    and for pyDVL also the CPU seconds of its process (``peer_cpu``)."""
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        xtr, ytr, xte, yte = data
        np.savez(src, x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
        proc = subprocess.run(
            [str(python), str(HERE / "peers" / script), str(src), str(dst), "--k", str(K), *extra],
            capture_output=True,
            text=True,
            timeout=3600,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{script} failed: {proc.stderr.strip()[-500:]}")
        with np.load(dst) as out:
            if "cpu_seconds" in out:
                PEER_CPU[script] = float(out["cpu_seconds"])
            return float(out["seconds"]), out["values"]


PEER_CPU: dict[str, float] = {}


def time_pydvl(data, n_jobs: int, repeats: int):  # type: ignore[no-untyped-def]
    if not PYDVL_PYTHON.exists():
        raise SystemExit("pyDVL peer venv missing: run bash benchmarks/peers/setup_pydvl.sh")
    best, cpu, values = None, None, None
    for _ in range(repeats):
        secs, values = run_peer(
            PYDVL_PYTHON, "pydvl_knn_shapley.py", data, ["--n-jobs", str(n_jobs)]
        )
        best = secs if best is None else min(best, secs)
        c = PEER_CPU.get("pydvl_knn_shapley.py")
        cpu = c if cpu is None else min(cpu, c)
    return best, cpu, values


def time_opendataval(data, repeats: int):  # type: ignore[no-untyped-def]
    if not ODV_PYTHON.exists():
        return None, None, "peer env missing: run benchmarks/peers/setup_opendataval.sh"
    best, values = None, None
    try:
        for _ in range(repeats):
            secs, values = run_peer(ODV_PYTHON, "odv_knn_shapley.py", data, [])
            best = secs if best is None else min(best, secs)
    except RuntimeError as exc:
        return None, None, str(exc)
    return best, values, None


def tie_study(seed: int = 0) -> dict:
    """Digits (integer pixels): ours vs pyDVL under exact ties, and row-order dependence."""
    from sklearn.datasets import load_digits

    from databazaar.valuation.knn import knn_shapley

    x, y = load_digits(return_X_y=True)
    x = x.astype(np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(y))
    tr, te = idx[:1500], idx[1500:]
    data = (x[tr], y[tr], x[te], y[te])
    keys = ((x[te][:, None, :] - x[tr][None]) ** 2).sum(-1)
    tied_rows = int(sum(len(np.unique(r)) < len(r) for r in keys))
    ours = knn_shapley(*data, k=K).values
    _, theirs = run_peer(PYDVL_PYTHON, "pydvl_knn_shapley.py", data, [])
    perm = rng.permutation(len(tr))
    pdata = (x[tr][perm], y[tr][perm], x[te], y[te])
    ours_p = knn_shapley(*pdata, k=K, n_jobs=2).values
    _, theirs_p = run_peer(PYDVL_PYTHON, "pydvl_knn_shapley.py", pdata, [])
    same = [
        np.flatnonzero((x[tr] == row).all(1) & (y[tr] == lab))
        for row, lab in zip(x[tr], y[tr], strict=True)
    ]
    dup_spread = max(float(np.ptp(ours[g])) for g in same)
    return {
        "data": "sklearn digits, 1500 train / 297 test, 64 integer pixel features, K=5",
        "test_rows_with_exact_ties": tied_rows,
        "n_test": len(te),
        "max_abs_diff_vs_pydvl_tied": float(np.abs(ours - theirs).max()),
        "mean_abs_diff_vs_pydvl_tied": float(np.abs(ours - theirs).mean()),
        "row_permutation_max_diff": float(np.abs(ours_p - ours[perm]).max()),
        "pydvl_row_permutation_max_diff": float(np.abs(theirs_p - theirs[perm]).max()),
        "identical_rows_value_spread": dup_spread,
        "sum_ours": float(ours.sum()),
        "sum_pydvl": float(theirs.sum()),
    }


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
    ap.add_argument("--no-scale", action="store_true", help="keep the last scale run's numbers")
    ap.add_argument("--sizes", default=None, help="comma-separated N (default 2000,5000,20000)")
    args = ap.parse_args()
    sizes = [2000, 5000] if args.quick else [2000, 5000, 20000]
    if args.sizes:
        sizes = [int(v) for v in args.sizes.split(",")]
    m, d = (100 if args.quick else 1000), 32
    rows = []
    max_diff = 0.0
    odv_note = None
    for n in sizes:
        data = make_data(n, m, d)
        # ours is timed right before and right after each pyDVL configuration (best of
        # both), so a load change during pyDVL's long run hits both sides alike
        p_reps = 1 if n >= 20000 else min(args.repeats, 2)
        t1a, c1a, ours = time_ours(data, 1, args.repeats)
        p1, pc1, theirs = time_pydvl(data, 1, p_reps)
        t1b, c1b, _ = time_ours(data, 1, args.repeats)
        t2a, _, ours2 = time_ours(data, 2, args.repeats)
        p2, _, _ = time_pydvl(data, 2, p_reps)
        t2b, _, _ = time_ours(data, 2, args.repeats)
        t1, c1, t2 = min(t1a, t1b), min(c1a, c1b), min(t2a, t2b)
        assert np.array_equal(ours, ours2) or np.abs(ours - ours2).max() < 1e-14
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
            "ours_1_thread_cpu_s": c1,
            "pydvl_1_job_s": p1,
            "pydvl_1_job_cpu_s": pc1,
            "pydvl_2_jobs_s": p2,
            "opendataval_s": o_t,
            "max_abs_diff_vs_pydvl": diff,
            "max_abs_diff_vs_opendataval": o_diff,
            "speedup_vs_pydvl": min(p1, p2) / min(t1, t2),
            "speedup_2_threads_vs_pydvl_2_jobs": p2 / t2,
            "speedup_1_thread_vs_pydvl_1_job": p1 / t1,
            "speedup_1_thread_vs_best_pydvl": min(p1, p2) / t1,
            "cpu_time_ratio_1_thread_vs_pydvl_1_job": pc1 / c1,
            "speedup_vs_opendataval": (o_t / min(t1, t2)) if o_t else None,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    by_n = {r["n_train"]: r for r in rows}
    ties = tie_study()
    print(json.dumps(ties), flush=True)
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
        "max_abs_diff_vs_pydvl": max_diff,
        "max_abs_diff_vs_pydvl_tied": ties["max_abs_diff_vs_pydvl_tied"],
        "row_permutation_max_diff": ties["row_permutation_max_diff"],
        "ties": ties,
        "acceptance": {
            "n_train": sizes[-1],
            "n_test": m,
            "speedup_2_threads_vs_pydvl_2_jobs": by_n[sizes[-1]][
                "speedup_2_threads_vs_pydvl_2_jobs"
            ],
            "speedup_1_thread_vs_pydvl_1_job": by_n[sizes[-1]]["speedup_1_thread_vs_pydvl_1_job"],
            "speedup_1_thread_vs_best_pydvl": by_n[sizes[-1]]["speedup_1_thread_vs_best_pydvl"],
            "cpu_time_ratio_1_thread_vs_pydvl_1_job": by_n[sizes[-1]][
                "cpu_time_ratio_1_thread_vs_pydvl_1_job"
            ],
            "max_abs_diff_vs_pydvl_untied": max_diff,
            "targets": "2 threads >= 50x, 1 thread >= 25x, untied diff <= 1e-9, "
            "row permutation diff <= 1e-12",
        },
        "opendataval_note": odv_note,
    }
    if not (args.quick or args.no_scale):
        load0 = os.getloadavg()[0]
        sc = scale_run(1_000_000, 1_000)
        print(json.dumps(sc), flush=True)
        out["scale_run_seconds"] = sc["seconds"]
        out["scale_run_peak_rss_gib"] = sc["peak_rss_gib"]
        out["scale_run"] = {"n_train": 1_000_000, "n_test": 1_000, "d": 32, "n_jobs": 2}
        out["scale_run"]["load_average_at_start"] = load0
        out["scale_run"]["load_average_at_end"] = os.getloadavg()[0]
    elif args.no_scale and (RESULTS / "knn_shapley.json").exists():
        last = json.loads((RESULTS / "knn_shapley.json").read_text())
        for key in ("scale_run_seconds", "scale_run_peak_rss_gib", "scale_run"):
            if key in last:
                out[key] = last[key]
        if "scale_run" in out:
            out["scale_run"]["from_run_of"] = last["machine"]["date"]
    RESULTS.mkdir(exist_ok=True)
    name = "knn_shapley_quick" if args.quick else "knn_shapley"
    (RESULTS / f"{name}.json").write_text(json.dumps(out, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(to_markdown(out))
    print(to_markdown(out))


def _fmt(x: float | None, spec: str = ".3f") -> str:
    return "n/a" if x is None else format(x, spec)


def to_markdown(out: dict) -> str:
    acc = out["acceptance"]
    ties = out["ties"]
    lines = [
        "# Exact KNN-Shapley: databazaar vs pyDVL 0.10 vs OpenDataVal 1.3",
        "",
        f"K={out['k']}, make_classification (3 classes), d=32; best of repeated runs; "
        f"{out['machine']['cpus']} CPUs; {out['machine']['date']}; run under the heavy-job "
        f"lock; 1-min load average {out['machine']['load_average_at_start']:.2f} at start, "
        f"{out['machine']['load_average_at_end']:.2f} at end (other helpers' light work "
        "shared the cores). pyDVL runs in its own venv (numpy < 2); its time is `fit` alone.",
        "",
        "| N | M | ours 1 thr (s) | ours 2 thr (s) | pyDVL 1 job (s) | pyDVL 2 jobs (s) | "
        "OpenDataVal (s) | 2 thr vs 2 jobs | 1 thr vs 1 job | 1 thr vs best pyDVL | "
        "max abs diff pyDVL | max abs diff ODV |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in out["rows"]:
        lines.append(
            f"| {r['n_train']} | {r['n_test']} | {r['ours_1_thread_s']:.4f} | "
            f"{r['ours_2_threads_s']:.4f} | {r['pydvl_1_job_s']:.3f} | {r['pydvl_2_jobs_s']:.3f} | "
            f"{_fmt(r['opendataval_s'])} | {r['speedup_2_threads_vs_pydvl_2_jobs']:.1f}x | "
            f"{r['speedup_1_thread_vs_pydvl_1_job']:.1f}x | "
            f"{r['speedup_1_thread_vs_best_pydvl']:.1f}x | {r['max_abs_diff_vs_pydvl']:.1e} | "
            f"{_fmt(r['max_abs_diff_vs_opendataval'], '.1e')} |"
        )
    lines += [
        "",
        f"Acceptance at N={acc['n_train']}, M={acc['n_test']}: 2 threads vs pyDVL 2 jobs "
        f"{acc['speedup_2_threads_vs_pydvl_2_jobs']:.1f}x (target >= 50x), 1 thread vs pyDVL "
        f"1 job {acc['speedup_1_thread_vs_pydvl_1_job']:.1f}x and vs the fastest pyDVL "
        f"{acc['speedup_1_thread_vs_best_pydvl']:.1f}x (target >= 25x); max abs difference "
        f"on untied data {acc['max_abs_diff_vs_pydvl_untied']:.1e} (target <= 1e-9).",
    ]
    if "cpu_time_ratio_1_thread_vs_pydvl_1_job" in acc:
        lines += [
            "",
            "CPU seconds (process time, what contention from other work does not inflate), "
            f"1 thread vs pyDVL 1 job: {acc['cpu_time_ratio_1_thread_vs_pydvl_1_job']:.1f}x "
            "less CPU time. Ours is timed right before and after each pyDVL run (best of both).",
        ]
    if out.get("opendataval_note"):
        lines.append(f"OpenDataVal: {out['opendataval_note']}")
    lines += [
        "",
        "## Exact distance ties (integer pixels)",
        "",
        f"{ties['data']}; {ties['test_rows_with_exact_ties']} of {ties['n_test']} test images "
        "have exact distance ties among the training images.",
        "",
        "| quantity | value |",
        "|---|---|",
        f"| max abs diff ours vs pyDVL (`max_abs_diff_vs_pydvl_tied`) | "
        f"{ties['max_abs_diff_vs_pydvl_tied']:.2e} |",
        f"| mean abs diff ours vs pyDVL | {ties['mean_abs_diff_vs_pydvl_tied']:.2e} |",
        f"| ours: max change when the training rows are permuted (`row_permutation_max_diff`) | "
        f"{ties['row_permutation_max_diff']:.1e} |",
        f"| pyDVL: max change when the training rows are permuted | "
        f"{ties['pydvl_row_permutation_max_diff']:.2e} |",
        f"| ours: largest value spread among identical rows with the same label | "
        f"{ties['identical_rows_value_spread']:.1e} |",
        f"| sum of values (v(D) - v(empty)): ours / pyDVL | {ties['sum_ours']:.6f} / "
        f"{ties['sum_pydvl']:.6f} |",
        "",
        "Ours values each tie group at the expected utility under uniformly random "
        "tie-breaking (docs/valuation.md); pyDVL uses scikit-learn's neighbour order, so its "
        "values of tied rows depend on where the rows sit in the table.",
    ]
    if "scale_run_seconds" in out:
        lines += [
            "",
            f"Scale run (ours alone): N=1,000,000, M=1,000, d=32, 2 threads: "
            f"{out['scale_run_seconds']:.1f} s, peak RSS {out['scale_run_peak_rss_gib']:.2f} GiB.",
        ]
        sc = out.get("scale_run", {})
        if "load_average_at_start" in sc:
            lines[-1] += (
                f" 1-min load average {sc['load_average_at_start']:.2f} at start, "
                f"{sc['load_average_at_end']:.2f} at end."
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    _ = resource
    main()
