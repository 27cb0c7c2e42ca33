"""Uncertainty estimators (UE methods) over generation outputs, behind one interface.

Every estimator maps a list of :class:`UEOutputs` (per input: the answer being judged,
optional sampled answers, optional ensemble scores) to one number per input; **higher
means more uncertain**, as in LM-Polygraph (Fadeeva et al., 2023). Methods follow the
definitions used by UE-TS (He et al., EMNLP 2024, arXiv 2406.17274) through LM-Polygraph
0.7.0, and are cross-checked against it in ``tests/uncertainty``:

white-box (need the answer's token log-probabilities)
    ``MSP`` maximum sequence probability ``-sum_t log p(y_t | y_<t, x)``;
    ``Perplexity`` ``-mean_t log p(y_t | ...)``;
    ``MeanTokenEntropy`` ``mean_t H_t`` with ``H_t = -sum_v p_v log p_v`` over the
    alternatives the backend reported at step ``t`` (``top_logprobs``; with all of the
    vocabulary reported this is the exact entropy, as LM-Polygraph's ``entropy`` calculator
    sums over the finite log-probabilities it is given);
    ``MonteCarloSequenceEntropy`` ``-mean_j log p(s_j | x)`` over sampled answers ``s_j``
    (Kuhn et al., 2023, predictive entropy); ``MonteCarloNormalizedSequenceEntropy`` the
    same with length-normalised log-likelihoods; ``SemanticEntropy`` (Kuhn et al., 2023):
    samples are grouped into meaning classes by a two-way relation, a class's log-probability
    is the log-sum-exp of its members' log-likelihoods and the entropy is
    ``-mean_j log p(C(s_j))``.
black-box (need sampled answers only)
    ``LexicalSimilarity`` ``-mean_{i<j} ROUGE-L_F(s_i, s_j)``; ``EigValLaplacian``
    ``sum_k max(0, 1 - lambda_k)`` of the normalised graph Laplacian
    ``L = I - D^-1/2 W D^-1/2`` of the symmetrised similarity ``W``; ``Eccentricity``
    the norm of the distances of the spectral embeddings (eigenvectors with
    ``lambda < 0.9``) from their centre; ``NumSemSets`` the number of connected components
    when ``i`` and ``j`` are linked iff ``entail > contradict`` both ways (Lin, Trivedi and
    Sun, 2023, arXiv 2305.19187).
ensemble (need the samples' log-likelihoods under each ensemble member)
    ``EnsembleTU`` / ``EnsembleRMI`` / ``EnsembleRMIabs``: LM-Polygraph's sequence-level
    ensemble measures (Malinin and Gales, 2021): with ``log P_m(s_j)`` of candidate
    ``s_j`` under member ``m`` and the ensemble ``log Pbar(s_j) = logsumexp_m - log M``,
    weights ``w_j = Pbar(s_j) / sum_k Pbar(s_k)``, total uncertainty
    ``-sum_j w_j Pbar(s_j)`` and reverse mutual information
    ``mean_m sum_j w_j (log Pbar(s_j) - log P_m(s_j))`` (``abs`` of each term for RMIabs).

The relation between samples (for the graph methods and semantic classes) is a
:class:`~databazaar.uncertainty.similarity.Relation`: ROUGE-L, Jaccard, MiniLM cosine or a
user's NLI cross-encoder (:class:`~databazaar.uncertainty.similarity.NLIRelation`).

Methods that read the model's internals (``Mahalanobis`` and ``RDE`` on hidden states,
``PTrue``, the token-level ensemble measures ``PETtu`` ... ``EPTrmi``) live in
:mod:`~databazaar.uncertainty.internals` and are registered here too.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from databazaar.core.errors import InvalidInput
from databazaar.lm.generate import Generation
from databazaar.uncertainty.similarity import Relation, get_relation


@dataclass
class UEOutputs:
    """What a model produced for one input.

    ``output`` is the answer whose uncertainty is estimated (usually greedy), ``samples``
    are answers sampled at a temperature above 0, and ``member_logprobs[m][j]`` is the
    log-likelihood of ``samples[j]`` under ensemble member ``m`` (the first member is
    normally the model itself).
    """

    input: str
    output: Generation
    samples: list[Generation] = field(default_factory=list)
    member_logprobs: list[list[float]] | None = None
    #: the answer's hidden-state embedding (``internals.add_embeddings``)
    embedding: list[float] | None = None
    #: ``log p("True")`` of the P(True) prompt (``internals.add_ptrue``)
    ptrue_logprob: float | None = None
    #: per-step token-level ensemble measures (``internals.add_token_ensemble``)
    token_ensemble: dict[str, list[float]] | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "input": self.input,
            "output": self.output.to_dict(),
            "samples": [s.to_dict() for s in self.samples],
            "member_logprobs": self.member_logprobs,
        }
        for key in ("embedding", "ptrue_logprob", "token_ensemble"):
            if getattr(self, key) is not None:
                d[key] = getattr(self, key)
        return d


# requirement name -> (test on one UEOutputs, what is missing, how to fix)
_NEEDS: dict[str, tuple[Callable[[UEOutputs], bool], str, str]] = {
    "logprobs": (
        lambda o: o.output.token_logprobs is not None and len(o.output.token_logprobs) > 0,
        "the output has no token log-probabilities",
        "generate with logprobs=True (a white-box model or an API that returns logprobs)",
    ),
    "top_logprobs": (
        lambda o: (
            o.output.top_logprobs is not None
            and len(o.output.top_logprobs) > 0
            and all(len(step) > 0 for step in o.output.top_logprobs)
        ),
        "the output has no top_logprobs alternatives",
        "generate with top_logprobs >= 1 (e.g. 20)",
    ),
    "samples": (
        lambda o: len(o.samples) >= 2,
        "fewer than 2 sampled answers",
        "draw at least 2 samples per input (n >= 2, temperature > 0)",
    ),
    "sample_logprobs": (
        lambda o: len(o.samples) >= 1 and all(s.token_logprobs is not None for s in o.samples),
        "sampled answers without token log-probabilities",
        "sample with logprobs=True",
    ),
    "members": (
        lambda o: (
            o.member_logprobs is not None
            and len(o.member_logprobs) >= 2
            and all(len(m) == len(o.samples) and len(m) > 0 for m in o.member_logprobs)
        ),
        "no ensemble scores (member_logprobs: one row per member, one value per sample)",
        "score the samples with every ensemble member (uncertainty.runner.ensemble_scores)",
    ),
    "embedding": (
        lambda o: (
            o.embedding is not None
            and len(o.embedding) > 0
            and bool(np.all(np.isfinite(np.asarray(o.embedding, dtype=float))))
        ),
        "the output has no hidden-state embedding",
        "compute embeddings with a local model (uncertainty.internals.add_embeddings)",
    ),
    "ptrue": (
        lambda o: o.ptrue_logprob is not None and bool(np.isfinite(o.ptrue_logprob)),
        "the output has no P(True) log-probability (ptrue_logprob)",
        "ask the model with uncertainty.internals.add_ptrue",
    ),
    "token_ensemble": (
        lambda o: o.token_ensemble is not None and len(o.token_ensemble) > 0,
        "the output has no token-level ensemble measures (token_ensemble)",
        "score the answer with every member (uncertainty.internals.add_token_ensemble)",
    ),
}


def check_outputs(outputs: Sequence[UEOutputs], method: str, needs: Sequence[str]) -> None:
    """Raise :class:`InvalidInput` naming ``method`` if any output lacks what it needs."""
    if isinstance(outputs, UEOutputs) or not isinstance(outputs, Sequence):
        raise InvalidInput(f"{method}: outputs must be a list of UEOutputs")
    if not outputs:
        raise InvalidInput(f"{method}: no outputs to score")
    for i, o in enumerate(outputs):
        if not isinstance(o, UEOutputs):
            raise InvalidInput(f"{method}: output {i} is not a UEOutputs record")
        for need in needs:
            ok, what, hint = _NEEDS[need]
            if not ok(o):
                raise InvalidInput(f"{method} needs {need}: output {i}: {what}", hint=hint)


class Estimator(abc.ABC):
    """One UE method: ``estimate(outputs)`` -> uncertainties (higher = less certain)."""

    name: ClassVar[str]
    kind: ClassVar[str]  # "white-box", "black-box" or "ensemble"
    needs: ClassVar[tuple[str, ...]] = ()

    def estimate(self, outputs: Sequence[UEOutputs]) -> np.ndarray:
        """Check the outputs, then one float per output."""
        check_outputs(outputs, self.name, self.needs)
        return np.array([float(self._one(o)) for o in outputs], dtype=float)

    @abc.abstractmethod
    def _one(self, o: UEOutputs) -> float:
        """The uncertainty of one checked output."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


