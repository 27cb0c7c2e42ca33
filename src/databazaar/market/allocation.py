r"""Revenue allocation: split a sale among contributing sellers by Data Shapley.

When a product bundles rows from several sellers (a *group* per seller, named by a
column of the table), the seller side of each sale is split in proportion to each
group's Data Shapley value for a validation task (Ghorbani & Zou 2019; Jia et al.
2019; the revenue-allocation stage of Zhang et al. 2024's survey; Agarwal, Dahleh,
Sarkar 2019 for Shapley-fair splits in a data marketplace):

``knn``    exact KNN-Shapley (Jia et al. 2019, Thm. 1), group value = sum of its rows'
           values; efficient, so values add up to :math:`U(D) - U(\emptyset)`.
``exact``  exact Shapley value of the *group game* (players = groups) with any
           scikit-learn model, by enumerating the :math:`2^T` coalitions (T <= 12).
``tmc``    Truncated Monte Carlo Shapley over groups (Ghorbani & Zou 2019).
``ads``    exact KNN Asymmetric Data Shapley (Zheng et al. 2024) for *ordered*
           contributions (versions, pipeline stages): a group that only repeats
           earlier groups' data gets about nothing, so copying does not pay.

Chance correction (``knn`` and ``ads``).  The KNN utility scores the empty set 0, so
even randomly labelled rows "earn" the chance rate :math:`c = 1/C` (C classes) of
matching a validation label.  We value the *gain over chance*,
:math:`U'(S) = U(S) - c \min(|S|, K)/K`; by linearity this subtracts the values of the
game :math:`w(S) = c\min(|S|,K)/K`, whose group totals are known in closed form:
:math:`c\,n_g \min(N,K)/(K N)` under Shapley (symmetric game) and, by group
efficiency, :math:`c\,(\min(N_{<t} + n_t, K) - \min(N_{<t}, K))/K` under ADS.  A seller of
random labels then gets about 0, not a share of the chance rate.

Splitting rule (:func:`largest_remainder`), in integer minor units:

1. *Clip*: a negative value means the group made the model worse on the task; sellers
   are never charged for a sale, so its weight is 0 (it receives 0) and the others share
   in proportion to their positive values.
2. *Fallback*: if no group has a positive value, the revenue splits equally (the
   market cannot tell contributions apart; equal shares are the Shapley value of a
   symmetric game).
3. *Round*: quotas :math:`T w_i / \sum_j w_j` are computed exactly (rationals); each
   group gets the floor and the leftover units go one each to the largest fractional
   parts (Hamilton's largest-remainder method), ties to the larger weight, then to the
   earlier group.  Amounts are non-negative, within one unit of the quota, and sum to
   exactly :math:`T`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from databazaar.core.errors import InvalidInput
from databazaar.core.money import check_minor
from databazaar.valuation.result import ValuationResult

#: Allocation methods and what each computes (the web pages show these descriptions).
METHOD_DESCRIPTIONS = {
    "knn": "exact KNN-Shapley of each group (fast; the default)",
    "exact": "exact group Shapley with a KNN classifier (up to 12 groups)",
    "tmc": "truncated Monte Carlo Shapley of the groups",
    "ads": "Asymmetric Data Shapley: earlier groups first (give the order)",
}
METHODS = tuple(METHOD_DESCRIPTIONS)
MAX_EXACT_GROUPS = 12
RULE = (
    "Shapley-proportional; negative values clipped to 0; equal split if no positive value; "
    "largest-remainder rounding in minor units (ties: larger weight, then earlier group)"
)


def largest_remainder(total_minor: int, weights: Sequence[float]) -> tuple[list[int], bool]:
    """Split ``total_minor`` by ``weights`` (module rules 1-3): ``(amounts, equal_fallback)``."""
    total = check_minor(total_minor, "revenue")
    if isinstance(weights, str | bytes) or not isinstance(weights, Sequence) or not weights:
        raise InvalidInput("give at least one weight to split revenue by")
    ws = []
    for w in weights:
        if isinstance(w, bool) or not isinstance(w, int | float | np.integer | np.floating):
            raise InvalidInput(f"weights must be numbers, got {w!r}")
        if not np.isfinite(float(w)):
            raise InvalidInput("weights must be finite", hint="check the valuation for NaN")
        ws.append(max(Fraction(float(w)), Fraction(0)))
    fallback = sum(ws) == 0
    if fallback:
        ws = [Fraction(1)] * len(ws)
    wsum = sum(ws)
    quotas = [total * w / wsum for w in ws]
    amounts = [q.numerator // q.denominator for q in quotas]
    left = total - sum(amounts)
    order = sorted(range(len(ws)), key=lambda i: (-(quotas[i] - amounts[i]), -ws[i], i))
    for i in order[:left]:
        amounts[i] += 1
    return amounts, fallback


@dataclass(frozen=True)
class Share:
    """One group's part of a split."""

    group: Any
    account: Any
    value: float
    weight: float
    amount_minor: int


