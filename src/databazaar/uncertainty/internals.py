"""UE methods that read a model's internals: hidden-state density, P(True), token ensembles.

These need more than an answer's log-probabilities, so each has a statistic that a local
(white-box) model computes once per output and stores on
:class:`~databazaar.uncertainty.estimators.UEOutputs`, and an estimator that reads it:

``Mahalanobis`` (``embedding``; Lee et al., NeurIPS 2018, as LM-Polygraph's
    ``MahalanobisDistanceSeq``): the answer's embedding ``h`` is the mean of the last
    layer's hidden states over the prompt and the generated tokens fed back to the model
    (all but the last), as LM-Polygraph's decoder embeddings of a causal LM; fitted on
    the embeddings of training outputs: centroid ``mu``, covariance ``S`` (unbiased,
    plus the smallest jitter ``10^k I``, ``k = -15..-1``, that leaves no negative
    eigenvalue); the uncertainty is ``sqrt((h - mu)^T S^-1 (h - mu))``.
``RDE`` (Yoo et al., ACL Findings 2022, as LM-Polygraph's ``RDESeq``): kernel PCA of the
    training embeddings (RBF kernel, 100 components, seed 42), a robust covariance by
    minimum covariance determinant (Rousseeuw, 1984; seed 42, support fraction 0.9 then
    1.0 if the default fails); the uncertainty is the **squared** Mahalanobis distance in
    that space (scikit-learn's ``MinCovDet.mahalanobis``, as LM-Polygraph returns it).
``PTrue`` (``ptrue_logprob``; Kadavath et al., arXiv 2207.05221): the model is asked
    LM-Polygraph's prompt ``Question: {q}\\n Possible answer:{a}\\n Is the possible
    answer:\\n (A) True\\n (B) False\\n The possible answer is:`` and the uncertainty is
    ``-log p("True" | prompt)``. LM-Polygraph 0.7.0 stores the raw logit of a one-token
    "True" instead; we use the log-probability of the whole word (any tokenizer), so the
    estimator agrees with LM-Polygraph's given the same statistic, not the statistic itself.
token-level ensembles ``PETtu``... ``EPTrmi`` (``token_ensemble``; Malinin and Gales,
    ICLR 2021, the measures LM-Polygraph's ensemble generator computes per step): at each
    step ``t`` of the answer every member ``m`` gives a next-token distribution ``p_m``.
    ``PE`` averages them, ``p = mean_m p_m``; ``EP`` weights member ``m`` by its
    probability of the answer's prefix, ``p ~ sum_m P_m(y_<t) p_m``. With
    ``DU = mean_m H(p_m)``: total uncertainty ``tu = H(p)``, data uncertainty ``du = DU``,
    mutual information ``mi = tu - du``, expected pairwise KL ``epkl = -sum_v p_v
    mean_m log p_m(v) - du`` and reverse mutual information ``rmi = -sum_v p_v mean_m
    log p_m(v) - tu``; the answer's score is the mean over its tokens. LM-Polygraph
    0.7.0 ships these estimators but disables the calculator that feeds them, so they are
    checked against a direct computation in the tests, not against LM-Polygraph.

:func:`add_model_statistics` fills the statistics from a
:class:`~databazaar.lm.local_backend.LocalModelBackend` (and the ensemble members).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from databazaar.core.errors import InvalidInput
from databazaar.uncertainty.estimators import Estimator, UEOutputs, check_outputs

PTRUE_PROMPT = (
    "Question: {q}\n Possible answer:{a}\n "
    "Is the possible answer:\n (A) True\n (B) False\n The possible answer is:"
)
JITTERS = tuple(10.0**k for k in range(-15, 0))
TOKEN_MEASURES = ("tu", "du", "mi", "epkl", "rmi")


# ------------------------------------------------------------------ density methods
def _embeddings(data: Sequence[UEOutputs] | np.ndarray, method: str) -> np.ndarray:
    """A 2-D float array of embeddings from outputs (each with ``embedding``) or an array."""
    if isinstance(data, np.ndarray) or (
        isinstance(data, Sequence) and data and not isinstance(data[0], UEOutputs)
    ):
        x = np.asarray(data, dtype=float)
    else:
        check_outputs(data, method, ("embedding",))  # type: ignore[arg-type]
        x = np.array([o.embedding for o in data], dtype=float)  # type: ignore[union-attr]
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 1:
        raise InvalidInput(
            f"{method}: training embeddings must be a 2-D array with at least 2 rows, "
            f"got shape {x.shape}"
        )
    if not np.all(np.isfinite(x)):
        raise InvalidInput(f"{method}: training embeddings contain NaN or infinity")
    return x


class _DensityEstimator(Estimator):
    """An estimator fitted on training embeddings (``fit``) before it scores outputs."""

    kind, needs = "white-box", ("embedding",)

    def __init__(self) -> None:
        self.dim: int | None = None

    @property
    def fitted(self) -> bool:
        return self.dim is not None

    def fit(self, train: Sequence[UEOutputs] | np.ndarray) -> _DensityEstimator:
        """Fit on training outputs (with ``embedding``) or an ``n x d`` array."""
        x = _embeddings(train, self.name)
        self._fit(x)
        self.dim = x.shape[1]
        return self

    def estimate(self, outputs: Sequence[UEOutputs]) -> np.ndarray:
        check_outputs(outputs, self.name, self.needs)
        if not self.fitted:
            raise InvalidInput(
                f"{self.name} needs train_embeddings: it is not fitted",
                hint="give training outputs with embeddings (train_outputs=..., "
                "--train-data) so the density can be fitted",
            )
        x = np.array([o.embedding for o in outputs], dtype=float)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise InvalidInput(
                f"{self.name}: embeddings of size {x.shape[-1] if x.ndim == 2 else '?'} "
                f"but the density was fitted on size {self.dim}"
            )
        return self._distances(x)

    def _one(self, o: UEOutputs) -> float:  # pragma: no cover - estimate() is overridden
        return float(self.estimate([o])[0])

    def _fit(self, x: np.ndarray) -> None:
        raise NotImplementedError

    def _distances(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class Mahalanobis(_DensityEstimator):
    """Mahalanobis distance of the answer's embedding from the training centroid."""

    name = "Mahalanobis"

    def _fit(self, x: np.ndarray) -> None:
        self.centroid = x.mean(axis=0)
        cov = np.nan_to_num(np.atleast_2d(np.cov(x.T)), nan=0.0, posinf=0.0, neginf=0.0)
        eye = np.eye(cov.shape[0])
        for eps in JITTERS:
            if np.all(np.linalg.eigvalsh(cov + eps * eye) >= 0):
                break
        self.sigma_inv = np.linalg.inv(cov + eps * eye)

    def _distances(self, x: np.ndarray) -> np.ndarray:
        d = x - self.centroid
        q = np.einsum("nd,de,ne->n", d, self.sigma_inv, d)
        return np.sqrt(np.maximum(q, 0.0))


