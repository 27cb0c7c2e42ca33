"""A small, deterministic CPU training loop for causal language models.

Training minimises the mean next-token cross-entropy over packed token blocks with AdamW
(Loshchilov & Hutter, 2019), linear warm-up and cosine decay of the learning rate, and
gradient-norm clipping. Validation loss is measured per domain (mean token
cross-entropy over that domain's held-out blocks) at fixed step intervals, which is
what data-mixture methods compare. With dropout 0 the result is a deterministic
function of the seed: the seed fixes the initialisation (see
:func:`databazaar.lm.model.build_model`) and the data order. Checkpoints hold the model,
optimizer and scheduler so a run resumed from one continues exactly.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from databazaar.core.errors import InvalidInput, NotFound
from databazaar.core.progress import ProgressFn

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings. ``max_steps`` (if set) overrides ``epochs``."""

    batch_size: int = 16
    lr: float = 3e-3
    weight_decay: float = 0.01
    warmup_fraction: float = 0.05
    min_lr_ratio: float = 0.1
    epochs: float = 1.0
    max_steps: int | None = None
    grad_clip: float = 1.0
    eval_every: int | None = None
    eval_batch_size: int = 64
    seed: int = 0
    num_threads: int | None = None
    checkpoint_dir: str | None = None
    checkpoint_every: int | None = None

    def validate(self) -> None:
        """Raise :class:`InvalidInput` for settings that cannot work."""
        if self.batch_size < 1 or self.eval_batch_size < 1:
            raise InvalidInput("batch sizes must be at least 1")
        if not self.lr > 0:
            raise InvalidInput(f"lr must be positive, got {self.lr}")
        if self.max_steps is not None and self.max_steps < 1:
            raise InvalidInput(f"max_steps must be at least 1, got {self.max_steps}")
        if not self.epochs > 0:
            raise InvalidInput(f"epochs must be positive, got {self.epochs}")
        if not 0 <= self.warmup_fraction < 1 or not 0 <= self.min_lr_ratio <= 1:
            raise InvalidInput("warmup_fraction must be in [0, 1) and min_lr_ratio in [0, 1]")
        for name in ("eval_every", "checkpoint_every", "num_threads"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise InvalidInput(f"{name} must be at least 1, got {v}")


@dataclass
class EvalRecord:
    """Validation losses after ``step`` optimizer steps (``tokens`` trained tokens)."""

    step: int
    tokens: int
    losses: dict[str, float]

    @property
    def average(self) -> float:
        """Unweighted mean of the per-domain validation losses."""
        return float(np.mean(list(self.losses.values()))) if self.losses else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "average": self.average}


@dataclass
class TrainResult:
    """What a training run produced: the eval history and the per-step training loss."""

    steps: int
    tokens: int
    history: list[EvalRecord] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def final(self) -> EvalRecord | None:
        """The last evaluation (at the final step when evaluation sets were given)."""
        return self.history[-1] if self.history else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "tokens": self.tokens,
            "seconds": self.seconds,
            "history": [h.to_dict() for h in self.history],
            "train_loss": self.train_loss,
        }


def set_threads(n: int | None) -> None:
    """Set torch's intra-op threads (leave unchanged for ``None``)."""
    import torch

    if n is not None:
        torch.set_num_threads(int(n))


def token_losses(model: PreTrainedModel, batch: torch.Tensor) -> torch.Tensor:
    """Per-token next-token cross-entropy, shape ``[batch, block_size - 1]``."""
    import torch.nn.functional as F

    logits = model(input_ids=batch).logits[:, :-1, :]
    target = batch[:, 1:]
    return F.cross_entropy(
        logits.reshape(-1, logits.size(-1)), target.reshape(-1), reduction="none"
    ).view(target.shape)


def evaluate_domains(
    model: PreTrainedModel, eval_sets: Mapping[str, np.ndarray], *, batch_size: int = 64
) -> dict[str, float]:
    """Mean next-token cross-entropy (nats/token) of ``model`` on each domain's blocks."""
    import torch

    was_training = model.training
    model.eval()
    out: dict[str, float] = {}
    with torch.no_grad():
        for name, blocks in eval_sets.items():
            if len(blocks) == 0:
                raise InvalidInput(f"evaluation set {name!r} is empty")
            total, count = 0.0, 0
            for start in range(0, len(blocks), batch_size):
                batch = torch.from_numpy(np.ascontiguousarray(blocks[start : start + batch_size]))
                losses = token_losses(model, batch)
                total += float(losses.sum())
                count += losses.numel()
            out[name] = total / count
    model.train(was_training)
    return out


