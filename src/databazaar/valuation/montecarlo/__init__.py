"""One Monte Carlo engine for data valuation, in pyDVL's composition.

* :mod:`.samplers`: what is drawn (permutations, order-consistent permutations, MSR
  coalitions) and the one seeding rule;
* :mod:`.stopping`: stopping criteria combined with ``|`` and ``&``;
* :mod:`.engine`: the parallel, reproducible sampling loop (:mod:`.stats`: running
  statistics);
* :mod:`.base`: :class:`Valuation`, the estimator base (one ``fit`` convention, one
  place for ``progress``);
* :mod:`.methods` and :mod:`.ads`: TMC-Shapley, Beta Shapley, Banzhaf-MSR,
  leave-one-out and Monte Carlo Asymmetric Data Shapley, each a small class.
"""

from databazaar.valuation.montecarlo.ads import (
    MonteCarloADS,
    hoeffding_epsilon,
    mc_asymmetric_shapley,
    permutations_for,
)
from databazaar.valuation.montecarlo.base import Valuation
from databazaar.valuation.montecarlo.engine import (
    as_game,
    estimate_msr_values,
    estimate_permutation_values,
    permutation_marginals,
)
from databazaar.valuation.montecarlo.methods import (
    BanzhafMSR,
    BetaShapley,
    LeaveOneOut,
    TMCShapley,
    beta_importance_weights,
)
from databazaar.valuation.montecarlo.samplers import (
    MSRSampler,
    OrderedPermutationSampler,
    PermutationSampler,
    sample_rng,
    seed_entropy,
    spawn_seeds,
)
from databazaar.valuation.montecarlo.stats import MonteCarloStats, RunningStats
from databazaar.valuation.montecarlo.stopping import (
    MaxSamples,
    MaxTime,
    SamplingState,
    StderrBelow,
    StoppingCriterion,
)

__all__ = [
    "BanzhafMSR",
    "BetaShapley",
    "LeaveOneOut",
    "MSRSampler",
    "MaxSamples",
    "MaxTime",
    "MonteCarloADS",
    "MonteCarloStats",
    "OrderedPermutationSampler",
    "PermutationSampler",
    "RunningStats",
    "SamplingState",
    "StderrBelow",
    "StoppingCriterion",
    "TMCShapley",
    "Valuation",
    "as_game",
    "beta_importance_weights",
    "estimate_msr_values",
    "estimate_permutation_values",
    "hoeffding_epsilon",
    "mc_asymmetric_shapley",
    "permutation_marginals",
    "permutations_for",
    "sample_rng",
    "seed_entropy",
    "spawn_seeds",
]
