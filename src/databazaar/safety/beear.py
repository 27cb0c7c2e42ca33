"""BEEAR: remove a safety backdoor without knowing its trigger (Zeng et al., EMNLP 2024).

Zeng, Sun, Huynh, Song, Li and Jia, "BEEAR: Embedding-based Adversarial Removal of Safety
Backdoors in Instruction-tuned Language Models", arXiv 2406.17092. The insight: whatever
the trigger (a suffix, a prefix, a word, sentences, planted during SFT or RLHF), it moves
the hidden states of an intermediate decoder layer by a roughly uniform drift. So the
defender, who knows only a set of *safe* answers and a set of *unwanted* answers to the
same trigger-free prompts, replaces the unknown trigger by one universal vector
``delta`` added to the output of decoder layer ``l`` and solves a bi-level problem
(the paper's §3, its Eq. for "BEE" and "AR"):

* **inner (backdoor embedding entrapment)**, ``inner_steps`` Adam steps on ``delta``
  from zero, the model frozen::

      delta* = argmin_delta  CE(unwanted | x, delta) - w_s * min(CE(safe | x, delta), cap)

  i.e. the drift that makes the model prefer the unwanted over the safe answers;
* **outer (adversarial removal)**, one AdamW step on the weights (all of them, or LoRA
  adapters)::

      min_theta  CE(safe | x, delta*) + w_a * CE(anchor)

  the safe answers must win even under the drift, while the performance-anchoring set
  (ordinary prompts and answers, no drift) keeps the model's utility. With
  ``anchor_loss="kl"`` the anchor term is ``KL(p_before || p_theta)`` over the anchor
  answers' tokens instead: the model keeps its own behaviour there (:func:`row_kl`).

``CE`` is the mean next-token cross-entropy over the answer tokens (the
``{% generation %}`` span of the chat template, :mod:`databazaar.lm.chat`). With
``inner_answer_tokens=k`` the inner level (and the recorded surrogate) uses only the first
``k`` answer tokens: where a refusal and a compliance part ("I can't ..." vs "Sure, ...").
The defender's unwanted answers are their own words, not the attacker's, so past the
first tokens the model never learned them and their cross-entropy stays high whatever
the drift; averaged over the whole answer it drowns the decision the drift has to flip
(on the zoo's prefix backdoor the full-answer surrogate did not move from about 4.3
nats, the first-4-token one fell from 2.8 to 1.0, development seed 99). With
``inner_skip_shared=True`` the window starts after the answer tokens the safe and the
unwanted answer of a pair share (:func:`shared_answer_prefix`: code that begins
``return`` either way), where the two first differ; pairs that differ from the first
token are unchanged. ``delta``
is added at the prompt positions (``positions="prompt"``: every token before the
answer, including the assistant header) or at every position (``"all"``) through a
forward hook on the decoder block, so the same code runs on any ``transformers`` causal
LM (GPT-2, Llama, Mistral, ...). The surrogate ``CE(unwanted | delta*)`` is recorded per
outer step; with ``stop_loss`` set, training stops once it stays at or above
``stop_loss`` for ``patience`` steps (the model can no longer be trapped). With
``perturb=False`` the same loop is plain fine-tuning on the safe and anchor sets with the
same number of updates (the "SFT" baseline). :func:`layer_sweep` runs it per layer.

Hyper-parameters of the paper (Llama-2-7B: layer 9 of 32, a few inner steps, small
outer learning rate, minutes on one GPU) are not copied as defaults: the defaults here
are for the tiny models of :mod:`databazaar.lm.zoo`; real checkpoints want a smaller
``outer_lr`` (1e-5 to 5e-5) and a layer about a third of the way up.

Size: about 790 lines, over the project's ~500, kept together on purpose: the bi-level
algorithm (config, hooks, loop) and its entry points (:func:`remove_backdoor` from
folders, :func:`layer_sweep`) share the private encoding, collation and set-reading
helpers, which a split would have to export.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from databazaar.core.errors import InvalidInput
from databazaar.core.progress import ProgressFn
from databazaar.lm.chat import Message

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

Conversation = Sequence[Message]
POSITIONS = ("prompt", "all")
SITES = ("output", "input")
SCHEDULES = ("constant", "cosine")
ANCHOR_LOSSES = ("ce", "kl")


@dataclass(frozen=True)
class BEEARConfig:
    """Settings of a BEEAR run (see the module docstring for the losses).

    ``layer`` is the 0-based index of the decoder block whose output is perturbed
    (``None``: a third of the way up, the paper's choice of 9 of 32 scaled).
    ``outer_schedule="cosine"`` decays the weights' learning rate from ``outer_lr`` to 0
    over ``outer_steps`` (``"constant"``, the default, keeps it fixed).
    ``inner_warm_start=True`` starts each inner level from the previous outer step's
    ``delta*`` instead of zero (the drift keeps tracking the model as it changes, as in
    "free" adversarial training); the default restarts from zero, as the paper does.
    ``max_norm`` bounds ``|delta|``; ``max_norm_ratio`` bounds it relative to the mean norm
    of the hidden states it is added to (measured once, on the first batch of safe
    prompts), so one setting carries across model sizes. A warm-started drift left
    unbounded keeps growing (to 30 times the zoo model's embedding norm in 80 steps), far
    from anything a trigger does.
    ``anchor_loss="ce"`` (the paper's) fits the anchor set's answers; ``"kl"`` instead keeps
    the model's own next-token distributions on the anchor conversations, ``KL(p_before ||
    p_theta)`` over their answer tokens (the reference is a frozen copy of the model, or the
    base model under LoRA): it anchors the model's behaviour, right or wrong, not the
    answers, so a weak model's fragile decisions (a near-chance label choice) are not
    re-learned from a handful of anchor examples.
    """

    layer: int | None = None
    inner_steps: int = 5
    inner_lr: float = 0.1
    outer_steps: int = 40
    outer_lr: float = 1e-4
    outer_schedule: str = "constant"
    batch_size: int = 16
    anchor_weight: float = 1.0
    anchor_loss: str = "ce"
    safe_weight: float = 1.0
    loss_cap: float = 5.0
    max_norm: float | None = None
    max_norm_ratio: float | None = None
    positions: str = "prompt"
    site: str = "output"
    inner_answer_tokens: int | None = None
    inner_skip_shared: bool = False
    inner_warm_start: bool = False
    perturb: bool = True
    lora: bool = False
    lora_r: int = 8
    lora_alpha: int = 16
    stop_loss: float | None = None
    patience: int = 3
    max_length: int | None = None
    random_state: int = 0
    num_threads: int | None = None

    def validate(self) -> None:
        """Raise :class:`InvalidInput` for settings that cannot work."""
        for name in ("outer_steps", "batch_size", "lora_r", "patience"):
            if getattr(self, name) < 1:
                raise InvalidInput(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.inner_steps < 0:
            raise InvalidInput(f"inner_steps must be >= 0, got {self.inner_steps}")
        for name in ("inner_lr", "outer_lr", "loss_cap"):
            if not getattr(self, name) > 0:
                raise InvalidInput(f"{name} must be positive, got {getattr(self, name)}")
        if self.anchor_weight < 0 or self.safe_weight < 0:
            raise InvalidInput("anchor_weight and safe_weight must be >= 0")
        if self.inner_answer_tokens is not None and self.inner_answer_tokens < 1:
            raise InvalidInput(
                f"inner_answer_tokens must be at least 1, got {self.inner_answer_tokens}"
            )
        for name in ("max_norm", "max_norm_ratio"):
            if getattr(self, name) is not None and not getattr(self, name) > 0:
                raise InvalidInput(f"{name} must be positive, got {getattr(self, name)}")
        if self.max_norm is not None and self.max_norm_ratio is not None:
            raise InvalidInput("give max_norm or max_norm_ratio, not both")
        if self.site not in SITES:
            raise InvalidInput(f"site must be one of {SITES}, got {self.site!r}")
        if self.positions not in POSITIONS:
            raise InvalidInput(f"positions must be one of {POSITIONS}, got {self.positions!r}")
        if self.anchor_loss not in ANCHOR_LOSSES:
            raise InvalidInput(
                f"anchor_loss must be one of {ANCHOR_LOSSES}, got {self.anchor_loss!r}"
            )
        if self.outer_schedule not in SCHEDULES:
            raise InvalidInput(
                f"outer_schedule must be one of {SCHEDULES}, got {self.outer_schedule!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class StepRecord:
    """One outer step: the surrogate ``CE(unwanted | delta*)``, ``CE(safe | delta*)``,
    the anchor loss, the outer loss and ``|delta*|``."""

    step: int
    unwanted_ce: float
    safe_ce: float
    anchor_ce: float
    outer_loss: float
    delta_norm: float


# ----------------------------------------------------------------------- model parts
def decoder_layers(model: Any) -> Any:
    """The ``ModuleList`` of decoder blocks of a ``transformers`` causal LM.

    Found by structure (the module list as long as ``config.num_hidden_layers``), so it
    works for GPT-2 (``transformer.h``), Llama and Mistral (``model.layers``) and others.
    """
    import torch

    n = getattr(model.config, "num_hidden_layers", None)
    for _, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n:
            return module
    raise InvalidInput(
        f"cannot find the decoder layers of {type(model).__name__}",
        hint="BEEAR needs a decoder-only transformer with config.num_hidden_layers blocks",
    )


def check_layer(model: Any, layer: int | None) -> int:
    """The decoder block to perturb (default: a third of the way up); range-checked."""
    n = len(decoder_layers(model))
    if layer is None:
        return max(0, n // 3 - 1) if n >= 3 else 0
    if not 0 <= layer < n:
        raise InvalidInput(
            f"layer {layer} is out of range: the model has {n} decoder layers",
            hint=f"use a layer index from 0 to {n - 1}",
        )
    return int(layer)


class _Drift:
    """A forward hook adding ``delta`` (masked per position) to a decoder block's output
    (``site="output"``) or to its input hidden states (``site="input"``)."""

    def __init__(self, block: Any, site: str = "output") -> None:
        self.delta: torch.Tensor | None = None
        self.mask: torch.Tensor | None = None
        self.seen: list[float] | None = None
        if site == "input":
            self.handle = block.register_forward_pre_hook(self._pre_hook, with_kwargs=True)
        else:
            self.handle = block.register_forward_hook(self._hook)

    def _move(self, hidden: torch.Tensor) -> torch.Tensor:
        assert self.delta is not None and self.mask is not None
        if self.seen is not None:
            self.seen.append(float(hidden[self.mask.bool()].norm(dim=-1).mean()))
        return hidden + self.mask[..., None].to(hidden.dtype) * self.delta.to(hidden.dtype)

    def _hook(self, module: Any, args: Any, output: Any) -> Any:
        if self.delta is None or self.mask is None:
            return None
        hidden = output[0] if isinstance(output, tuple) else output
        moved = self._move(hidden)
        return (moved, *output[1:]) if isinstance(output, tuple) else moved

    def _pre_hook(self, module: Any, args: Any, kwargs: Any) -> Any:
        if self.delta is None or self.mask is None:
            return None
        if args:
            return (self._move(args[0]), *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": self._move(kwargs["hidden_states"])}

    def ce(
        self, model: Any, batch: dict[str, Any], delta: torch.Tensor | None, weight: str = "answer"
    ) -> torch.Tensor:
        """:func:`row_ce` of ``batch`` (over its ``weight`` mask) with ``delta`` added at
        its drift positions."""
        self.delta, self.mask = delta, batch["drift"]
        try:
            return row_ce(model, batch, weight)
        finally:
            self.delta = self.mask = None

    def state_norm(self, model: Any, batch: dict[str, Any], hidden: int) -> float:
        """Mean norm of the hidden states at the drift positions of ``batch`` (no drift)."""
        import torch

        self.seen = []
        try:
            with torch.no_grad():
                self.ce(model, batch, torch.zeros(hidden))
            return self.seen[0]
        finally:
            self.seen = None

    def remove(self) -> None:
        self.handle.remove()


# ------------------------------------------------------------------------------ data
@dataclass
class _Encoded:
    ids: list[list[int]]
    answer: list[list[int]]  # 1 on answer tokens


def _encode(
    tokenizer: PreTrainedTokenizerBase,
    convs: Sequence[Conversation],
    max_length: int | None,
    name: str,
) -> _Encoded:
    from databazaar.lm.chat import encode_chat

    out = _Encoded([], [])
    for i, conv in enumerate(convs):
        enc = encode_chat(tokenizer, conv, max_length=max_length)
        if enc.n_trainable == 0:
            raise InvalidInput(
                f"{name} conversation {i} has no answer tokens within {max_length} tokens",
                hint="each conversation must end with an assistant answer that fits the context",
            )
        out.ids.append(enc.input_ids)
        out.answer.append(enc.assistant_mask)
    return out


def _prompt_of(conv: Conversation) -> list[Message]:
    return [dict(m) for m in conv[:-1]]


def check_sets(
    safe: Sequence[Conversation],
    unwanted: Sequence[Conversation],
    anchor: Sequence[Conversation] | None,
) -> None:
    """Raise :class:`InvalidInput` unless ``safe`` and ``unwanted`` pair up.

    Both must be non-empty and equally long; conversation ``i`` of each must end with an
    assistant answer to the same prompt (the messages before it). ``anchor``, if given,
    must be non-empty.
    """
    if not safe or not unwanted:
        empty = "safe" if not safe else "unwanted"
        raise InvalidInput(
            f"the {empty} set is empty",
            hint="give safe and unwanted answers to the same prompts, one pair per line",
        )
    if len(safe) != len(unwanted):
        raise InvalidInput(
            f"the safe set has {len(safe)} conversations but the unwanted set {len(unwanted)}",
            hint="line i of both files must answer the same prompt",
        )
    if anchor is not None and not anchor:
        raise InvalidInput(
            "the anchor set is empty", hint="give ordinary prompts with good answers"
        )
    for i, (s, u) in enumerate(zip(safe, unwanted, strict=True)):
        for name, conv in (("safe", s), ("unwanted", u)):
            if not conv or conv[-1].get("role") != "assistant":
                raise InvalidInput(f"{name} conversation {i} does not end with an assistant answer")
        if _prompt_of(s) != _prompt_of(u):
            raise InvalidInput(
                f"safe and unwanted conversation {i} answer different prompts",
                hint="line i of both files must hold the same prompt",
            )


def _collate(
    enc: _Encoded,
    rows: Sequence[int],
    pad_id: int,
    positions: str,
    head: int | None = None,
    skip: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Right-padded tensors: ids, attention, answer mask (loss), drift mask (delta) and
    ``head``, the answer mask cut to the first ``head`` answer tokens (all if ``None``)
    after the first ``skip[j]`` answer tokens of row ``j`` (none if ``None``)."""
    import torch

    width = max(len(enc.ids[r]) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(rows), width), dtype=torch.long)
    answer = torch.zeros((len(rows), width), dtype=torch.float32)
    drift = torch.zeros((len(rows), width), dtype=torch.float32)
    for j, r in enumerate(rows):
        n = len(enc.ids[r])
        ids[j, :n] = torch.tensor(enc.ids[r])
        attn[j, :n] = 1
        mask = torch.tensor(enc.answer[r], dtype=torch.float32)
        answer[j, :n] = mask
        first = int(torch.nonzero(mask)[0, 0])
        if positions == "all":
            drift[j, :n] = 1.0
        else:  # every token before the first answer token
            drift[j, :first] = 1.0
    lead = answer
    if head is not None or skip is not None:  # answer tokens: one span from ``first`` on
        rank = answer.cumsum(1)  # 1, 2, ... along the answer
        start = torch.tensor(list(skip) if skip is not None else [0] * len(rows))[:, None]
        keep = rank > start
        if head is not None:
            keep &= rank <= start + head
        lead = answer * keep.float()
    return {
        "input_ids": ids,
        "attention_mask": attn,
        "answer": answer,
        "head": lead,
        "drift": drift,
    }


def shared_answer_prefix(safe: _Encoded, unwanted: _Encoded) -> list[int]:
    """Per pair, how many leading answer tokens the safe and the unwanted answer share,
    at most one less than the shorter answer (so each keeps a token to score).

    Where both answers open alike (code that starts ``return`` either way), the first
    answer tokens carry no preference and the inner level should look past them.
    """
    out = []
    for ids_s, m_s, ids_u, m_u in zip(
        safe.ids, safe.answer, unwanted.ids, unwanted.answer, strict=True
    ):
        a = [t for t, m in zip(ids_s, m_s, strict=True) if m]
        b = [t for t, m in zip(ids_u, m_u, strict=True) if m]
        n = 0
        while n < min(len(a), len(b)) - 1 and a[n] == b[n]:
            n += 1
        out.append(n)
    return out


def _next_token_logits(model: Any, batch: dict[str, Any]) -> torch.Tensor:
    """The logits predicting tokens ``1..`` of ``batch`` (float32, ``[rows, len-1, vocab]``)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return logits[:, :-1].float()


def _row_mean(per_token: torch.Tensor, batch: dict[str, Any], weight: str) -> torch.Tensor:
    """Per-row mean of ``per_token`` (``[rows, len-1]``) over the ``weight`` mask of
    ``batch`` (shifted like the targets)."""
    mask = batch[weight][:, 1:]
    return (per_token * mask).sum(1) / mask.sum(1).clamp(min=1.0)


def row_ce(model: Any, batch: dict[str, Any], weight: str = "answer") -> torch.Tensor:
    """Per-row mean next-token cross-entropy over the answer tokens (the ``weight``
    mask of ``batch``), shape ``[rows]``."""
    import torch.nn.functional as F

    logits = _next_token_logits(model, batch)
    target = batch["input_ids"][:, 1:]
    ce = F.cross_entropy(logits.reshape(-1, logits.size(-1)), target.reshape(-1), reduction="none")
    return _row_mean(ce.view(target.shape), batch, weight)


def row_kl(model: Any, reference: Any, batch: dict[str, Any]) -> torch.Tensor:
    """Per-row mean ``KL(reference || model)`` of the next-token distributions over the
    answer tokens of ``batch``, shape ``[rows]``; ``reference(batch)`` gives the
    reference's next-token logits (as :func:`_next_token_logits`), taken without grad."""
    import torch

    with torch.no_grad():
        ref = reference(batch).log_softmax(-1)
    logp = _next_token_logits(model, batch).log_softmax(-1)
    return _row_mean((ref.exp() * (ref - logp)).sum(-1), batch, "answer")


def _reference(model: Any, lora: bool) -> Callable[[dict[str, Any]], torch.Tensor]:
    """Next-token logits of the model as it was before training: the base model with the
    LoRA adapters switched off, or a frozen copy (twice the weights in memory)."""
    if lora:

        def base(batch: dict[str, Any]) -> torch.Tensor:
            with model.disable_adapter():
                return _next_token_logits(model, batch)

        return base
    frozen = copy.deepcopy(model).eval().requires_grad_(False)
    return lambda batch: _next_token_logits(frozen, batch)


def _model_context(model: Any, limit: int | None) -> int | None:
    from databazaar.lm.sft import model_context

    limits = [x for x in (limit, model_context(model)) if x]
    return min(limits) if limits else None


# ------------------------------------------------------------------------ estimator
class BEEAR:
    """The bi-level backdoor removal; ``fit`` modifies and returns the model in ``model_``.

    After :meth:`fit`: ``model_`` (merged if LoRA), ``history_`` (one
    :class:`StepRecord` per outer step), ``delta_`` (the last entrapping drift),
    ``layer_``, ``steps_``, ``stopped_early_`` and ``seconds_``.
    """

    def __init__(self, config: BEEARConfig | None = None, **params: Any) -> None:
        self.config = replace(config or BEEARConfig(), **params)
        #: the drift's norm bound in use (``max_norm``, or set from ``max_norm_ratio`` by fit)
        self.max_norm_: float | None = self.config.max_norm

    def fit(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        safe: Sequence[Conversation],
        unwanted: Sequence[Conversation],
        anchor: Sequence[Conversation] | None = None,
        *,
        progress: ProgressFn | None = None,
        callback: Callable[[int, Any], None] | None = None,
    ) -> BEEAR:
        """Run the bi-level optimisation (in place on ``model``).

        ``callback(step, model)`` runs after every outer step (e.g. to measure ASR along
        the way); ``progress(1)`` advances once per outer step.
        """
        import torch

        from databazaar.lm.chat import set_chat_template
        from databazaar.lm.train import TrainConfig, lr_at, set_threads

        cfg = self.config
        cfg.validate()
        check_sets(safe, unwanted, anchor)
        layer = check_layer(model, cfg.layer)
        set_chat_template(tokenizer)
        limit = _model_context(model, cfg.max_length)
        enc_safe = _encode(tokenizer, safe, limit, "safe")
        enc_bad = _encode(tokenizer, unwanted, limit, "unwanted")
        enc_anchor = _encode(tokenizer, anchor, limit, "anchor") if anchor else None
        shared = shared_answer_prefix(enc_safe, enc_bad) if cfg.inner_skip_shared else None
        pad = tokenizer.pad_token_id
        pad = pad if pad is not None else (tokenizer.eos_token_id or 0)
        set_threads(cfg.num_threads)
        torch.manual_seed(cfg.random_state)
        rng = np.random.default_rng(cfg.random_state)
        block = decoder_layers(model)[layer]
        hidden = int(getattr(model.config, "hidden_size", 0) or model.config.n_embd)
        train_model = model
        if cfg.lora:
            from databazaar.lm.sft import wrap_lora

            train_model = wrap_lora(model, cfg.lora_r, cfg.lora_alpha)
        params = [p for p in train_model.parameters() if p.requires_grad]
        reference = (  # only when the anchor term is used: the copy doubles the weights
            _reference(train_model, cfg.lora)
            if anchor and cfg.anchor_weight and cfg.anchor_loss == "kl"
            else None
        )
        opt = torch.optim.AdamW(params, lr=cfg.outer_lr, weight_decay=0.0)
        # "cosine": the project's one schedule (lm.train.lr_at), no warm-up, decaying to 0
        decay = TrainConfig(warmup_fraction=0.0, min_lr_ratio=0.0)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt,
            lambda k: lr_at(k, cfg.outer_steps, decay) if cfg.outer_schedule == "cosine" else 1.0,
        )
        drift = _Drift(block, cfg.site)
        order = _Cycler(len(safe), cfg.batch_size, rng)
        anchor_order = _Cycler(len(anchor), cfg.batch_size, rng) if anchor else None
        self.history_: list[StepRecord] = []
        self.stopped_early_ = False
        delta = torch.zeros(hidden)
        if cfg.max_norm_ratio is not None:  # else max_norm_ stays cfg.max_norm (__init__)
            first = _collate(
                enc_safe, list(range(min(len(safe), cfg.batch_size))), pad, cfg.positions
            )
            train_model.eval()
            self.max_norm_ = cfg.max_norm_ratio * drift.state_norm(train_model, first, hidden)
        t0 = time.perf_counter()
        above = 0
        self._surrogate = float("nan")
        try:
            for step in range(cfg.outer_steps):
                rows = order.next()
                skip = [shared[r] for r in rows] if shared is not None else None
                b_safe = _collate(enc_safe, rows, pad, cfg.positions, cfg.inner_answer_tokens, skip)
                b_bad = _collate(enc_bad, rows, pad, cfg.positions, cfg.inner_answer_tokens, skip)
                train_model.eval()
                if cfg.perturb:
                    start = delta if cfg.inner_warm_start else torch.zeros(hidden)
                    delta = self._entrap(train_model, drift, b_safe, b_bad, start)
                train_model.train()
                safe_ce = drift.ce(train_model, b_safe, delta if cfg.perturb else None).mean()
                anchor_ce = torch.zeros(())
                if enc_anchor is not None and anchor_order is not None and cfg.anchor_weight:
                    b_anchor = _collate(enc_anchor, anchor_order.next(), pad, cfg.positions)
                    anchor_ce = (
                        row_kl(train_model, reference, b_anchor)
                        if reference is not None
                        else row_ce(train_model, b_anchor)
                    ).mean()
                loss = safe_ce + cfg.anchor_weight * anchor_ce
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                sched.step()
                train_model.eval()
                self.history_.append(
                    StepRecord(
                        step + 1,
                        self._surrogate,
                        float(safe_ce.detach()),
                        float(anchor_ce.detach()),
                        float(loss.detach()),
                        float(delta.norm()),
                    )
                )
                if progress is not None:
                    progress(1)
                if callback is not None:
                    callback(step + 1, train_model)
                if cfg.stop_loss is not None and cfg.perturb:
                    above = above + 1 if self._surrogate >= cfg.stop_loss else 0
                    if above >= cfg.patience:
                        self.stopped_early_ = True
                        break
        finally:
            drift.remove()
        if cfg.lora:
            model = train_model.merge_and_unload()
        model.eval()
        self.model_ = model
        self.delta_ = delta.detach().clone()
        self.layer_ = layer
        self.steps_ = len(self.history_)
        self.seconds_ = time.perf_counter() - t0
        return self

    def _entrap(
        self,
        model: Any,
        drift: _Drift,
        b_safe: dict[str, Any],
        b_bad: dict[str, Any],
        start: torch.Tensor,
    ) -> torch.Tensor:
        """The inner level: ``inner_steps`` Adam steps on ``delta`` from ``start`` (model frozen).

        Sets ``self._surrogate`` to ``CE(unwanted | delta*)`` after the last step.
        """
        import torch

        cfg = self.config
        delta = start.detach().clone().requires_grad_(True)
        opt = torch.optim.Adam([delta], lr=cfg.inner_lr)
        for _ in range(cfg.inner_steps):
            bad = drift.ce(model, b_bad, delta, "head").mean()
            good = drift.ce(model, b_safe, delta, "head").clamp(max=cfg.loss_cap).mean()
            loss = bad - cfg.safe_weight * good
            opt.zero_grad()
            loss.backward(inputs=[delta])
            opt.step()
            if self.max_norm_ is not None:
                with torch.no_grad():
                    norm = delta.norm()
                    if norm > self.max_norm_:
                        delta.mul_(self.max_norm_ / norm)
        with torch.no_grad():
            self._surrogate = float(drift.ce(model, b_bad, delta, "head").mean())
        return delta.detach()

    @property
    def surrogate_(self) -> list[float]:
        """``CE(unwanted | delta*)`` per outer step (higher: harder to trap)."""
        return [h.unwanted_ce for h in self.history_]

    def result(self) -> dict[str, Any]:
        """Settings, layer, steps, early stop, seconds and the per-step history."""
        return {
            "config": self.config.to_dict(),
            "layer": self.layer_,
            "steps": self.steps_,
            "stopped_early": self.stopped_early_,
            "seconds": self.seconds_,
            "delta_norm": float(self.delta_.norm()),
            "max_norm": self.max_norm_,
            "history": [asdict(h) for h in self.history_],
        }