class RDE(_DensityEstimator):
    """Squared robust Mahalanobis distance after RBF kernel PCA (100 components)."""

    name = "RDE"
    n_components = 100

    def _fit(self, x: np.ndarray) -> None:
        from sklearn.covariance import MinCovDet
        from sklearn.decomposition import KernelPCA

        self.pca = KernelPCA(n_components=self.n_components, kernel="rbf", random_state=42)
        z = self.pca.fit_transform(x)
        last: Exception | None = None
        for fraction in (None, 0.9, 1.0):
            try:
                self.mcd = MinCovDet(random_state=42, support_fraction=fraction).fit(z)
                return
            except ValueError as exc:
                last = exc
        raise InvalidInput(f"RDE: the robust covariance could not be fitted: {last}")

    def _distances(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.mcd.mahalanobis(self.pca.transform(x)), dtype=float)


# ------------------------------------------------------------------------- P(True)
class PTrue(Estimator):
    """``-log p("True")`` when the model is asked whether its answer is true."""

    name, kind, needs = "PTrue", "white-box", ("ptrue",)

    def _one(self, o: UEOutputs) -> float:
        return -float(o.ptrue_logprob)  # type: ignore[arg-type]


# ------------------------------------------------------------ token-level ensembles
def _entropy(logp: np.ndarray) -> np.ndarray:
    p = np.exp(logp)
    return -np.sum(np.where(p > 0, p * logp, 0.0), axis=-1)


