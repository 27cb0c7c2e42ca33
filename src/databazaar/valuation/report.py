"""The evaluation report of a valuation: both protocols of :mod:`.evaluate` at once.

:func:`evaluation_report` runs noisy-label detection (when the flipped points are known)
and point-removal curves and returns an :class:`EvaluationReport` that renders as
markdown, a plain dict, a long data frame or an SVG plot.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from databazaar.core.errors import InvalidInput
from databazaar.valuation.evaluate import (
    ORDERS,
    as_values,
    noisy_label_detection,
    point_removal_curve,
)
from databazaar.valuation.result import ValuationResult

__all__ = ["EvaluationReport", "evaluation_report"]


# -- report -------------------------------------------------------------------


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


@dataclass
class EvaluationReport:
    """Detection metrics and removal curves of one valuation.

    Attributes:
        method: name of the valuation method (from the ValuationResult, else "values").
        n_points: number of training points.
        detection: output of :func:`noisy_label_detection`, or None without flips.
        curves: :func:`point_removal_curve` outputs keyed by order
            (``"high"``, ``"low"`` and, if requested, ``"random"``).
    """

    method: str
    n_points: int
    detection: dict[str, Any] | None = None
    curves: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (arrays become lists)."""
        return {
            "method": self.method,
            "n_points": self.n_points,
            "detection": _jsonable(self.detection) if self.detection is not None else None,
            "curves": {k: _jsonable(c) for k, c in self.curves.items()},
        }

    def curves_frame(self) -> Any:
        """The removal curves as one long :class:`pandas.DataFrame`.

        Columns: ``order, fraction, n_removed, score, score_std, fallback``.
        """
        import pandas as pd

        frames = [
            pd.DataFrame(
                {
                    "order": c["order"],
                    "fraction": c["fractions"],
                    "n_removed": c["n_removed"],
                    "score": c["scores"],
                    "score_std": c["scores_std"],
                    "fallback": c["fallback"],
                }
            )
            for c in self.curves.values()
        ]
        if not frames:
            return pd.DataFrame(
                columns=["order", "fraction", "n_removed", "score", "score_std", "fallback"]
            )
        return pd.concat(frames, ignore_index=True)

    def to_markdown(self) -> str:
        """Markdown: a detection table and a removal-curve table with areas."""
        lines = [f"## Valuation evaluation: {self.method} (n = {self.n_points})", ""]
        if self.detection is not None:
            d = self.detection
            lines += [
                f"### Noisy-label detection ({d['n_flipped']} of {d['n_points']} labels flipped)",
                "",
                "| metric | value | random |",
                "|---|---|---|",
                f"| AUROC (-value vs flipped) | {d['auroc']:.4f} | {d['random_auroc']:.4f} |",
                f"| F1, 2-means low cluster | {d['kmeans_f1']:.4f} | |",
                f"| precision, 2-means | {d['kmeans_precision']:.4f} | |",
                f"| recall, 2-means | {d['kmeans_recall']:.4f} | |",
                f"| F1, bottom-k (k = {d['n_flipped']}) | {d['bottom_k_f1']:.4f} "
                f"| {d['random_bottom_k_f1']:.4f} |",
                "",
            ]
        if self.curves:
            keys = [k for k in ORDERS if k in self.curves]
            first = self.curves[keys[0]]
            names = {"high": "remove high first", "low": "remove low first", "random": "random"}
            lines += [
                f"### Point removal ({first['scorer']})",
                "",
                "| fraction removed | " + " | ".join(names[k] for k in keys) + " |",
                "|---|" + "---|" * len(keys),
            ]
            for j, f in enumerate(first["fractions"]):
                cells = []
                for k in keys:
                    c = self.curves[k]
                    cell = f"{c['scores'][j]:.4f}"
                    if k == "random":
                        cell += f" ± {c['scores_std'][j]:.4f}"
                    if c["fallback"][j]:
                        cell += "*"
                    cells.append(cell)
                lines.append(f"| {f:.2f} | " + " | ".join(cells) + " |")
            lines.append(
                "| area / width | "
                + " | ".join(f"{self.curves[k]['normalized_auc']:.4f}" for k in keys)
                + " |"
            )
            if any(np.any(self.curves[k]["fallback"]) for k in keys):
                lines += ["", "\\* one class left: scored as the constant predictor of that class."]
            lines.append("")
        return "\n".join(lines)

    def plot_svg(self) -> str:
        """The removal curves as an SVG string (matplotlib, Agg canvas, no pyplot)."""
        if not self.curves:
            raise InvalidInput("the report has no removal curves to plot")
        from databazaar.core.figures import figure, svg_text

        fig = figure(6, 4)
        ax = fig.add_subplot(1, 1, 1)
        styles = {
            "high": ("remove high first", "C3"),
            "low": ("remove low first", "C0"),
            "random": ("random", "0.5"),
        }
        scorer = ""
        for k in ORDERS:
            if k not in self.curves:
                continue
            c = self.curves[k]
            label, color = styles[k]
            scorer = c["scorer"]
            ax.plot(c["fractions"], c["scores"], marker="o", ms=3, color=color, label=label)
            if k == "random":
                ax.fill_between(
                    c["fractions"],
                    c["scores"] - c["scores_std"],
                    c["scores"] + c["scores_std"],
                    color=color,
                    alpha=0.2,
                    linewidth=0,
                )
        ax.set_xlabel("fraction of training points removed")
        ax.set_ylabel(f"test {scorer}")
        ax.set_title(f"Point removal: {self.method}")
        ax.legend()
        fig.tight_layout()
        return svg_text(fig)


def evaluation_report(
    values: Any,
    model: Any,
    *data: Any,
    flipped_idx: Any = None,
    include_random: bool = True,
    **curve_options: Any,
) -> EvaluationReport:
    """Run :func:`noisy_label_detection` (when ``flipped_idx`` is given) and
    :func:`point_removal_curve` for ``"high"``, ``"low"`` (and ``"random"``).

    ``data`` is ``x_train, y_train, x_test, y_test`` and ``curve_options`` are the
    keywords of :func:`point_removal_curve` (``fractions``, ``scorer``,
    ``random_state``, ``n_repeats``), passed to every curve; ``y_train`` is the (noisy)
    training labels the values were computed on, ``model`` is retrained on subsets of
    it.  See the two functions for the metrics.
    """
    if len(data) != 4:
        raise InvalidInput(
            f"evaluation_report takes the data as x_train, y_train, x_test, y_test "
            f"({len(data)} array(s) given)",
            hint="pass flipped_idx and the other options by keyword",
        )
    params = inspect.signature(point_removal_curve).parameters.values()
    allowed = {p.name for p in params if p.default is not p.empty} - {"order"}
    unknown = sorted(set(curve_options) - allowed)
    if unknown:
        raise InvalidInput(
            f"unknown option(s) of evaluation_report: {', '.join(unknown)}",
            hint=f"use flipped_idx, include_random, {', '.join(sorted(allowed))}",
        )
    v = as_values(values)
    method = values.method if isinstance(values, ValuationResult) else "values"
    detection = None
    if flipped_idx is not None:
        detection = noisy_label_detection(v, flipped_idx)
    orders = ["high", "low"] + (["random"] if include_random else [])
    curves = {o: point_removal_curve(v, model, *data, order=o, **curve_options) for o in orders}
    return EvaluationReport(method=method, n_points=int(v.size), detection=detection, curves=curves)
