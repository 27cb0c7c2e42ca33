"""Data Mixing Laws: fit each domain's loss as a function of the mixture, then minimise.

Ye, Liu, Sun, Zhou, Zhan, Qiu, "Data Mixing Laws: Optimizing Data Mixtures by Predicting
Language Modeling Performance" (arXiv 2403.16952). The paper's law for the validation
loss of domain ``i`` after training on a mixture with proportions ``r`` is exponential in
a linear function of the proportions:

    L_i(r) = c_i + k_i * exp(Σ_j t_ij r_j)

fitted per domain on a set of proxy runs over varied mixtures; the loss to minimise is
the average of the ``L_i`` over the validation domains (the paper weights them by the
validation set's composition; here every domain counts equally, as in every other
method of :mod:`databazaar.mixture`). The paper also nests scaling laws in training steps
and model size to carry the fit to larger runs; this baseline, like RegMix, fits at one
small budget and transfers the weights as they are.

Since the proportions sum to one, adding a constant to every ``t_ij`` only rescales
``k_i``; the fit therefore keeps ``Σ_j t_ij = 0`` (``m - 1`` free exponents per domain).
For fixed ``t_i`` the best ``(c_i, k_i)`` is a linear least-squares solution, so only
``t_i`` is searched (variable projection, several starts). The minimum over the simplex
(with the sampling floor as lower bound) is found by SLSQP from several starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from databazaar.core.errors import InvalidInput
from databazaar.lm.data import TokenizedCorpus
from databazaar.mixture.proxy import ProxyResult
from databazaar.mixture.regmix import RandomMixtureRuns, r_squared
from databazaar.mixture.result import MixtureResult


@dataclass(frozen=True)
class MixingLaw:
    """``L(r) = c + k * exp(t · r)`` for one validation domain (``Σ t = 0``)."""

    c: float
    k: float
    t: tuple[float, ...]
    rmse: float = 0.0

    def __call__(self, r: np.ndarray) -> np.ndarray:
        """Predicted loss for mixtures ``r`` (``[m]`` or ``[n, m]``)."""
        return self.c + self.k * np.exp(np.asarray(r, dtype=float) @ np.asarray(self.t))

    def gradient(self, r: np.ndarray) -> np.ndarray:
        """``dL/dr`` at one mixture ``r`` (``[m]``)."""
        t = np.asarray(self.t)
        return self.k * np.exp(float(np.asarray(r, dtype=float) @ t)) * t

    def to_dict(self) -> dict[str, object]:
        return {"c": self.c, "k": self.k, "t": list(self.t), "rmse": self.rmse}


def _sum_zero_basis(m: int) -> np.ndarray:
    """An orthonormal basis ``[m, m-1]`` of the vectors whose entries sum to zero."""
    q, _ = np.linalg.qr(np.eye(m) - 1.0 / m)
    return q[:, : m - 1]


def _check_mixtures(mixtures: np.ndarray, losses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r = np.asarray(mixtures, dtype=float)
    y = np.asarray(losses, dtype=float)
    if r.ndim != 2 or r.shape[1] < 2:
        raise InvalidInput("mixtures must be an [n, m] array with m >= 2 domains")
    if y.ndim != 1 or y.shape[0] != r.shape[0]:
        raise InvalidInput(f"expected {r.shape[0]} losses (one per mixture), got shape {y.shape}")
    if not (np.all(np.isfinite(r)) and np.all(np.isfinite(y))):
        raise InvalidInput("mixtures and losses must be finite")
    if np.any(r < 0) or not np.allclose(r.sum(axis=1), 1.0, atol=1e-6):
        raise InvalidInput("every mixture must be non-negative and sum to 1")
    if r.shape[0] < r.shape[1] + 2:
        raise InvalidInput(
            f"{r.shape[0]} mixtures cannot fit a law with {r.shape[1] + 1} parameters "
            "and leave a residual",
            hint=f"train at least {r.shape[1] + 2} mixtures",
        )
    return r, y


def fit_mixing_law(
    mixtures: np.ndarray,
    losses: np.ndarray,
    *,
    max_abs_t: float = 50.0,
    seed: int = 0,
    init: Sequence[float] | None = None,
) -> MixingLaw:
    """Least-squares fit of ``losses ≈ c + k exp(t · mixtures)`` with ``Σ t = 0``.

    ``mixtures`` is ``[n, m]`` (rows on the simplex), ``losses`` ``[n]``. Needs
    ``n >= m + 2``. Exponents are bounded by ``max_abs_t``. The search starts from
    ``t = 0`` and random exponents drawn with ``seed``, or from ``t = 0`` and ``init``
    only (a warm start, e.g. for leave-one-out refits). Raises :class:`InvalidInput`
    for wrong shapes, non-finite values, rows off the simplex or too few mixtures.
    """
    from scipy.optimize import least_squares

    r, y = _check_mixtures(mixtures, losses)
    m = r.shape[1]
    basis = _sum_zero_basis(m)
    z = r @ basis  # [n, m-1]: coordinates of the mixtures in the sum-zero directions

    def linear_part(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        g = np.exp(np.clip(z @ u, -700, 700))
        a = np.column_stack([np.ones_like(g), g])
        coef, *_ = np.linalg.lstsq(a, y, rcond=None)
        return coef, a @ coef - y

    def resid(u: np.ndarray) -> np.ndarray:
        return linear_part(u)[1]

    rng = np.random.default_rng(seed)
    scale = 1.0 / max(1e-12, float(np.std(z, axis=0).mean()))
    if init is None:
        starts = [np.zeros(m - 1)] + [rng.normal(0, s * scale, m - 1) for s in (0.5, 1.0, 2, 4)]
    else:
        if len(init) != m:
            raise InvalidInput(f"init must hold {m} exponents, got {len(init)}")
        starts = [np.zeros(m - 1), basis.T @ np.asarray(init, dtype=float)]
    bound = max_abs_t
    best_sse, best_u = float(resid(np.zeros(m - 1)) @ resid(np.zeros(m - 1))), np.zeros(m - 1)
    for u0 in starts:
        u0 = np.clip(u0, -bound, bound)
        sol = least_squares(resid, u0, bounds=(-bound, bound), method="trf", max_nfev=200)
        sse = float(sol.fun @ sol.fun)
        if sse < best_sse - 1e-15:
            best_sse, best_u = sse, sol.x
    coef, res = linear_part(best_u)
    t = basis @ best_u
    return MixingLaw(
        c=float(coef[0]),
        k=float(coef[1]),
        t=tuple(float(v) for v in t),
        rmse=float(np.sqrt(np.mean(res**2))),
    )


def minimize_mixing_laws(
    laws: Sequence[MixingLaw],
    *,
    lower: float = 0.0,
    starts: np.ndarray | None = None,
) -> np.ndarray:
    """Mixture on the simplex (each weight ``>= lower``) minimising ``mean_i L_i(r)``.

    SLSQP from the uniform mixture, every vertex-leaning point and any ``starts``; the
    best local solution wins. Raises :class:`InvalidInput` if ``lower * m > 1``.
    """
    from scipy.optimize import minimize

    if not laws:
        raise InvalidInput("no mixing laws given")
    m = len(laws[0].t)
    if any(len(law.t) != m for law in laws):
        raise InvalidInput("every law must have one exponent per domain")
    if not 0 <= lower <= 1.0 / m:
        raise InvalidInput(f"lower bound {lower} must be in [0, 1/m]")

    def objective(r: np.ndarray) -> float:
        return float(np.mean([law(r) for law in laws]))

    def grad(r: np.ndarray) -> np.ndarray:
        return np.mean([law.gradient(r) for law in laws], axis=0)

    init = [np.full(m, 1.0 / m)]
    for i in range(m):
        v = np.full(m, 0.5 / (m - 1))
        v[i] = 0.5
        init.append(v)
    if starts is not None:
        init += [np.asarray(s, dtype=float) for s in starts]
    best_val, best_r = np.inf, init[0]
    cons = [{"type": "eq", "fun": lambda r: float(r.sum() - 1.0), "jac": lambda r: np.ones(m)}]
    for r0 in init:
        r0 = np.clip(r0, lower, 1.0)
        r0 = r0 / r0.sum()
        sol = minimize(
            objective,
            r0,
            jac=grad,
            bounds=[(lower, 1.0)] * m,
            constraints=cons,
            method="SLSQP",
            options={"maxiter": 500, "ftol": 1e-12},
        )
        r = np.clip(sol.x, lower, 1.0)
        r = r / r.sum()
        val = objective(r)
        if val < best_val:
            best_val, best_r = val, r
    return best_r


class DataMixingLaws(RandomMixtureRuns):
    """The Data Mixing Laws baseline over ``n_runs`` random small-budget runs.

    Same proxy runs as :class:`~databazaar.mixture.RegMix` (Dirichlet mixtures around a
    prior, floored at ``min_weight``); instead of one regressor of the average loss it
    fits one exponential law per validation domain and minimises their mean on the
    simplex (weights ``>= min_weight``, the region the runs covered).

    Needs ``n_runs >= m + 3``: each law has ``m + 1`` free parameters and the
    leave-one-out check refits it without one run.

    Attributes after ``fit``/``fit_runs``: ``weights_``, ``laws_`` (domain ->
    :class:`MixingLaw`), ``mixtures_``, ``losses_`` (``[n_runs, m]`` per-domain losses),
    ``r2_loo_`` (leave-one-out R² of the predicted average loss), ``result_``.
    """

    min_runs_over_domains = 3

    def fit(self, data: TokenizedCorpus) -> DataMixingLaws:
        """Train the random mixtures, fit a law per domain and minimise their mean."""
        self._check_common(len(data.domains))
        prior = self._prior(data.domains)
        rng = np.random.default_rng(self.seed)
        mixes, runs = self._train_mixtures(data, rng, prior, "dml")
        return self.fit_runs(data.domains, mixes, runs)

    def fit_runs(
        self, domains: Sequence[str], mixtures: np.ndarray, runs: Sequence[ProxyResult]
    ) -> DataMixingLaws:
        """Fit on finished proxy runs (e.g. RegMix's ``mixtures_`` and ``runs_``).

        Raises :class:`InvalidInput` if the runs do not match the mixtures or lack a
        loss for some domain.
        """
        doms = list(domains)
        mixes = np.asarray(mixtures, dtype=float)
        if mixes.ndim != 2 or mixes.shape != (len(runs), len(doms)):
            raise InvalidInput(
                f"mixtures must be [{len(runs)} runs, {len(doms)} domains], got {mixes.shape}"
            )
        self._check_common(len(doms), n_runs=len(runs))
        missing = sorted({d for run in runs for d in doms if d not in run.losses})
        if missing:
            raise InvalidInput(f"proxy runs lack losses for domain(s): {', '.join(missing)}")
        y = np.array([[run.losses[d] for d in doms] for run in runs])
        laws = [fit_mixing_law(mixes, y[:, i], seed=self.seed) for i in range(len(doms))]
        avg = y.mean(axis=1)
        w = minimize_mixing_laws(laws, lower=self.min_weight, starts=mixes[np.argsort(avg)[:3]])
        loo = np.empty(len(runs))
        for k in range(len(runs)):
            keep = np.arange(len(runs)) != k
            loo[k] = np.mean(
                [
                    fit_mixing_law(mixes[keep], y[keep, i], init=law.t)(mixes[k])
                    for i, law in enumerate(laws)
                ]
            )
        self.mixtures_, self.losses_, self.runs_ = mixes, y, list(runs)
        self.laws_ = dict(zip(doms, laws, strict=True))
        self.r2_loo_ = r_squared(avg, loo)
        self.weights_ = dict(zip(doms, w.tolist(), strict=True))
        self.result_ = MixtureResult(
            method="dml",
            weights=self.weights_,
            budget=float(self.budget),
            details={
                "n_runs": len(runs),
                "laws": {d: law.to_dict() for d, law in self.laws_.items()},
                "r2_loo": self.r2_loo_,
                "predicted_average_loss": float(np.mean([law(w) for law in laws])),
                "best_run_average_loss": float(avg.min()),
            },
            runs=[run.to_dict() for run in runs],
        )
        return self
