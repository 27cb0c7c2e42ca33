"""Data valuation: exact KNN-Shapley, Monte Carlo semivalues, Asymmetric Data Shapley,
confidence intervals and evaluation.

Pure numerics: no database, no web.  Names are imported lazily so ``import
databazaar.valuation`` stays cheap; the public API is :data:`__all__`.
"""

from __future__ import annotations

import importlib
from typing import Any

from databazaar.valuation.result import ValuationResult

_LAZY = {
    # exact KNN-based values (knn.py)
    "KNNShapley": "knn",
    "ThresholdKNNShapley": "knn",
    "knn_shapley": "knn",
    "knn_regression_shapley": "knn",
    "threshold_knn_shapley": "knn",
    # utilities and Monte Carlo (utility.py, montecarlo/, exact.py)
    "Utility": "utility",
    "TMCShapley": "montecarlo",
    "BetaShapley": "montecarlo",
    "BanzhafMSR": "montecarlo",
    "LeaveOneOut": "montecarlo",
    "MonteCarloADS": "montecarlo",
    "MaxSamples": "montecarlo",
    "StderrBelow": "montecarlo",
    "MaxTime": "montecarlo",
    "exact_shapley": "exact",
    "exact_banzhaf": "exact",
    "exact_semivalue": "exact",
    "exact_loo": "exact",
    "exact_beta_shapley": "exact",
    "beta_shapley_weight": "exact",
    "GameUtility": "utility",
    "GroupUtility": "groups",
    "StoppingCriterion": "montecarlo",
    # evaluation (evaluate.py)
    "flip_labels": "evaluate",
    "noisy_label_detection": "evaluate",
    "point_removal_curve": "evaluate",
    "evaluation_report": "report",
    "EvaluationReport": "report",
    "two_means_split": "evaluate",
    "value_table": "tabular",
    # asymmetric data Shapley and inference
    "AsymmetricShapley": "asymmetric",
    "knn_asymmetric_shapley": "knn_asymmetric",
    "mc_asymmetric_shapley": "montecarlo",
    "shapley_confidence_intervals": "inference",
    "VarianceOptions": "inference",
    "knn_shapley_ci": "knn_inference",
}

__all__ = ["ValuationResult", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'databazaar.valuation' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"databazaar.valuation.{module}"), name)
    globals()[name] = value
    return value