def lr_at(step: int, total: int, config: TrainConfig) -> float:
    """Learning-rate multiplier: linear warm-up, then cosine decay to ``min_lr_ratio``."""
    warm = max(1, int(config.warmup_fraction * total)) if config.warmup_fraction > 0 else 0
    if step < warm:
        return (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    cos = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return config.min_lr_ratio + (1.0 - config.min_lr_ratio) * cos


def total_steps(n_blocks: int, config: TrainConfig) -> int:
    """Optimizer steps of a run over ``n_blocks`` training blocks."""
    if config.max_steps is not None:
        return config.max_steps
    return max(1, math.ceil(n_blocks * config.epochs / config.batch_size))


def batch_order(
    n_blocks: int, steps: int, config: TrainConfig, groups: np.ndarray | None = None
) -> np.ndarray:
    """Indices of the blocks of every step, ``[steps, batch_size]``, from ``config.seed``.

    Each pass over the data is a fresh permutation; the order depends only on the seed.
    With ``groups`` (one label per block) every batch is drawn from one group, the groups
    taking turns step by step, each read in its own fresh permutations.
    """
    rng = np.random.default_rng(config.seed)
    if groups is None:
        need = steps * config.batch_size
        passes = -(-need // n_blocks)
        order = np.concatenate([rng.permutation(n_blocks) for _ in range(passes)])[:need]
        return order.reshape(steps, config.batch_size)
    groups = np.asarray(groups)
    if groups.shape != (n_blocks,):
        raise InvalidInput(f"groups must hold one label per block ({n_blocks})")
    labels = np.unique(groups)
    out = np.empty((steps, config.batch_size), dtype=np.int64)
    for k, label in enumerate(labels):
        rows = np.flatnonzero(groups == label)
        mine = range(k, steps, len(labels))
        need = len(mine) * config.batch_size
        passes = max(1, -(-need // len(rows)))
        stream = np.concatenate([rows[rng.permutation(len(rows))] for _ in range(passes)])
        out[mine.start : steps : len(labels)] = stream[:need].reshape(-1, config.batch_size)
    return out


def _last_target_columns(loss_mask: np.ndarray) -> np.ndarray:
    """Per row, the last column the mask marks (every row marks one: checked before)."""
    width = loss_mask.shape[1]
    return width - 1 - np.argmax(loss_mask[:, ::-1] != 0, axis=1)


def make_optimizer(model: PreTrainedModel, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW with weight decay on matrices only (not on biases, norms or embeddings' bias)."""
    import torch

    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 else no_decay).append(p)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.95))


def train_lm(
    model: PreTrainedModel,
    blocks: np.ndarray,
    *,
    config: TrainConfig | None = None,
    eval_sets: Mapping[str, np.ndarray] | None = None,
    progress: ProgressFn | None = None,
    on_eval: Callable[[EvalRecord], None] | None = None,
    resume_from: str | Path | None = None,
    loss_mask: np.ndarray | None = None,
    groups: np.ndarray | None = None,
) -> TrainResult:
    """Train ``model`` in place on token ``blocks`` (``[n, block_size]`` int array).

    ``loss_mask`` (same shape, 0/1) keeps the loss of the tokens marked 1 only (as
    prediction targets; the first column is never a target), e.g. the answer of a drill.
    Each batch is then cut after its last target column (exact for a causal model: later
    tokens cannot change earlier predictions), so short rows padded to a long block do
    not cost the long block's compute. ``groups`` (one label per block) makes every
    batch come from one group, the groups taking turns (:func:`batch_order`).

    Evaluates on ``eval_sets`` (domain -> blocks) every ``eval_every`` steps and at the
    end; calls ``progress(1)`` after every step. With ``checkpoint_dir`` set, saves
    ``checkpoint-<step>`` folders every ``checkpoint_every`` steps and at the end.
    ``resume_from`` continues a run from such a folder (same blocks and config).
    """
    import torch

    config = config or TrainConfig()
    config.validate()
    blocks = np.asarray(blocks)
    if blocks.ndim != 2 or len(blocks) == 0:
        raise InvalidInput("training blocks must be a non-empty [n, block_size] array")
    if loss_mask is not None:
        loss_mask = np.asarray(loss_mask)
        if loss_mask.shape != blocks.shape or not loss_mask[:, 1:].any(axis=1).all():
            raise InvalidInput(
                "loss_mask must have the blocks' shape and mark a target in each row"
            )
    n_pos = getattr(model.config, "n_positions", None)
    if n_pos is not None and blocks.shape[1] > n_pos:
        raise InvalidInput(f"blocks of {blocks.shape[1]} tokens exceed the model context ({n_pos})")
    set_threads(config.num_threads)
    steps = total_steps(len(blocks), config)
    order = batch_order(len(blocks), steps, config, groups)
    last_target = None if loss_mask is None else _last_target_columns(loss_mask)
    optimizer = make_optimizer(model, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_at(s, steps, config))
    result = TrainResult(steps=steps, tokens=0)
    start = 0
    if resume_from is not None:
        start, result = _load_checkpoint(Path(resume_from), model, optimizer, scheduler)
        result.steps = steps
    t0 = time.perf_counter()
    model.train()
    block_size = blocks.shape[1]
    for step in range(start, steps):
        rows = order[step]
        if last_target is None:
            batch = torch.from_numpy(np.ascontiguousarray(blocks[rows]))
            loss = token_losses(model, batch).mean()
        else:
            width = int(last_target[rows].max()) + 1
            batch = torch.from_numpy(np.ascontiguousarray(blocks[rows, :width]))
            keep = torch.from_numpy(np.ascontiguousarray(loss_mask[rows, 1:width])).float()
            loss = (token_losses(model, batch) * keep).sum() / keep.sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        scheduler.step()
        done = step + 1
        result.train_loss.append(float(loss.detach()))
        result.tokens = done * config.batch_size * block_size
        if eval_sets and ((config.eval_every and done % config.eval_every == 0) or done == steps):
            rec = EvalRecord(
                step=done,
                tokens=result.tokens,
                losses=evaluate_domains(model, eval_sets, batch_size=config.eval_batch_size),
            )
            result.history.append(rec)
            if on_eval is not None:
                on_eval(rec)
        if config.checkpoint_dir and (
            (config.checkpoint_every and done % config.checkpoint_every == 0) or done == steps
        ):
            _save_checkpoint(
                Path(config.checkpoint_dir) / f"checkpoint-{done}",
                model,
                optimizer,
                scheduler,
                done,
                result,
            )
        if progress is not None:
            progress(1)
    model.eval()
    result.seconds += time.perf_counter() - t0
    return result


def _save_checkpoint(
    folder: Path,
    model: PreTrainedModel,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    step: int,
    result: TrainResult,
) -> None:
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder))
    torch.save(
        {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()},
        folder / "trainer_state.pt",
    )
    (folder / "trainer_state.json").write_text(
        json.dumps({"step": step, "result": result.to_dict()}, indent=1)
    )


def _load_checkpoint(
    folder: Path, model: PreTrainedModel, optimizer: torch.optim.Optimizer, scheduler: Any
) -> tuple[int, TrainResult]:
    import torch
    from safetensors.torch import load_file

    if not folder.is_dir():
        raise NotFound(f"checkpoint folder not found: {folder}")
    state_json = folder / "trainer_state.json"
    weights = folder / "model.safetensors"
    if not state_json.is_file() or not weights.is_file():
        raise InvalidInput(f"{folder} is not a training checkpoint")
    missing, _ = model.load_state_dict(load_file(str(weights)), strict=False)
    if any("lm_head" not in k for k in missing):
        raise InvalidInput(f"checkpoint {folder} does not match the model: missing {missing}")
    if hasattr(model, "tie_weights"):
        model.tie_weights()
    st = torch.load(folder / "trainer_state.pt", weights_only=True)
    optimizer.load_state_dict(st["optimizer"])
    scheduler.load_state_dict(st["scheduler"])
    meta = json.loads(state_json.read_text())
    raw = meta["result"]
    result = TrainResult(
        steps=raw["steps"],
        tokens=raw["tokens"],
        history=[
            EvalRecord(step=h["step"], tokens=h["tokens"], losses=h["losses"])
            for h in raw["history"]
        ],
        train_loss=list(raw["train_loss"]),
        seconds=raw["seconds"],
    )
    return int(meta["step"]), result
