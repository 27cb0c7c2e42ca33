"""Asymmetric Data Shapley experiments in the spirit of Zheng et al. (arXiv:2411.00388).

(a) Replication and augmentation on ``sklearn.datasets.load_digits`` with the exact KNN
    utility (K = 5):
    * exact copies: train on D, D ∪ D′, D ∪ D′ ∪ D″ (each copy its own later group).
      Data Shapley (T = 1) gives an original and its copy the same value and dilutes the
      originals as copies are added; ADS leaves the originals' values unchanged and
      gives copies only their residual contribution.
    * augmentation: 300 originals + one 1-pixel-shifted copy each, σ = (originals,
      augmented); fraction of (original, augmentation) pairs where the original gets
      more credit; point-removal curve on the augmented group (keep all originals,
      remove augmentations lowest-value first, KNN test accuracy on held-out data) for
      ADS, DS and random order.
    * MC-ADS with logistic regression on a small augmented set, with its Hoeffding bound.
(b) Sequential stages: three data batches arriving in order (clean, noisy labels,
    near-duplicates of stage 1); ADS group values equal each stage's increment
    ``v(U_t ∪ D_t) - v(U_t)`` exactly, DS spreads credit regardless of order.
(c) Cost of exact KNN-ADS at N = 20,000 training and M = 500 test points (64 features,
    T = 5 groups), single thread and 2 threads, next to exact KNN-Shapley.

Run: ``python benchmarks/ads_experiments.py`` (a few minutes on 2 cores).  Writes
``benchmarks/results/ads_experiments.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy.ndimage import shift as nd_shift
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier

from databazaar.valuation.asymmetric import (
    AsymmetricShapley,
    knn_asymmetric_shapley,
    mc_asymmetric_shapley,
)
from databazaar.valuation.utility import Utility

OUT = Path(__file__).resolve().parent / "results"
K = 5


def knn_utility(x: np.ndarray, y: np.ndarray, xt: np.ndarray, yt: np.ndarray, k: int) -> float:
    """The KNN utility v(S) = mean over test points of (#label matches in top K) / K."""
    if len(y) == 0:
        return 0.0
    d = (xt**2).sum(1)[:, None] - 2 * xt @ x.T + (x**2).sum(1)[None, :]
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    return float(np.mean((y[order] == yt[:, None]).sum(1) / k))


def split_digits(seed: int, n_train: int, n_val: int, n_test: int):
    x, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(y))
    a, b, c = idx[:n_train], idx[n_train : n_train + n_val], idx[n_train + n_val :][:n_test]
    return x[a], y[a], x[b], y[b], x[c], y[c]


