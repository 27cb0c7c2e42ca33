"""Shifted power laws, the budget-simplex solver and the AutoScale scaling rule.

References:
    Kang, Sun, Wen, Chen, Song, Mahmood, Jia. "AutoScale: Scale-Aware Data Mixing for
    Pre-Training LLMs" (arXiv 2407.20177). DDO (the "Direct Data Optimization" section)
    models the validation loss as a sum over domains of shifted power laws in each
    domain's data quantity and minimises that surrogate under the total-budget
    constraint; AutoScale (the scale-extrapolation section and its theorem) predicts the
    optimal per-domain quantities at a larger budget from two optimised smaller ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from databazaar.core.errors import InvalidInput


@dataclass(frozen=True)
class PowerLaw:
    """Shifted power law ``f(x) = (x + a) ** (-b) + c`` on ``x > -a`` (DDO's per-domain law).

    ``x`` is a domain's quantity relative to the reference mixture (1 = reference),
    ``b >= 0`` so ``f`` is non-increasing and convex, ``c`` is the irreducible part.
    """

    a: float
    b: float
    c: float
    rmse: float = 0.0

    def __call__(self, x: np.ndarray | float) -> np.ndarray | float:
        return (np.asarray(x, dtype=float) + self.a) ** (-self.b) + self.c

    def derivative(self, x: np.ndarray | float) -> np.ndarray | float:
        """``f'(x) = -b (x + a) ** (-b - 1)``."""
        return -self.b * (np.asarray(x, dtype=float) + self.a) ** (-self.b - 1.0)

    def x_at_slope(self, slope: float) -> float:
        """The ``x`` with ``f'(x) = slope`` for ``slope < 0`` (``inf`` if ``b == 0``)."""
        if self.b <= 0:
            return float("inf")
        return float((-slope / self.b) ** (-1.0 / (self.b + 1.0)) - self.a)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def fit_power_law(x: Sequence[float], y: Sequence[float], *, max_b: float = 20.0) -> PowerLaw:
    """Least-squares fit of ``y ≈ (x + a)^(-b) + c`` with ``b in [0, max_b]``, ``a > -min(x)``.

    Variable projection: for fixed ``(a, b)`` the best ``c`` is ``mean(y - (x + a)^(-b))``,
    so only ``(a, b)`` are searched. A log-spaced grid over ``(a + min(x), b)`` picks the
    best few starts, each is refined by bounded trust-region least squares, and the best
    refinement wins. Three points (the DDO design: reference, scaled down, scaled up)
    determine the law exactly when they are decreasing and convex; otherwise the best
    non-increasing convex law is returned (``b = 0`` gives a flat line).
    Raises :class:`InvalidInput` for fewer than 3 points, non-positive or non-finite
    ``x``, non-finite ``y``, or fewer than 3 distinct ``x``.
    """
    from scipy.optimize import least_squares

    xa = np.asarray(x, dtype=float)
    ya = np.asarray(y, dtype=float)
    if xa.shape != ya.shape or xa.ndim != 1:
        raise InvalidInput("x and y must be 1-d sequences of equal length")
    if xa.size < 3:
        raise InvalidInput(f"a shifted power law needs at least 3 points, got {xa.size}")
    if not (np.all(np.isfinite(xa)) and np.all(np.isfinite(ya))):
        raise InvalidInput("x and y must be finite")
    if np.any(xa <= 0):
        raise InvalidInput("quantities x must be positive")
    if np.unique(xa).size < 3:
        raise InvalidInput("at least 3 distinct quantities are needed")
    if not max_b > 0:
        raise InvalidInput(f"max_b must be positive, got {max_b}")
    xmin = float(xa.min())
    # a is searched through s = a + min(x) > 0 (the smallest shifted quantity)
    s_lo, s_hi = 1e-6 * max(1.0, xmin), 1e4

    def curve(s: float, b: float) -> np.ndarray:
        return (xa - xmin + s) ** (-b)

    def resid(p: np.ndarray) -> np.ndarray:
        g = curve(p[0], p[1])
        return g + np.mean(ya - g) - ya

    starts: list[tuple[float, float, float]] = []
    for s in np.geomspace(1e-4 * max(1.0, xmin), 1e3, 36):
        for b in np.geomspace(1e-3, max_b, 36):
            r = resid(np.array([s, b]))
            starts.append((float(r @ r), float(s), float(b)))
    starts.sort()
    flat = float(np.sum((ya - ya.mean()) ** 2))
    best_sse, best = flat, np.array([1.0, 0.0])
    for _, s0, b0 in starts[:6]:
        sol = least_squares(
            resid,
            np.array([s0, b0]),
            bounds=([s_lo, 0.0], [s_hi, max_b]),
            method="trf",
            x_scale=np.array([s0, b0]),
            max_nfev=2000,
            xtol=1e-15,
            ftol=1e-15,
            gtol=1e-15,
        )
        sse = float(sol.fun @ sol.fun)
        if sse < best_sse:
            best_sse, best = sse, sol.x
    s, b = float(best[0]), float(best[1])
    c = float(np.mean(ya - curve(s, b)))
    rmse = float(np.sqrt(best_sse / xa.size))
    return PowerLaw(a=s - xmin, b=b, c=c, rmse=rmse)


def solve_budget_simplex(
    laws: Sequence[PowerLaw],
    reference_weights: Sequence[float],
    *,
    lower: Sequence[float] | float = 0.0,
    upper: Sequence[float] | float = 1.0,
    tol: float = 1e-12,
) -> np.ndarray:
    """Minimise ``Σ_i f_i(w_i / r_i)`` over weights with ``Σ w_i = 1``, ``lower ≤ w ≤ upper``.

    This is DDO's outer problem on the budget simplex: ``w_i = N_i / N`` and ``r_i`` the
    reference weights, so ``x_i = w_i / r_i`` is domain ``i``'s quantity relative to the
    reference mixture at the same budget. Every ``f_i`` is convex and non-increasing, so
    the KKT conditions give the optimum exactly: ``w_i(λ) = clip(r_i x_i*(λ))`` where
    ``f_i'(x_i*) / r_i = -λ``, and ``λ > 0`` is found by bisection so the weights sum to 1
    (the paper reaches the same optimum by projected gradient descent).
    Raises :class:`InvalidInput` for infeasible bounds or invalid reference weights.
    """
    m = len(laws)
    r = np.asarray(reference_weights, dtype=float)
    if r.shape != (m,) or np.any(~np.isfinite(r)) or np.any(r <= 0):
        raise InvalidInput("reference weights must be one positive number per domain")
    r = r / r.sum()
    lo = np.broadcast_to(np.asarray(lower, dtype=float), (m,)).copy()
    hi = np.broadcast_to(np.asarray(upper, dtype=float), (m,)).copy()
    if np.any(lo < 0) or np.any(hi < lo) or np.any(~np.isfinite(lo)) or np.any(~np.isfinite(hi)):
        raise InvalidInput("bounds must satisfy 0 <= lower <= upper")
    # weights must keep x_i = w_i / r_i inside each law's domain x > -a
    lo = np.maximum(lo, np.array([max(0.0, r[i] * (-law.a)) + 1e-12 for i, law in enumerate(laws)]))
    if lo.sum() > 1 + 1e-9 or hi.sum() < 1 - 1e-9 or np.any(hi < lo):
        raise InvalidInput(
            f"bounds are infeasible: lower bounds sum to {lo.sum():.4g}, upper to {hi.sum():.4g}",
            hint="lower bounds must sum to at most 1 and upper bounds to at least 1",
        )

    def weights(lam: float) -> np.ndarray:
        w = np.empty(m)
        for i, law in enumerate(laws):
            x = law.x_at_slope(-lam * r[i])
            w[i] = np.clip(r[i] * x, lo[i], hi[i]) if np.isfinite(x) else lo[i]
        return w

    flat = np.array([law.b <= 0 for law in laws])
    lam_lo, lam_hi = 1e-300, 1.0
    while weights(lam_hi).sum() > 1.0 and lam_hi < 1e300:
        lam_hi *= 10.0
    if weights(lam_lo).sum() < 1.0:
        # even at λ→0 the curved domains sit at their caps: give the rest to flat domains
        w = weights(lam_lo)
        rest = 1.0 - w.sum()
        for i in np.flatnonzero(flat):
            add = min(rest, hi[i] - w[i])
            w[i] += add
            rest -= add
        if rest > 1e-9:  # pragma: no cover - excluded by the feasibility check
            raise InvalidInput("bounds are infeasible")
        return w
    for _ in range(400):
        mid = np.sqrt(lam_lo * lam_hi)
        if weights(mid).sum() > 1.0:
            lam_lo = mid
        else:
            lam_hi = mid
        if lam_hi / lam_lo < 1 + tol:
            break
    w_lo, w_hi = weights(lam_lo), weights(lam_hi)
    s_lo, s_hi = w_lo.sum(), w_hi.sum()
    t = 0.0 if s_lo == s_hi else (s_lo - 1.0) / (s_lo - s_hi)
    w = w_lo + t * (w_hi - w_lo)
    return w / w.sum()


def surrogate_loss(
    laws: Sequence[PowerLaw], reference_weights: Sequence[float], w: np.ndarray
) -> float:
    """DDO's separable surrogate ``Σ_i f_i(w_i / r_i)`` (up to a constant)."""
    r = np.asarray(reference_weights, dtype=float)
    r = r / r.sum()
    return float(sum(law(wi / ri) for law, wi, ri in zip(laws, w, r, strict=True)))


def autoscale_exponent(q1: np.ndarray, q2: np.ndarray, target_budget: float) -> float:
    """The step ``t`` with ``Σ_i q2_i (q2_i / q1_i)^t = target_budget`` (bisection)."""
    ratio = q2 / q1
    total = float(target_budget)

    def f(t: float) -> float:
        return float(np.sum(q2 * ratio**t)) - total

    lo, hi = -1.0, 1.0
    while f(hi) < 0:
        hi *= 2.0
        if hi > 1e6:  # pragma: no cover - excluded by the growth check
            raise InvalidInput("target budget cannot be reached by the AutoScale rule")
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if f(mid) < 0:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def autoscale_predict(
    q1: Sequence[float], q2: Sequence[float], target_budget: float | None = None
) -> dict[str, Any]:
    """AutoScale's rule: predict optimal per-domain quantities at a larger budget.

    With ``q1 = N^(1)*`` and ``q2 = N^(2)*`` the DDO-optimal quantities at budgets
    ``N^(1) < N^(2)``, the optimal quantities follow a geometric progression per domain:
    ``N^(3)* = N^(2)* ⊙ (N^(2)* ⊘ N^(1)*)`` at budget ``N^(3) = Σ_i N_i^(3)*``, and in
    general ``N^(k+t)* = N^(2)* ⊙ (N^(2)* ⊘ N^(1)*)^t`` (fractional ``t`` interpolates; the
    paper checks the ``t = 1/2`` point against an independent DDO run). Without
    ``target_budget`` one step (``t = 1``) is taken; with it, ``t`` solves
    ``Σ_i N_i^(2+t)* = target_budget``. Returns ``quantities``, ``weights``, ``budget``
    and ``t``. Raises :class:`InvalidInput` unless ``0 < Σq1 < Σq2 <= target_budget`` and
    all quantities are positive.
    """
    a = np.asarray(q1, dtype=float)
    b = np.asarray(q2, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise InvalidInput("q1 and q2 must be equal-length 1-d sequences")
    if np.any(~np.isfinite(a)) or np.any(~np.isfinite(b)) or np.any(a <= 0) or np.any(b <= 0):
        raise InvalidInput("AutoScale needs positive, finite quantities for every domain")
    n1, n2 = float(a.sum()), float(b.sum())
    if not n1 < n2:
        raise InvalidInput(f"the second budget ({n2:.6g}) must be larger than the first ({n1:.6g})")
    if target_budget is None:
        t = 1.0
    else:
        if not np.isfinite(target_budget) or target_budget < n2:
            raise InvalidInput(
                f"target budget {target_budget} must be at least the larger DDO budget {n2:.6g}",
                hint="AutoScale extrapolates upwards; run DDO directly at smaller budgets",
            )
        t = autoscale_exponent(a, b, float(target_budget))
    q = b * (b / a) ** t
    return {"quantities": q, "weights": q / q.sum(), "budget": float(q.sum()), "t": float(t)}
