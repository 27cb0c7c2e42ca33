"""Groups of training points: games whose players are groups, and ordered groups.

:class:`GroupUtility` turns a utility on points into the game on groups (group mode of
every Monte Carlo method).  :func:`resolve_group_order` checks one group id per point
and the precedence order of the groups and returns a :class:`GroupOrder`;
:func:`group_result` sums point values per group; both serve exact KNN-ADS
(:mod:`databazaar.valuation.knn_asymmetric`) and Monte Carlo ADS
(:mod:`databazaar.valuation.montecarlo.ads`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from databazaar.core.errors import InvalidInput
from databazaar.valuation.result import ValuationResult
from databazaar.valuation.utility import as_indices, players_of

__all__ = ["GroupOrder", "GroupUtility", "group_result", "json_scalar", "resolve_group_order"]


@dataclass(frozen=True)
class GroupOrder:
    """A partition of ``0..n-1`` into ordered groups.

    Attributes:
        ids: group ids in order (``ids[0]`` comes first).
        rank: ``(n,)`` position of each point's group in ``ids``.
        members: indices of each group's points, in order of ``ids``.
    """

    ids: tuple[Any, ...]
    rank: np.ndarray
    members: tuple[np.ndarray, ...]

    @property
    def n_groups(self) -> int:
        return len(self.ids)

    @property
    def sizes(self) -> np.ndarray:
        return np.array([m.size for m in self.members], dtype=np.int64)

    @property
    def offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)

    def json_ids(self) -> list[Any]:
        return [json_scalar(g) for g in self.ids]


def json_scalar(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    return str(x)


def _is_missing(v: Any) -> bool:
    if v is None:
        return True
    try:
        return bool(v != v)  # NaN
    except (TypeError, ValueError):
        return False


def resolve_group_order(groups: Any, order: Sequence[Any] | None, n: int) -> GroupOrder:
    """Check ``groups`` (one id per point) and ``order`` (every id exactly once).

    ``groups=None`` puts every point in one group (ADS is then Data Shapley).  ``order``
    defaults to the sorted distinct ids.  Ids in ``order`` may also be given as strings
    matching ``str(id)`` (as a command line passes them).

    Raises:
        InvalidInput: wrong length, missing group ids, an id in ``order`` that no point
            has, a group missing from ``order``, or a repeated id in ``order``.
    """
    if groups is None:
        if order is not None and len(list(order)) > 1:
            raise InvalidInput(
                "order lists several groups but no groups were given",
                hint="pass groups=<one group id per training point>",
            )
        gid = next(iter(order)) if order is not None and len(list(order)) == 1 else 0
        return GroupOrder((gid,), np.zeros(n, dtype=np.int64), (np.arange(n, dtype=np.int64),))
    arr = np.asarray(groups.to_numpy() if hasattr(groups, "to_numpy") else groups)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.shape != (n,):
        raise InvalidInput(
            f"groups has shape {arr.shape}, expected ({n},): one group id per training point"
        )
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        first = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise InvalidInput(f"groups contains NaN or infinity (first at row {first})")
    if arr.dtype == object:
        bad = [i for i, v in enumerate(arr) if _is_missing(v)]
        if bad:
            raise InvalidInput(f"groups contains missing ids (None or NaN), first at row {bad[0]}")
    try:
        uniq, inv = np.unique(arr, return_inverse=True)
    except TypeError as exc:
        raise InvalidInput(f"group ids cannot be compared: {exc}", hint="use one id type") from exc
    inv = inv.reshape(-1)
    if order is None:
        ordered = list(uniq)
    else:
        if isinstance(order, (str, bytes)):
            raise InvalidInput(
                f"order must be a list of group ids, got the string {order!r}",
                hint="pass e.g. order=['original', 'augmented']",
            )
        ordered = list(order)
        if len(ordered) == 0:
            raise InvalidInput("order is empty", hint="list every group id once")
    index = {g: i for i, g in enumerate(uniq.tolist())}
    by_str = {str(g): i for i, g in enumerate(uniq.tolist())}
    if len(by_str) != len(index):
        by_str = {}
    pos: list[int] = []
    unknown: list[Any] = []
    for g in ordered:
        key = g.item() if isinstance(g, np.generic) else g
        try:
            hit = index.get(key)
        except TypeError:
            hit = None
        if hit is None:
            hit = by_str.get(str(key))
        if hit is None:
            unknown.append(key)
        else:
            pos.append(hit)
    if unknown:
        raise InvalidInput(
            f"order names group(s) {unknown!r} that no training point belongs to",
            hint=f"known groups: {[json_scalar(g) for g in uniq.tolist()]}",
        )
    if len(set(pos)) != len(pos):
        dup = sorted({json_scalar(uniq[p]) for p in pos if pos.count(p) > 1}, key=str)
        raise InvalidInput(
            f"order lists group(s) {dup!r} more than once", hint="list each group once"
        )
    missing = [json_scalar(uniq[i]) for i in range(len(uniq)) if i not in set(pos)]
    if missing:
        raise InvalidInput(
            f"group(s) {missing!r} are missing from order",
            hint="order must list every group id exactly once",
        )
    rank_of_unique = np.empty(len(uniq), dtype=np.int64)
    rank_of_unique[np.asarray(pos, dtype=np.int64)] = np.arange(len(pos), dtype=np.int64)
    rank = rank_of_unique[inv]
    members = tuple(np.flatnonzero(rank == t).astype(np.int64) for t in range(len(pos)))
    return GroupOrder(tuple(uniq[p] for p in pos), rank, members)


def group_result(
    values: np.ndarray, order: GroupOrder, counts: np.ndarray | None, method: str, params: dict
) -> ValuationResult:
    gvals = np.array([values[m].sum() for m in order.members])
    # every member of a group has the same sample count (test points or permutations)
    gcounts = None if counts is None else np.array([counts[m].max() for m in order.members])
    ids = np.empty(order.n_groups, dtype=object)
    ids[:] = [json_scalar(g) for g in order.ids]
    return ValuationResult(
        gvals,
        None,
        gcounts,
        ids=ids,
        method=method,
        params={**params, "group_mode": "sum of member values"},
    )


class _Forwarded:
    """A counter attribute read from and written to the wrapped ``utility`` (0 if absent)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        return int(getattr(obj.utility, self.name, 0))

    def __set__(self, obj: Any, value: int) -> None:
        if hasattr(obj.utility, self.name):
            setattr(obj.utility, self.name, value)