def token_ensemble_measures(member_logprobs: np.ndarray, answer: Sequence[int]) -> dict[str, Any]:
    """Per-step measures from ``member_logprobs[m, t, v] = log p_m(v | y_<t)``.

    ``answer[t]`` is the token chosen at step ``t`` (it weights the members for ``EP``).
    Returns ``{"pe_tu": [...], ..., "ep_rmi": [...]}``, one value per step.
    """
    from scipy.special import logsumexp

    lp = np.asarray(member_logprobs, dtype=float)
    if lp.ndim != 3 or lp.shape[0] < 2 or lp.shape[1] != len(answer):
        raise InvalidInput(
            "token ensemble measures need members x steps x vocabulary log-probabilities "
            f"with one step per answer token, got shape {lp.shape} for {len(answer)} tokens"
        )
    m, t_len, _ = lp.shape
    du = _entropy(lp).mean(axis=0)  # (T,)
    mean_logs = lp.mean(axis=0)  # (T, V)
    chosen = lp[:, np.arange(t_len), np.asarray(answer, dtype=int)]  # (M, T)
    prefix = np.concatenate([np.zeros((m, 1)), np.cumsum(chosen, axis=1)[:, :-1]], axis=1)
    pe = logsumexp(lp, axis=0) - np.log(m)
    ep = logsumexp(lp + prefix[:, :, None], axis=0) - logsumexp(prefix, axis=0)[:, None]
    out: dict[str, Any] = {}
    for mode, logp in (("pe", pe), ("ep", ep)):
        tu = _entropy(logp)
        cross = -np.sum(np.exp(logp) * mean_logs, axis=-1)
        vals = {"tu": tu, "du": du, "mi": tu - du, "epkl": cross - du, "rmi": cross - tu}
        out.update({f"{mode}_{k}": v.tolist() for k, v in vals.items()})
    return out


class _TokenEnsemble(Estimator):
    """Mean over the answer's tokens of one token-level ensemble measure."""

    kind, needs = "ensemble", ("token_ensemble",)
    _key: str

    def _one(self, o: UEOutputs) -> float:
        return float(np.mean(o.token_ensemble[self._key]))  # type: ignore[index]


def _token_class(mode: str, measure: str) -> type[Estimator]:
    name = f"{mode.upper()}T{measure}"
    doc = f"Token-level ensemble {measure} with {mode.upper()} posterior, mean over tokens."
    return type(
        name, (_TokenEnsemble,), {"name": name, "_key": f"{mode}_{measure}", "__doc__": doc}
    )


TOKEN_ESTIMATORS: tuple[type[Estimator], ...] = tuple(
    _token_class(mode, k) for mode in ("pe", "ep") for k in TOKEN_MEASURES
)
INTERNAL_ESTIMATORS: tuple[type[Estimator], ...] = (Mahalanobis, RDE, PTrue, *TOKEN_ESTIMATORS)


# ------------------------------------------------------- statistics from a local model
def _prompt(o: UEOutputs, chat: bool) -> Any:
    return [{"role": "user", "content": o.input}] if chat else o.input


def _answer_ids(backend: Any, o: UEOutputs) -> list[int]:
    """The answer's token ids (as generated, else re-tokenized, with EOS if it stopped)."""
    g = o.output
    if g.token_ids:
        return list(g.token_ids)
    ids = backend.tokenizer(g.text, add_special_tokens=False)["input_ids"]
    if g.finish_reason == "stop" and backend.eos_token_ids:
        ids = ids + backend.eos_token_ids[:1]
    return list(ids)


def _forward(backend: Any, ids: list[int], *, hidden: bool = False) -> Any:
    import torch

    if backend.context_length is not None and len(ids) > backend.context_length:
        raise InvalidInput(
            f"{len(ids)} tokens, more than the model's context of {backend.context_length}"
        )
    with torch.no_grad():
        return backend.model(torch.tensor([ids]), output_hidden_states=hidden)


def add_embeddings(backend: Any, outputs: Sequence[UEOutputs], *, chat: bool = True) -> None:
    """Fill ``embedding``: mean last-layer hidden state over the prompt and answer tokens
    fed back to the model (every generated token but the last)."""
    from databazaar.lm.train import set_threads

    with backend._lock:
        set_threads(backend.num_threads)
        for o in outputs:
            ids = backend.prompt_ids(_prompt(o, chat)) + _answer_ids(backend, o)[:-1]
            out = _forward(backend, ids, hidden=True)
            o.embedding = out.hidden_states[-1][0].float().mean(dim=0).tolist()


