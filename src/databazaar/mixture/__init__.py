"""Data-mixture optimisation: choose domain weights for a pretraining budget.

Implements Direct Data Optimization (DDO) and AutoScale from Kang et al., "AutoScale:
Scale-Aware Data Mixing for Pre-Training LLMs" (arXiv 2407.20177), and the baselines
uniform, DoReMi-style Group DRO (Xie et al., NeurIPS 2023), RegMix (Liu et al.,
arXiv 2407.01492) and Data Mixing Laws (Ye et al., arXiv 2403.16952). Every method
returns a :class:`MixtureResult`.

References:
    Kang et al. 2024, arXiv 2407.20177 (DDO, AutoScale).
    Xie et al. 2023, arXiv 2305.10429 (DoReMi).
    Liu et al. 2024, arXiv 2407.01492 (RegMix).
    Ye et al. 2024, arXiv 2403.16952 (Data Mixing Laws).
"""

from databazaar.core.parallel import BACKENDS
from databazaar.mixture.api import (
    METHODS,
    optimize_mixture,
    prepare_data,
    proxy_runs_needed,
    train_with_weights,
    uniform_weights,
)
from databazaar.mixture.autoscale import AutoScale, plot_weights_by_budget
from databazaar.mixture.ddo import DDO, ddo_jobs, fit_ddo, plot_ddo_fits
from databazaar.mixture.doremi import DoReMi
from databazaar.mixture.mixing_laws import (
    DataMixingLaws,
    MixingLaw,
    fit_mixing_law,
    minimize_mixing_laws,
)
from databazaar.mixture.proxy import ProxyConfig, ProxyResult, run_proxies, run_proxy
from databazaar.mixture.regmix import RandomMixtureRuns, RegMix, sample_mixtures
from databazaar.mixture.result import MixtureResult
from databazaar.mixture.scaling import (
    PowerLaw,
    autoscale_predict,
    fit_power_law,
    solve_budget_simplex,
    surrogate_loss,
)

__all__ = [
    "BACKENDS",
    "DDO",
    "METHODS",
    "AutoScale",
    "DataMixingLaws",
    "DoReMi",
    "MixingLaw",
    "MixtureResult",
    "PowerLaw",
    "ProxyConfig",
    "ProxyResult",
    "RandomMixtureRuns",
    "RegMix",
    "autoscale_predict",
    "ddo_jobs",
    "fit_ddo",
    "fit_mixing_law",
    "fit_power_law",
    "minimize_mixing_laws",
    "optimize_mixture",
    "plot_ddo_fits",
    "plot_weights_by_budget",
    "prepare_data",
    "proxy_runs_needed",
    "run_proxies",
    "run_proxy",
    "sample_mixtures",
    "solve_budget_simplex",
    "surrogate_loss",
    "train_with_weights",
    "uniform_weights",
]
