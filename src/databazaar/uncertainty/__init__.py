"""Uncertainty estimation for generated text, benchmarked across quality metrics (UE-TS).

He et al., "Can We Trust the Performance Evaluation of Uncertainty Estimation Methods in
Text Summarization?", EMNLP 2024 (arXiv 2406.17274): judge UE methods by the PRR of
their uncertainty against many NLG quality metrics, and check whether the ranking of
methods depends on the metric. Modules:

* :mod:`~databazaar.uncertainty.estimators`: UE methods (white-box, black-box, ensemble);
* :mod:`~databazaar.uncertainty.similarity`: relations between sampled answers;
* :mod:`~databazaar.uncertainty.metrics`: quality metrics in five groups, LLM judges;
* :mod:`~databazaar.uncertainty.benchmark`: PRR, risk-coverage, bootstrap CIs, Kendall's
  tau, metric clustering;
* :mod:`~databazaar.uncertainty.runner`: generation, benchmark runs, scoring user outputs;
* :mod:`~databazaar.uncertainty.report`: JSON, markdown and SVG reports.

References: Fadeeva et al., "LM-Polygraph", EMNLP 2023 demo; Kuhn et al., "Semantic
Uncertainty", ICLR 2023; Lin et al., "Generating with Confidence", arXiv 2305.19187;
Malinin and Gales, "Uncertainty Estimation in Autoregressive Structured Prediction",
ICLR 2021.
"""

from databazaar.uncertainty.benchmark import (
    bootstrap_prr,
    cluster_metrics,
    merge_duplicates,
    prr,
    random_area,
    rejection_area,
    risk_coverage,
)
from databazaar.uncertainty.estimators import (
    ESTIMATORS,
    Estimator,
    UEOutputs,
    estimate_all,
    get_estimator,
)
from databazaar.uncertainty.metrics import (
    GROUPS,
    OFFLINE_METRICS,
    MetricData,
    get_metric,
    score_metrics,
)
from databazaar.uncertainty.report import BenchmarkReport
from databazaar.uncertainty.runner import (
    Item,
    ensemble_scores,
    generate_outputs,
    read_items,
    read_outputs,
    run_benchmark,
    score_file,
    task_items,
)

__all__ = [
    "ESTIMATORS",
    "GROUPS",
    "OFFLINE_METRICS",
    "BenchmarkReport",
    "Estimator",
    "Item",
    "MetricData",
    "UEOutputs",
    "bootstrap_prr",
    "cluster_metrics",
    "ensemble_scores",
    "estimate_all",
    "generate_outputs",
    "get_estimator",
    "get_metric",
    "merge_duplicates",
    "prr",
    "random_area",
    "read_items",
    "read_outputs",
    "rejection_area",
    "risk_coverage",
    "run_benchmark",
    "score_file",
    "score_metrics",
    "task_items",
]
