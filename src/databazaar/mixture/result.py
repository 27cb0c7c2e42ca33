"""The one result type of every mixture method, with JSON and markdown output."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class MixtureResult:
    """Domain weights found by a method at a budget, with everything needed to audit them.

    Attributes:
        method: ``uniform``, ``ddo``, ``autoscale``, ``doremi``, ``regmix`` or ``dml``.
        weights: domain -> weight (non-negative, sums to 1).
        budget: training tokens the weights are meant for.
        details: method-specific fits and diagnostics (JSON-serialisable).
        runs: the proxy runs behind the result (tags, quantities, losses).
    """

    method: str
    weights: dict[str, float]
    budget: float
    details: dict[str, Any] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def domains(self) -> list[str]:
        return list(self.weights)

    def weight_array(self) -> np.ndarray:
        return np.array([self.weights[d] for d in self.domains])

    def quantities(self, budget: float | None = None) -> dict[str, float]:
        """Tokens per domain at ``budget`` (default: the result's own budget)."""
        n = self.budget if budget is None else budget
        return {d: w * n for d, w in self.weights.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "budget": self.budget,
            "weights": self.weights,
            "details": _jsonable(self.details),
            "runs": _jsonable(self.runs),
        }

    def save(self, path: str | Path) -> Path:
        """Write the result as JSON (read back with :meth:`load`)."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(self.to_dict(), indent=2))
        return p

    @classmethod
    def load(cls, path: str | Path) -> MixtureResult:
        from databazaar.core.errors import InvalidInput, NotFound

        p = Path(path)
        if not p.is_file():
            raise NotFound(f"weights file not found: {p}")
        try:
            raw = json.loads(p.read_text())
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"{p.name} is not JSON: {exc.msg}") from None
        if isinstance(raw, dict) and "weights" not in raw and raw:
            raw = {"method": "given", "budget": 0, "weights": raw}
        if not isinstance(raw, dict) or not isinstance(raw.get("weights"), dict):
            raise InvalidInput(f"{p.name} holds no 'weights' object")
        try:
            weights = {str(k): float(v) for k, v in raw["weights"].items()}
        except (TypeError, ValueError):
            raise InvalidInput(f"{p.name}: weights must be numbers") from None
        return cls(
            method=str(raw.get("method", "given")),
            weights=weights,
            budget=float(raw.get("budget", 0) or 0),
            details=raw.get("details", {}),
            runs=raw.get("runs", []),
        )

    def to_markdown(self) -> str:
        """A short human-readable report: weights, and the method's key diagnostics."""
        lines = [
            f"# Mixture weights: {self.method}",
            "",
            f"Budget: {self.budget:,.0f} tokens. Proxy runs: {len(self.runs)}.",
            "",
            "| domain | weight | tokens |",
            "|---|---:|---:|",
        ]
        for d, w in self.weights.items():
            lines.append(f"| {d} | {w:.4f} | {w * self.budget:,.0f} |")
        fits = self.details.get("fits")
        if fits:
            lines += [
                "",
                "Per-domain fits of average validation loss vs relative quantity x, "
                "f(x) = (x + a)^(-b) + c:",
                "",
                "| domain | a | b | c | rmse | x* |",
                "|---|---:|---:|---:|---:|---:|",
            ]
            for d, f in fits.items():
                lines.append(
                    f"| {d} | {f['a']:.4g} | {f['b']:.4g} | {f['c']:.4g} | {f['rmse']:.2e} "
                    f"| {f.get('x_opt', float('nan')):.3f} |"
                )
        by_budget = self.details.get("weights_by_budget")
        if by_budget:
            lines += ["", "Weights per budget:", ""]
            doms = self.domains
            lines.append("| budget | " + " | ".join(doms) + " |")
            lines.append("|---:|" + "---:|" * len(doms))
            for b, ws in by_budget.items():
                lines.append(
                    f"| {float(b):,.0f} | " + " | ".join(f"{ws[d]:.4f}" for d in doms) + " |"
                )
        path = self.details.get("path")
        if path:
            doms = self.domains
            lines += [
                "",
                "AutoScale path, N2* ⊙ (N2*/N1*)^t for whole steps t:",
                "",
                "| t | budget | " + " | ".join(doms) + " |",
                "|---:|---:|" + "---:|" * len(doms),
            ]
            for p in path:
                lines.append(
                    f"| {p['t']} | {p['budget']:,.0f} | "
                    + " | ".join(f"{p['weights'][d]:.4f}" for d in doms)
                    + " |"
                )
        for key in ("predicted_average_loss", "reference_average_loss", "r2_loo", "note"):
            if key in self.details:
                lines.append(f"\n{key.replace('_', ' ')}: {self.details[key]}")
        return "\n".join(lines) + "\n"


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.floating | np.integer):
        return obj.item()
    return obj
