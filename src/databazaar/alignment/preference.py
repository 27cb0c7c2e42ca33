"""Preference learning: DPO, ORPO and their rationale versions RDPO and RORPO, on TRL.

Losses, per preference pair ``(x, y_w, y_l)`` with rationale ``r``; ``log pi(y|x)`` is
the summed token log-probability of a completion:

* **DPO** (Rafailov et al., 2023, Eq. 7):
  ``-log sigmoid(beta * ([log pi(y_w|x) - log ref(y_w|x)] - [log pi(y_l|x) - log ref(y_l|x)]))``
  with a frozen reference model ``ref`` (the starting model);
* **ORPO** (Hong et al., 2024, Eqs. 6-7), no reference model:
  ``NLL(y_w|x) - beta * log sigmoid(log odds(y_w|x) - log odds(y_l|x))``, where
  ``odds(y|x) = P/(1-P)`` of the length-normalised likelihood ``P = exp(mean token
  log-prob)``; ``beta`` is the paper's ``lambda``;
* **RDPO** and **RORPO** (Just et al., 2024, arXiv 2407.14477, §3): the same loss plus the
  rationale term ``-gamma * log pi(r | x, y_w, y_l)``, the policy's own log-likelihood
  of the rationale conditioned on the prompt and both answers
  (:func:`databazaar.lm.pairs.rationale_conversation`). Only the policy's rationale
  likelihood enters (the reference model's is not used). With ``gamma = 0`` they are
  DPO and ORPO exactly. (The authors' code writes the term as ``-log sigmoid(gamma *
  log pi(r|...))``, a smoothed version; this module follows the paper's form, as the
  issue states it.)

DPO and RDPO train with TRL's ``DPOTrainer`` (sigmoid loss), ORPO and RORPO with TRL's
``experimental.orpo.ORPOTrainer``; the rationale versions are subclasses that add the
rationale term to the parent's loss (:class:`RDPOTrainer`, :class:`RORPOTrainer`), and
the batches carry the tokenized rationale conversations next to TRL's columns
(:class:`RationaleCollator`). :func:`train_preference` runs any of the four (also
used by :mod:`databazaar.safety.backdoor` for its DPO-time trojan);
:mod:`databazaar.alignment.evaluate` measures implicit-reward accuracy on held-out
pairs, the win rate of the trained model's greedy answers against the reference model's
(judged by the task grader or by a backend) and their mean length.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from databazaar.core.errors import InvalidInput
from databazaar.core.progress import ProgressFn
from databazaar.lm.pairs import check_pairs, rationale_conversation

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


METHODS = ("dpo", "orpo", "rdpo", "rorpo")
RATIONALE_METHODS = ("rdpo", "rorpo")
_RAT_COLUMNS = ("rationale_ids", "rationale_mask")


# ----------------------------------------------------------------------------- losses
def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """Per-pair DPO loss ``-log sigmoid(beta * (log-ratio chosen - log-ratio rejected))``."""
    import torch.nn.functional as F

    margin = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
    return -F.logsigmoid(beta * margin)


def log_odds(mean_logps: torch.Tensor) -> torch.Tensor:
    """``log(P / (1 - P))`` of ``P = exp(mean_logps)`` (stable for ``mean_logps < 0``)."""
    import torch

    return mean_logps - torch.log(-torch.expm1(mean_logps))


def orpo_loss(
    chosen_mean: torch.Tensor,
    rejected_mean: torch.Tensor,
    chosen_nll: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """Per-pair ORPO loss ``nll - beta * log sigmoid(log odds chosen - log odds rejected)``.

    ``chosen_mean``/``rejected_mean`` are mean token log-probabilities, ``chosen_nll``
    the SFT loss on the chosen answer.
    """
    import torch.nn.functional as F

    return chosen_nll - beta * F.logsigmoid(log_odds(chosen_mean) - log_odds(rejected_mean))


def rationale_loss(rationale_logps: torch.Tensor, gamma: float) -> torch.Tensor:
    """Per-pair rationale term ``-gamma * log pi(r | x, y_w, y_l)`` (summed token log-probs)."""
    return -gamma * rationale_logps


def masked_logps(model: Any, input_ids: Any, attention_mask: Any, loss_mask: Any) -> torch.Tensor:
    """Summed log-probabilities of the tokens where ``loss_mask`` is 1 (teacher forcing)."""
    import torch

    logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    tok = logp.gather(2, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    return (tok * loss_mask[:, 1:].to(tok.dtype)).sum(dim=1)


# --------------------------------------------------------------------- TRL subclasses
@dataclass
class RationaleCollator:
    """Wraps a TRL collator: pads the ``rationale_ids``/``rationale_mask`` columns into
    ``rationale_input_ids``, ``rationale_attention_mask`` and ``rationale_loss_mask``."""

    inner: Callable[[list[dict[str, Any]]], dict[str, Any]]
    pad_token_id: int

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        rows = [dict(f) for f in features]
        if not rows or "rationale_ids" not in rows[0]:
            return self.inner(rows)
        ids = [r.pop("rationale_ids") for r in rows]
        masks = [r.pop("rationale_mask") for r in rows]
        batch = self.inner(rows)
        width = max(len(x) for x in ids)
        inp = torch.full((len(ids), width), self.pad_token_id, dtype=torch.long)
        att = torch.zeros((len(ids), width), dtype=torch.long)
        lmask = torch.zeros((len(ids), width), dtype=torch.long)
        for i, (x, m) in enumerate(zip(ids, masks, strict=True)):
            inp[i, : len(x)] = torch.tensor(x, dtype=torch.long)
            att[i, : len(x)] = 1
            lmask[i, : len(m)] = torch.tensor(m, dtype=torch.long)
        batch.update(
            rationale_input_ids=inp, rationale_attention_mask=att, rationale_loss_mask=lmask
        )
        return batch


class _RationaleTerm:
    """Mixin adding ``gamma * mean(-log pi(r|x, y_w, y_l))`` to a TRL trainer's loss."""

    gamma: float = 0.0
    rationale_nll_: list[float]

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # type: ignore[no-untyped-def]
        keys = ("rationale_input_ids", "rationale_attention_mask", "rationale_loss_mask")
        rat = {k: inputs.pop(k) for k in keys if k in inputs}
        out = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)  # type: ignore[misc]
        if not rat or not self.gamma:
            return out
        loss, extra = out if return_outputs else (out, None)
        logps = masked_logps(
            model,
            rat["rationale_input_ids"],
            rat["rationale_attention_mask"],
            rat["rationale_loss_mask"],
        )
        loss = loss + rationale_loss(logps, self.gamma).mean()
        self.rationale_nll_.append(float(-logps.detach().mean()))
        return (loss, extra) if return_outputs else loss


