r"""Exact semivalues by enumerating every coalition (ground truth for small games).

For a set function :math:`u` on players :math:`N = \{0, \dots, n-1\}` a *semivalue*
(Dubey, Neyman & Weber 1981) is

.. math::

    \phi_i = \sum_{S \subseteq N \setminus \{i\}} w(|S|, n)\,
             \bigl[u(S \cup \{i\}) - u(S)\bigr],
    \qquad \sum_{k=0}^{n-1} \binom{n-1}{k} w(k, n) = 1,

where :math:`w(k, n)` is the weight of *one* coalition of size :math:`k`:

* Shapley: :math:`w(k, n) = \frac{1}{n}\binom{n-1}{k}^{-1} = \frac{k!\,(n-k-1)!}{n!}`;
* Banzhaf (Wang & Jia 2023): :math:`w(k, n) = 2^{-(n-1)}`;
* Beta(:math:`\alpha, \beta`)-Shapley (Kwon & Zou 2022, eq. 5 divided by :math:`n`,
  and by :math:`\binom{n-1}{k}` to get a per-coalition weight):

  .. math::

      w_{\alpha,\beta}(k, n) = \int_0^1 t^{k}(1-t)^{n-1-k}
          \frac{t^{\beta-1}(1-t)^{\alpha-1}}{B(\alpha, \beta)}\,dt
        = \frac{B(k + \beta,\; n - k - 1 + \alpha)}{B(\alpha, \beta)},

  so Beta(1, 1) is Shapley and :math:`\alpha > \beta` puts more weight on small
  coalitions (Kwon & Zou recommend Beta(16, 1)).

Leave-one-out is :math:`u(N) - u(N \setminus \{i\})`.

The functions here evaluate ``f`` on all :math:`2^n` coalitions once (``f`` receives a
sorted tuple of player positions; a :class:`~databazaar.valuation.utility.Utility`,
:class:`~databazaar.valuation.utility.GameUtility` or
:class:`~databazaar.valuation.groups.GroupUtility` works directly) and combine the table
with numpy in :math:`O(n 2^n)`.  They are limited to :data:`MAX_PLAYERS` players.

References:
    Kwon, Y. & Zou, J. (2022). Beta Shapley: a Unified and Noise-reduced Data Valuation
    Framework for Machine Learning. AISTATS, PMLR 151:8780-8802.
    Wang, J. T. & Jia, R. (2023). Data Banzhaf: A Robust Data Valuation Framework for
    Machine Learning. AISTATS, PMLR 206:6388-6421.
    Dubey, P., Neyman, A. & Weber, R. J. (1981). Value theory without efficiency.
    Mathematics of Operations Research 6(1):122-128.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.special import betaln, gammaln

from databazaar.core.errors import InvalidInput
from databazaar.valuation.result import ValuationResult
from databazaar.valuation.utility import players_of

__all__ = [
    "MAX_PLAYERS",
    "banzhaf_weight",
    "beta_shapley_weight",
    "coalition_values",
    "exact_banzhaf",
    "exact_beta_shapley",
    "exact_loo",
    "exact_semivalue",
    "exact_shapley",
    "shapley_weight",
]

#: Largest number of players the enumeration accepts (2^20 coalitions).
MAX_PLAYERS = 20

Weight = Callable[[int, int], float]


def shapley_weight(k: int, n: int) -> float:
    """Shapley weight of one coalition of size ``k`` out of ``n`` players: 1/(n C(n-1,k))."""
    return float(math.exp(gammaln(k + 1) + gammaln(n - k) - gammaln(n + 1)))


def banzhaf_weight(k: int, n: int) -> float:
    """Banzhaf weight of one coalition (any size) out of ``n`` players: 2^-(n-1)."""
    return float(2.0 ** (-(n - 1)))


def check_alpha_beta(alpha: Any, beta: Any) -> tuple[float, float]:
    """Validate Beta-Shapley parameters (both finite and > 0)."""
    out = []
    for name, v in (("alpha", alpha), ("beta", beta)):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise InvalidInput(f"{name} must be a number > 0, got {v!r}")
        if not np.isfinite(v) or v <= 0:
            raise InvalidInput(
                f"{name} must be > 0, got {v!r}", hint="Beta(16, 1) is the paper's default"
            )
        out.append(float(v))
    return out[0], out[1]


def beta_shapley_weight(alpha: float, beta: float) -> Weight:
    r"""The Beta(alpha, beta)-Shapley coalition weight ``w(k, n)``.

    :math:`w(k, n) = B(k + \beta, n - k - 1 + \alpha) / B(\alpha, \beta)`, i.e. Kwon & Zou
    (2022) eq. (5) per coalition; ``beta_shapley_weight(1, 1)`` equals
    :func:`shapley_weight`.
    """
    a, b = check_alpha_beta(alpha, beta)
    log_norm = float(betaln(a, b))

    def weight(k: int, n: int) -> float:
        return float(np.exp(betaln(k + b, n - k - 1 + a) - log_norm))

    weight.__name__ = f"beta_shapley_weight({a:g}, {b:g})"
    weight.__qualname__ = weight.__name__
    return weight


def _check_n(f: Any, n: int | None) -> int:
    if n is None:
        n = players_of(f)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise InvalidInput(f"the number of players must be an integer >= 1, got {n!r}")
    if n > MAX_PLAYERS:
        raise InvalidInput(
            f"exact enumeration of {n} players needs 2^{n} coalitions",
            hint=f"use at most {MAX_PLAYERS} players, or a Monte Carlo estimator",
        )
    return int(n)


def coalition_values(f: Callable[[tuple[int, ...]], float], n: int | None = None) -> np.ndarray:
    """``table[mask] = f(players in mask)`` for every bitmask ``0 .. 2^n - 1``.

    Bit ``i`` of ``mask`` stands for player ``i``; ``f`` gets a sorted tuple.
    """
    n = _check_n(f, n)
    table = np.empty(1 << n, dtype=np.float64)
    for mask in range(1 << n):
        members = tuple(i for i in range(n) if mask >> i & 1)
        table[mask] = float(f(members))
    if not np.isfinite(table).all():
        raise InvalidInput("the set function returned NaN or infinity for some coalition")
    return table


def _popcount(n: int) -> np.ndarray:
    masks = np.arange(1 << n, dtype=np.int64)
    counts = np.zeros(1 << n, dtype=np.int64)
    for i in range(n):
        counts += (masks >> i) & 1
    return counts


def semivalue_from_table(table: np.ndarray, n: int, weight: Weight) -> np.ndarray:
    """Semivalues of all players from a coalition table (see :func:`coalition_values`)."""
    sizes = _popcount(n)
    w_of_size = np.array([weight(k, n) for k in range(n)], dtype=np.float64)
    masks = np.arange(1 << n, dtype=np.int64)
    values = np.empty(n, dtype=np.float64)
    for i in range(n):
        without = masks[(masks >> i) & 1 == 0]
        marg = table[without | (1 << i)] - table[without]
        values[i] = float(np.dot(w_of_size[sizes[without]], marg))
    return values


def _result(
    values: np.ndarray, f: Any, n: int, method: str, params: dict[str, Any], ids: Any
) -> ValuationResult:
    if ids is None:
        ids = getattr(f, "ids", None)
    if ids is not None and len(ids) != n:
        raise InvalidInput(f"ids has {len(ids)} entries, expected {n}")
    return ValuationResult(
        values=values,
        stderr=np.zeros(n),
        counts=np.full(n, 1 << (n - 1) if method != "loo" else 1, dtype=np.int64),
        ids=None if ids is None else np.asarray(ids),
        method=method,
        params=params,
    )


def exact_semivalue(
    f: Callable[[tuple[int, ...]], float],
    n: int | None = None,
    weight: Weight = shapley_weight,
    *,
    ids: Any = None,
    method: str = "exact-semivalue",
) -> ValuationResult:
    r"""Exact semivalue :math:`\phi_i = \sum_{S \subseteq N \setminus i} w(|S|, n)\,
    [f(S \cup i) - f(S)]` by enumeration.

    Args:
        f: set function on players ``0..n-1``, called with a sorted tuple.
        n: number of players (default: ``f.n_players``).
        weight: ``weight(k, n)``, the weight of one coalition of size ``k``
            (:func:`shapley_weight`, :func:`banzhaf_weight`, :func:`beta_shapley_weight`).
        ids: ids of the players in the result (default ``f.ids`` if present, else
            ``0..n-1``).
        method: method name stored in the result.

    Returns:
        A :class:`ValuationResult` with zero stderr.
    """
    n = _check_n(f, n)
    if not callable(weight):
        raise InvalidInput("weight must be a callable weight(k, n) -> float")
    values = semivalue_from_table(coalition_values(f, n), n, weight)
    name = getattr(weight, "__name__", "custom")
    return _result(values, f, n, method, {"weight": name}, ids)


def exact_shapley(
    f: Callable[[tuple[int, ...]], float], n: int | None = None, *, ids: Any = None
) -> ValuationResult:
    """Exact Shapley values by enumeration (Shapley 1953)."""
    return exact_semivalue(f, n, shapley_weight, ids=ids, method="exact-shapley")


def exact_banzhaf(
    f: Callable[[tuple[int, ...]], float], n: int | None = None, *, ids: Any = None
) -> ValuationResult:
    """Exact Banzhaf values by enumeration (Wang & Jia 2023, eq. 3)."""
    return exact_semivalue(f, n, banzhaf_weight, ids=ids, method="exact-banzhaf")


def exact_beta_shapley(
    f: Callable[[tuple[int, ...]], float],
    n: int | None = None,
    alpha: float = 16.0,
    beta: float = 1.0,
    *,
    ids: Any = None,
) -> ValuationResult:
    """Exact Beta(alpha, beta)-Shapley values by enumeration (Kwon & Zou 2022)."""
    res = exact_semivalue(
        f, n, beta_shapley_weight(alpha, beta), ids=ids, method="exact-beta-shapley"
    )
    res.params = {"alpha": float(alpha), "beta": float(beta)}
    return res


def exact_loo(
    f: Callable[[tuple[int, ...]], float], n: int | None = None, *, ids: Any = None
) -> ValuationResult:
    r"""Leave-one-out values :math:`f(N) - f(N \setminus i)`; ``n + 1`` evaluations.

    Not limited to :data:`MAX_PLAYERS` (no enumeration).
    """
    if n is None:
        n = players_of(f)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise InvalidInput(f"the number of players must be an integer >= 1, got {n!r}")
    n = int(n)
    everyone = tuple(range(n))
    total = float(f(everyone))
    values = np.array([total - float(f(everyone[:i] + everyone[i + 1 :])) for i in range(n)])
    return _result(values, f, n, "loo", {}, ids)
