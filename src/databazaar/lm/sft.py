"""Supervised fine-tuning of a causal LM on chat data, with TRL's ``SFTTrainer``.

The loss is the next-token cross-entropy on assistant tokens only (the
``{% generation %}`` spans of the chat template, see :mod:`databazaar.lm.chat`): the
instruction-tuning objective of Ouyang et al. (2022, §3.5) and Wei et al. (2022).
Conversations are tokenized and masked here with :func:`~databazaar.lm.chat.encode_chat`
(so bad data fails before anything is written) and handed to ``trl.SFTTrainer`` as a
tokenized dataset (``input_ids`` + ``assistant_masks``, from which TRL builds labels).
With ``lora=True`` the model is wrapped by PEFT's LoRA (Hu et al., 2022): only the
low-rank adapters train, and the saved model is the merged one, so it reloads with
``transformers`` alone; the adapter is saved in ``OUT_DIR/adapter`` as well.

The loss is computed by the model itself (``transformers``' causal-LM loss on the
labels: summed negative log-likelihood of the assistant tokens over their count), not by
TRL's fused chunked LM head, which with its per-step entropy and token-accuracy metrics
is built for large vocabularies on accelerators and cost 40% of every step here (0.163
vs 0.098 s for a 2 x 128 Llama at batch 64 on 2 CPU cores); the value is the same.

Runs are seeded (initial adapter weights, data order), checkpoint every
``checkpoint_every`` steps into ``OUT_DIR/checkpoints`` and resume from the newest
checkpoint there.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from databazaar.core.errors import InvalidInput
from databazaar.core.progress import ProgressFn
from databazaar.lm.chat import Message, encode_chat, set_chat_template

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from databazaar.lm.tasks import TaskExample

log = logging.getLogger(__name__)

# attention / MLP projections of the supported architectures, for LoRA
_LORA_TARGETS = {
    "gpt2": ["c_attn", "c_proj", "c_fc"],
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "mistral": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
}


@dataclass(frozen=True)
class SFTConfig:
    """Settings of a fine-tuning run. ``max_steps`` (if set) overrides ``epochs``."""

    epochs: float = 1.0
    lr: float = 5e-4
    batch_size: int = 16
    max_steps: int | None = None
    max_length: int | None = None
    weight_decay: float = 0.0
    warmup_ratio: float = 0.05
    lr_scheduler: str = "cosine"
    random_state: int = 0
    lora: bool = False
    lora_r: int = 8
    lora_alpha: int = 16
    checkpoint_every: int | None = None
    num_threads: int | None = None

    def validate(self) -> None:
        """Raise :class:`InvalidInput` for settings that cannot work."""
        if not self.epochs > 0:
            raise InvalidInput(f"epochs must be positive, got {self.epochs}")
        if not self.lr > 0:
            raise InvalidInput(f"lr must be positive, got {self.lr}")
        for name in ("batch_size", "max_steps", "max_length", "lora_r", "checkpoint_every"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise InvalidInput(f"{name} must be at least 1, got {v}")
        if not 0 <= self.warmup_ratio < 1:
            raise InvalidInput(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SFTResult:
    """What a run produced: steps, per-step training loss, task scores, seconds."""

    steps: int
    train_loss: list[float] = field(default_factory=list)
    n_conversations: int = 0
    n_trainable_tokens: int = 0
    trainable_parameters: int = 0
    scores: dict[str, Any] | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def model_context(model: Any) -> int | None:
    """The model's context length (``n_positions`` or ``max_position_embeddings``)."""
    cfg = model.config
    return getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", None)


def encode_dataset(
    tokenizer: PreTrainedTokenizerBase,
    conversations: Sequence[Sequence[Message]],
    *,
    max_length: int | None,
) -> tuple[dict[str, list[list[int]]], int]:
    """Tokenize and mask conversations; drop those without trainable tokens.

    Returns the columns ``input_ids`` / ``assistant_masks`` and the number of trainable
    tokens. Raises :class:`InvalidInput` when no token at all would carry loss (no
    assistant turn, or every assistant turn beyond ``max_length``).
    """
    ids: list[list[int]] = []
    masks: list[list[int]] = []
    total = 0
    for conv in conversations:
        enc = encode_chat(tokenizer, conv, max_length=max_length)
        if enc.n_trainable == 0:
            continue
        ids.append(enc.input_ids)
        masks.append(enc.assistant_mask)
        total += enc.n_trainable
    if total == 0:
        raise InvalidInput(
            f"the data has no trainable tokens: none of its {len(conversations)} conversation(s) "
            f"has an assistant turn within the first {max_length} tokens",
            hint="add assistant turns (the loss is computed on them only) or shorten prompts",
        )
    dropped = len(conversations) - len(ids)
    if dropped:
        log.warning("%d conversation(s) without trainable tokens were skipped", dropped)
    return {"input_ids": ids, "assistant_masks": masks}, total