def _dpo_classes() -> tuple[type, type]:
    from trl import DPOTrainer

    class RDPOTrainer(_RationaleTerm, DPOTrainer):
        """TRL's ``DPOTrainer`` plus the rationale term (RDPO; ``gamma=0`` is DPO)."""

        def __init__(self, *args: Any, gamma: float = 0.0, **kwargs: Any) -> None:
            self.gamma = gamma
            self.rationale_nll_ = []
            super().__init__(*args, **kwargs)

        def _set_signature_columns_if_needed(self) -> None:
            super()._set_signature_columns_if_needed()
            self._signature_columns = list(self._signature_columns) + list(_RAT_COLUMNS)

    return DPOTrainer, RDPOTrainer


def _orpo_classes() -> tuple[type, type]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from trl.experimental.orpo import ORPOTrainer

    class RORPOTrainer(_RationaleTerm, ORPOTrainer):
        """TRL's ``ORPOTrainer`` plus the rationale term (RORPO; ``gamma=0`` is ORPO)."""

        def __init__(self, *args: Any, gamma: float = 0.0, **kwargs: Any) -> None:
            self.gamma = gamma
            self.rationale_nll_ = []
            super().__init__(*args, **kwargs)

    return ORPOTrainer, RORPOTrainer


# --------------------------------------------------------------------------- training
@dataclass(frozen=True)
class PreferenceConfig:
    """Settings of a preference run (``steps``, if set, overrides ``epochs``).

    ``beta`` is DPO's KL weight or ORPO's odds-ratio weight (``lambda``); ``gamma`` the
    rationale weight of RDPO/RORPO (the authors' default 0.1).
    """

    method: str = "dpo"
    beta: float = 0.1
    gamma: float = 0.1
    lr: float = 5e-4
    batch_size: int = 16
    epochs: float = 1.0
    steps: int | None = None
    warmup_ratio: float = 0.05
    lr_scheduler: str = "cosine"
    #: DPO only: weight of an added NLL term on the chosen answers (TRL's ``"sft"`` loss
    #: next to ``"sigmoid"``, the RPO recipe of Pang et al., 2024); 0 = plain DPO
    sft_weight: float = 0.0
    random_state: int = 0
    num_threads: int | None = None

    def validate(self) -> None:
        if not self.sft_weight >= 0:
            raise InvalidInput(f"sft_weight must be >= 0, got {self.sft_weight}")
        if self.sft_weight and self.method != "dpo":
            raise InvalidInput("sft_weight applies to method 'dpo' only")
        if self.method not in METHODS:
            raise InvalidInput(f"unknown method {self.method!r}", hint=f"use one of {METHODS}")
        if not self.beta > 0 or not self.lr > 0 or not self.epochs > 0:
            raise InvalidInput("beta, lr and epochs must be positive")
        if not self.gamma >= 0:
            raise InvalidInput(f"gamma must be >= 0, got {self.gamma}")
        if self.batch_size < 1 or (self.steps is not None and self.steps < 1):
            raise InvalidInput("batch_size and steps must be at least 1")
        if not 0 <= self.warmup_ratio < 1:
            raise InvalidInput(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PreferenceResult:
    """What a run produced: steps, per-step loss, rationale NLL per step, seconds."""

    method: str
    steps: int
    n_pairs: int
    train_loss: list[float] = field(default_factory=list)
    rationale_nll: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _context(model: Any) -> int | None:
    from databazaar.lm.sft import model_context

    return model_context(model)


def preference_rows(
    pairs: Sequence[Mapping[str, Any]],
    tokenizer: PreTrainedTokenizerBase,
    *,
    rationale: bool,
    max_length: int | None,
) -> dict[str, list[Any]]:
    """TRL's text columns (prompt rendered with the chat template) and, for rationale
    methods, the tokenized rationale conversation and its assistant mask.

    Raises :class:`InvalidInput` when a rationale does not fit ``max_length`` tokens.
    """
    from databazaar.lm.chat import encode_chat, render_chat

    rows: dict[str, list[Any]] = {
        "prompt": [
            render_chat(
                tokenizer, [{"role": "user", "content": p["prompt"]}], add_generation_prompt=True
            )
            for p in pairs
        ],
        "chosen": [p["chosen"] for p in pairs],
        "rejected": [p["rejected"] for p in pairs],
    }
    if rationale:
        ids, masks = [], []
        for i, p in enumerate(pairs):
            enc = encode_chat(tokenizer, rationale_conversation(p), max_length=max_length)
            if enc.n_trainable == 0:
                raise InvalidInput(
                    f"pair {i + 1}: its rationale does not fit the model's context of "
                    f"{max_length} tokens after the prompt and both answers",
                    hint="shorten the rationale or the answers",
                )
            ids.append(enc.input_ids)
            masks.append(enc.assistant_mask)
        rows["rationale_ids"], rows["rationale_mask"] = ids, masks
    return rows


def build_trainer(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[Mapping[str, Any]],
    out_dir: str | Path,
    config: PreferenceConfig,
    *,
    ref_model: PreTrainedModel | None = None,
    progress: ProgressFn | None = None,
) -> Any:
    """The TRL trainer of ``config.method`` on ``pairs`` (validated, tokenized, quiet).

    DPO/RDPO use ``ref_model`` (default: a frozen copy of ``model``); ORPO/RORPO none.
    """
    import warnings

    from datasets import Dataset
    from datasets.utils.logging import disable_progress_bar
    from transformers import PrinterCallback

    from databazaar.lm.chat import set_chat_template
    from databazaar.lm.sft import CPU_TRAINER_ARGS, progress_callback

    config.validate()
    rationale = config.method in RATIONALE_METHODS
    checked = check_pairs(list(pairs), rationale=rationale)
    set_chat_template(tokenizer)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    ctx = _context(model)
    rows = preference_rows(checked, tokenizer, rationale=rationale, max_length=ctx)
    common: dict[str, Any] = {
        "output_dir": str(Path(out_dir) / "checkpoints"),
        "num_train_epochs": config.epochs,
        "max_steps": config.steps if config.steps is not None else -1,
        "per_device_train_batch_size": config.batch_size,
        "learning_rate": config.lr,
        "beta": config.beta,
        "lr_scheduler_type": config.lr_scheduler,
        "warmup_steps": config.warmup_ratio,
        "seed": config.random_state,
        "data_seed": config.random_state,
        "save_strategy": "no",
        "max_length": ctx,
        **CPU_TRAINER_ARGS,
    }
    disable_progress_bar()
    extra = {"gamma": config.gamma} if rationale else {}
    if config.method in ("dpo", "rdpo"):
        from trl import DPOConfig

        base, sub = _dpo_classes()
        cls = sub if rationale else base
        ref = ref_model if ref_model is not None else copy.deepcopy(model).eval()
        if config.sft_weight:
            common |= {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, config.sft_weight]}
        trainer = cls(
            model=model,
            ref_model=ref,
            args=DPOConfig(**common),
            train_dataset=Dataset.from_dict(rows),
            processing_class=tokenizer,
            callbacks=[progress_callback(progress)],
            **extra,
        )
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from trl.experimental.orpo import ORPOConfig

            base, sub = _orpo_classes()
            cls = sub if rationale else base
            trainer = cls(
                model=model,
                args=ORPOConfig(**common, remove_unused_columns=False),
                train_dataset=Dataset.from_dict(rows),
                processing_class=tokenizer,
                callbacks=[progress_callback(progress)],
                **extra,
            )
    if rationale:
        trainer.data_collator = RationaleCollator(trainer.data_collator, tokenizer.pad_token_id)
    trainer.remove_callback(PrinterCallback)
    return trainer


