"""Value the rows of a table: the bridge from files and DataFrames to the estimators.

:func:`value_table` takes a training and a test :class:`pandas.DataFrame`, the name of the
target column and a method name, picks the feature columns, runs the method and returns
a :class:`~databazaar.valuation.result.ValuationResult` whose ids are the training rows'
positions (or group ids in group mode).  The CLI command ``databazaar value`` and the
market's value-aware search call it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from databazaar.core.errors import InvalidInput
from databazaar.core.parallel import check_backend
from databazaar.valuation.result import ValuationResult

#: method name -> one-line description (shown by ``databazaar value --help``)
METHODS: dict[str, str] = {
    "knn-shapley": "exact KNN-Shapley, classification (Jia et al. 2019)",
    "knn-regression": "exact KNN-Shapley for KNN regression",
    "threshold-knn": "exact Threshold KNN-Shapley (Wang et al. 2023), needs --tau",
    "tmc-shapley": "truncated Monte Carlo Shapley over a scikit-learn model",
    "beta-shapley": "Beta(16,1) Shapley over a scikit-learn model (Kwon & Zou 2022)",
    "banzhaf": "Data Banzhaf with the MSR estimator (Wang & Jia 2023)",
    "loo": "leave-one-out over a scikit-learn model",
    "asymmetric-knn": "exact KNN Asymmetric Data Shapley, needs --groups and --order",
    "asymmetric-mc": "Monte Carlo Asymmetric Data Shapley, needs --groups and --order",
}

MODELS = ("logistic", "knn", "tree", "naive-bayes")

#: methods whose values are Data Shapley values, for which ``--ci`` gives U-statistic
#: confidence intervals (Wu et al. 2024)
CI_METHODS = ("knn-shapley", "tmc-shapley")


@dataclass
class TableProblem:
    """Features and labels taken from a training and a test table."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    features: list[str]
    ignored: list[str] = field(default_factory=list)
    groups: np.ndarray | None = None


def split_table(
    train: pd.DataFrame,
    test: pd.DataFrame,
    target: str,
    *,
    features: Sequence[str] | None = None,
    group_column: str | None = None,
) -> TableProblem:
    """Pick feature columns shared by both tables and pull out the target.

    Without ``features``, every numeric column of the training table except the target
    and the group column is a feature; non-numeric ones are listed in ``ignored``.
    """
    for name, df in (("training", train), ("test", test)):
        if target not in df.columns:
            raise InvalidInput(
                f"target column {target!r} is not in the {name} table",
                hint=f"columns are: {', '.join(map(str, df.columns[:20]))}",
            )
    if group_column is not None and group_column not in train.columns:
        raise InvalidInput(f"group column {group_column!r} is not in the training table")
    skip = {target, group_column}
    ignored: list[str] = []
    if features is None:
        cols: list[str] = []
        for c in train.columns:
            if c in skip:
                continue
            if pd.api.types.is_numeric_dtype(train[c]) and not pd.api.types.is_bool_dtype(train[c]):
                cols.append(c)
            else:
                ignored.append(str(c))
    else:
        cols = list(features)
        unknown = [c for c in cols if c not in train.columns]
        if unknown:
            raise InvalidInput(f"feature columns not in the training table: {unknown}")
    if not cols:
        raise InvalidInput(
            "no numeric feature columns found",
            hint="pass --features or encode categorical columns as numbers",
        )
    missing = [c for c in cols if c not in test.columns]
    if missing:
        raise InvalidInput(f"the test table lacks feature columns {missing}")
    from databazaar.valuation._validate import check_features

    x_train = check_features(train[cols], "training features")
    x_test = check_features(test[cols], "test features")
    groups = train[group_column].to_numpy() if group_column else None
    return TableProblem(
        x_train,
        train[target].to_numpy(),
        x_test,
        test[target].to_numpy(),
        [str(c) for c in cols],
        ignored,
        groups,
    )


def make_model(name: str, k: int = 5) -> Any:
    """A scikit-learn classifier by short name (for the Monte Carlo methods)."""
    if name == "logistic":
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        # standardised features: unscaled columns (e.g. wine's proline ~1e3) made lbfgs run
        # to max_iter without converging, ~40x slower per fit
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    if name == "knn":
        from sklearn.neighbors import KNeighborsClassifier

        return KNeighborsClassifier(n_neighbors=k)
    if name == "tree":
        from sklearn.tree import DecisionTreeClassifier

        return DecisionTreeClassifier(random_state=0)
    if name == "naive-bayes":
        from sklearn.naive_bayes import GaussianNB

        return GaussianNB()
    raise InvalidInput(f"unknown model {name!r}", hint=f"use one of {', '.join(MODELS)}")


def model_utility(model: str, k: int, data: tuple[Any, Any, Any, Any]) -> Any:
    """The test-accuracy :class:`~databazaar.valuation.utility.Utility` of ``model`` on
    ``(x_train, y_train, x_test, y_test)``, warning first when the target has one class
    (or ``k >=`` the training rows for ``model="knn"``)."""
    from databazaar.valuation._validate import warn_degenerate
    from databazaar.valuation.utility import Utility

    warn_degenerate(np.asarray(data[1]), k if model == "knn" else None)
    return Utility(make_model(model, k), *data)


