r"""Utilities: the set functions that Monte Carlo valuation methods average over.

A *utility* maps a coalition :math:`S \subseteq D` of training points to a number,
:math:`u(S)`.  Data Shapley (Ghorbani & Zou 2019), Beta Shapley (Kwon & Zou 2022) and
Data Banzhaf (Wang & Jia 2023) are all weighted averages of marginal contributions
:math:`u(S \cup \{i\}) - u(S)`.

:class:`Utility`
    trains a fresh clone of a scikit-learn estimator on the rows in ``S`` and scores it
    on a fixed test set: :math:`u(S) = \mathrm{score}(\mathrm{fit}(X_S, y_S), X_{test},
    y_{test})`, with :math:`u(\emptyset)` = ``default_score``.  Results are cached.
:class:`GameUtility`
    wraps any set function ``f(tuple_of_players) -> float`` on ``n`` players (synthetic
    games for tests, closed-form utilities), with the same caching and counters.

Both are callables ``u(indices) -> float`` where ``indices`` is any iterable of integer
positions (a list, a numpy array, a set); they expose ``n_players`` (number of players)
and the counters ``n_evaluations`` (calls that actually computed a value) and
``n_cache_hits``.  The Monte Carlo engine (:mod:`databazaar.valuation.montecarlo`) accepts anything
with this interface.

Cache keys are a 16-byte BLAKE2b digest of the sorted, de-duplicated indices (as int64
bytes), so memory per entry stays constant whatever the coalition size; a collision would
need on the order of :math:`2^{64}` cached coalitions.  The cache is a bounded LRU and is
**not pickled**: copies sent to worker processes start empty (the samplers pass
:math:`u(\emptyset)` and :math:`u(D)` to workers explicitly).

References:
    Ghorbani, A. & Zou, J. (2019). Data Shapley: Equitable Valuation of Data for Machine
    Learning. ICML, PMLR 97:2242-2251.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np

from databazaar.core.errors import InvalidInput
from databazaar.core.parallel import blas_limit
from databazaar.valuation._validate import check_same_width, check_xy

__all__ = [
    "DEFAULT_CACHE_SIZE",
    "GameUtility",
    "SetFunction",
    "Utility",
    "as_indices",
    "blas_threads_of",
    "players_of",
]

#: Number of coalitions kept by ``cache=True``.
DEFAULT_CACHE_SIZE = 2**17

Scorer = Callable[[Any, np.ndarray, np.ndarray], float]


@runtime_checkable
class SetFunction(Protocol):
    """What a sampler needs from a utility: ``n_players`` and ``u(indices) -> float``."""

    @property
    def n_players(self) -> int: ...

    def __call__(self, indices: Any) -> float: ...


def as_indices(indices: Any, n: int) -> np.ndarray:
    """Sorted unique int64 positions from any iterable of integers, checked in ``[0, n)``."""
    if isinstance(indices, np.ndarray):
        arr = indices.reshape(-1)
    elif isinstance(indices, (set, frozenset)) or not hasattr(indices, "__len__"):
        arr = np.fromiter((int(i) for i in indices), dtype=np.int64)
    else:
        arr = np.asarray(indices).reshape(-1)
    if arr.size == 0:
        return np.empty(0, dtype=np.int64)
    if arr.dtype.kind == "b":
        if arr.shape[0] != n:
            raise InvalidInput(f"a boolean mask of coalition members must have length {n}")
        return np.flatnonzero(arr).astype(np.int64)
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and np.all(np.mod(arr, 1) == 0):
            arr = arr.astype(np.int64)
        else:
            raise InvalidInput(f"coalition indices must be integers, got dtype {arr.dtype}")
    arr = np.unique(arr.astype(np.int64, copy=False))
    if arr[0] < 0 or arr[-1] >= n:
        raise InvalidInput(
            f"coalition index out of range: indices must lie in [0, {n}), "
            f"got {arr[0] if arr[0] < 0 else arr[-1]}"
        )
    return arr


class _CachedSetFunction:
    """Shared machinery: LRU cache keyed by coalition digest, counters, pickling."""

    n_evaluations: int
    n_cache_hits: int

    def _init_cache(self, cache: bool | int) -> None:
        if isinstance(cache, bool) or cache is None:
            size = DEFAULT_CACHE_SIZE if cache else 0
        elif isinstance(cache, (int, np.integer)) and cache >= 0:
            size = int(cache)
        else:
            raise InvalidInput(
                f"cache must be True, False or a maximum number of entries, got {cache!r}"
            )
        self.cache = cache
        self._cache_size = size
        self._cache: OrderedDict[bytes, float] = OrderedDict()
        self._lock = threading.Lock()
        self.n_evaluations = 0
        self.n_cache_hits = 0

    @property
    def n_players(self) -> int:
        raise NotImplementedError

    def _evaluate(self, idx: np.ndarray) -> float:
        raise NotImplementedError

    def _empty_value(self) -> float:
        raise NotImplementedError

    def __call__(self, indices: Any) -> float:
        """``u(S)`` for the coalition of positions ``indices`` (order and repeats ignored)."""
        idx = as_indices(indices, self.n_players)
        if idx.size == 0:
            return float(self._empty_value())
        key = b""
        if self._cache_size:
            key = hashlib.blake2b(idx.tobytes(), digest_size=16).digest()
            with self._lock:
                hit = self._cache.get(key)
                if hit is not None:
                    self._cache.move_to_end(key)
                    self.n_cache_hits += 1
                    return hit
        value = float(self._evaluate(idx))
        with self._lock:
            self.n_evaluations += 1
            if self._cache_size:
                self._cache[key] = value
                if len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return value

    def clear_cache(self) -> None:
        """Forget every cached coalition (counters are kept)."""
        with self._lock:
            self._cache.clear()

    def reset_counters(self) -> None:
        """Set ``n_evaluations`` and ``n_cache_hits`` back to zero."""
        with self._lock:
            self.n_evaluations = 0
            self.n_cache_hits = 0

    @property
    def cache_size(self) -> int:
        """Number of coalitions currently cached."""
        return len(self._cache)

    def __len__(self) -> int:
        return self.n_players

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cache"] = OrderedDict()  # workers start with an empty cache
        if "_scanner" in state:
            state["_scanner"] = None  # rebuilt on first use, so pickles stay small
        state.pop("_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


class Utility(_CachedSetFunction):
    """Test score of a scikit-learn estimator trained on a coalition of training points.

    ``u(S)`` clones ``model`` (unless ``clone_model=False``), fits it on rows ``S`` of
    ``(x_train, y_train)`` and returns ``scorer(model, x_test, y_test)``.

    Args:
        model: any estimator with ``fit(X, y)`` (a scikit-learn estimator or compatible).
        x_train, y_train: training features (array or DataFrame, numeric, finite) and
            labels (any type). Players are the row positions ``0..n-1``.
        x_test, y_test: the test set the score is computed on (same feature columns).
        scorer: a scikit-learn scorer name (``"accuracy"``, ``"r2"``, ``"roc_auc"``,
            ``"neg_mean_squared_error"``...) or a callable ``scorer(model, X, y) ->
            float``, such as the objects :func:`sklearn.metrics.get_scorer` returns.
        default_score: ``u(∅)``, and the score of coalitions the model cannot be
            trained on (with ``catch_errors``).  ``None`` picks a default: for
            ``scorer="accuracy"`` the frequency of the most common test label (the
            accuracy of always predicting it, as in Ghorbani & Zou's code); for every
            other scorer ``0.0``, so pass it explicitly for scorers where 0 is not a
            neutral score (for instance ``neg_mean_squared_error``).
        cache: ``True`` (an LRU of :data:`DEFAULT_CACHE_SIZE` coalitions), ``False``, or
            a maximum number of cached coalitions.
        catch_errors: when fitting or scoring raises (typically a classifier given a
            single class, which every permutation meets at its first points) or the
            score is NaN, return ``default_score`` instead of raising.  Failures are
            counted in ``n_errors`` (the last message is ``last_error``), not warned
            about one by one.
        clone_model: clone the estimator before every fit (safe with threads); ``False``
            refits ``model`` in place, which is faster for estimators with expensive
            construction but not thread-safe.
        blas_threads: BLAS/OpenMP threads allowed while fitting and scoring (through
            :mod:`threadpoolctl`).  The default 1 matters: the many small fits of data
            valuation run several times faster single-threaded than with BLAS spinning
            up threads for tiny matrices, and parallelism comes from ``n_jobs``
            instead.  ``None`` leaves the thread pools alone.
        incremental: let permutation methods score all prefixes of a permutation in one
            exact incremental pass where the model allows it (:func:`prefix_scores`,
            :mod:`databazaar.valuation.incremental`: uniform-weight Euclidean
            ``KNeighborsClassifier`` and ``GaussianNB`` with the accuracy scorer).
            ``False`` always refits.

    Attributes:
        n_players: number of training points.
        n_evaluations: number of coalitions actually trained and scored.
        n_cache_hits: number of calls answered from the cache.
        n_errors: number of fits or scores that failed and returned ``default_score``.
        last_error: message of the last such failure (``None`` if none).

    Example:
        >>> from sklearn.datasets import load_iris
        >>> from sklearn.linear_model import LogisticRegression
        >>> x, y = load_iris(return_X_y=True)
        >>> u = Utility(LogisticRegression(max_iter=500), x[::2], y[::2], x[1::2], y[1::2])
        >>> round(u(range(75)), 3), round(u([]), 3)
        (0.973, 0.333)

    Raises:
        InvalidInput: NaN or infinite features, labels of the wrong length, an empty test
            set, train/test feature mismatch, an unknown scorer name.
    """

    def __init__(
        self,
        model: Any,
        x_train: Any,
        y_train: Any,
        x_test: Any,
        y_test: Any,
        scorer: str | Scorer = "accuracy",
        default_score: float | None = None,
        cache: bool | int = True,
        catch_errors: bool = True,
        clone_model: bool = True,
        blas_threads: int | None = 1,
        incremental: bool = True,
    ) -> None:
        if not hasattr(model, "fit"):
            raise InvalidInput(
                f"model must have a fit(X, y) method, got {type(model).__name__}",
                hint="pass a scikit-learn estimator",
            )
        self.x_train, self.y_train = check_xy(x_train, y_train, "train")
        self.x_test, self.y_test = check_xy(x_test, y_test, "test")
        check_same_width(self.x_train, self.x_test)
        self.model = model
        self.scorer = scorer
        self._scorer, self._fast_accuracy = resolve_scorer(scorer)
        if default_score is None:
            default_score = _default_score(scorer, self.y_test)
        try:
            self.default_score = float(default_score)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"default_score must be a number, got {default_score!r}") from exc
        if not np.isfinite(self.default_score):
            raise InvalidInput(f"default_score must be finite, got {default_score!r}")
        self.catch_errors = bool(catch_errors)
        self.clone_model = bool(clone_model)
        if blas_threads is not None and (
            isinstance(blas_threads, bool)
            or not isinstance(blas_threads, (int, np.integer))
            or blas_threads < 1
        ):
            raise InvalidInput(
                f"blas_threads must be None or an integer >= 1, got {blas_threads!r}"
            )
        self.blas_threads = None if blas_threads is None else int(blas_threads)
        self.incremental = bool(incremental)
        self._scanner: Any = None
        self.n_errors = 0
        self.last_error: str | None = None
        self._init_cache(cache)

    # -- the set function -------------------------------------------------------------
    @property
    def n_players(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def n_train(self) -> int:
        """Number of training points (same as ``n_players``)."""
        return int(self.x_train.shape[0])

    def _empty_value(self) -> float:
        return self.default_score

    def _evaluate(self, idx: np.ndarray) -> float:
        with blas_limit(self.blas_threads):
            return self._fit_and_score(idx)

    def prefix_scores(self, order: np.ndarray) -> np.ndarray | None:
        """``[u(order[:1]), u(order[:2]), ...]`` by an exact incremental scan, or ``None``.

        ``None`` when the model has no incremental form (see ``incremental``); then the
        caller refits per prefix.  Each prefix counts as one evaluation.
        """
        if not (self.incremental and self._fast_accuracy and self.clone_model):
            return None
        if self._scanner is None:
            from databazaar.valuation.incremental import prefix_scanner

            scan = prefix_scanner(self.model, self.x_train, self.y_train, self.x_test, self.y_test)
            self._scanner = scan if scan is not None else False
        if self._scanner is False:
            return None
        order = np.asarray(order, dtype=np.int64).reshape(-1)
        with blas_limit(self.blas_threads):
            scores = self._scanner(order, self.default_score)
        with self._lock:
            self.n_evaluations += int(order.shape[0])
        return scores

    def _fit_and_score(self, idx: np.ndarray) -> float:
        if self.clone_model:
            from sklearn.base import clone

            try:
                model = clone(self.model)
            except TypeError:
                model = clone(self.model, safe=False)
        else:
            model = self.model
        try:
            model.fit(self.x_train[idx], self.y_train[idx])
            if self._fast_accuracy:
                score = float(np.mean(model.predict(self.x_test) == self.y_test))
            else:
                score = float(self._scorer(model, self.x_test, self.y_test))
            if np.isnan(score):
                raise ValueError("the scorer returned NaN")
        except Exception as exc:
            if not self.catch_errors:
                raise
            with self._lock:
                self.n_errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            return self.default_score
        return score

    def __repr__(self) -> str:
        return (
            f"Utility(model={self.model!r}, n_train={self.n_train}, n_test="
            f"{self.x_test.shape[0]}, scorer={self.scorer!r}, default_score="
            f"{self.default_score:.4g})"
        )


class GameUtility(_CachedSetFunction):
    """Any set function on ``n_players`` players, with caching and counters.

    ``fn`` receives the coalition as a sorted tuple of player positions and returns a
    number; ``fn(())`` is ``u(∅)``.

    Example:
        >>> glove = GameUtility(lambda s: float(min(len(set(s) & {0}), len(set(s) & {1, 2}))), 3)
        >>> glove([0, 1]), glove([1, 2])
        (1.0, 0.0)
    """

    def __init__(
        self, fn: Callable[[tuple[int, ...]], float], n_players: int, cache: bool | int = True
    ):
        if not callable(fn):
            raise InvalidInput("fn must be callable: fn(tuple_of_players) -> float")
        if isinstance(n_players, bool) or not isinstance(n_players, (int, np.integer)):
            raise InvalidInput(f"n_players must be an integer >= 1, got {n_players!r}")
        if n_players < 1:
            raise InvalidInput(f"n_players must be >= 1, got {n_players}")
        self.fn = fn
        self._n = int(n_players)
        self._init_cache(cache)

    @property
    def n_players(self) -> int:
        return self._n

    def _empty_value(self) -> float:
        return float(self.fn(()))

    def _evaluate(self, idx: np.ndarray) -> float:
        return float(self.fn(tuple(int(i) for i in idx)))

    def __repr__(self) -> str:
        return f"GameUtility(fn={getattr(self.fn, '__name__', self.fn)!r}, n_players={self._n})"


def blas_threads_of(utility: Any) -> int | None:
    """The ``blas_threads`` setting of a utility (looking through :class:`GroupUtility`)."""
    inner = getattr(utility, "utility", None)
    if inner is not None and not hasattr(utility, "blas_threads"):
        return blas_threads_of(inner)
    return getattr(utility, "blas_threads", None)


def resolve_scorer(scorer: Any) -> tuple[Scorer, bool]:
    """Return ``(callable, is_plain_accuracy)`` for a scorer name or callable."""
    if isinstance(scorer, str):
        from sklearn.metrics import get_scorer, get_scorer_names

        try:
            resolved = get_scorer(scorer)
        except ValueError as exc:
            names = get_scorer_names()
            close = [n for n in names if scorer.lower() in n or n in scorer.lower()][:5]
            hint = (
                f"did you mean {', '.join(close)}?"
                if close
                else "see sklearn.metrics.get_scorer_names()"
            )
            raise InvalidInput(f"unknown scorer {scorer!r}", hint=hint) from exc
        # Plain accuracy is mean(predict == y); computing it directly skips the scorer's
        # per-call target-type checks, a large share of the cost for cheap models.
        return resolved, scorer == "accuracy"
    if callable(scorer):
        return scorer, False
    raise InvalidInput(
        f"scorer must be a scikit-learn scorer name or a callable(model, X, y), got {scorer!r}"
    )


def _default_score(scorer: Any, y_test: np.ndarray) -> float:
    """Frequency of the most common test label for accuracy, else 0.0."""
    if scorer == "accuracy":
        _, counts = np.unique(y_test, return_counts=True)
        return float(counts.max() / counts.sum())
    return 0.0


def players_of(utility: Any) -> int:
    """Number of players of a utility-like object (``n_players``, ``n_train`` or ``len``)."""
    for attr in ("n_players", "n_train"):
        n = getattr(utility, attr, None)
        if n is not None:
            return int(n)
    try:
        return len(utility)
    except TypeError:
        raise InvalidInput(
            f"cannot tell how many players {type(utility).__name__} has",
            hint="pass a Utility, a GameUtility, or an object with n_players",
        ) from None
