"""The two training phases of MLAN (Tu et al., 2024, arXiv 2411.10557) on a LLaVA model.

* **Phase 1, feature alignment** (:func:`align_projector`): only the projector trains, on
  image-caption pairs in the plain pretraining format (``prompt\\ncaption<eos>``, loss on
  the caption), everything else frozen; MLAN uses lr 1e-3 for one epoch.
* **Phase 2, instruction tuning** (:func:`instruction_tune`): the language model and the
  projector train, the vision tower stays frozen, on chat-formatted instructions (loss
  on the assistant answer only) that are text-only, vision-language, or a mixture at a
  chosen vision ratio (:func:`~databazaar.alignment.multimodal.data.mix_examples`);
  MLAN's mixtures are 80k text-only, 70k text + 10k vision (88/12) and 40k + 40k.

Both run the same loop (:func:`train_examples`): seeded batch order, AdamW with the
warm-up/cosine schedule of :mod:`databazaar.lm.train`, gradient clipping, and **token
accounting**: the text tokens and image tokens of every sequence trained on (padding
excluded), the measure of training cost MLAN compares (an image costs
:func:`~databazaar.alignment.multimodal.model.image_tokens` tokens of the LLM's context).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from databazaar.alignment.multimodal.data import MMExample, encode_example
from databazaar.alignment.multimodal.model import image_tokens, set_trainable
from databazaar.core.errors import InvalidInput
from databazaar.core.progress import ProgressFn

PHASES = {"align": ("projector",), "instruct": ("projector", "language_model")}


@dataclass(frozen=True)
class TuneConfig:
    """Optimisation settings of one phase. ``max_steps`` (if set) overrides ``epochs``."""

    lr: float = 1e-3
    batch_size: int = 32
    epochs: float = 1.0
    max_steps: int | None = None
    warmup_fraction: float = 0.03
    weight_decay: float = 0.0
    random_state: int = 0
    num_threads: int | None = None

    def validate(self) -> None:
        """Raise :class:`InvalidInput` for settings that cannot work."""
        if not self.lr > 0 or not np.isfinite(self.lr):
            raise InvalidInput(f"lr must be a positive number, got {self.lr}")
        if self.batch_size < 1:
            raise InvalidInput(f"batch_size must be at least 1, got {self.batch_size}")
        if not self.epochs > 0:
            raise InvalidInput(f"epochs must be positive, got {self.epochs}")
        if self.max_steps is not None and self.max_steps < 1:
            raise InvalidInput(f"max_steps must be at least 1, got {self.max_steps}")
        if not 0 <= self.warmup_fraction < 1:
            raise InvalidInput(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TuneResult:
    """What a phase did: steps, examples, tokens seen, losses, seconds."""

    phase: str
    steps: int
    n_examples: int
    n_text_examples: int
    n_vision_examples: int
    text_tokens: int = 0
    image_tokens: int = 0
    trainable_parameters: int = 0
    train_loss: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def tokens(self) -> int:
        """All tokens trained on: text plus image positions."""
        return self.text_tokens + self.image_tokens

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"tokens": self.tokens}


def _batch(rows: Sequence[Any], pixels: Sequence[Any], pad_id: int) -> dict[str, Any]:
    """Right-padded ids, attention mask, labels (-100 off the loss mask) and pixels."""
    import torch

    width = max(len(r.input_ids) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    att = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, r in enumerate(rows):
        n = len(r.input_ids)
        ids[i, :n] = torch.tensor(r.input_ids)
        att[i, :n] = 1
        keep = torch.tensor(r.loss_mask, dtype=torch.bool)
        labels[i, :n] = torch.where(keep, ids[i, :n], torch.tensor(-100))
    out = {"input_ids": ids, "attention_mask": att, "labels": labels}
    if pixels:
        out["pixel_values"] = torch.stack(list(pixels))
    return out


def train_examples(
    model: Any,
    processor: Any,
    examples: Sequence[MMExample],
    *,
    phase: str,
    config: TuneConfig | None = None,
    progress: ProgressFn | None = None,
) -> TuneResult:
    """Train the parts of ``phase`` (``align``: projector; ``instruct``: projector and LM)
    of ``model`` in place on ``examples``; everything else is frozen and stays bit-identical.

    ``align`` uses the plain format, ``instruct`` the chat template. Every example is
    encoded (and its image preprocessed) before the first step.
    """
    import torch

    from databazaar.lm.train import TrainConfig, lr_at, make_optimizer, set_threads

    if phase not in PHASES:
        raise InvalidInput(f"unknown phase {phase!r}", hint=f"use one of {', '.join(PHASES)}")
    config = config or TuneConfig()
    config.validate()
    if not examples:
        raise InvalidInput("no training examples")
    if phase == "align" and not all(e.has_image for e in examples):
        raise InvalidInput("phase 1 (projector alignment) needs an image in every example")
    tok = processor.tokenizer
    ctx = int(model.config.text_config.max_position_embeddings)
    n_img = image_tokens(model)
    encoded = [
        encode_example(tok, e, n_image_tokens=n_img, chat=phase == "instruct", max_length=ctx)
        for e in examples
    ]
    images = [e.image for e in examples if e.image is not None]
    pixel_rows: list[Any] = []
    if images:
        pv = processor.image_processor(images, return_tensors="pt")["pixel_values"]
        pixel_rows = list(pv)
    pixel_of: dict[int, Any] = {}
    k = 0
    for i, e in enumerate(examples):
        if e.has_image:
            pixel_of[i] = pixel_rows[k]
            k += 1
    set_threads(config.num_threads)
    trainable = set_trainable(model, PHASES[phase])
    n = len(examples)
    steps = config.max_steps or max(1, int(np.ceil(n * config.epochs / config.batch_size)))
    rng = np.random.default_rng(config.random_state)
    need = steps * config.batch_size
    order = np.concatenate([rng.permutation(n) for _ in range(-(-need // n))])[:need]
    tc = TrainConfig(
        lr=config.lr,
        batch_size=config.batch_size,
        weight_decay=config.weight_decay,
        warmup_fraction=config.warmup_fraction,
        max_steps=steps,
    )
    optimizer = make_optimizer(model, tc)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_at(s, steps, tc))
    params = [p for p in model.parameters() if p.requires_grad]
    torch.manual_seed(config.random_state)
    n_vision = sum(e.has_image for e in examples)
    result = TuneResult(phase, steps, n, n - n_vision, n_vision, trainable_parameters=trainable)
    t0 = time.perf_counter()
    model.train()
    for step in range(steps):
        idx = [int(i) for i in order[step * config.batch_size : (step + 1) * config.batch_size]]
        rows = [encoded[i] for i in idx]
        batch = _batch(rows, [pixel_of[i] for i in idx if i in pixel_of], tok.pad_token_id)
        loss = model(**batch, use_cache=False).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        result.train_loss.append(float(loss.detach()))
        for r in rows:
            result.image_tokens += r.n_image_tokens
            result.text_tokens += len(r.input_ids) - r.n_image_tokens
        if progress is not None:
            progress(1)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(True)
    result.seconds = time.perf_counter() - t0
    return result


def align_projector(
    model: Any,
    processor: Any,
    captions: Sequence[MMExample],
    *,
    config: TuneConfig | None = None,
    progress: ProgressFn | None = None,
) -> TuneResult:
    """Phase 1: train the projector on image-caption pairs (lr 1e-3 by default)."""
    return train_examples(
        model, processor, captions, phase="align", config=config, progress=progress
    )


def instruction_tune(
    model: Any,
    processor: Any,
    examples: Sequence[MMExample],
    *,
    config: TuneConfig | None = None,
    progress: ProgressFn | None = None,
) -> TuneResult:
    """Phase 2: train the LM and projector on chat instructions (vision tower frozen)."""
    return train_examples(
        model, processor, examples, phase="instruct", config=config, progress=progress
    )


def save_tuned(
    model: Any, processor: Any, out: str | Path, result: TuneResult, **meta: Any
) -> Path:
    """Write the model folder atomically (all or nothing) with ``multimodal.json``:
    the phase's token accounting and ``meta`` (e.g. the data mixture)."""
    from databazaar.alignment.multimodal.model import save_multimodal
    from databazaar.core.io import staged_dir

    history = list(meta.pop("history", []))
    record = {"result": result.to_dict(), **meta}
    with staged_dir(out) as tmp:
        save_multimodal(model, processor, tmp, history=[*history, record])
    return Path(out)
