"""One entry point per task: prepare data, optimise a mixture, train with weights."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from databazaar.core.errors import InvalidInput
from databazaar.core.progress import ProgressFn
from databazaar.lm.corpus import MultiDomainCorpus
from databazaar.lm.data import TokenizedCorpus, check_weights, mixture_blocks, tokenize_corpus
from databazaar.lm.model import build_model, save_model
from databazaar.lm.tokenizer import train_bpe_tokenizer
from databazaar.lm.train import TrainResult, train_lm
from databazaar.mixture.autoscale import AutoScale
from databazaar.mixture.ddo import DDO
from databazaar.mixture.doremi import DoReMi
from databazaar.mixture.mixing_laws import DataMixingLaws
from databazaar.mixture.proxy import ProxyConfig
from databazaar.mixture.regmix import RegMix
from databazaar.mixture.result import MixtureResult

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

METHODS = ("uniform", "ddo", "autoscale", "doremi", "regmix", "dml")


def prepare_data(
    corpus: MultiDomainCorpus,
    *,
    vocab_size: int = 2048,
    block_size: int = 64,
    tokenizer: PreTrainedTokenizerFast | None = None,
    tokenizer_chars: int = 2_000_000,
) -> tuple[PreTrainedTokenizerFast, TokenizedCorpus]:
    """Train a BPE tokenizer on the training split (or use ``tokenizer``) and pack blocks.

    The tokenizer sees an equal share of characters from each domain (at most
    ``tokenizer_chars`` in all), so no domain dominates the vocabulary.
    """
    if len(corpus.domains) < 1:
        raise InvalidInput("empty corpus: no domains")
    if tokenizer is None:
        per = max(1, tokenizer_chars // len(corpus.domains))
        sample: list[str] = []
        for d in corpus.domains:
            got = 0
            for t in corpus.train[d]:
                if got >= per:
                    break
                sample.append(t[: per - got])
                got += len(sample[-1])
        tokenizer = train_bpe_tokenizer(sample, vocab_size=vocab_size)
    return tokenizer, tokenize_corpus(corpus, tokenizer, block_size=block_size)


def uniform_weights(domains: Sequence[str]) -> dict[str, float]:
    """Equal weight on every domain (the unweighted baseline)."""
    if not domains:
        raise InvalidInput("no domains given")
    return {d: 1.0 / len(domains) for d in domains}


def proxy_runs_needed(method: str, n_domains: int, *, n_scale_factors: int = 2) -> int:
    """How many proxy trainings ``method`` runs with default options (for progress bars)."""
    ddo = 1 + n_domains * n_scale_factors
    runs = {"uniform": 0, "ddo": ddo, "autoscale": 2 * ddo, "doremi": 2, "regmix": 16, "dml": 16}
    return runs.get(method, 0)


def optimize_mixture(
    data: TokenizedCorpus,
    *,
    method: str = "ddo",
    budget: float,
    proxy: ProxyConfig | None = None,
    seed: int = 0,
    backend: str = "processes",
    n_jobs: int = 1,
    ray_address: str | None = None,
    progress: ProgressFn | None = None,
    budgets: Sequence[float] | None = None,
    options: Mapping[str, Any] | None = None,
) -> MixtureResult:
    """Find domain weights for training ``budget`` tokens with ``method``.

    ``ddo`` runs DDO at ``budget``; ``autoscale`` runs DDO at ``budgets`` (default
    ``budget/4`` and ``budget/2``) and predicts for ``budget``; ``doremi`` runs a
    reference and a Group-DRO proxy at ``budget``; ``regmix`` fits a regression over
    tiny runs at ``budget/8`` by default (``options={'budget': ...}`` overrides);
    ``dml`` (Data Mixing Laws) fits one exponential law per domain over the same kind of
    tiny runs at ``budget/8`` (same override).
    ``options`` go to the method's class. Raises :class:`InvalidInput` for an unknown
    method.
    """
    if method not in METHODS:
        raise InvalidInput(f"unknown method {method!r}", hint=f"use one of {', '.join(METHODS)}")
    if not np.isfinite(budget) or budget <= 0:
        raise InvalidInput(f"budget must be a positive number of tokens, got {budget}")
    opts = dict(options or {})
    proxy = proxy or ProxyConfig()
    common: dict[str, Any] = {"proxy": proxy, "seed": seed, "progress": progress}
    par: dict[str, Any] = {"backend": backend, "n_jobs": n_jobs, "ray_address": ray_address}
    if method == "uniform":
        return MixtureResult("uniform", uniform_weights(data.domains), float(budget))
    if method == "ddo":
        return DDO(budget, **common, **par, **opts).fit(data).result_
    if method == "autoscale":
        bs = tuple(budgets) if budgets is not None else (budget / 4, budget / 2)
        return AutoScale(bs, budget, **common, **par, ddo_kwargs=opts).fit(data).result_
    if method == "doremi":
        return DoReMi(budget, **common, **opts).fit(data).result_
    small = opts.pop("budget", budget / 8)
    cls = RegMix if method == "regmix" else DataMixingLaws
    return cls(small, **common, **par, **opts).fit(data).result_


def train_with_weights(
    data: TokenizedCorpus,
    weights: Mapping[str, float] | Sequence[float],
    *,
    budget: float,
    proxy: ProxyConfig | None = None,
    seed: int = 0,
    data_seed: int | None = None,
    eval_every: int | None = None,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int | None = None,
    progress: ProgressFn | None = None,
    tokenizer: PreTrainedTokenizerFast | None = None,
    output_dir: str | Path | None = None,
) -> tuple[PreTrainedModel, TrainResult]:
    """Train a fresh model on ``budget`` tokens mixed by ``weights``; evaluate per domain.

    ``seed`` fixes the initialisation and the batch order; ``data_seed`` (default:
    ``seed``) picks which blocks of each domain are used. Blocks are taken from one fixed
    permutation per domain, so for one ``data_seed`` a larger quantity is a superset of a
    smaller one (the proxies of DDO share their data the same way).
    Raises :class:`InvalidInput` for weights that are negative, do not sum to one or do
    not match the corpus domains. With ``output_dir`` the model (and tokenizer) is saved.
    """
    w = check_weights(weights, data.domains)
    if not np.isfinite(budget) or budget <= 0:
        raise InvalidInput(f"budget must be a positive number of tokens, got {budget}")
    proxy = proxy or ProxyConfig()
    proxy.validate()
    blocks, _ = mixture_blocks(data, w * budget, seed=seed if data_seed is None else data_seed)
    model = build_model(
        proxy.model, vocab_size=data.vocab_size, seed=seed, eos_token_id=data.eos_token_id
    )
    cfg = replace(
        proxy.train,
        seed=seed,
        num_threads=proxy.num_threads,
        eval_every=eval_every,
        checkpoint_dir=str(checkpoint_dir) if checkpoint_dir else None,
        checkpoint_every=checkpoint_every,
    )
    res = train_lm(
        model,
        blocks,
        config=cfg,
        eval_sets=data.limit_val(proxy.eval_blocks).val,
        progress=progress,
    )
    if output_dir is not None:
        save_model(model, output_dir, tokenizer)
    return model, res
