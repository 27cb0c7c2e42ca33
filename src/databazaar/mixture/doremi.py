"""DoReMi-style domain reweighting with Group DRO (baseline).

Xie et al., "DoReMi: Optimizing Data Mixtures Speeds Up Language Model Pretraining"
(NeurIPS 2023), Algorithm 1. A reference model is trained on the reference mixture.
A proxy model of the same size is then trained with Group DRO: at step ``t``, on a batch
drawn from the reference mixture, the per-domain excess loss is

    λ_t[i] = Σ_{x in domain i} Σ_j max(ℓ_θ,j(x) − ℓ_ref,j(x), 0) / #tokens of domain i,

the domain weights are updated by exponentiated gradient ascent
``α'_t = α_{t-1} ⊙ exp(η λ_t)``, ``α_t = (1 − c) α'_t / Σ α'_t + c u`` (``u`` uniform,
smoothing ``c``), and the proxy takes a step on ``Σ_i α_t[i] L_i(θ)`` (``L_i`` the mean
token loss of domain ``i`` in the batch). The returned weights are the average
``ᾱ = (1/T) Σ_t α_t``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np

from databazaar.core.errors import InvalidInput
from databazaar.core.progress import ProgressFn
from databazaar.lm.data import TokenizedCorpus, check_weights, mixture_blocks
from databazaar.lm.model import build_model
from databazaar.lm.train import (
    TrainConfig,
    batch_order,
    lr_at,
    make_optimizer,
    set_threads,
    token_losses,
    train_lm,
)
from databazaar.mixture.proxy import ProxyConfig
from databazaar.mixture.result import MixtureResult


class DoReMi:
    """Group-DRO domain reweighting against a reference model.

    Parameters:
        budget: tokens of the reference run and of the proxy run.
        reference_weights: the reference mixture (default uniform).
        step_size: ``η`` of the exponentiated-gradient update (paper: 1).
        smoothing: ``c``, mixing with uniform (paper: 1e-3).
        proxy, seed: model/optimiser and seed (the reference uses ``seed``, the proxy
            ``seed + 1``).

    Attributes after ``fit``: ``weights_``, ``trajectory_`` (α_t every step, ``[T, m]``),
    ``result_``.
    """

    def __init__(
        self,
        budget: float,
        *,
        reference_weights: Mapping[str, float] | Sequence[float] | None = None,
        step_size: float = 1.0,
        smoothing: float = 1e-3,
        proxy: ProxyConfig | None = None,
        seed: int = 0,
        progress: ProgressFn | None = None,
    ) -> None:
        self.budget = budget
        self.reference_weights = reference_weights
        self.step_size = step_size
        self.smoothing = smoothing
        self.proxy = proxy or ProxyConfig()
        self.seed = seed
        self.progress = progress

    def fit(self, data: TokenizedCorpus) -> DoReMi:
        """Train the reference model, then the Group-DRO proxy; average its weights."""
        import torch

        if not np.isfinite(self.budget) or self.budget <= 0:
            raise InvalidInput(f"budget must be a positive number of tokens, got {self.budget}")
        if not self.step_size > 0 or not 0 <= self.smoothing < 1:
            raise InvalidInput("step_size must be positive and smoothing in [0, 1)")
        m = len(data.domains)
        if m < 2:
            raise InvalidInput("a mixture needs at least 2 domains")
        r = (
            np.full(m, 1.0 / m)
            if self.reference_weights is None
            else check_weights(self.reference_weights, data.domains)
        )
        self.proxy.validate()
        cfg: TrainConfig = replace(self.proxy.train, num_threads=self.proxy.num_threads)
        blocks, labels = mixture_blocks(data, r * self.budget, seed=self.seed)
        ref_model = build_model(
            self.proxy.model,
            vocab_size=data.vocab_size,
            seed=self.seed,
            eos_token_id=data.eos_token_id,
        )
        train_lm(ref_model, blocks, config=replace(cfg, seed=self.seed))
        ref_model.eval()
        if self.progress is not None:
            self.progress(1)

        set_threads(cfg.num_threads)
        proxy_seed = self.seed + 1
        model = build_model(
            self.proxy.model,
            vocab_size=data.vocab_size,
            seed=proxy_seed,
            eos_token_id=data.eos_token_id,
        )
        pcfg = replace(cfg, seed=proxy_seed)
        steps = max(1, int(np.ceil(len(blocks) * pcfg.epochs / pcfg.batch_size)))
        if pcfg.max_steps is not None:
            steps = pcfg.max_steps
        order = batch_order(len(blocks), steps, pcfg)
        opt = make_optimizer(model, pcfg)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_at(s, steps, pcfg))
        alpha = np.full(m, 1.0 / m)
        uniform = np.full(m, 1.0 / m)
        traj = np.empty((steps, m))
        model.train()
        for step in range(steps):
            idx = order[step]
            batch = torch.from_numpy(np.ascontiguousarray(blocks[idx]))
            lab = torch.from_numpy(labels[idx])
            with torch.no_grad():
                ref_tok = token_losses(ref_model, batch)
            tok = token_losses(model, batch)
            per_seq_excess = torch.clamp(tok.detach() - ref_tok, min=0).sum(dim=1)
            n_tok = tok.size(1)
            excess = np.zeros(m)
            dom_loss = []
            for i in range(m):
                mask = lab == i
                cnt = int(mask.sum())
                if cnt:
                    excess[i] = float(per_seq_excess[mask].sum()) / (cnt * n_tok)
                    dom_loss.append((i, tok[mask].mean()))
            logits = np.log(alpha) + self.step_size * excess
            a_new = np.exp(logits - logits.max())
            alpha = (1 - self.smoothing) * a_new / a_new.sum() + self.smoothing * uniform
            traj[step] = alpha
            loss = sum(float(alpha[i]) * li for i, li in dom_loss)
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[union-attr]
            if pcfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), pcfg.grad_clip)
            opt.step()
            sched.step()
        if self.progress is not None:
            self.progress(1)
        w = traj.mean(axis=0)
        w = w / w.sum()
        self.trajectory_ = traj
        self.weights_ = dict(zip(data.domains, w.tolist(), strict=True))
        self.result_ = MixtureResult(
            method="doremi",
            weights=self.weights_,
            budget=float(self.budget),
            details={
                "reference_weights": dict(zip(data.domains, r.tolist(), strict=True)),
                "step_size": self.step_size,
                "smoothing": self.smoothing,
                "steps": steps,
                "final_alpha": dict(zip(data.domains, traj[-1].tolist(), strict=True)),
            },
        )
        return self