def add_ptrue(backend: Any, outputs: Sequence[UEOutputs], *, chat: bool = True) -> None:
    """Fill ``ptrue_logprob``: ``log p("True")`` after :data:`PTRUE_PROMPT`."""
    for o in outputs:
        text = PTRUE_PROMPT.format(q=o.input, a=o.output.text)
        prompt: Any = [{"role": "user", "content": text}] if chat else text
        o.ptrue_logprob = backend.loglikelihood(
            prompt, ["True" if chat else " True"], add_eos=False
        )[0]


def add_token_ensemble(
    outputs: Sequence[UEOutputs], members: Sequence[Any], *, chat: bool = True
) -> None:
    """Fill ``token_ensemble`` from the members' next-token distributions along the answer
    (the members must share one vocabulary; the first member generated the answer)."""
    import torch

    from databazaar.lm.train import set_threads

    if len(members) < 2:
        raise InvalidInput("a token-level ensemble needs at least 2 members")
    vocab = members[0].tokenizer.get_vocab()
    for m in members[1:]:
        if m.tokenizer.get_vocab() != vocab:
            raise InvalidInput(
                f"token-level ensemble: {m.name} has another vocabulary than {members[0].name}",
                hint="token-level measures need members with one tokenizer; the sequence-level "
                "ones (EnsembleTU, EnsembleRMI) work across tokenizers",
            )
    for o in outputs:
        answer = _answer_ids(members[0], o)
        if not answer:
            raise InvalidInput("token-level ensemble: an answer has no tokens")
        rows = []
        for m in members:
            prompt = m.prompt_ids(_prompt(o, chat))
            with m._lock:
                set_threads(m.num_threads)
                logits = _forward(m, prompt + answer).logits[0].float()
            steps = logits[len(prompt) - 1 : len(prompt) - 1 + len(answer)]
            rows.append(torch.log_softmax(steps, dim=-1).double().numpy())
        o.token_ensemble = token_ensemble_measures(np.stack(rows), answer)


def add_model_statistics(
    backend: Any,
    outputs: Sequence[UEOutputs],
    methods: Sequence[str],
    *,
    members: Sequence[Any] = (),
    train_outputs: Sequence[UEOutputs] = (),
    chat: bool = True,
) -> None:
    """Compute the statistics the named methods read from the model's internals
    (embeddings, also of ``train_outputs``; P(True); token-level ensemble measures over
    ``[backend, *members]``). Checks everything before any work: a statistic needs a local
    model, and the error names the method that asked for it."""
    asked = check_model_statistics(backend, methods, members=members)
    if "embedding" in asked:
        add_embeddings(backend, outputs, chat=chat)
        add_embeddings(backend, train_outputs, chat=chat)
    if "ptrue" in asked:
        add_ptrue(backend, outputs, chat=chat)
    if "token_ensemble" in asked:
        add_token_ensemble(outputs, [backend, *members], chat=chat)


def check_model_statistics(
    backend: Any, methods: Sequence[str], *, members: Sequence[Any] = ()
) -> dict[str, str]:
    """Statistic -> the first method that reads it; raises, naming the method, when
    ``backend`` (and ``members``) cannot give a statistic."""
    from databazaar.uncertainty.estimators import get_estimator

    asked: dict[str, str] = {}
    for m in methods:
        for need in get_estimator(m).needs:
            asked.setdefault(need, get_estimator(m).name)
    internal = [n for n in ("embedding", "ptrue", "token_ensemble") if n in asked]
    for need in internal:
        if not hasattr(backend, "prompt_ids"):
            raise InvalidInput(
                f"{asked[need]} needs {need}: {getattr(backend, 'name', 'the backend')} is not "
                "a local model (an HTTP API returns no hidden states or next-token distributions)",
                hint="use a local model folder, or leave this method out",
            )
    if "token_ensemble" in asked and not members:
        raise InvalidInput(
            f"{asked['token_ensemble']} needs token_ensemble: no ensemble member was given",
            hint="add --member with a second model folder",
        )
    return asked
