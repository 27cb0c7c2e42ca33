"""Input checks shared by every valuation method (scikit-learn style ``check_*``).

All checks raise :class:`~databazaar.core.errors.InvalidInput` with a message naming the
argument and saying how to fix it.  Features become C-contiguous float arrays; labels may
be of any type (strings, ints, floats, pandas categoricals) and are returned as a numpy
array.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from databazaar.core.errors import InvalidInput


def check_features(x: Any, name: str = "x", dtype: Any = np.float64) -> np.ndarray:
    """Return ``x`` as a 2-D C-contiguous float array with no NaN or infinity.

    Accepts numpy arrays, pandas DataFrames (numeric columns only) and nested lists.
    A 1-D input is read as one feature per row.
    """
    if hasattr(x, "to_numpy") and hasattr(x, "dtypes"):
        try:
            arr = x.to_numpy(dtype=dtype)
        except (TypeError, ValueError) as exc:
            bad = _non_numeric(x[c] for c in x.columns)
            names = [str(x.columns[j]) for j in bad]
            raise InvalidInput(
                f"{name} has non-numeric column(s) {', '.join(map(repr, names))}",
                hint="encode them as numbers or leave them out of the features",
            ) from exc
    else:
        try:
            arr = np.asarray(x, dtype=dtype)
        except (TypeError, ValueError) as exc:
            raw = np.asarray(x, dtype=object)
            cols = [raw[:, j] for j in range(raw.shape[1])] if raw.ndim == 2 else []
            bad = _non_numeric(cols)
            where = f" in column(s) {', '.join(map(str, bad))}" if bad else ""
            raise InvalidInput(f"{name} is not numeric{where}: {exc}") from exc
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2:
        raise InvalidInput(f"{name} must be 2-D (samples x features), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise InvalidInput(f"{name} is empty", hint="pass at least one row")
    if arr.shape[1] == 0:
        raise InvalidInput(f"{name} has no feature columns")
    if not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise InvalidInput(
            f"{name} contains NaN or infinity (first at row {bad[0]}, column {bad[1]})",
            hint="impute or drop missing values first",
        )
    return np.ascontiguousarray(arr)


def _non_numeric(columns: Any) -> list[int]:
    """Positions of the columns that do not convert to float."""
    bad = []
    for j, col in enumerate(columns):
        try:
            np.asarray(col, dtype=np.float64)
        except (TypeError, ValueError):
            bad.append(j)
    return bad


def warn_degenerate(y_train: np.ndarray, k: int | None = None, *, classes: bool = True) -> None:
    """Warn (``UserWarning``) when a valuation cannot tell the training points apart.

    * one class in ``y_train`` (with ``classes``): every training label matches the same
      test points, so the values measure closeness to those test points, not label quality;
    * ``k >= N``: every point of every coalition is among its ``k`` nearest, so the KNN
      utility is additive and each value is the point's own score divided by ``k``.
    """
    import warnings

    n = y_train.shape[0]
    if classes and n > 0:
        first = y_train[0]
        if bool(np.all(y_train == first)):
            first = first.item() if isinstance(first, np.generic) else first
            warnings.warn(
                f"the target has one class ({first!r}) in all {n} training rows: every row "
                "has the same label, so the values only measure how near each row is to the "
                "test rows of that class; pass training data with at least two classes",
                UserWarning,
                stacklevel=3,
            )
    if k is not None and k >= n:
        warnings.warn(
            f"k={k} >= the {n} training rows: every row is among the k nearest of every "
            "subset, so the KNN utility is additive and each value is just the row's own "
            f"score / k; use k < {n}",
            UserWarning,
            stacklevel=3,
        )


def check_labels(y: Any, n: int, name: str = "y", numeric: bool = False) -> np.ndarray:
    """Return ``y`` as a 1-D array of length ``n``; ``numeric`` requires finite floats."""
    if hasattr(y, "to_numpy"):
        arr = y.to_numpy()
    else:
        arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise InvalidInput(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.shape[0] != n:
        raise InvalidInput(
            f"{name} has {arr.shape[0]} labels but the features have {n} rows",
            hint="features and labels must have the same length",
        )
    if numeric:
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"{name} must be numeric for regression: {exc}") from exc
        if not np.isfinite(arr).all():
            raise InvalidInput(f"{name} contains NaN or infinity")
    else:
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise InvalidInput(f"{name} contains NaN or infinity")
        if arr.dtype == object and any(v is None or v != v for v in arr):
            raise InvalidInput(f"{name} contains missing labels (None or NaN)")
    return arr


def check_xy(x: Any, y: Any, name: str = "train", numeric_y: bool = False):  # type: ignore[no-untyped-def]
    """Check a feature matrix and its labels together; returns ``(x, y)``."""
    xa = check_features(x, f"x_{name}")
    ya = check_labels(y, xa.shape[0], f"y_{name}", numeric=numeric_y)
    return xa, ya


def check_same_width(x_train: np.ndarray, x_test: np.ndarray) -> None:
    if x_train.shape[1] != x_test.shape[1]:
        raise InvalidInput(
            f"x_train has {x_train.shape[1]} features but x_test has {x_test.shape[1]}",
            hint="train and test must have the same feature columns",
        )


def check_train_test(
    x_train: Any, y_train: Any, x_test: Any, y_test: Any, *, numeric_y: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Check a training and a non-empty test set with the same feature columns."""
    xtr = check_features(x_train, "x_train")
    ytr = check_labels(y_train, xtr.shape[0], "y_train", numeric=numeric_y)
    if x_test is None or (hasattr(x_test, "__len__") and len(x_test) == 0):
        raise InvalidInput("the test set is empty", hint="pass at least one test point")
    xte = check_features(x_test, "x_test")
    yte = check_labels(y_test, xte.shape[0], "y_test", numeric=numeric_y)
    check_same_width(xtr, xte)
    return xtr, ytr, xte, yte


