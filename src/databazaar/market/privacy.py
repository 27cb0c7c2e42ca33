r"""Privacy-preserving derivatives: differentially private statistics with a budget.

A seller can offer aggregate statistics of a product instead of (or besides) its rows:
counts, sums, means and histograms released under :math:`\varepsilon`-differential
privacy (Dwork, McSherry, Nissim, Smith 2006) with IBM's diffprivlib mechanisms:

=============  ======================================================================
``count``      number of rows (or non-missing values of a column); two-sided geometric
               mechanism, sensitivity 1 (diffprivlib ``Geometric``), noise
               :math:`P(k) \propto e^{-\varepsilon |k|}`, then clipped at 0 (not at
               the row count, which is itself private)
``sum``        sum of a column clipped to the seller's bounds :math:`[l, u]`; Laplace
               with sensitivity :math:`u - l` (diffprivlib's bounded-DP sum)
``mean``       mean of a clipped column; Laplace with scale :math:`(u-l)/(n\varepsilon)`
               (bounded DP: the row count is public for means, as in diffprivlib)
``histogram``  counts per bin (numeric column: the seller's bins over :math:`[l, u]`;
               categorical column: the seller's categories); geometric noise per bin
=============  ======================================================================

Bounds, bins and categories are part of the seller's *offer* and never read from the
data, which would leak it.  Every release spends its :math:`\varepsilon` from the
product's budget; by sequential composition (Dwork & Roth 2014, Thm. 3.16) the total
privacy loss of all releases is at most the sum, so the budget is enforced on the sum.
:class:`PrivacyAccountant` keeps that sum in the database, in integer micro-epsilon so
the arithmetic is exact, locks the budget row while it checks and spends, and refuses
(:class:`~databazaar.core.errors.BudgetExceeded`) any request past the budget; a
refused or failed request spends nothing.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import sys
import types
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from databazaar.core.errors import BudgetExceeded, InvalidInput, NotFound
from databazaar.market.econ_models import EPS_UNIT, EconDpBudget, EconDpRelease

STATISTICS = ("count", "sum", "mean", "histogram")
MAX_EPSILON = 100.0
MIN_EPSILON = 1e-6
MAX_BINS = 1000


def diffprivlib_tools() -> Any:
    """``diffprivlib.tools`` (and its accountant), importable even when the package's
    ``models`` subpackage fails against the installed scikit-learn.

    diffprivlib 0.6.5's ``__init__`` imports its models, which import a private
    scikit-learn symbol removed in scikit-learn 1.9.  The statistics tools do not need
    the models, so on that ImportError the package is registered without running its
    ``__init__`` and only ``tools``, ``mechanisms`` and ``accountant`` are imported.
    """
    try:
        return importlib.import_module("diffprivlib.tools")
    except ImportError:
        spec = importlib.util.find_spec("diffprivlib")
        if spec is None or spec.submodule_search_locations is None:
            raise InvalidInput(
                "differential privacy needs diffprivlib", hint="pip install diffprivlib"
            ) from None
        for name in [m for m in sys.modules if m == "diffprivlib" or m.startswith("diffprivlib.")]:
            del sys.modules[name]
        pkg = types.ModuleType("diffprivlib")
        pkg.__path__ = list(spec.submodule_search_locations)
        pkg.__spec__ = spec
        sys.modules["diffprivlib"] = pkg
        return importlib.import_module("diffprivlib.tools")


def epsilon_micro(epsilon: Any) -> int:
    """Epsilon as an integer count of 10^-6 (exact budget arithmetic); validated."""
    if isinstance(epsilon, bool) or not isinstance(epsilon, int | float | str):
        raise InvalidInput(f"epsilon must be a positive number, got {epsilon!r}")
    try:
        dec = Decimal(str(epsilon))
    except InvalidOperation:
        raise InvalidInput(f"epsilon must be a positive number, got {epsilon!r}") from None
    if not dec.is_finite() or not Decimal(str(MIN_EPSILON)) <= dec <= Decimal(str(MAX_EPSILON)):
        raise InvalidInput(
            f"epsilon must be between {MIN_EPSILON:g} and {MAX_EPSILON:g}, got {epsilon!r}",
            hint="smaller epsilon = more noise and more privacy; 0.1 to 1 is typical",
        )
    micro = dec * EPS_UNIT
    if micro != micro.to_integral_value():
        raise InvalidInput(f"epsilon has more than 6 decimals: {epsilon!r}")
    return int(micro)


def check_columns(columns: Any) -> dict[str, dict[str, Any]]:
    """Validate a seller's per-column DP policy.

    ``{column: {"bounds": [lo, hi], "bins": int}}`` for a numeric column (``bins``
    only for histograms, default 10) or ``{column: {"categories": [...]}}`` for a
    categorical one.
    """
    if not isinstance(columns, Mapping):
        raise InvalidInput(
            "columns must map column names to {'bounds': [lo, hi]} or {'categories': [...]}"
        )
    out: dict[str, dict[str, Any]] = {}
    for col, pol in columns.items():
        if not isinstance(col, str) or not col:
            raise InvalidInput("DP column names must be non-empty strings")
        if not isinstance(pol, Mapping) or set(pol) - {"bounds", "bins", "categories"}:
            raise InvalidInput(
                f"policy of {col!r} must be {{'bounds': [lo, hi], 'bins': n}} "
                "or {'categories': [...]}"
            )
        if "categories" in pol:
            if "bounds" in pol or "bins" in pol:
                raise InvalidInput(f"column {col!r}: give categories or bounds, not both")
            cats = pol["categories"]
            if not isinstance(cats, list) or not 1 <= len(cats) <= MAX_BINS:
                raise InvalidInput(
                    f"column {col!r}: categories must be a list of 1-{MAX_BINS} values"
                )
            if len({repr(c) for c in cats}) != len(cats):
                raise InvalidInput(f"column {col!r}: categories repeat")
            out[col] = {"categories": list(cats)}
            continue
        bounds = pol.get("bounds")
        if (
            not isinstance(bounds, list | tuple)
            or len(bounds) != 2
            or not all(isinstance(b, int | float) and not isinstance(b, bool) for b in bounds)
            or not all(math.isfinite(float(b)) for b in bounds)
            or not float(bounds[0]) < float(bounds[1])
        ):
            raise InvalidInput(
                f"column {col!r}: bounds must be [lo, hi] with finite lo < hi",
                hint="declare the range from domain knowledge, not from the data",
            )
        bins = pol.get("bins", 10)
        if isinstance(bins, bool) or not isinstance(bins, int) or not 1 <= bins <= MAX_BINS:
            raise InvalidInput(f"column {col!r}: bins must be an integer in 1..{MAX_BINS}")
        out[col] = {"bounds": [float(bounds[0]), float(bounds[1])], "bins": bins}
    return out


def noise_std(
    statistic: str, epsilon: float, policy: Mapping[str, Any] | None = None, n: int = 0
) -> float:
    r"""Standard deviation of the noise a release adds (before truncation).

    ``count``/``histogram`` (per bin): two-sided geometric,
    :math:`\sqrt{2\alpha}/(1-\alpha)`, :math:`\alpha = e^{-\varepsilon}`; ``mean``:
    Laplace with scale :math:`b = (u-l)/(n\varepsilon)`, std :math:`\sqrt2 b`.
    """
    if statistic in ("count", "histogram"):
        a = math.exp(-epsilon)
        return math.sqrt(2 * a) / (1 - a)
    if statistic == "mean":
        lo, hi = (policy or {})["bounds"]
        return math.sqrt(2) * (hi - lo) / (max(n, 1) * epsilon)
    raise InvalidInput(f"no closed-form noise for {statistic!r}")


def _accountant(remaining_micro: int) -> Any:
    diffprivlib_tools()
    from diffprivlib.accountant import BudgetAccountant

    # the persistent accountant is the truth; this one double-checks inside diffprivlib
    return BudgetAccountant(epsilon=remaining_micro / EPS_UNIT + 1e-9, delta=0.0)


def _dp_count(true_count: int, eps: float, random_state: Any, accountant: Any) -> int:
    """Two-sided geometric noise (sensitivity 1), clipped at 0 (post-processing)."""
    diffprivlib_tools()
    from diffprivlib.mechanisms import Geometric

    if accountant is not None:
        accountant.check(eps, 0.0)
    rng = random_state
    if isinstance(rng, int | np.integer):
        rng = np.random.RandomState(int(rng))
    noisy = Geometric(epsilon=eps, sensitivity=1, random_state=rng).randomise(int(true_count))
    if accountant is not None:
        accountant.spend(eps, 0.0)
    return max(0, int(noisy))


def release(
    frame: pd.DataFrame,
    statistic: str,
    column: str | None,
    epsilon: float,
    columns: Mapping[str, Mapping[str, Any]],
    *,
    random_state: Any = None,
    accountant: Any = None,
) -> dict[str, Any]:
    """One DP release from ``frame`` (a pure function; see :class:`PrivacyAccountant`).

    Args:
        frame: the product's table.
        statistic: ``count``, ``sum``, ``mean`` or ``histogram``.
        column: the column (required except for ``count``, which then counts rows).
        epsilon: privacy loss of this release.
        columns: the seller's policy (:func:`check_columns`).
        random_state: seed of the noise (tests); ``None`` draws fresh noise.
        accountant: optional diffprivlib ``BudgetAccountant`` charged by the release.
    """
    tools = diffprivlib_tools()
    if statistic not in STATISTICS:
        raise InvalidInput(f"unknown statistic {statistic!r}", hint=f"use {', '.join(STATISTICS)}")
    eps = epsilon_micro(epsilon) / EPS_UNIT
    out: dict[str, Any] = {"statistic": statistic, "column": column, "epsilon": eps}
    if statistic == "count" and column is None:
        value = tools.count_nonzero(
            np.ones(len(frame)), epsilon=eps, random_state=random_state, accountant=accountant
        )
        out.update(
            value=int(value),
            mechanism="geometric (sensitivity 1)",
            noise_std=noise_std("count", eps),
        )
        return out
    if column is None:
        raise InvalidInput(f"statistic {statistic!r} needs a column")
    if column not in columns:
        raise InvalidInput(
            f"column {column!r} is not offered for DP statistics",
            hint=f"offered columns: {', '.join(sorted(columns)) or 'none'}",
        )
    if column not in frame.columns:
        raise InvalidInput(f"the table has no column {column!r}")
    pol = columns[column]
    series = frame[column]
    if statistic == "count":
        value = tools.count_nonzero(
            series.notna().to_numpy(), epsilon=eps, random_state=random_state, accountant=accountant
        )
        out.update(
            value=int(value),
            mechanism="geometric (sensitivity 1)",
            noise_std=noise_std("count", eps),
        )
        return out
    if "categories" in pol:
        if statistic != "histogram":
            raise InvalidInput(
                f"column {column!r} is categorical: only count and histogram are offered"
            )
        cats = pol["categories"]
        index = {repr(c): i for i, c in enumerate(cats)}
        codes = np.array(
            [
                index.get(repr(v.item() if isinstance(v, np.generic) else v), -1)
                for v in series.dropna()
            ]
        )
        codes = codes[codes >= 0]  # values outside the declared categories are not counted
        counts, _ = tools.histogram(
            codes,
            epsilon=eps,
            bins=len(cats),
            range=(-0.5, len(cats) - 0.5),
            random_state=random_state,
            accountant=accountant,
        )
        out.update(
            categories=cats,
            counts=[int(c) for c in counts],
            mechanism="geometric per bin",
            noise_std=noise_std("histogram", eps),
        )
        return out
    lo, hi = pol["bounds"]
    values = pd.to_numeric(series, errors="coerce").dropna().to_numpy(dtype=np.float64)
    if values.size == 0:
        raise InvalidInput(f"column {column!r} has no numeric values")
    values = np.clip(values, lo, hi)
    if statistic == "histogram":
        counts, edges = tools.histogram(
            values,
            epsilon=eps,
            bins=pol["bins"],
            range=(lo, hi),
            random_state=random_state,
            accountant=accountant,
        )
        out.update(
            counts=[int(c) for c in counts],
            edges=[float(e) for e in edges],
            mechanism="geometric per bin",
            noise_std=noise_std("histogram", eps),
        )
        return out
    fn = tools.mean if statistic == "mean" else tools.sum
    value = fn(
        values, epsilon=eps, bounds=(lo, hi), random_state=random_state, accountant=accountant
    )
    out.update(value=float(value), mechanism="laplace (truncated to the bounds)", bounds=[lo, hi])
    if statistic == "mean":
        out["noise_std"] = noise_std("mean", eps, pol, values.size)
    return out


class PrivacyAccountant:
    """The persistent per-product budget (sequential composition, micro-epsilon).

    All methods work inside the caller's write session, so a release and its spend
    commit together or not at all.
    """

    def __init__(self, session: Session) -> None:
        self.session = session

    def set_budget(self, product_id: int, epsilon_total: Any, columns: Any) -> EconDpBudget:
        """Create or change a product's budget; it can never drop below what was spent."""
        total = epsilon_micro(epsilon_total)
        cols = check_columns(columns)
        row = self.session.get(EconDpBudget, product_id, with_for_update=True)
        if row is None:
            row = EconDpBudget(
                product_id=product_id,
                epsilon_total_micro=total,
                epsilon_spent_micro=0,
                columns=cols,
            )
            self.session.add(row)
        else:
            self.session.refresh(row)
            if total < row.epsilon_spent_micro:
                raise InvalidInput(
                    f"epsilon {total / EPS_UNIT:g} is below what was already spent "
                    f"({row.epsilon_spent_micro / EPS_UNIT:g})",
                    hint="a privacy budget can grow but never shrink below the spent part",
                )
            row.epsilon_total_micro = total
            row.columns = cols
        self.session.flush()
        return row

    def budget(self, product_id: int, *, lock: bool = False) -> EconDpBudget:
        row = self.session.get(EconDpBudget, product_id, with_for_update=lock)
        if row is None:
            raise NotFound("this product offers no differentially private statistics")
        if lock:
            self.session.refresh(row)
        return row

    def spend(
        self,
        product_id: int,
        account_id: int,
        frame: pd.DataFrame,
        statistic: str,
        column: str | None,
        epsilon: Any,
        *,
        random_state: Any = None,
    ) -> dict[str, Any]:
        """Check the budget, release, record the release and the spend (one transaction)."""
        want = epsilon_micro(epsilon)
        row = self.budget(product_id, lock=True)
        remaining = row.epsilon_total_micro - row.epsilon_spent_micro
        if want > remaining:
            raise BudgetExceeded(
                f"the request needs epsilon {want / EPS_UNIT:g} but only "
                f"{remaining / EPS_UNIT:g} of the product's {row.epsilon_total_micro / EPS_UNIT:g} "
                "is left",
                hint="ask with a smaller epsilon, or ask the seller to raise the budget",
            )
        acc = _accountant(remaining)
        try:
            result = release(
                frame,
                statistic,
                column,
                want / EPS_UNIT,
                row.columns,
                random_state=random_state,
                accountant=acc,
            )
        except Exception as exc:
            if type(exc).__name__ == "BudgetError":
                raise BudgetExceeded(f"diffprivlib refused the release: {exc}") from None
            raise
        row.epsilon_spent_micro += want
        result["epsilon_remaining"] = (row.epsilon_total_micro - row.epsilon_spent_micro) / EPS_UNIT
        self.session.add(
            EconDpRelease(
                product_id=product_id,
                account_id=account_id,
                statistic=statistic,
                column=column,
                epsilon_micro=want,
                result=result,
            )
        )
        self.session.flush()
        return result

    def releases(self, product_id: int) -> list[EconDpRelease]:
        return list(
            self.session.scalars(
                select(EconDpRelease)
                .where(EconDpRelease.product_id == product_id)
                .order_by(EconDpRelease.id)
            )
        )
