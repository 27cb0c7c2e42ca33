"""RegMix: regression over many tiny random-mixture runs (baseline).

Liu et al., "RegMix: Data Mixture as Regression for Language Model Pre-training"
(arXiv 2407.01492). Train many small proxy runs on mixtures drawn from a Dirichlet
distribution centred on a prior (here: the reference weights), fit a regressor from
mixture weights to the target loss (the average validation loss), score a large number
of candidate mixtures drawn from the same distribution, and return the mean of the
``top_k`` candidates with the lowest predicted loss (the paper averages the top 100).
The paper's regressor is LightGBM; ``regressor="linear"`` (the paper's linear variant)
or ``"gbm"`` (scikit-learn gradient boosting) are offered here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from databazaar.core.errors import InvalidInput
from databazaar.core.parallel import check_backend
from databazaar.core.progress import ProgressFn
from databazaar.lm.data import TokenizedCorpus, check_weights
from databazaar.mixture.proxy import ProxyConfig, ProxyResult, run_proxies
from databazaar.mixture.result import MixtureResult

REGRESSORS = ("linear", "gbm")


def sample_mixtures(
    rng: np.random.Generator,
    prior: np.ndarray,
    n: int,
    *,
    concentration: float,
    min_weight: float,
) -> np.ndarray:
    """``n`` mixtures from a Dirichlet centred on ``prior``, floored at ``min_weight``.

    The concentration per domain is ``concentration * m * prior_i``; after flooring the
    rows are renormalised to sum to 1. Shared by RegMix and the Data Mixing Laws baseline
    (both fit a model of the loss over such random mixtures).
    """
    m = len(prior)
    w = rng.dirichlet(concentration * m * prior, size=n)
    w = np.maximum(w, min_weight)
    return w / w.sum(axis=1, keepdims=True)


class RandomMixtureRuns:
    """Proxy runs on ``n_runs`` random mixtures at one budget (the data of RegMix and DML).

    Parameters:
        budget: tokens per proxy run (tiny runs).
        n_runs: number of random mixtures trained.
        concentration: Dirichlet concentration per unit of prior weight times ``m``
            (1 = flat Dirichlet for a uniform prior; larger = closer to the prior).
        prior_weights: centre of the Dirichlet (default uniform).
        min_weight: floor applied to sampled mixtures so every domain keeps a block.
        proxy, seed, backend, n_jobs, ray_address, progress: as for
            :class:`~databazaar.mixture.DDO`.
    """

    #: fewest runs, as an offset over the number of domains, a subclass can fit on
    min_runs_over_domains = 2

    def __init__(
        self,
        budget: float,
        *,
        n_runs: int = 16,
        concentration: float = 1.0,
        prior_weights: Mapping[str, float] | Sequence[float] | None = None,
        min_weight: float = 0.02,
        proxy: ProxyConfig | None = None,
        seed: int = 0,
        backend: str = "processes",
        n_jobs: int = 1,
        ray_address: str | None = None,
        progress: ProgressFn | None = None,
    ) -> None:
        self.budget = budget
        self.n_runs = n_runs
        self.concentration = concentration
        self.prior_weights = prior_weights
        self.min_weight = min_weight
        self.proxy = proxy or ProxyConfig()
        self.seed = seed
        self.backend = backend
        self.n_jobs = n_jobs
        self.ray_address = ray_address
        self.progress = progress

    def _check_common(self, m: int, n_runs: int | None = None) -> None:
        """Validate the shared settings for ``m`` domains (and ``n_runs`` finished runs)."""
        if m < 2:
            raise InvalidInput("a mixture needs at least 2 domains")
        need = m + self.min_runs_over_domains
        if (self.n_runs if n_runs is None else n_runs) < need:
            raise InvalidInput(f"n_runs must be at least {need} for {m} domains to fit the model")
        if not self.concentration > 0 or not 0 <= self.min_weight < 1 / m:
            raise InvalidInput("concentration must be positive and min_weight in [0, 1/m)")
        if not np.isfinite(self.budget) or self.budget <= 0:
            raise InvalidInput(f"budget must be a positive number of tokens, got {self.budget}")
        check_backend(self.backend)

    def _prior(self, domains: Sequence[str]) -> np.ndarray:
        m = len(domains)
        if self.prior_weights is None:
            return np.full(m, 1.0 / m)
        return check_weights(self.prior_weights, domains)

    def _sample(self, rng: np.random.Generator, prior: np.ndarray, n: int) -> np.ndarray:
        return sample_mixtures(
            rng, prior, n, concentration=self.concentration, min_weight=self.min_weight
        )

    def _train_mixtures(
        self, data: TokenizedCorpus, rng: np.random.Generator, prior: np.ndarray, tag: str
    ) -> tuple[np.ndarray, list[ProxyResult]]:
        """Draw ``n_runs`` mixtures and train one proxy on each (all with ``seed``)."""
        mixes = self._sample(rng, prior, self.n_runs)
        jobs = [(f"{tag}-{k}", (w * self.budget).tolist()) for k, w in enumerate(mixes)]
        runs = run_proxies(
            data,
            jobs,
            self.proxy,
            seed=self.seed,
            backend=self.backend,
            n_jobs=self.n_jobs,
            ray_address=self.ray_address,
            progress=self.progress,
        )
        return mixes, runs


class RegMix(RandomMixtureRuns):
    """Mixture regression over ``n_runs`` random small-budget runs.

    Parameters (besides those of :class:`RandomMixtureRuns`):
        n_candidates, top_k: candidates scored by the regressor and how many best ones
            are averaged.
        regressor: ``"gbm"`` (default, gradient-boosted trees standing in for the
            paper's LightGBM) or ``"linear"`` (which always favours a corner of the
            simplex, so the top-k average lands near one domain).

    Attributes after ``fit``: ``weights_``, ``mixtures_`` (``[n_runs, m]``), ``losses_``,
    ``model_`` (the fitted regressor), ``r2_loo_`` (leave-one-out R²), ``runs_``,
    ``result_``.
    """

    def __init__(
        self,
        budget: float,
        *,
        n_candidates: int = 100_000,
        top_k: int = 100,
        regressor: str = "gbm",
        **kwargs: Any,
    ) -> None:
        super().__init__(budget, **kwargs)
        self.n_candidates = n_candidates
        self.top_k = top_k
        self.regressor = regressor

    def _make_regressor(self):  # type: ignore[no-untyped-def]
        if self.regressor == "linear":
            from sklearn.linear_model import LinearRegression

            return LinearRegression()
        from sklearn.ensemble import GradientBoostingRegressor

        return GradientBoostingRegressor(
            n_estimators=200, max_depth=2, learning_rate=0.05, random_state=self.seed
        )

    def fit(self, data: TokenizedCorpus) -> RegMix:
        """Train the random mixtures, fit the regressor and pick the predicted best."""
        from sklearn.model_selection import LeaveOneOut, cross_val_predict

        if self.regressor not in REGRESSORS:
            raise InvalidInput(
                f"unknown regressor {self.regressor!r}", hint=f"use one of {', '.join(REGRESSORS)}"
            )
        self._check_common(len(data.domains))
        if not 1 <= self.top_k <= self.n_candidates:
            raise InvalidInput("top_k must be between 1 and n_candidates")
        prior = self._prior(data.domains)
        rng = np.random.default_rng(self.seed)
        mixes, runs = self._train_mixtures(data, rng, prior, "regmix")
        y = np.array([run.average for run in runs])
        reg = self._make_regressor().fit(mixes, y)
        loo = cross_val_predict(self._make_regressor(), mixes, y, cv=LeaveOneOut())
        r2 = r_squared(y, loo)
        cand = self._sample(rng, prior, self.n_candidates)
        pred = reg.predict(cand)
        best = np.argsort(pred)[: self.top_k]
        w = cand[best].mean(axis=0)
        w = w / w.sum()
        self.mixtures_, self.losses_, self.model_, self.r2_loo_ = mixes, y, reg, r2
        self.runs_ = runs
        self.weights_ = dict(zip(data.domains, w.tolist(), strict=True))
        self.result_ = MixtureResult(
            method="regmix",
            weights=self.weights_,
            budget=float(self.budget),
            details={
                "n_runs": self.n_runs,
                "regressor": self.regressor,
                "r2_loo": r2,
                "predicted_average_loss": float(reg.predict(w[None, :])[0]),
                "best_run_average_loss": float(y.min()),
            },
            runs=[run.to_dict() for run in runs],
        )
        return self


def r_squared(y: np.ndarray, pred: np.ndarray) -> float:
    """Coefficient of determination of ``pred`` for ``y`` (``nan`` if ``y`` is constant)."""
    y = np.asarray(y, dtype=float)
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    if ss_tot <= 0:
        return float("nan")
    return 1.0 - float(np.sum((y - np.asarray(pred, dtype=float)) ** 2)) / ss_tot