def augment(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random 1-pixel shift of each 8x8 image."""
    out = np.empty_like(x)
    for i, row in enumerate(x):
        dy, dx = rng.choice([-1, 0, 1], size=2)
        if dy == 0 and dx == 0:
            dx = 1
        out[i] = nd_shift(row.reshape(8, 8), (dy, dx), order=0, mode="constant").ravel()
    return out


# -- (a) replication ----------------------------------------------------------------------


def replication(seed: int = 0) -> dict[str, Any]:
    x, y, xv, yv, _, _ = split_digits(seed, 500, 300, 0)
    out: dict[str, Any] = {"n_originals": 500, "n_test": 300, "k": K, "copies": {}}
    base = knn_asymmetric_shapley(x, y, xv, yv, k=K)
    for copies in (0, 1, 2):
        xx = np.vstack([x] * (copies + 1))
        yy = np.concatenate([y] * (copies + 1))
        groups = np.repeat(np.arange(copies + 1), 500)
        ds = knn_asymmetric_shapley(xx, yy, xv, yv, k=K)
        ads = knn_asymmetric_shapley(
            xx, yy, xv, yv, groups=groups, order=list(range(copies + 1)), k=K
        )
        row: dict[str, Any] = {}
        for name, res in (("data_shapley", ds), ("asymmetric_shapley", ads)):
            v = res.values.reshape(copies + 1, 500)
            row[name] = {
                "sum_originals": float(v[0].sum()),
                "sum_per_copy_group": [float(s) for s in v[1:].sum(1)],
                "mean_original": float(v[0].mean()),
                "mean_copy": float(v[1:].mean()) if copies else None,
                "max_abs_change_of_originals_vs_no_copies": float(np.abs(v[0] - base.values).max()),
                "frac_pairs_original_gt_copy": float((v[0] > v[1]).mean()) if copies else None,
                "frac_pairs_equal": float(np.isclose(v[0], v[1]).mean()) if copies else None,
            }
        out["copies"][str(copies)] = row
    return out


# -- (a) augmentation ---------------------------------------------------------------------


def removal_curve(
    values: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    xa: np.ndarray,
    ya: np.ndarray,
    xh: np.ndarray,
    yh: np.ndarray,
    fractions: np.ndarray,
) -> list[float]:
    """Keep every original; remove augmentations lowest-value first; held-out accuracy."""
    order = np.argsort(values, kind="stable")
    acc = []
    for f in fractions:
        keep = order[round(f * len(order)) :]
        model = KNeighborsClassifier(n_neighbors=K).fit(
            np.vstack([x, xa[keep]]), np.concatenate([y, ya[keep]])
        )
        acc.append(float((model.predict(xh) == yh).mean()))
    return acc


def augmentation(n_seeds: int = 10, n_orig: int = 100) -> dict[str, Any]:
    fractions = np.linspace(0.0, 0.9, 10)
    curves: dict[str, list[list[float]]] = {
        "asymmetric_shapley": [],
        "data_shapley": [],
        "random": [],
    }
    high_first: dict[str, list[list[float]]] = {"asymmetric_shapley": [], "data_shapley": []}
    credit: dict[str, list[float]] = {"asymmetric_shapley": [], "data_shapley": []}
    means: dict[str, list[tuple[float, float]]] = {"asymmetric_shapley": [], "data_shapley": []}
    for seed in range(n_seeds):
        x, y, xv, yv, xh, yh = split_digits(seed, n_orig, 300, 600)
        rng = np.random.default_rng(seed)
        xa, ya = augment(x, rng), y.copy()
        xx, yy = np.vstack([x, xa]), np.concatenate([y, ya])
        groups = np.array(["original"] * n_orig + ["augmented"] * n_orig)
        ads = AsymmetricShapley(k=K).fit(
            xx, yy, xv, yv, groups=groups, order=["original", "augmented"]
        )
        ds = knn_asymmetric_shapley(xx, yy, xv, yv, k=K)
        for name, v in (("asymmetric_shapley", ads.result_.values), ("data_shapley", ds.values)):
            credit[name].append(float((v[:n_orig] > v[n_orig:]).mean()))
            means[name].append((float(v[:n_orig].mean()), float(v[n_orig:].mean())))
            curves[name].append(removal_curve(v[n_orig:], x, y, xa, ya, xh, yh, fractions))
            high_first[name].append(removal_curve(-v[n_orig:], x, y, xa, ya, xh, yh, fractions))
        curves["random"].append(removal_curve(rng.random(n_orig), x, y, xa, ya, xh, yh, fractions))
    summary = {
        name: {
            "mean_accuracy": np.mean(c, axis=0).round(4).tolist(),
            "stderr": (np.std(c, axis=0, ddof=1) / np.sqrt(len(c))).round(4).tolist(),
            "area_under_curve": float(np.mean(c)),
        }
        for name, c in curves.items()
    }
    summary_high = {
        name: {
            "mean_accuracy": np.mean(c, axis=0).round(4).tolist(),
            "area_under_curve": float(np.mean(c)),
        }
        for name, c in high_first.items()
    }
    return {
        "n_originals": n_orig,
        "n_augmented": n_orig,
        "augmentation": "random 1-pixel shift",
        "removal_curves_high_value_first": summary_high,
        "n_seeds": n_seeds,
        "fraction_pairs_original_credited_more": {k: float(np.mean(v)) for k, v in credit.items()},
        "mean_value_original_vs_augmented": {
            k: [float(np.mean([a for a, _ in v])), float(np.mean([b for _, b in v]))]
            for k, v in means.items()
        },
        "removal_fractions": fractions.round(2).tolist(),
        "removal_curves_low_value_first": summary,
    }


def mc_logistic(seed: int = 0, n_perm: int = 60) -> dict[str, Any]:
    x, y, xv, yv, _, _ = split_digits(seed, 400, 200, 0)
    keep = np.isin(y, [3, 8])
    x, y = x[keep][:20], y[keep][:20]
    keepv = np.isin(yv, [3, 8])
    xv, yv = xv[keepv], yv[keepv]
    xa = augment(x, np.random.default_rng(seed))
    xx, yy = np.vstack([x, xa]), np.concatenate([y, y])
    groups = [0] * len(y) + [1] * len(y)
    u = Utility(LogisticRegression(max_iter=300), xx, yy, xv, yv)
    t0 = time.perf_counter()
    res = mc_asymmetric_shapley(
        u, groups=groups, order=[0, 1], n_permutations=n_perm, random_state=0
    )
    n = len(y)
    return {
        "model": "LogisticRegression, digits 3 vs 8",
        "n_originals": n,
        "n_augmented": n,
        "n_permutations": n_perm,
        "hoeffding_epsilon_delta_0.05": res.params["hoeffding_epsilon"],
        "mean_stderr": float(res.stderr.mean()),
        "group_values": res.params["group_values"],
        "u_full_minus_u_originals": u(range(2 * n)) - u(range(n)),
        "u_originals_minus_u_empty": u(range(n)) - u([]),
        "mean_value_original_vs_augmented": [
            float(res.values[:n].mean()),
            float(res.values[n:].mean()),
        ],
        "seconds": time.perf_counter() - t0,
    }


# -- (b) sequential stages ----------------------------------------------------------------


def sequential(seed: int = 0) -> dict[str, Any]:
    x, y, xv, yv, _, _ = split_digits(seed, 400, 300, 0)
    rng = np.random.default_rng(seed)
    s1x, s1y = x[:200], y[:200]
    s2x, s2y = x[200:400], y[200:400].copy()
    flip = rng.random(200) < 0.3
    s2y[flip] = rng.integers(0, 10, flip.sum())
    s3x = s1x + rng.normal(scale=0.5, size=s1x.shape)  # near-duplicates of stage 1
    s3y = s1y.copy()
    xx = np.vstack([s1x, s2x, s3x])
    yy = np.concatenate([s1y, s2y, s3y])
    stages = np.array(["stage1"] * 200 + ["stage2"] * 200 + ["stage3"] * 200)
    order = ["stage1", "stage2", "stage3"]
    ads = AsymmetricShapley(k=K).fit(xx, yy, xv, yv, groups=stages, order=order)
    ds = knn_asymmetric_shapley(xx, yy, xv, yv, k=K)
    increments = []
    for t in range(3):
        before = knn_utility(xx[: 200 * t], yy[: 200 * t], xv, yv, K)
        after = knn_utility(xx[: 200 * (t + 1)], yy[: 200 * (t + 1)], xv, yv, K)
        increments.append(after - before)
    ds_groups = [float(ds.values[stages == s].sum()) for s in order]
    flipped_idx = 200 + np.flatnonzero(flip)
    clean2 = 200 + np.flatnonzero(~flip)
    return {
        "stages": {
            "stage1": "200 clean digits",
            "stage2": "200 digits, 30% of labels resampled at random",
            "stage3": "200 noisy near-duplicates of stage 1 (Gaussian jitter sd 0.5)",
        },
        "order": order,
        "ads_group_values": [ads.group_values_[s] for s in order],
        "utility_increments": increments,
        "max_abs_group_efficiency_error": float(
            np.max(np.abs(np.array([ads.group_values_[s] for s in order]) - increments))
        ),
        "ds_group_values": ds_groups,
        "stage2_mean_value_flipped_vs_clean": {
            "asymmetric_shapley": [
                float(ads.result_.values[flipped_idx].mean()),
                float(ads.result_.values[clean2].mean()),
            ],
            "data_shapley": [float(ds.values[flipped_idx].mean()), float(ds.values[clean2].mean())],
        },
    }


# -- (c) cost -----------------------------------------------------------------------------


def timing() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    n, m, d, t = 20_000, 500, 64, 5
    y = rng.integers(0, 10, n + m)
    centers = rng.normal(scale=2.0, size=(10, d))
    x = centers[y] + rng.normal(size=(n + m, d))
    xtr, ytr, xte, yte = x[:n], y[:n], x[n:], y[n:]
    groups = rng.integers(0, t, n)
    knn_asymmetric_shapley(xtr[:200], ytr[:200], xte[:5], yte[:5], groups=groups[:200], k=K)
    out: dict[str, Any] = {"n_train": n, "n_test": m, "n_features": d, "n_groups": t, "k": K}
    runs = {}
    for label, kw in (
        ("ads_1_thread", {"n_jobs": 1}),
        ("ads_2_threads", {"n_jobs": 2, "backend": "threads"}),
    ):
        best = np.inf
        for _ in range(2):
            t0 = time.perf_counter()
            knn_asymmetric_shapley(xtr, ytr, xte, yte, groups=groups, k=K, **kw)
            best = min(best, time.perf_counter() - t0)
        runs[label] = best
    try:
        from databazaar.valuation.knn import knn_shapley

        knn_shapley(xtr[:200], ytr[:200], xte[:5], yte[:5], k=K)
        t0 = time.perf_counter()
        knn_shapley(xtr, ytr, xte, yte, k=K)
        runs["knn_shapley_T1_reference_1_thread"] = time.perf_counter() - t0
    except ImportError:  # pragma: no cover
        pass
    out["seconds"] = runs
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=10)
    args = ap.parse_args()
    t0 = time.perf_counter()
    res = {
        "benchmark": "ads_experiments",
        "replication": replication(),
        "augmentation": augmentation(args.seeds),
        "mc_ads_logistic": mc_logistic(),
        "sequential": sequential(),
        "timing": timing(),
    }
    res["total_seconds"] = time.perf_counter() - t0
    res["machine"] = {"python": platform.python_version(), "cpus": 2}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "ads_experiments.json").write_text(json.dumps(res, indent=2))
    (OUT / "ads_experiments.md").write_text(render(res))
    print(render(res))


def render(r: dict[str, Any]) -> str:
    rep, aug, seq, tim, mc = (
        r["replication"],
        r["augmentation"],
        r["sequential"],
        r["timing"],
        r["mc_ads_logistic"],
    )
    lines = ["# Asymmetric Data Shapley experiments", ""]
    lines += [
        "## (a) Exact copies (load_digits, 500 originals, 300 test points, K=5)",
        "",
        "Copies tie exactly with their originals; ties are broken by training index (originals"
        " first), which is the only reason Data Shapley values of a pair can differ: its group"
        " sums split the originals' credit evenly between the copies.",
        "",
        "| training set | method | sum originals | sum per copy group | max change of originals |"
        " original > copy | original = copy |",
        "|---|---|---|---|---|---|---|",
    ]
    names = {"0": "D", "1": "D ∪ D′", "2": "D ∪ D′ ∪ D″"}
    for c, row in rep["copies"].items():
        for m, v in row.items():
            gt = (
                ""
                if v["frac_pairs_original_gt_copy"] is None
                else f"{v['frac_pairs_original_gt_copy']:.2f}"
            )
            eq = "" if v["frac_pairs_equal"] is None else f"{v['frac_pairs_equal']:.2f}"
            lines.append(
                f"| {names[c]} | {m} | {v['sum_originals']:.4f} | "
                f"{', '.join(f'{s:.4f}' for s in v['sum_per_copy_group'])} | "
                f"{v['max_abs_change_of_originals_vs_no_copies']:.2e} | {gt} | {eq} |"
            )
    lines += [
        "",
        f"## (a) Augmentation ({aug['n_originals']} originals + {aug['n_augmented']} one-pixel "
        f"shifts, {aug['n_seeds']} seeds, 300 valuation and 600 held-out test points)",
        "",
        "Fraction of (original, augmentation) pairs where the original gets more value: "
        + ", ".join(
            f"{k} {v:.3f}" for k, v in aug["fraction_pairs_original_credited_more"].items()
        ),
        "",
        "Mean value (original, augmented): "
        + "; ".join(
            f"{k} ({v[0]:.2e}, {v[1]:.2e})"
            for k, v in aug["mean_value_original_vs_augmented"].items()
        ),
        "",
        "Held-out KNN accuracy after removing the lowest-valued fraction of the augmented"
        " group (all originals kept):",
        "",
        "| removed | " + " | ".join(aug["removal_curves_low_value_first"]) + " |",
        "|---|" + "---|" * len(aug["removal_curves_low_value_first"]),
    ]
    curves = aug["removal_curves_low_value_first"]
    for i, f in enumerate(aug["removal_fractions"]):
        lines.append(
            f"| {f:.1f} | "
            + " | ".join(
                f"{c['mean_accuracy'][i]:.4f} ± {c['stderr'][i]:.4f}" for c in curves.values()
            )
            + " |"
        )
    lines.append(
        "| mean | " + " | ".join(f"{c['area_under_curve']:.4f}" for c in curves.values()) + " |"
    )
    hf = aug["removal_curves_high_value_first"]
    lines += [
        "",
        "Removing the highest-valued augmentations first (a good ranking drops fastest): mean "
        "accuracy over the curve "
        + ", ".join(f"{k} {v['area_under_curve']:.4f}" for k, v in hf.items())
        + "; at 90% removed "
        + ", ".join(f"{k} {v['mean_accuracy'][-1]:.4f}" for k, v in hf.items())
        + ".",
    ]
    lines += [
        "",
        f"MC-ADS with {mc['model']}: {mc['n_originals']} originals + {mc['n_augmented']} "
        f"augmentations, {mc['n_permutations']} permutations in {mc['seconds']:.1f} s; "
        f"group values "
        f"{[round(v, 4) for v in mc['group_values']]} (exact increments "
        f"{mc['u_originals_minus_u_empty']:.4f}, {mc['u_full_minus_u_originals']:.4f}); "
        f"Hoeffding ε (δ=0.05) = {mc['hoeffding_epsilon_delta_0.05']:.3f}, mean stderr "
        f"{mc['mean_stderr']:.4f}; mean value original vs augmented "
        f"{mc['mean_value_original_vs_augmented'][0]:.4f} vs "
        f"{mc['mean_value_original_vs_augmented'][1]:.4f}.",
        "",
        "## (b) Sequential stages",
        "",
        "| stage | ADS group value | utility increment | DS group value |",
        "|---|---|---|---|",
    ]
    for s, a, inc, d in zip(
        seq["order"],
        seq["ads_group_values"],
        seq["utility_increments"],
        seq["ds_group_values"],
        strict=True,
    ):
        lines.append(f"| {s}: {seq['stages'][s]} | {a:.4f} | {inc:.4f} | {d:.4f} |")
    fv = seq["stage2_mean_value_flipped_vs_clean"]
    lines += [
        "",
        f"Group efficiency error: {seq['max_abs_group_efficiency_error']:.1e}. Stage-2 mean value "
        "(noisy label, clean label): "
        + "; ".join(f"{k} ({v[0]:.2e}, {v[1]:.2e})" for k, v in fv.items()),
        "",
        f"## (c) Cost of exact KNN-ADS (N={tim['n_train']}, M={tim['n_test']}, "
        f"d={tim['n_features']}, T={tim['n_groups']}, K={tim['k']})",
        "",
    ]
    for k, v in tim["seconds"].items():
        lines.append(f"- {k}: {v:.2f} s")
    lines += ["", f"Total run time {r['total_seconds']:.0f} s."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