# ----------------------------------------------------------------------- white-box
class MSP(Estimator):
    """Maximum sequence probability: ``-sum_t log p(y_t | y_<t, x)``."""

    name, kind, needs = "MSP", "white-box", ("logprobs",)

    def _one(self, o: UEOutputs) -> float:
        return -float(np.sum(o.output.token_logprobs))


class Perplexity(Estimator):
    """Log-perplexity of the answer: ``-mean_t log p(y_t | y_<t, x)``."""

    name, kind, needs = "Perplexity", "white-box", ("logprobs",)

    def _one(self, o: UEOutputs) -> float:
        return -float(np.mean(o.output.token_logprobs))


def token_entropies(g: Generation) -> np.ndarray:
    """``H_t = -sum_v exp(l_v) l_v`` over the finite reported alternatives at each step."""
    out = []
    for step in g.top_logprobs or []:
        lp = np.array([v for _, v in step], dtype=float)
        lp = lp[np.isfinite(lp)]
        out.append(-float(np.sum(lp * np.exp(lp))))
    return np.array(out, dtype=float)


class MeanTokenEntropy(Estimator):
    """Mean over the answer's tokens of the entropy of the next-token distribution."""

    name, kind, needs = "MeanTokenEntropy", "white-box", ("logprobs", "top_logprobs")

    def _one(self, o: UEOutputs) -> float:
        return float(np.mean(token_entropies(o.output)))