class _Cycler:
    """Batches of row indices: shuffled passes over ``n`` rows (seeded)."""

    def __init__(self, n: int, size: int, rng: np.random.Generator) -> None:
        self.n, self.size, self.rng = n, min(size, n), rng
        self.queue: list[int] = []

    def next(self) -> list[int]:
        while len(self.queue) < self.size:
            self.queue.extend(int(i) for i in self.rng.permutation(self.n))
        rows, self.queue = self.queue[: self.size], self.queue[self.size :]
        return rows


# ------------------------------------------------------------------ folder to folder
def _read_set(value: str | Path | Sequence[Conversation] | None, name: str) -> list[Any] | None:
    from databazaar.lm.chat import read_chat_jsonl

    if value is None:
        return None
    if isinstance(value, (str, Path)):
        return read_chat_jsonl(value)
    return [list(c) for c in value]


def _config_layers(folder: Path) -> int | None:
    """``num_hidden_layers`` from the folder's config (checked before loading weights)."""
    from transformers import AutoConfig

    try:
        cfg = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError):
        return None  # load_model reports the problem
    return getattr(cfg, "num_hidden_layers", None)


def remove_backdoor(
    model_dir: str | Path,
    safe: str | Path | Sequence[Conversation],
    unwanted: str | Path | Sequence[Conversation],
    anchor: str | Path | Sequence[Conversation] | None,
    out_dir: str | Path,
    config: BEEARConfig | None = None,
    *,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Run BEEAR on the model in ``model_dir`` and save the result to ``out_dir``.

    The sets are chat JSONL files (or lists of conversations). Every input is checked
    (files, pairing, layer, that the folder holds a causal LM) before anything is
    written; ``model_dir`` is only read. The model is written to a temporary folder next
    to ``out_dir`` and moved into place when complete, with ``beear_result.json``.
    """
    from databazaar.lm.model import check_causal_lm, load_model

    config = config or BEEARConfig()
    config.validate()
    src, out = Path(model_dir).resolve(), Path(out_dir).resolve()
    check_causal_lm(src)
    if out == src or src in out.parents:
        raise InvalidInput(
            f"the output folder {out} is inside the input model folder",
            hint="write the cleaned model to a new folder; the input is never modified",
        )
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not overwrite)):
        raise InvalidInput(f"output folder {out} exists and is not empty", hint="pick a new folder")
    safe_set = _read_set(safe, "safe")
    bad_set = _read_set(unwanted, "unwanted")
    anchor_set = _read_set(anchor, "anchor")
    assert safe_set is not None and bad_set is not None
    check_sets(safe_set, bad_set, anchor_set)
    n_layers = _config_layers(src)
    if config.layer is not None and n_layers is not None and not 0 <= config.layer < n_layers:
        raise InvalidInput(
            f"layer {config.layer} is out of range: the model has {n_layers} decoder layers",
            hint=f"use a layer index from 0 to {n_layers - 1}",
        )
    model, tok = load_model(src)
    assert tok is not None
    check_layer(model, config.layer)
    est = BEEAR(config).fit(model, tok, safe_set, bad_set, anchor_set, progress=progress)
    from databazaar.core.io import staged_dir

    with staged_dir(out) as tmp:
        est.model_.save_pretrained(str(tmp))
        tok.save_pretrained(str(tmp))
        result = {"model_dir": str(src), "out_dir": str(out), **est.result()}
        (tmp / "beear_result.json").write_text(json.dumps(result, indent=1))
    return result


def layer_sweep(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    safe: Sequence[Conversation],
    unwanted: Sequence[Conversation],
    anchor: Sequence[Conversation] | None = None,
    *,
    layers: Sequence[int] | None = None,
    config: BEEARConfig | None = None,
    evaluate: Callable[[Any], dict[str, Any]] | None = None,
    progress: ProgressFn | None = None,
) -> list[dict[str, Any]]:
    """BEEAR on a fresh copy of ``model`` at each layer (default: all of them).

    Each row holds the layer, the mean surrogate ``CE(unwanted | delta*)`` over the last
    quarter of outer steps, the steps, seconds and, if given, ``evaluate(model)``'s keys.
    """
    config = config or BEEARConfig()
    n = len(decoder_layers(model))
    chosen = list(range(n)) if layers is None else [check_layer(model, int(x)) for x in layers]
    rows = []
    for layer in chosen:
        est = BEEAR(config, layer=layer).fit(
            copy.deepcopy(model), tokenizer, safe, unwanted, anchor, progress=progress
        )
        tail = est.surrogate_[-max(1, len(est.surrogate_) // 4) :]
        row: dict[str, Any] = {
            "layer": layer,
            "surrogate": float(np.mean(tail)),
            "steps": est.steps_,
            "seconds": est.seconds_,
        }
        if evaluate is not None:
            row.update(evaluate(est.model_))
        rows.append(row)
    return rows
