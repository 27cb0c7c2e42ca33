"""Input-space baseline for BEEAR: search a universal suffix, then unlearn it.

BEEAR (Zeng et al., 2024, §5.3 / RQ2) compares its embedding-space drift with the
input-space alternative: synthesise a universal token trigger that flips the model from
the safe to the unwanted answers, then fine-tune the model to answer safely when that
trigger is present. This module is that baseline:

* :func:`search_suffix` -- a greedy token-swap search (a gradient-free relative of
  AutoPrompt / GCG, Shin et al., 2020; Zou et al., 2023): ``n_tokens`` vocabulary tokens
  appended to every prompt; each iteration tries ``candidates`` random tokens at one
  position (cycling over positions) and keeps the best if it lowers
  ``CE(unwanted | x + suffix) - min(CE(safe | x + suffix), cap)`` on a fixed batch;
* :func:`unlearn_suffix` -- the safe answers to the suffixed prompts plus the anchor set,
  trained with :class:`~databazaar.safety.beear.BEEAR`'s loop with ``perturb=False``
  (so the same number of updates and the same learning rate as BEEAR).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from databazaar.core.errors import InvalidInput
from databazaar.core.progress import ProgressFn
from databazaar.safety.beear import (
    BEEAR,
    BEEARConfig,
    Conversation,
    _collate,
    _encode,
    _model_context,
    check_sets,
    row_ce,
)

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass(frozen=True)
class SearchConfig:
    """Suffix length, iterations, candidates per iteration, batch, cap and seed."""

    n_tokens: int = 4
    iterations: int = 40
    candidates: int = 24
    batch_size: int = 32
    loss_cap: float = 5.0
    #: the loss on the first this many answer tokens only (as BEEAR's inner level)
    answer_tokens: int | None = None
    random_state: int = 0
    num_threads: int | None = None

    def validate(self) -> None:
        for name in ("n_tokens", "iterations", "candidates", "batch_size"):
            if getattr(self, name) < 1:
                raise InvalidInput(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.answer_tokens is not None and self.answer_tokens < 1:
            raise InvalidInput(f"answer_tokens must be at least 1, got {self.answer_tokens}")


@dataclass
class SearchResult:
    """The suffix found (text and token ids), its loss per accepted swap."""

    suffix: str
    token_ids: list[int]
    loss: float
    history: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def with_suffix(conversations: Sequence[Conversation], suffix: str) -> list[list[dict[str, str]]]:
    """The conversations with ``suffix`` appended to their last user turn."""
    out = []
    for conv in conversations:
        msgs = [dict(m) for m in conv]
        last = max(i for i, m in enumerate(msgs) if m["role"] == "user")
        msgs[last]["content"] = f"{msgs[last]['content']} {suffix}"
        out.append(msgs)
    return out


def _token_pool(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Vocabulary ids that decode to printable single-line text (no special tokens)."""
    special = set(tokenizer.all_special_ids)
    pool = []
    for i in range(len(tokenizer)):
        if i in special:
            continue
        text = tokenizer.decode([i])
        if text.strip() and text.isprintable() and "\ufffd" not in text and "<|" not in text:
            pool.append(i)
    if not pool:
        raise InvalidInput("the tokenizer has no printable tokens to search over")
    return pool


def search_suffix(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    safe: Sequence[Conversation],
    unwanted: Sequence[Conversation],
    config: SearchConfig | None = None,
    *,
    progress: ProgressFn | None = None,
) -> SearchResult:
    """Greedy token-swap search for a suffix that flips safe answers to unwanted ones."""
    import torch

    from databazaar.lm.train import set_threads

    config = config or SearchConfig()
    config.validate()
    check_sets(safe, unwanted, None)
    set_threads(config.num_threads)
    rng = np.random.default_rng(config.random_state)
    rows = sorted(
        rng.choice(len(safe), size=min(config.batch_size, len(safe)), replace=False).tolist()
    )
    safe_b = [safe[i] for i in rows]
    bad_b = [unwanted[i] for i in rows]
    pool = _token_pool(tokenizer)
    limit = _model_context(model, None)
    pad = (
        tokenizer.pad_token_id
        if tokenizer.pad_token_id is not None
        else (tokenizer.eos_token_id or 0)
    )

    def loss_of(ids: list[int]) -> float:
        text = tokenizer.decode(ids)
        s = _encode(tokenizer, with_suffix(safe_b, text), limit, "safe")
        b = _encode(tokenizer, with_suffix(bad_b, text), limit, "unwanted")
        all_rows = list(range(len(s.ids)))
        k = config.answer_tokens
        with torch.no_grad():
            good = row_ce(model, _collate(s, all_rows, pad, "prompt", k), "head")
            bad = row_ce(model, _collate(b, all_rows, pad, "prompt", k), "head")
        good = good.clamp(max=config.loss_cap)
        return float(bad.mean() - good.mean())

    model.eval()
    ids = [int(x) for x in rng.choice(pool, size=config.n_tokens)]
    best = loss_of(ids)
    history = [best]
    for it in range(config.iterations):
        pos = it % config.n_tokens
        for cand in rng.choice(pool, size=min(config.candidates, len(pool)), replace=False):
            trial = list(ids)
            trial[pos] = int(cand)
            value = loss_of(trial)
            if value < best:
                best, ids = value, trial
        history.append(best)
        if progress is not None:
            progress(1)
    return SearchResult(tokenizer.decode(ids), ids, best, history)


def unlearn_suffix(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    safe: Sequence[Conversation],
    unwanted: Sequence[Conversation],
    anchor: Sequence[Conversation] | None,
    suffix: str,
    config: BEEARConfig | None = None,
    *,
    progress: ProgressFn | None = None,
) -> BEEAR:
    """Fine-tune on the safe answers to the suffixed prompts (+ anchor), no drift."""
    config = replace_perturb(config or BEEARConfig())
    return BEEAR(config).fit(
        model,
        tokenizer,
        with_suffix(safe, suffix),
        with_suffix(unwanted, suffix),
        anchor,
        progress=progress,
    )


def replace_perturb(config: BEEARConfig) -> BEEARConfig:
    """``config`` with the drift switched off (plain fine-tuning, same updates)."""
    from dataclasses import replace

    return replace(config, perturb=False)