class MonteCarloSequenceEntropy(Estimator):
    """Predictive entropy by Monte Carlo: ``-mean_j log p(s_j | x)`` over samples."""

    name, kind, needs = "MonteCarloSequenceEntropy", "white-box", ("sample_logprobs",)

    def _one(self, o: UEOutputs) -> float:
        return -float(np.mean([np.sum(s.token_logprobs) for s in o.samples]))


class MonteCarloNormalizedSequenceEntropy(Estimator):
    """As :class:`MonteCarloSequenceEntropy` with ``log p(s_j)/|s_j|`` per non-empty sample."""

    name, kind, needs = "MonteCarloNormalizedSequenceEntropy", "white-box", ("sample_logprobs",)

    def _one(self, o: UEOutputs) -> float:
        per = [
            np.sum(s.token_logprobs) / len(s.token_logprobs) for s in o.samples if s.token_logprobs
        ]
        return -float(np.mean(per)) if per else float("nan")


def semantic_classes(is_entail: np.ndarray) -> list[int]:
    """Class id per sample: sample ``i`` joins the first class whose first member and ``i``
    entail each other both ways, else opens a new class (Kuhn et al., 2023, Alg. 1)."""
    firsts: list[int] = []
    labels: list[int] = []
    for i in range(is_entail.shape[0]):
        for c, f in enumerate(firsts):
            if is_entail[f, i] and is_entail[i, f]:
                labels.append(c)
                break
        else:
            labels.append(len(firsts))
            firsts.append(i)
    return labels


