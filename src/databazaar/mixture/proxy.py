"""Proxy training runs: train a small model on a given data mixture and measure it.

A proxy run takes per-domain token quantities ``N_i``, draws that many tokens from each
domain (:func:`databazaar.lm.data.mixture_blocks`), trains a freshly initialised model
for one pass over them and returns the per-domain validation losses. Data-mixture
methods call many such independent runs; :func:`run_proxies` runs them serially, in
``joblib`` worker processes or as Ray tasks (``backend="ray"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from databazaar.core.errors import InvalidInput
from databazaar.core.progress import ProgressFn
from databazaar.lm.data import TokenizedCorpus, mixture_blocks
from databazaar.lm.model import ModelConfig, build_model
from databazaar.lm.train import TrainConfig, train_lm

BACKENDS = ("serial", "joblib", "ray")


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


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise InvalidInput(f"unknown backend {backend!r}", hint=f"use one of {', '.join(BACKENDS)}")


def run_proxies(
    data: TokenizedCorpus,
    jobs: Sequence[tuple[str, Sequence[float]]],
    config: ProxyConfig,
    *,
    seed: int = 0,
    backend: str = "joblib",
    n_jobs: int = 1,
    ray_address: str | None = None,
    progress: ProgressFn | None = None,
    keep_history: bool = False,
) -> list[ProxyResult]:
    """Run independent proxy runs ``(tag, quantities)``, all with the same ``seed``.

    ``backend``: ``"serial"`` (in this process), ``"joblib"`` (``n_jobs`` processes) or
    ``"ray"`` (one task per run with one CPU each; connects to ``ray_address`` or starts
    a local Ray with ``n_jobs`` CPUs). Results come back in the order of ``jobs``.
    """
    _check_backend(backend)
    config.validate()
    if not jobs:
        return []
    if backend == "serial" or (backend == "joblib" and n_jobs == 1):
        out = []
        for tag, q in jobs:
            out.append(run_proxy(data, q, config, seed=seed, tag=tag, keep_history=keep_history))
            if progress is not None:
                progress(1)
        return out
    if backend == "joblib":
        from joblib import Parallel, delayed

        stream = Parallel(n_jobs=n_jobs, backend="loky", return_as="generator")(
            delayed(run_proxy)(data, q, config, seed=seed, tag=tag, keep_history=keep_history)
            for tag, q in jobs
        )
        results = []
        for res in stream:  # in job order, as they finish
            results.append(res)
            if progress is not None:
                progress(1)
        return results
    return _run_ray(data, jobs, config, seed, n_jobs, ray_address, progress, keep_history)


def _run_ray(
    data: TokenizedCorpus,
    jobs: Sequence[tuple[str, Sequence[float]]],
    config: ProxyConfig,
    seed: int,
    n_jobs: int,
    ray_address: str | None,
    progress: ProgressFn | None,
    keep_history: bool,
) -> list[ProxyResult]:
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise InvalidInput(
            "backend='ray' needs Ray", hint="pip install 'databazaar[distributed]'"
        ) from exc
    if not ray.is_initialized():
        if ray_address:
            ray.init(address=ray_address, ignore_reinit_error=True)
        else:
            ray.init(
                num_cpus=max(1, n_jobs),
                include_dashboard=False,
                ignore_reinit_error=True,
                log_to_driver=False,
            )
    task = ray.remote(num_cpus=1)(run_proxy)
    data_ref = ray.put(data)
    refs = [
        task.remote(data_ref, list(q), config, seed=seed, tag=tag, keep_history=keep_history)
        for tag, q in jobs
    ]
    results = []
    for ref in refs:
        results.append(ray.get(ref))
        if progress is not None:
            progress(1)
    return results