def value_table(
    train: pd.DataFrame,
    test: pd.DataFrame,
    target: str,
    method: str = "knn-shapley",
    *,
    k: int = 5,
    tau: float | None = None,
    features: Sequence[str] | None = None,
    group_column: str | None = None,
    order: Sequence[Any] | None = None,
    model: str = "logistic",
    budget: int = 200,
    ci: float | None = None,
    ci_samples: int = 10,
    n_jobs: int = 1,
    backend: str | None = None,
    random_state: int | None = 0,
    progress: Callable[[int], None] | None = None,
) -> tuple[ValuationResult, TableProblem]:
    """Value the training rows with ``method`` (one of :data:`METHODS`).

    ``ci`` adds U-statistic confidence intervals (``knn-shapley``: exact double Monte
    Carlo; ``tmc-shapley``: double Monte Carlo with ``ci_samples`` anchors and
    ``ci_samples`` inner draws, ``2 ci_samples²`` model fits per row).  ``progress`` is
    advanced per test row (KNN), per permutation (Monte Carlo) and per row valued with
    an interval.  ``backend`` is ``"threads"``, ``"processes"`` or ``"ray"``; ``None``
    runs KNN methods in threads and model-based Monte Carlo in processes.
    """
    if method not in METHODS:
        raise InvalidInput(f"unknown method {method!r}", hint=f"use one of {', '.join(METHODS)}")
    prob = split_table(train, test, target, features=features, group_column=group_column)
    args = (prob.x_train, prob.y_train, prob.x_test, prob.y_test)
    if backend is not None:
        check_backend(backend)
    # the natural default of each kind of work: GIL-free KNN kernels in threads,
    # scikit-learn model fits in processes; an explicit backend is used as given
    knn_par: dict[str, Any] = {
        "n_jobs": n_jobs,
        "backend": backend or "threads",
        "progress": progress,
    }
    mc_par: dict[str, Any] = {"n_jobs": n_jobs, "backend": backend or "processes"}
    if ci is not None and method not in CI_METHODS:
        raise InvalidInput(
            f"confidence intervals are not available for {method}",
            hint=f"--ci works with {', '.join(CI_METHODS)}",
        )
    if ci is not None and prob.groups is not None:
        raise InvalidInput("--ci gives intervals per row; drop --groups to use it")
    if method.startswith("asymmetric"):
        if prob.groups is None or not order:
            raise InvalidInput(
                f"{method} needs the group column and the group order",
                hint="pass --groups COL --order a,b,c",
            )
        from databazaar.valuation import asymmetric, knn_asymmetric

        groups, prob.groups = prob.groups, None  # values are per row; groups give the order
        if method == "asymmetric-knn":
            result = knn_asymmetric.knn_asymmetric_shapley(
                *args,
                groups=groups,
                order=list(order),
                k=k,
                **knn_par,
            )
        else:
            util = model_utility(model, k, args)
            ads = asymmetric.AsymmetricShapley(
                method="mc", n_permutations=budget, random_state=random_state, **mc_par
            )
            result = ads.fit(util, groups=groups, order=list(order), progress=progress).result_
        return result, prob
    if method in ("knn-shapley", "knn-regression"):
        from databazaar.valuation.knn import knn_shapley

        if ci is not None:
            from databazaar.valuation.knn_inference import knn_shapley_ci

            result = knn_shapley_ci(*args, k=k, confidence=ci, random_state=random_state, **knn_par)
            return result, prob
        result = knn_shapley(
            *args,
            k=k,
            task="classification" if method == "knn-shapley" else "regression",
            groups=prob.groups,
            **knn_par,
        )
        return result, prob
    if method == "threshold-knn":
        if tau is None:
            raise InvalidInput("threshold-knn needs a radius", hint="pass --tau")
        from databazaar.valuation.knn import threshold_knn_shapley

        result = threshold_knn_shapley(*args, tau=tau, groups=prob.groups, **knn_par)
        return result, prob
    from databazaar.valuation import montecarlo

    util = model_utility(model, k, args)
    common: dict[str, Any] = {"random_state": random_state, **mc_par}
    if method == "loo":
        est: Any = montecarlo.LeaveOneOut(**mc_par)
    else:
        stop = montecarlo.MaxSamples(budget)
        if method == "tmc-shapley":
            est = montecarlo.TMCShapley(stopping=stop, **common)
        elif method == "beta-shapley":
            est = montecarlo.BetaShapley(alpha=16, beta=1, stopping=stop, **common)
        else:
            est = montecarlo.BanzhafMSR(stopping=stop, **common)
    result = est.fit(util, groups=prob.groups, progress=progress).result_
    if ci is not None:
        from databazaar.valuation.inference import shapley_confidence_intervals

        result = shapley_confidence_intervals(
            result,
            util,
            confidence=ci,
            n_outer=ci_samples,
            n_inner=ci_samples,
            progress=progress,
            **common,
        )
    return result, prob
