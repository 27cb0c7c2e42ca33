"""Direct Data Optimization (DDO): domain weights that minimise a fitted loss surrogate.

Kang et al., "AutoScale" (arXiv 2407.20177), DDO section. At a fixed budget ``N``:

1. train a proxy model on the reference mixture (quantities ``N_i^ref = r_i N``);
2. for each domain ``i`` and each factor ``s`` (default 1/3 and 3), retrain with domain
   ``i``'s quantity multiplied by ``s`` and the other domains unchanged;
3. fit, per domain, the shifted power law ``f_i(x) = (x + a_i)^(-b_i) + c_i`` of the
   average validation loss in ``x = N_i / N_i^ref`` (the three runs that vary ``i``);
4. minimise the separable surrogate ``Σ_i f_i(x_i)`` on the budget simplex
   ``Σ_i N_i = N`` with per-domain bounds on ``x_i`` (:func:`solve_budget_simplex`).

All proxies share one seed (common random numbers) so loss differences reflect the data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from databazaar.core.errors import InvalidInput
from databazaar.core.parallel import check_backend
from databazaar.core.progress import ProgressFn
from databazaar.lm.data import TokenizedCorpus, check_weights
from databazaar.mixture.proxy import ProxyConfig, ProxyResult, run_proxies
from databazaar.mixture.result import MixtureResult
from databazaar.mixture.scaling import (
    PowerLaw,
    fit_power_law,
    solve_budget_simplex,
    surrogate_loss,
)


def ddo_jobs(
    domains: Sequence[str],
    reference_quantities: np.ndarray,
    scale_factors: Sequence[float],
) -> list[tuple[str, list[float]]]:
    """The proxy runs of DDO: the reference, then each domain scaled by each factor."""
    jobs = [("reference", reference_quantities.tolist())]
    for i, d in enumerate(domains):
        for s in scale_factors:
            q = reference_quantities.copy()
            q[i] *= s
            jobs.append((f"{d}*{s:g}", q.tolist()))
    return jobs


def fit_ddo(
    domains: Sequence[str],
    reference_weights: np.ndarray,
    scale_factors: Sequence[float],
    runs: Sequence[ProxyResult],
    *,
    bounds: tuple[float, float] = (0.2, 3.0),
) -> dict[str, Any]:
    """Steps 3-4 of DDO from finished runs (in :func:`ddo_jobs` order).

    Returns the fitted laws, the optimal relative quantities ``x*`` and weights, and the
    surrogate's predicted gain over the reference. ``bounds`` are on ``x_i``.
    """
    m = len(domains)
    factors = [float(s) for s in scale_factors]
    if len(runs) != 1 + m * len(factors):
        raise InvalidInput(f"expected {1 + m * len(factors)} runs, got {len(runs)}")
    base = runs[0].average
    laws: list[PowerLaw] = []
    points: dict[str, dict[str, list[float]]] = {}
    for i, d in enumerate(domains):
        xs = [1.0]
        ys = [base]
        for j, s in enumerate(factors):
            xs.append(s)
            ys.append(runs[1 + i * len(factors) + j].average)
        order = np.argsort(xs)
        xs_s = [xs[k] for k in order]
        ys_s = [ys[k] for k in order]
        laws.append(fit_power_law(xs_s, ys_s))
        points[d] = {"x": xs_s, "y": ys_s}
    lo_x, hi_x = bounds
    if not 0 <= lo_x < 1 < hi_x:
        raise InvalidInput(f"bounds on x must satisfy 0 <= lower < 1 < upper, got {bounds}")
    r = reference_weights
    w = solve_budget_simplex(laws, r, lower=lo_x * r, upper=np.minimum(1.0, hi_x * r))
    x_opt = w / r
    pred = surrogate_loss(laws, r, w)
    ref = surrogate_loss(laws, r, r)
    return {
        "laws": laws,
        "weights": w,
        "x_opt": x_opt,
        "points": points,
        "surrogate_at_optimum": pred,
        "surrogate_at_reference": ref,
        # sum of f_i minus (m-1) times the reference loss is the separable prediction
        "predicted_average_loss": float(pred - (m - 1) * base),
        "reference_average_loss": float(base),
    }


class DDO:
    """Direct Data Optimization at one budget (scikit-learn style: ``fit`` then ``result_``).

    Parameters:
        budget: training tokens of each proxy run at the reference mixture.
        reference_weights: the mixture to perturb (default uniform).
        scale_factors: multipliers applied to one domain at a time (paper: 1/3 and 3).
        bounds: allowed range of ``x_i = N_i / N_i^ref`` at the optimum (paper code: 0.2
            lower bound).
        proxy: model and optimiser of the proxy runs.
        seed: the seed shared by all proxy runs.
        backend, n_jobs, ray_address: how the independent runs are executed.

    Attributes after ``fit``: ``weights_`` (domain -> weight), ``laws_`` (domain ->
    :class:`PowerLaw`), ``runs_`` (:class:`ProxyResult` list), ``result_``
    (:class:`MixtureResult`).
    """

    def __init__(
        self,
        budget: float,
        *,
        reference_weights: Mapping[str, float] | Sequence[float] | None = None,
        scale_factors: Sequence[float] = (1 / 3, 3.0),
        bounds: tuple[float, float] = (0.2, 3.0),
        proxy: ProxyConfig | None = None,
        seed: int = 0,
        backend: str = "processes",
        n_jobs: int = 1,
        ray_address: str | None = None,
        progress: ProgressFn | None = None,
    ) -> None:
        self.budget = budget
        self.reference_weights = reference_weights
        self.scale_factors = tuple(scale_factors)
        self.bounds = bounds
        self.proxy = proxy or ProxyConfig()
        self.seed = seed
        self.backend = backend
        self.n_jobs = n_jobs
        self.ray_address = ray_address
        self.progress = progress

    def _check(self, data: TokenizedCorpus) -> np.ndarray:
        if not np.isfinite(self.budget) or self.budget <= 0:
            raise InvalidInput(f"budget must be a positive number of tokens, got {self.budget}")
        if len(data.domains) < 2:
            raise InvalidInput("a mixture needs at least 2 domains")
        if len(self.scale_factors) < 2 or any(not (s > 0 and s != 1) for s in self.scale_factors):
            raise InvalidInput("scale_factors need at least two positive factors other than 1")
        check_backend(self.backend)
        self.proxy.validate()
        m = len(data.domains)
        if self.reference_weights is None:
            r = np.full(m, 1.0 / m)
        else:
            r = check_weights(self.reference_weights, data.domains)
            if np.any(r <= 0):
                raise InvalidInput("reference weights must be positive for every domain")
        if self.budget * float(r.min()) * min(self.scale_factors) < data.block_size:
            raise InvalidInput(
                f"budget {self.budget:g} is too small: the scaled-down domain gets less than "
                f"one {data.block_size}-token block",
                hint="raise the budget",
            )
        return r

    def fit(self, data: TokenizedCorpus) -> DDO:
        """Run the ``1 + m * len(scale_factors)`` proxies, fit the laws and solve."""
        r = self._check(data)
        jobs = ddo_jobs(data.domains, r * self.budget, self.scale_factors)
        self.runs_ = run_proxies(
            data,
            jobs,
            self.proxy,
            seed=self.seed,
            backend=self.backend,
            n_jobs=self.n_jobs,
            ray_address=self.ray_address,
            progress=self.progress,
        )
        sol = fit_ddo(data.domains, r, self.scale_factors, self.runs_, bounds=self.bounds)
        doms = data.domains
        self.reference_weights_ = dict(zip(doms, r.tolist(), strict=True))
        self.laws_ = dict(zip(doms, sol["laws"], strict=True))
        self.weights_ = dict(zip(doms, sol["weights"].tolist(), strict=True))
        self.quantities_ = {d: w * self.budget for d, w in self.weights_.items()}
        self.points_ = sol["points"]
        fits = {
            d: {**law.to_dict(), "x_opt": float(x)}
            for (d, law), x in zip(self.laws_.items(), sol["x_opt"], strict=True)
        }
        self.result_ = MixtureResult(
            method="ddo",
            weights=self.weights_,
            budget=float(self.budget),
            details={
                "reference_weights": self.reference_weights_,
                "scale_factors": list(self.scale_factors),
                "bounds": list(self.bounds),
                "fits": fits,
                "points": self.points_,
                "predicted_average_loss": sol["predicted_average_loss"],
                "reference_average_loss": sol["reference_average_loss"],
                "seed": self.seed,
            },
            runs=[run.to_dict() for run in self.runs_],
        )
        return self

    def plot(self, path: str | Path) -> Path:
        """SVG: per domain, measured losses, the fitted law and the chosen ``x*``."""
        return plot_ddo_fits(self.result_, path)


def plot_ddo_fits(result: MixtureResult, path: str | Path) -> Path:
    """Draw the DDO fits stored in ``result.details`` as an SVG file."""
    from databazaar.core.figures import figure, save_svg

    fits = result.details["fits"]
    points = result.details["points"]
    doms = list(fits)
    fig = figure(3.2 * len(doms), 3.0)
    axes = fig.subplots(1, len(doms), squeeze=False)
    for ax, d in zip(axes[0], doms, strict=True):
        f = fits[d]
        law = PowerLaw(a=f["a"], b=f["b"], c=f["c"])
        xs = np.asarray(points[d]["x"])
        grid = np.geomspace(max(xs.min() * 0.5, -f["a"] + 1e-3), xs.max() * 1.5, 200)
        ax.plot(grid, law(grid), color="C0", label="fit")
        ax.scatter(xs, points[d]["y"], color="C1", zorder=3, label="proxy runs")
        ax.axvline(f["x_opt"], color="C2", ls="--", label=f"x* = {f['x_opt']:.2f}")
        ax.set_xscale("log")
        ax.set_title(d, fontsize=9)
        ax.set_xlabel("quantity / reference")
        ax.tick_params(labelsize=7)
    axes[0][0].set_ylabel("avg validation loss")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"DDO at {result.budget:,.0f} tokens", fontsize=10)
    fig.tight_layout()
    return save_svg(fig, path)