class _RelationEstimator(Estimator):
    """An estimator over a relation between sampled answers."""

    def __init__(self, relation: str | Relation = "rougeL") -> None:
        self.relation = get_relation(relation)

    def estimate(self, outputs: Sequence[UEOutputs]) -> np.ndarray:
        check_outputs(outputs, self.name, self.needs)
        mats = self.relation.matrices([[s.text for s in o.samples] for o in outputs])
        return np.array(
            [float(self._from_matrices(o, *m)) for o, m in zip(outputs, mats, strict=True)],
            dtype=float,
        )

    def _one(self, o: UEOutputs) -> float:  # pragma: no cover - estimate() is overridden
        return float(self.estimate([o])[0])

    @abc.abstractmethod
    def _from_matrices(
        self, o: UEOutputs, entail: np.ndarray, contra: np.ndarray, is_entail: np.ndarray
    ) -> float:
        """The uncertainty from the relation's matrices for this output's samples."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(relation={self.relation.name!r})"


class SemanticEntropy(_RelationEstimator):
    """Entropy over meaning classes: ``-mean_j log sum_{k in C(s_j)} p(s_k | x)``."""

    name, kind, needs = "SemanticEntropy", "white-box", ("samples", "sample_logprobs")

    def _from_matrices(self, o, entail, contra, is_entail):  # type: ignore[no-untyped-def]
        labels = semantic_classes(is_entail)
        ll = np.array([np.sum(s.token_logprobs) for s in o.samples], dtype=float)
        class_lp = [np.logaddexp.reduce(ll[np.array(labels) == c]) for c in range(max(labels) + 1)]
        return -float(np.mean([class_lp[c] for c in labels]))


# ----------------------------------------------------------------------- black-box
class LexicalSimilarity(Estimator):
    """``-mean_{i<j} sim(s_i, s_j)`` with a ROUGE F-measure (stemmed, as LM-Polygraph)."""

    kind, needs = "black-box", ("samples",)
    name = "LexicalSimilarity"

    def __init__(self, metric: str = "rougeL") -> None:
        if metric not in ("rouge1", "rouge2", "rougeL"):
            raise InvalidInput(
                f"LexicalSimilarity: unknown metric {metric!r}", hint="rouge1, rouge2 or rougeL"
            )
        self.metric = metric

    def _one(self, o: UEOutputs) -> float:
        from databazaar.uncertainty.similarity import rouge_f

        texts = [s.text for s in o.samples]
        sims = [
            rouge_f(texts[i], texts[j], self.metric)
            for i in range(len(texts))
            for j in range(i + 1, len(texts))
        ]
        return -float(np.mean(sims))


def laplacian(w: np.ndarray) -> np.ndarray:
    """``I - D^-1/2 W D^-1/2`` of a symmetric affinity matrix ``W``."""
    d = w.sum(axis=1)
    if np.any(d <= 0):
        raise InvalidInput("a sample has zero similarity to every sample, itself included")
    inv = 1.0 / np.sqrt(d)
    return np.eye(len(d)) - inv[:, None] * w * inv[None, :]


class EigValLaplacian(_RelationEstimator):
    """``sum_k max(0, 1 - lambda_k)`` over the eigenvalues of the graph Laplacian."""

    name, kind, needs = "EigValLaplacian", "black-box", ("samples",)

    def _from_matrices(self, o, entail, contra, is_entail):  # type: ignore[no-untyped-def]
        from scipy.linalg import eigh

        w = (entail + entail.T) / 2
        lam = eigh(laplacian(w), eigvals_only=True)
        return float(sum(max(0.0, 1.0 - x) for x in lam))


class Eccentricity(_RelationEstimator):
    """Norm of the spectral embeddings' distances from their mean (``lambda < thres``)."""

    name, kind, needs = "Eccentricity", "black-box", ("samples",)

    def __init__(self, relation: str | Relation = "rougeL", thres: float = 0.9) -> None:
        super().__init__(relation)
        self.thres = thres

    def _from_matrices(self, o, entail, contra, is_entail):  # type: ignore[no-untyped-def]
        from scipy.linalg import eigh

        w = (entail + entail.T) / 2
        lam, vec = eigh(laplacian(w))
        emb = vec[:, lam < self.thres].T  # one row per kept eigenvector
        dist = np.array([np.linalg.norm(x - x.mean(0), 2) for x in emb])
        return float(np.linalg.norm(dist, 2))


class NumSemSets(_RelationEstimator):
    """Number of connected components of the graph ``entail > contra`` in both ways."""

    name, kind, needs = "NumSemSets", "black-box", ("samples",)

    def _from_matrices(self, o, entail, contra, is_entail):  # type: ignore[no-untyped-def]
        from scipy.sparse.csgraph import connected_components

        link = entail > contra
        n, _ = connected_components(link & link.T, directed=False)
        return float(n)