def encode_classes(y_train: np.ndarray, y_test: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Integer codes of train and test labels on a shared vocabulary, and its size."""
    import pandas as pd

    try:
        codes, uniques = pd.factorize(np.concatenate([y_train, y_test]), sort=False)
    except TypeError as exc:
        raise InvalidInput(f"labels cannot be compared: {exc}") from exc
    codes = codes.astype(np.int64)
    n = y_train.shape[0]
    return codes[:n], codes[n:], len(uniques)


def check_int_at_least(x: Any, name: str, minimum: int = 1) -> int:
    """``x`` as an int if it is an integer (not a bool) ``>= minimum``."""
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
        raise InvalidInput(f"{name} must be an integer >= {minimum}, got {x!r}")
    if x < minimum:
        raise InvalidInput(f"{name} must be >= {minimum}, got {x}")
    return int(x)


def check_chunk_size(chunk_size: Any) -> int:
    """A positive integer number of test points per chunk."""
    return check_int_at_least(chunk_size, "chunk_size")


def check_k(k: Any) -> int:
    """A number of neighbours ``k >= 1``."""
    return check_int_at_least(k, "k")


def check_progress(progress: Any) -> None:
    """``progress`` is ``None`` or a callable ``progress(n_done)``."""
    if progress is not None and not callable(progress):
        raise InvalidInput("progress must be a callable progress(n_done) or None")


def check_groups(groups: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(unique_ids, inverse)`` for one group id per point."""
    arr = np.asarray(groups.to_numpy() if hasattr(groups, "to_numpy") else groups)
    if arr.shape != (n,):
        raise InvalidInput(f"groups has shape {arr.shape}, expected ({n},)")
    uniq, inv = np.unique(arr, return_inverse=True)
    return uniq, inv.reshape(-1)


def check_random_state(random_state: Any) -> np.random.Generator:
    if isinstance(random_state, np.random.Generator):
        return random_state
    if random_state is None or isinstance(random_state, (int, np.integer)):
        return np.random.default_rng(random_state)
    raise InvalidInput(
        f"random_state must be None, an int or a numpy Generator, got {random_state!r}"
    )


def is_pos_int(x: Any) -> bool:
    """``x`` is an integer >= 1 (not a bool)."""
    return bool(not isinstance(x, bool) and isinstance(x, (int, np.integer)) and x >= 1)


def is_nonneg_number(x: Any) -> bool:
    """``x`` is a finite real number >= 0 (not a bool)."""
    return bool(
        not isinstance(x, bool)
        and isinstance(x, (int, float, np.number))
        and bool(np.isfinite(x))
        and x >= 0
    )


def store_params(estimator: Any, params: dict[str, Any]) -> None:
    """Store ``__init__`` arguments unchanged under their names (scikit-learn's rule).

    Called as ``store_params(self, locals())`` first thing in ``__init__``.
    """
    for name, value in params.items():
        if name not in ("self", "__class__", "sampling"):  # **sampling goes to the base
            setattr(estimator, name, value)