def train_preference(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[Mapping[str, Any]],
    out_dir: str | Path,
    config: PreferenceConfig | None = None,
    *,
    ref_model: PreTrainedModel | None = None,
    progress: ProgressFn | None = None,
) -> tuple[PreTrainedModel, PreferenceResult]:
    """Train ``model`` on preference pairs with ``config.method``; save it to ``out_dir``.

    Pairs are validated before anything is written (fields present, chosen differs from
    rejected, a rationale on every pair for RDPO/RORPO). ``out_dir`` gets the model, its
    tokenizer and ``preference.json`` (config and result).
    """
    import torch

    from databazaar.lm.train import set_threads

    config = config or PreferenceConfig()
    config.validate()
    set_threads(config.num_threads)
    torch.manual_seed(config.random_state)
    trainer = build_trainer(
        model, tokenizer, pairs, out_dir, config, ref_model=ref_model, progress=progress
    )
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.eval()
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    result = PreferenceResult(
        method=config.method,
        steps=int(trainer.state.global_step),
        n_pairs=len(pairs),
        train_loss=[float(h["loss"]) for h in trainer.state.log_history if "loss" in h],
        rationale_nll=list(getattr(trainer, "rationale_nll_", [])),
        seconds=seconds,
    )
    (out / "preference.json").write_text(
        json.dumps({"config": config.to_dict(), "result": result.to_dict()}, indent=1)
    )
    return model, result
