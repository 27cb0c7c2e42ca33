"""The UE benchmark's report: JSON, markdown, an SVG heatmap of PRR and a metric dendrogram.

:class:`BenchmarkReport` holds what :func:`~databazaar.uncertainty.runner.run_benchmark`
measured: per-item uncertainties and metric values, the PRR table with bootstrap CIs,
Kendall's tau between the UE rankings of metrics and of metric groups (with CIs) and the
metric clusters. :meth:`BenchmarkReport.save` writes ``report.json``, ``report.md``,
``prr_heatmap.svg`` and ``metric_dendrogram.svg``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from databazaar.core.errors import InvalidInput
from databazaar.core.figures import figure, svg_text


def _clean(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    if isinstance(x, np.ndarray):
        return _clean(x.tolist())
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, float | np.floating):
        return None if not math.isfinite(float(x)) else float(x)
    return x


def _fmt(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


@dataclass
class BenchmarkReport:
    """Everything one benchmark run measured (see module doc)."""

    methods: list[str]
    metrics: list[str]
    groups: dict[str, str]
    uncertainties: dict[str, np.ndarray]
    metric_values: dict[str, np.ndarray]
    inputs: list[str]
    stats: dict[str, Any]
    clusters: dict[str, Any] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def prr(self) -> dict[str, dict[str, float]]:
        """``prr[method][metric]`` (point estimates)."""
        return self.stats["prr"]

    def rankings_change(self) -> dict[str, Any]:
        """Do UE rankings change across metric groups? Mean tau and the pairs whose CI
        excludes 1 (ranking differs) or 0 (rankings agree more than chance)."""
        taus = self.stats.get("group_tau", {})
        cis = self.stats.get("group_tau_ci", {})
        finite = [v for v in taus.values() if v is not None and math.isfinite(v)]
        below_one = [k for k, (lo, hi) in cis.items() if math.isfinite(hi) and hi < 1.0]
        return {
            "mean_group_tau": float(np.mean(finite)) if finite else float("nan"),
            "pairs": len(taus),
            "pairs_with_tau_ci_below_1": below_one,
            "pairs_with_negative_tau": [k for k, v in taus.items() if v is not None and v < 0],
            "rankings_change": bool(finite) and min(finite) < 1.0,
        }

    def to_dict(self) -> dict[str, Any]:
        out = {
            "methods": self.methods,
            "metrics": self.metrics,
            "metric_groups": self.groups,
            "n_items": len(self.inputs),
            "prr": self.prr,
            "prr_ci": self.stats.get("prr_ci"),
            "kendall_tau": {
                "metric_pairs": self.stats.get("tau"),
                "metric_pairs_ci": self.stats.get("tau_ci"),
                "group_pairs": self.stats.get("group_tau"),
                "group_pairs_ci": self.stats.get("group_tau_ci"),
                "group_prr": self.stats.get("group_prr"),
                "summary": self.rankings_change(),
            },
            "bootstrap": {
                "n_boot": self.stats.get("n_boot"),
                "confidence": self.stats.get("confidence"),
            },
            "clusters": None
            if self.clusters is None
            else {
                "names": self.clusters["names"],
                "spearman": self.clusters["spearman"],
                "clusters": self.clusters["clusters"],
            },
            "metric_means": {
                k: float(np.nanmean(v)) if np.isfinite(v).any() else None
                for k, v in self.metric_values.items()
            },
            "timings": self.timings,
            **self.meta,
        }
        return _clean(out)

    def to_markdown(self, *, title: str = "Uncertainty estimation benchmark") -> str:
        ci = self.stats.get("prr_ci", {})
        conf = round(100 * self.stats.get("confidence", 0.95))
        lines = [f"# {title}", ""]
        lines += [
            f"PRR (normalised: 1 = oracle, 0 = random) of each UE method (rows) against each "
            f"quality metric (columns), {len(self.inputs)} items, {conf}% bootstrap CIs over "
            f"items ({self.stats.get('n_boot')} resamples).",
            "",
        ]
        header = "| method | " + " | ".join(f"{g} ({self.groups[g]})" for g in self.metrics) + " |"
        lines += [header, "|---" * (len(self.metrics) + 1) + "|"]
        for e in self.methods:
            cells = []
            for g in self.metrics:
                lo, hi = ci.get(e, {}).get(g, (float("nan"), float("nan")))
                cells.append(f"{_fmt(self.prr[e][g])} [{_fmt(lo)}, {_fmt(hi)}]")
            lines.append(f"| {e} | " + " | ".join(cells) + " |")
        gp = self.stats.get("group_prr") or {}
        if gp:
            lines += ["", "Mean PRR per metric group:", ""]
            lines += ["| method | " + " | ".join(gp) + " |", "|---" * (len(gp) + 1) + "|"]
            for e in self.methods:
                lines.append(f"| {e} | " + " | ".join(_fmt(gp[k][e]) for k in gp) + " |")
        gt, gci = self.stats.get("group_tau") or {}, self.stats.get("group_tau_ci") or {}
        if gt:
            lines += [
                "",
                f"Kendall's tau between the UE rankings of metric groups ({conf}% CI):",
                "",
                "| groups | tau | CI |",
                "|---|---|---|",
            ]
            for k, v in gt.items():
                lo, hi = gci.get(k, (float("nan"), float("nan")))
                lines.append(f"| {k.replace('|', ' vs ')} | {_fmt(v)} | [{_fmt(lo)}, {_fmt(hi)}] |")
            s = self.rankings_change()
            lines += [
                "",
                f"Mean tau across group pairs: {_fmt(s['mean_group_tau'])}; pairs whose CI "
                f"lies below 1: {len(s['pairs_with_tau_ci_below_1'])} of {s['pairs']}; "
                f"pairs with negative tau: {len(s['pairs_with_negative_tau'])}.",
            ]
        if self.clusters is not None:
            by: dict[int, list[str]] = {}
            for n, c in self.clusters["clusters"].items():
                by.setdefault(c, []).append(n)
            lines += [
                "",
                "Metric clusters (Spearman over items, average linkage, cut at 1 - rho = 0.5):",
                "",
            ]
            lines += [f"- {', '.join(v)}" for _, v in sorted(by.items())]
        return "\n".join(lines) + "\n"

    def heatmap_svg(self) -> str:
        """PRR table as an SVG heatmap (methods x metrics)."""
        grid = np.array([[self.prr[e][g] for g in self.metrics] for e in self.methods], dtype=float)
        fig = figure(1.6 + 0.55 * len(self.metrics), 1.2 + 0.35 * len(self.methods))
        ax = fig.add_subplot(1, 1, 1)
        im = ax.imshow(np.ma.masked_invalid(grid), cmap="RdBu", vmin=-1, vmax=1, aspect="auto")
        ax.set_xticks(range(len(self.metrics)), self.metrics, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(len(self.methods)), self.methods, fontsize=7)
        for i in range(grid.shape[0]):
            for j in range(grid.shape[1]):
                if math.isfinite(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=6)
        ax.set_title("PRR (1 = oracle, 0 = random)", fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.04)
        return svg_text(fig)

    def dendrogram_svg(self) -> str:
        """Dendrogram of the metrics (average linkage on 1 - Spearman rho) as SVG."""
        from scipy.cluster.hierarchy import dendrogram

        if self.clusters is None:
            raise InvalidInput("the report has no metric clusters (fewer than 2 usable metrics)")
        fig = figure(2.0 + 0.4 * len(self.clusters["names"]), 3.2)
        ax = fig.add_subplot(1, 1, 1)
        dendrogram(self.clusters["linkage"], labels=self.clusters["names"], ax=ax, leaf_rotation=60)
        ax.set_ylabel("1 - Spearman rho")
        ax.set_title("Quality metrics clustered by correlation", fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
        return svg_text(fig)

    def save(self, out_dir: str | Path) -> dict[str, Path]:
        """Write report.json, report.md, prr_heatmap.svg and (if any) metric_dendrogram.svg."""
        d = Path(out_dir)
        d.mkdir(parents=True, exist_ok=True)
        paths = {
            "json": d / "report.json",
            "markdown": d / "report.md",
            "heatmap": d / "prr_heatmap.svg",
        }
        paths["json"].write_text(json.dumps(self.to_dict(), indent=1), encoding="utf-8")
        paths["markdown"].write_text(self.to_markdown(), encoding="utf-8")
        paths["heatmap"].write_text(self.heatmap_svg(), encoding="utf-8")
        if self.clusters is not None:
            paths["dendrogram"] = d / "metric_dendrogram.svg"
            paths["dendrogram"].write_text(self.dendrogram_svg(), encoding="utf-8")
        return paths