def latest_checkpoint(folder: str | Path) -> Path | None:
    """The ``checkpoint-<step>`` sub-folder with the highest step, if any."""
    root = Path(folder)
    found = [p for p in root.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    return max(found, key=lambda p: int(p.name.split("-")[-1])) if found else None


def wrap_lora(model: PreTrainedModel, r: int = 8, alpha: int = 16) -> Any:
    """``model`` wrapped by PEFT's LoRA (Hu et al., 2022) on its attention and MLP projections.

    Only the rank-``r`` adapters train; ``merge_and_unload()`` gives back a plain model.
    Raises :class:`InvalidInput` for an architecture without known projection names.
    """
    from peft import LoraConfig, get_peft_model

    arch = getattr(model.config, "model_type", "")
    targets = _LORA_TARGETS.get(arch)
    if targets is None:
        raise InvalidInput(
            f"no LoRA target modules known for model type {arch!r}",
            hint=f"LoRA is set up for {', '.join(_LORA_TARGETS)}",
        )
    lora = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=0.0,
        target_modules=targets,
        fan_in_fan_out=arch == "gpt2",  # GPT-2 stores Conv1D weights transposed
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


def batch_order(
    lengths: Sequence[int], batch_size: int, epochs: float, random_state: int
) -> list[int]:
    """Row order of a whole run: shuffled batches of similar length, one pass per epoch.

    Each pass draws a permutation, sorts windows of ``50 * batch_size`` rows by length,
    cuts them into batches and shuffles the batches (less padding than random batches,
    same randomness). The order is fixed by ``random_state`` and the run reads it
    sequentially, so a resumed run sees exactly the batches it would have seen.
    """
    import numpy as np

    rng = np.random.default_rng(random_state)
    n = len(lengths)
    lens = np.asarray(lengths)
    out: list[int] = []
    for _ in range(math.ceil(epochs)):
        perm = rng.permutation(n)
        window = 50 * batch_size
        batches = []
        for start in range(0, n, window):
            chunk = perm[start : start + window]
            chunk = chunk[np.argsort(lens[chunk], kind="stable")]
            batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
        for b in rng.permutation(len(batches)):
            out.extend(int(i) for i in batches[b])
    return out[: max(batch_size, round(n * epochs))]


#: trainer arguments of every run here: CPU, fp32, per-step loss log, no reporting or bars
CPU_TRAINER_ARGS: dict[str, Any] = {
    "logging_steps": 1,
    "report_to": "none",
    "disable_tqdm": True,
    "use_cpu": True,
    "bf16": False,
    "fp16": False,
    "dataloader_num_workers": 0,
}


def progress_callback(progress: ProgressFn | None) -> Any:
    """A ``transformers`` trainer callback calling ``progress(1)`` after every step."""
    from transformers import TrainerCallback

    class _Progress(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
            if progress is not None:
                progress(1)

    return _Progress()


def _trainer(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    columns: dict[str, list[list[int]]],
    config: SFTConfig,
    checkpoint_dir: Path,
    progress: ProgressFn | None,
) -> Any:
    """A ``trl.SFTTrainer`` on the tokenized columns (CPU, fp32, seeded, quiet).

    Labels are the input ids with non-assistant tokens set to -100; TRL's collator pads
    them. The per-step log printer is replaced by ``progress``; the loss is the model's
    own (see the module docstring).
    """
    from datasets import Dataset
    from datasets.utils.logging import disable_progress_bar
    from transformers import PrinterCallback, Trainer
    from trl import SFTConfig as TRLConfig
    from trl import SFTTrainer as TRLTrainer

    class SFTTrainer(TRLTrainer):  # type: ignore[misc]
        def compute_loss(  # type: ignore[no-untyped-def]
            self, model, inputs, return_outputs=False, num_items_in_batch=None
        ):
            return Trainer.compute_loss(
                self,
                model,
                inputs,
                return_outputs=return_outputs,
                num_items_in_batch=num_items_in_batch,
            )

    args = TRLConfig(
        output_dir=str(checkpoint_dir),
        num_train_epochs=1,  # the epochs are laid out by batch_order
        max_steps=config.max_steps if config.max_steps is not None else -1,
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.lr,
        weight_decay=config.weight_decay,
        adam_beta2=0.95,  # steadier than 0.999 at the high rates small models train with
        max_grad_norm=1.0,
        warmup_steps=config.warmup_ratio,  # a float below 1 is a fraction of the steps
        lr_scheduler_type=config.lr_scheduler,
        seed=config.random_state,
        data_seed=config.random_state,
        max_length=None,  # already cut to the model context by encode_dataset
        save_strategy="steps" if config.checkpoint_every else "no",
        save_steps=config.checkpoint_every or 500,
        activation_checkpointing=False,
        **CPU_TRAINER_ARGS,
        train_sampling_strategy="sequential",
        assistant_only_loss=False,  # the masks come with the data (assistant_masks column)
        completion_only_loss=False,
        packing=False,
    )
    ids = columns["input_ids"]
    order = batch_order(
        [len(x) for x in ids], config.batch_size, config.epochs, config.random_state
    )
    labels = [
        [t if m else -100 for t, m in zip(ids[i], columns["assistant_masks"][i], strict=True)]
        for i in order
    ]
    disable_progress_bar()
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_dict({"input_ids": [ids[i] for i in order], "labels": labels}),
        processing_class=tokenizer,
        callbacks=[progress_callback(progress)],
    )
    trainer.remove_callback(PrinterCallback)
    return trainer


def sft(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    conversations: Sequence[Sequence[Message]],
    out_dir: str | Path,
    *,
    config: SFTConfig | None = None,
    eval_examples: Sequence[TaskExample] | None = None,
    progress: ProgressFn | None = None,
    resume: bool = False,
    chat_template: str | None = None,
) -> tuple[PreTrainedModel, SFTResult]:
    """Fine-tune ``model`` on ``conversations`` and save it with its tokenizer to ``out_dir``.

    The data is encoded and checked before anything is written. ``eval_examples`` (task
    examples, e.g. held-out ones from :func:`databazaar.lm.tasks.generate_tasks`) are
    answered greedily after training and scored per family (``result.scores``).
    ``resume=True`` continues from the newest checkpoint in ``out_dir/checkpoints``.
    ``chat_template`` (a Jinja template with ``{% generation %}`` markers, or
    ``"default"``) replaces the tokenizer's; by default the tokenizer keeps its own marked
    template, gets :data:`~databazaar.lm.chat.CHAT_TEMPLATE` if it has none, and an own
    template without markers is refused (see :func:`~databazaar.lm.chat.set_chat_template`).
    Returns the trained (merged, for LoRA) model and the :class:`SFTResult`.
    """
    from databazaar.lm.train import set_threads

    config = config or SFTConfig()
    config.validate()
    set_chat_template(tokenizer, chat_template)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    limits = [x for x in (config.max_length, model_context(model)) if x]
    max_length = min(limits) if limits else None
    columns, n_tokens = encode_dataset(tokenizer, conversations, max_length=max_length)
    out = Path(out_dir)
    ckpt_dir = out / "checkpoints"
    start = latest_checkpoint(ckpt_dir) if resume else None
    if resume and start is None:
        raise InvalidInput(f"nothing to resume: no checkpoint in {ckpt_dir}")
    set_threads(config.num_threads)
    import torch

    torch.manual_seed(config.random_state)
    train_model = wrap_lora(model, config.lora_r, config.lora_alpha) if config.lora else model
    trainer = _trainer(train_model, tokenizer, columns, config, ckpt_dir, progress)
    t0 = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(start) if start else None)
    seconds = time.perf_counter() - t0
    trainable = sum(p.numel() for p in train_model.parameters() if p.requires_grad)
    out.mkdir(parents=True, exist_ok=True)
    if config.lora:
        train_model.save_pretrained(str(out / "adapter"))
        model = train_model.merge_and_unload()
    model.eval()
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    result = SFTResult(
        steps=int(trainer.state.global_step),
        train_loss=[float(h["loss"]) for h in trainer.state.log_history if "loss" in h],
        n_conversations=len(columns["input_ids"]),
        n_trainable_tokens=n_tokens,
        trainable_parameters=int(trainable),
        seconds=seconds,
    )
    if eval_examples:
        from databazaar.lm.evaluate import evaluate_tasks

        result.scores = evaluate_tasks(model, tokenizer, eval_examples)
    (out / "sft_result.json").write_text(
        json.dumps({"config": config.to_dict(), "result": result.to_dict()}, indent=1)
    )
    return model, result