# ------------------------------------------------------------------------ ensemble
def ensemble_measures(member_logprobs: np.ndarray) -> dict[str, float]:
    """``tu``, ``rmi`` and ``rmi_abs`` from ``log P_m(s_j)`` (members x candidates)."""
    lp = np.asarray(member_logprobs, dtype=float)
    m = lp.shape[0]
    ens = np.logaddexp.reduce(lp, axis=0) - np.log(m)
    p = np.exp(ens)
    w = p / p.sum()
    terms = (ens[None, :] - lp) * w[None, :]
    return {
        "tu": -float(np.sum(p * w)),
        "rmi": float(terms.sum(axis=1).mean()),
        "rmi_abs": float(np.abs(terms).sum(axis=1).mean()),
    }


class EnsembleTU(Estimator):
    """Sequence-level ensemble total uncertainty ``-sum_j w_j Pbar(s_j)``."""

    name, kind, needs = "EnsembleTU", "ensemble", ("members",)
    _key = "tu"

    def _one(self, o: UEOutputs) -> float:
        return ensemble_measures(np.array(o.member_logprobs))[self._key]


class EnsembleRMI(EnsembleTU):
    """Sequence-level reverse mutual information between the members and the ensemble."""

    name, _key = "EnsembleRMI", "rmi"


class EnsembleRMIabs(EnsembleTU):
    """As :class:`EnsembleRMI` with the absolute value of each term."""

    name, _key = "EnsembleRMIabs", "rmi_abs"


# ------------------------------------------------------------------------ registry
ESTIMATORS: dict[str, type[Estimator]] = {
    cls.name: cls
    for cls in (
        MSP,
        Perplexity,
        MeanTokenEntropy,
        MonteCarloSequenceEntropy,
        MonteCarloNormalizedSequenceEntropy,
        SemanticEntropy,
        LexicalSimilarity,
        EigValLaplacian,
        Eccentricity,
        NumSemSets,
        EnsembleTU,
        EnsembleRMI,
        EnsembleRMIabs,
    )
}
from databazaar.uncertainty.internals import INTERNAL_ESTIMATORS  # noqa: E402 (needs the above)

ESTIMATORS.update({cls.name: cls for cls in INTERNAL_ESTIMATORS})
_RELATIONAL = {"SemanticEntropy", "EigValLaplacian", "Eccentricity", "NumSemSets"}


def get_estimator(name: str | Estimator, *, relation: str | Relation | None = None) -> Estimator:
    """An estimator by registry name (case-insensitive), or the instance given.

    ``relation`` (a name or :class:`Relation`) is passed to the methods that compare
    samples by meaning.
    """
    if isinstance(name, Estimator):
        return name
    lookup = {k.lower(): k for k in ESTIMATORS}
    key = lookup.get(str(name).lower())
    if key is None:
        raise InvalidInput(
            f"unknown uncertainty method {name!r}", hint=f"choose from {', '.join(ESTIMATORS)}"
        )
    cls: Any = ESTIMATORS[key]
    if key in _RELATIONAL and relation is not None:
        return cls(relation)
    return cls()


def estimate_all(
    outputs: Sequence[UEOutputs],
    methods: Sequence[str | Estimator],
    *,
    relation: str | Relation | None = None,
    train_outputs: Sequence[UEOutputs] | None = None,
) -> dict[str, np.ndarray]:
    """Method name -> uncertainties, for every method (all checked before any runs).

    Methods fitted on training data (``Mahalanobis``, ``RDE``) are fitted on
    ``train_outputs`` (with embeddings) unless given already fitted.
    """
    ests = [get_estimator(m, relation=relation) for m in methods]
    for e in ests:
        check_outputs(outputs, e.name, e.needs)
        if hasattr(e, "fit") and not e.fitted:  # type: ignore[attr-defined]
            if train_outputs is None:
                raise InvalidInput(
                    f"{e.name} needs train_embeddings: no training outputs were given",
                    hint="give training outputs with embeddings (train_outputs=..., "
                    "--train-data) so the density can be fitted",
                )
            check_outputs(train_outputs, e.name, ("embedding",))
    for e in ests:
        if hasattr(e, "fit") and not e.fitted:  # type: ignore[attr-defined]
            e.fit(train_outputs)  # type: ignore[attr-defined]
    return {e.name: e.estimate(outputs) for e in ests}
