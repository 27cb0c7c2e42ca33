"""Proxy training runs: train a small model on a given data mixture and measure it.

A proxy run takes per-domain token quantities ``N_i``, draws that many tokens from each
domain (:func:`databazaar.lm.data.mixture_blocks`), trains a freshly initialised model
for one pass over them and returns the per-domain validation losses. Data-mixture
methods call many such independent runs; :func:`run_proxies` runs them in this process,
in worker threads or processes, or as Ray tasks (:mod:`databazaar.core.parallel`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from databazaar.core.errors import InvalidInput
from databazaar.core.parallel import ParallelConfig
from databazaar.core.progress import ProgressFn
from databazaar.lm.data import TokenizedCorpus, mixture_blocks
from databazaar.lm.model import ModelConfig, build_model
from databazaar.lm.train import TrainConfig, train_lm


@dataclass(frozen=True)
class ProxyConfig:
    """Model size and optimisation of proxy runs (the same model at every budget).

    ``eval_blocks`` caps the validation blocks per domain; ``num_threads`` is the torch
    thread count inside each run (1 suits parallel runs on few cores).
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval_blocks: int = 64
    num_threads: int | None = 1

    def validate(self) -> None:
        self.model.validate()
        self.train.validate()
        if self.eval_blocks < 1:
            raise InvalidInput(f"eval_blocks must be at least 1, got {self.eval_blocks}")


@dataclass
class ProxyResult:
    """Outcome of one proxy run: quantities trained on and validation losses."""

    quantities: list[float]
    losses: dict[str, float]
    seed: int
    steps: int
    tag: str = ""
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def average(self) -> float:
        """Unweighted mean of the per-domain validation losses (the outer objective)."""
        return float(np.mean(list(self.losses.values())))

    def to_dict(self) -> dict[str, Any]:
        return {
            "tag": self.tag,
            "quantities": self.quantities,
            "losses": self.losses,
            "average": self.average,
            "seed": self.seed,
            "steps": self.steps,
            "history": self.history,
        }


def run_proxy(
    data: TokenizedCorpus,
    quantities: Sequence[float],
    config: ProxyConfig,
    *,
    seed: int = 0,
    tag: str = "",
    keep_history: bool = False,
) -> ProxyResult:
    """Train one proxy model on ``quantities[i]`` tokens of domain ``i`` and evaluate it.

    The model initialisation, the sampled blocks and the batch order all derive from
    ``seed``, so runs that differ only in quantities share their randomness (common random
    numbers), which lowers the noise of loss differences between them.
    """
    config.validate()
    blocks, _ = mixture_blocks(data, quantities, seed=seed)
    model = build_model(
        config.model, vocab_size=data.vocab_size, seed=seed, eos_token_id=data.eos_token_id
    )
    train_cfg = replace(config.train, seed=seed, num_threads=config.num_threads)
    res = train_lm(
        model, blocks, config=train_cfg, eval_sets=data.limit_val(config.eval_blocks).val
    )
    final = res.final
    assert final is not None
    return ProxyResult(
        quantities=[float(q) for q in quantities],
        losses=final.losses,
        seed=seed,
        steps=res.steps,
        tag=tag,
        history=[h.to_dict() for h in res.history] if keep_history else [],
    )


def _run_job(
    data: TokenizedCorpus,
    config: ProxyConfig,
    seed: int,
    keep_history: bool,
    job: tuple[str, Sequence[float]],
) -> ProxyResult:
    tag, quantities = job
    return run_proxy(data, list(quantities), config, seed=seed, tag=tag, keep_history=keep_history)


def run_proxies(
    data: TokenizedCorpus,
    jobs: Sequence[tuple[str, Sequence[float]]],
    config: ProxyConfig,
    *,
    seed: int = 0,
    backend: str = "processes",
    n_jobs: int = 1,
    ray_address: str | None = None,
    progress: ProgressFn | None = None,
    keep_history: bool = False,
) -> list[ProxyResult]:
    """Run independent proxy runs ``(tag, quantities)``, all with the same ``seed``.

    ``n_jobs``, ``backend`` (``"threads"``, ``"processes"`` or ``"ray"``) and
    ``ray_address`` are the project's one parallel setting
    (:class:`~databazaar.core.parallel.ParallelConfig`); ``n_jobs=1`` runs in this
    process.  Results come back in the order of ``jobs`` and do not depend on the setting.
    """
    parallel = ParallelConfig(n_jobs, backend, ray_address)
    config.validate()
    fn = functools.partial(_run_job, data, config, seed, keep_history)
    return parallel.map(fn, [(tag, list(q)) for tag, q in jobs], progress)