class GroupUtility:
    """The game whose players are groups of training points.

    Player ``g`` is the ``g``-th distinct id in ``groups`` (sorted, as
    :func:`numpy.unique` orders them); a coalition of groups is worth
    ``utility(union of their members)``.  Caching and counters are the wrapped
    utility's.  ``ids`` holds the group id of each player.

    Example:
        >>> from databazaar.valuation.utility import GameUtility
        >>> g = GroupUtility(GameUtility(lambda s: float(len(s)), 4), ["b", "a", "b", "c"])
        >>> g.ids.tolist(), g([1]), g([0, 2])
        (['a', 'b', 'c'], 2.0, 2.0)
    """

    def __init__(self, utility: Any, groups: Any) -> None:
        from databazaar.valuation._validate import check_groups

        n = players_of(utility)
        self.utility = utility
        self.ids, inverse = check_groups(groups, n)
        order = np.argsort(inverse, kind="stable")
        bounds = np.searchsorted(inverse[order], np.arange(len(self.ids) + 1))
        self.members: list[np.ndarray] = [
            order[bounds[g] : bounds[g + 1]].astype(np.int64) for g in range(len(self.ids))
        ]

    @property
    def n_players(self) -> int:
        return len(self.members)

    def __len__(self) -> int:
        return len(self.members)

    def points(self, players: Any) -> np.ndarray:
        """Training-point positions of the union of the given groups."""
        idx = as_indices(players, self.n_players)
        if idx.size == 0:
            return np.empty(0, dtype=np.int64)
        return np.concatenate([self.members[g] for g in idx])

    def __call__(self, players: Any) -> float:
        return float(self.utility(self.points(players)))

    # counters forward to the wrapped utility
    n_evaluations = _Forwarded("n_evaluations")
    n_cache_hits = _Forwarded("n_cache_hits")
    n_errors = _Forwarded("n_errors")

    @property
    def last_error(self) -> str | None:
        return getattr(self.utility, "last_error", None)

    def __repr__(self) -> str:
        return f"GroupUtility({self.utility!r}, n_groups={self.n_players})"
