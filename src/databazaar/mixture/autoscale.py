"""AutoScale: optimise at two small budgets, extrapolate the weights to the target budget.

Kang et al., "AutoScale" (arXiv 2407.20177), scale-extrapolation section: when each
domain's loss contribution follows a power law in its quantity, the optimal quantity of
every domain grows geometrically along a geometric sequence of budgets. Given DDO optima
``N^(1)*`` and ``N^(2)*`` at budgets ``N^(1) < N^(2)`` (same proxy model), the optimum at
the next scale is ``N^(3)* = N^(2)* ⊙ N^(2)* ⊘ N^(1)*`` (see
:func:`databazaar.mixture.scaling.autoscale_predict`). Only the data budget shrinks for
the proxies; the model is the one that will be trained at the target.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from databazaar.core.errors import InvalidInput
from databazaar.core.progress import ProgressFn
from databazaar.lm.data import TokenizedCorpus
from databazaar.mixture.ddo import DDO
from databazaar.mixture.proxy import ProxyConfig
from databazaar.mixture.result import MixtureResult
from databazaar.mixture.scaling import autoscale_predict


class AutoScale:
    """Predict compute-optimal domain weights at ``target_budget`` from two DDO runs.

    Parameters:
        budgets: the two small budgets ``(N1, N2)``, ``N1 < N2 <= target_budget``.
        target_budget: the budget to predict weights for.
        ddo_kwargs: passed to both :class:`DDO` runs (reference weights, factors,
            bounds).
        proxy, seed, backend, n_jobs, ray_address, progress: as for :class:`DDO`.

    Attributes after ``fit``: ``ddo_`` (the two fitted DDO objects), ``weights_``
    (domain -> predicted weight at the target), ``weights_by_budget_`` (budget -> domain
    weights for N1, N2 and the target), ``t_`` (extrapolation steps to the target),
    ``path_`` (predicted weights after 1-4 whole steps of the rule, with their budgets),
    ``result_``.
    """

    def __init__(
        self,
        budgets: Sequence[float],
        target_budget: float,
        *,
        proxy: ProxyConfig | None = None,
        seed: int = 0,
        backend: str = "processes",
        n_jobs: int = 1,
        ray_address: str | None = None,
        progress: ProgressFn | None = None,
        ddo_kwargs: Mapping[str, object] | None = None,
    ) -> None:
        self.budgets = tuple(budgets)
        self.target_budget = target_budget
        self.proxy = proxy or ProxyConfig()
        self.seed = seed
        self.backend = backend
        self.n_jobs = n_jobs
        self.ray_address = ray_address
        self.progress = progress
        self.ddo_kwargs = dict(ddo_kwargs or {})

    def _check(self) -> tuple[float, float]:
        if len(self.budgets) != 2:
            raise InvalidInput(f"AutoScale needs exactly two budgets, got {len(self.budgets)}")
        n1, n2 = (float(b) for b in self.budgets)
        if not (np.isfinite(n1) and np.isfinite(n2)) or not 0 < n1 < n2:
            raise InvalidInput(f"budgets must satisfy 0 < N1 < N2, got {self.budgets}")
        if not np.isfinite(self.target_budget) or self.target_budget < n2:
            raise InvalidInput(f"target budget {self.target_budget} must be at least N2 = {n2:g}")
        return n1, n2

    def fit(self, data: TokenizedCorpus) -> AutoScale:
        """Run DDO at both budgets and extrapolate to ``target_budget``."""
        n1, n2 = self._check()
        self.ddo_ = [
            DDO(
                b,
                proxy=self.proxy,
                seed=self.seed,
                backend=self.backend,
                n_jobs=self.n_jobs,
                ray_address=self.ray_address,
                progress=self.progress,
                **self.ddo_kwargs,  # type: ignore[arg-type]
            ).fit(data)
            for b in (n1, n2)
        ]
        return self._finish(data.domains)

    @classmethod
    def from_ddo(cls, small: DDO, large: DDO, target_budget: float) -> AutoScale:
        """AutoScale from two DDO fits already run at budgets ``small.budget < large.budget``.

        Lets a caller run the two DDO searches itself (e.g. in parallel with other work)
        and still get the same prediction as :meth:`fit`. Raises :class:`InvalidInput` if
        either DDO is not fitted, the domains differ or the budgets are out of order.
        """
        for d in (small, large):
            if not hasattr(d, "quantities_"):
                raise InvalidInput("both DDO objects must be fitted before AutoScale.from_ddo")
        if list(small.weights_) != list(large.weights_):
            raise InvalidInput("the two DDO fits cover different domains")
        auto = cls((small.budget, large.budget), target_budget, proxy=large.proxy, seed=large.seed)
        auto._check()
        auto.ddo_ = [small, large]
        return auto._finish(list(large.weights_))

    def _finish(self, domains: Sequence[str]) -> AutoScale:
        q1 = np.array([self.ddo_[0].quantities_[d] for d in domains])
        q2 = np.array([self.ddo_[1].quantities_[d] for d in domains])
        pred = autoscale_predict(q1, q2, float(self.target_budget))
        self.t_ = pred["t"]
        self.weights_ = dict(zip(domains, pred["weights"].tolist(), strict=True))
        self.quantities_ = dict(zip(domains, pred["quantities"].tolist(), strict=True))
        self.weights_by_budget_ = {
            float(self.budgets[0]): self.ddo_[0].weights_,
            float(self.budgets[1]): self.ddo_[1].weights_,
            float(self.target_budget): self.weights_,
        }
        # the geometric path of the rule: whole steps t = 1..4 beyond N2 (paper's example)
        ratio = q2 / q1
        self.path_ = []
        for t in (1, 2, 3, 4):
            q = q2 * ratio**t
            self.path_.append(
                {
                    "t": t,
                    "budget": float(q.sum()),
                    "weights": dict(zip(domains, (q / q.sum()).tolist(), strict=True)),
                }
            )
        self.result_ = MixtureResult(
            method="autoscale",
            weights=self.weights_,
            budget=float(self.target_budget),
            details={
                "budgets": [float(b) for b in self.budgets],
                "t": self.t_,
                "weights_by_budget": {str(k): v for k, v in self.weights_by_budget_.items()},
                "path": self.path_,
                "ddo": [d.result_.to_dict() for d in self.ddo_],
            },
            runs=[r.to_dict() for d in self.ddo_ for r in d.runs_],
        )
        return self

    def predict(self, budget: float) -> dict[str, float]:
        """Predicted weights at any budget ``>= N2`` from the fitted DDO optima."""
        domains = list(self.weights_)
        q1 = np.array([self.ddo_[0].quantities_[d] for d in domains])
        q2 = np.array([self.ddo_[1].quantities_[d] for d in domains])
        pred = autoscale_predict(q1, q2, float(budget))
        return dict(zip(domains, pred["weights"].tolist(), strict=True))

    def plot(self, path: str | Path) -> Path:
        """SVG: each domain's weight against the budget (two DDO points and the target)."""
        return plot_weights_by_budget(self.result_, path)