@dataclass
class RevenueSplit:
    """A sale's seller revenue split among groups, with the valuation behind it."""

    total_minor: int
    shares: list[Share]
    method: str
    equal_fallback: bool
    valuation: dict[str, Any] = field(default_factory=dict)
    rule: str = RULE

    def by_account(self) -> dict[Any, int]:
        """Amounts summed per account (a seller may own several groups)."""
        out: dict[Any, int] = {}
        for s in self.shares:
            out[s.account] = out.get(s.account, 0) + s.amount_minor
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "total_minor": self.total_minor,
            "method": self.method,
            "rule": self.rule,
            "equal_fallback": self.equal_fallback,
            "shares": [
                {
                    "group": s.group,
                    "account": s.account,
                    "value": s.value,
                    "weight": s.weight,
                    "amount_minor": s.amount_minor,
                }
                for s in self.shares
            ],
            "valuation": self.valuation,
        }

    def digest(self) -> str:
        """sha256 of the canonical JSON of the valuation (what the ledger memo cites)."""
        return valuation_digest(self.valuation)


def valuation_digest(valuation: Mapping[str, Any]) -> str:
    """sha256 of a valuation record's canonical JSON."""
    blob = json.dumps(valuation, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    return v


def valuation_record(result: ValuationResult) -> dict[str, Any]:
    """The JSON record of a group valuation kept with every split it justifies."""
    rec: dict[str, Any] = {
        "method": result.method,
        "params": json.loads(json.dumps(result.params, default=_jsonable)),
        "groups": [_jsonable(g) for g in result.ids],
        "values": [float(v) for v in result.values],
        "stderr": [float(v) for v in result.stderr] if result.stderr is not None else None,
    }
    if result.ci_low is not None and result.ci_high is not None:
        rec["ci_low"] = [float(v) for v in result.ci_low]
        rec["ci_high"] = [float(v) for v in result.ci_high]
        rec["confidence"] = result.confidence
    return rec


def split_revenue(
    total_minor: int,
    valuation: ValuationResult | Mapping[Any, float],
    contributors: Mapping[Any, Any] | None = None,
) -> RevenueSplit:
    """Split ``total_minor`` among the groups of ``valuation`` (module rules).

    Args:
        total_minor: the seller side of a sale, in minor units.
        valuation: a group :class:`ValuationResult` (see :func:`contribution_values`)
            or a mapping ``{group: value}``.
        contributors: ``{group: account}``; default: each group is its own account.
            Every group must be mapped.
    """
    if isinstance(valuation, ValuationResult):
        groups = [_jsonable(g) for g in valuation.ids]
        values = [float(v) for v in valuation.values]
        record = valuation_record(valuation)
        method = valuation.method
    elif isinstance(valuation, Mapping):
        if not valuation:
            raise InvalidInput("the valuation has no groups")
        groups = list(valuation)
        values = [float(valuation[g]) for g in groups]
        record = {"method": "given", "groups": groups, "values": values}
        method = "given"
    else:
        raise InvalidInput("valuation must be a ValuationResult or a {group: value} mapping")
    contributors = {g: g for g in groups} if contributors is None else dict(contributors)
    missing = [g for g in groups if g not in contributors]
    if missing:
        raise InvalidInput(
            f"groups without a contributor account: {missing[:5]}",
            hint="map every group of the valuation to the seller who contributed it",
        )
    amounts, fallback = largest_remainder(total_minor, values)
    weights = [0.0 if fallback else max(v, 0.0) for v in values]
    wsum = sum(weights)
    shares = [
        Share(
            g,
            contributors[g],
            v,
            (1.0 / len(groups)) if fallback else (w / wsum),
            a,
        )
        for g, v, w, a in zip(groups, values, weights, amounts, strict=True)
    ]
    return RevenueSplit(total_minor, shares, method, fallback, record)


def contribution_values(
    x: Any,
    y: Any,
    groups: Any,
    x_val: Any,
    y_val: Any,
    *,
    method: str = "knn",
    k: int = 5,
    model: Any = None,
    order: Sequence[Any] | None = None,
    n_permutations: int = 200,
    random_state: Any = None,
    chance_correction: bool = True,
) -> ValuationResult:
    """One value per contributor group, for the task ``(x_val, y_val)``.

    Args:
        x, y, groups: the bundled product's features, labels and group (seller) of
            each row.
        x_val, y_val: the validation task (the buyer's, or the bundle's reference set).
        method: ``knn``, ``exact``, ``tmc`` or ``ads`` (module docstring).
        k: neighbours of the KNN utility (``knn``, ``ads``; default model otherwise).
        model: estimator for ``exact``/``tmc`` (default ``KNeighborsClassifier(k)``).
        order: group precedence for ``ads`` (earliest first); required there.
        n_permutations: permutations for ``tmc``.
        random_state: seed for ``tmc``.
        chance_correction: value the gain over chance for ``knn``/``ads`` (module
            docstring); ``exact``/``tmc`` already start from the majority-class score.
    """
    if method not in METHODS:
        raise InvalidInput(
            f"unknown allocation method {method!r}", hint=f"use {', '.join(METHODS)}"
        )
    groups_arr = np.asarray(groups, dtype=object)
    ids, inv = np.unique(groups_arr.astype(str), return_inverse=True)
    # keep the original labels (first occurrence of each string form)
    labels = [groups_arr[np.flatnonzero(inv == i)[0]] for i in range(len(ids))]
    labels = [_jsonable(g) for g in labels]
    sizes = np.bincount(inv, minlength=len(labels)).astype(np.float64)
    n_total = float(sizes.sum())
    chance = 0.0
    if chance_correction and method in ("knn", "ads"):
        n_classes = len(
            np.unique(np.concatenate([np.asarray(y).astype(str), np.asarray(y_val).astype(str)]))
        )
        chance = 1.0 / max(n_classes, 1)
    if method == "knn":
        from databazaar.valuation.knn import knn_shapley

        res = knn_shapley(x, y, x_val, y_val, k=k, groups=inv)
        shift = chance * sizes * min(n_total, k) / (k * n_total)
        return ValuationResult(
            res.values - shift,
            None,
            res.counts,
            ids=np.array(labels, dtype=object),
            method="knn-shapley",
            params={**res.params, "k": k, "chance": chance},
        )
    if method == "ads":
        from databazaar.valuation.knn_asymmetric import knn_asymmetric_shapley

        if order is None:
            raise InvalidInput(
                "method 'ads' needs the group order", hint="order=[first, second, ...]"
            )
        unknown = [g for g in order if g not in labels]
        if unknown or len(order) != len(labels):
            raise InvalidInput(
                f"order must list every group exactly once; groups are {labels}",
                hint="for versions: oldest first",
            )
        pos = {g: i for i, g in enumerate(labels)}
        point_groups = np.array([labels[i] for i in inv], dtype=object)
        res = knn_asymmetric_shapley(
            x, y, x_val, y_val, groups=point_groups, order=list(order), k=k
        )
        gvals = np.bincount(inv, weights=res.values, minlength=len(labels))
        ordered = [pos[g] for g in order]
        before = np.concatenate([[0.0], np.cumsum(sizes[ordered])[:-1]])
        shift = chance * (np.minimum(before + sizes[ordered], k) - np.minimum(before, k)) / k
        return ValuationResult(
            gvals[ordered] - shift,
            None,
            None,
            ids=np.array(list(order), dtype=object),
            method="knn-asymmetric-shapley",
            params={
                "k": k,
                "order": list(order),
                "group_mode": "sum of member values",
                "chance": chance,
            },
        )
    from sklearn.neighbors import KNeighborsClassifier

    from databazaar.valuation.utility import Utility

    est = model if model is not None else KNeighborsClassifier(n_neighbors=k)
    util = Utility(est, x, y, x_val, y_val, scorer="accuracy", catch_errors=True)
    if method == "exact":
        from databazaar.valuation.exact import exact_shapley

        if len(labels) > MAX_EXACT_GROUPS:
            raise InvalidInput(
                f"exact group Shapley enumerates 2^{len(labels)} coalitions; at most "
                f"{MAX_EXACT_GROUPS} groups",
                hint="use method='knn' or 'tmc'",
            )
        members = [tuple(np.flatnonzero(inv == i)) for i in range(len(labels))]

        def game(coalition: tuple[int, ...]) -> float:
            rows = sorted(r for g in coalition for r in members[g])
            return float(util(rows))

        res = exact_shapley(game, len(labels))
        return ValuationResult(
            res.values,
            None,
            None,
            ids=np.array(labels, dtype=object),
            method="exact-group-shapley",
            params={"model": type(est).__name__, "scorer": "accuracy"},
        )
    from databazaar.valuation.montecarlo import MaxSamples, TMCShapley

    if (
        isinstance(n_permutations, bool)
        or not isinstance(n_permutations, int)
        or n_permutations < 1
    ):
        raise InvalidInput("n_permutations must be a positive integer")
    tmc = TMCShapley(
        truncation_tol=0.0, stopping=MaxSamples(n_permutations), random_state=random_state
    )
    res = tmc.fit(util, groups=inv).result_
    return ValuationResult(
        res.values,
        res.stderr,
        res.counts,
        ids=np.array([labels[int(i)] for i in res.ids], dtype=object),
        method="tmc-group-shapley",
        params={
            "model": type(est).__name__,
            "n_permutations": n_permutations,
            "scorer": "accuracy",
        },
    )