def plot_weights_by_budget(
    result: MixtureResult,
    path: str | Path,
    *,
    measured: Mapping[float, Mapping[str, float]] | None = None,
    title: str | None = None,
) -> Path:
    """Draw ``result.details['weights_by_budget']`` as an SVG line chart.

    Each domain's weight against the budget: the two DDO optima (solid) and the
    prediction at the target (dashed). ``measured`` adds DDO optima found directly at
    other budgets (e.g. at the target itself), drawn as open squares joined by a dotted
    line through every measured budget, so the prediction can be read against them.
    """
    from databazaar.core.figures import figure, save_svg

    by = {float(k): v for k, v in result.details["weights_by_budget"].items()}
    budgets = sorted(by)
    extra = {float(k): v for k, v in (measured or {}).items()}
    fig = figure(6.0, 3.8)
    ax = fig.add_subplot(1, 1, 1)
    for i, d in enumerate(result.domains):
        ys = [by[b][d] for b in budgets]
        ax.plot(budgets[:2], ys[:2], "o-", color=f"C{i}", label=d)
        ax.plot(budgets[1:], ys[1:], "o--", color=f"C{i}")
        if extra:
            pts = sorted({**{b: by[b] for b in budgets[:2]}, **extra}.items())
            ax.plot(
                [b for b, _ in pts],
                [w[d] for _, w in pts],
                "s:",
                color=f"C{i}",
                mfc="none",
                ms=7,
            )
    ax.set_xscale("log")
    ax.set_xlabel("training tokens")
    ax.set_ylabel("domain weight")
    default = "AutoScale: DDO at two budgets (solid), prediction (dashed)"
    if extra:
        default += ", DDO measured (squares, dotted)"
    ax.set_title(title or default, fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_svg(fig, path)
