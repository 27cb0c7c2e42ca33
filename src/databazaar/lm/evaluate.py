"""Score a chat model on task examples: greedy answers, graded per family.

Each example's user turn is rendered with the model's chat template and the assistant
header (:func:`~databazaar.lm.chat.render_chat` with ``add_generation_prompt=True``),
the model answers greedily through :class:`~databazaar.lm.local_backend.LocalModelBackend`
(stopping at the end-of-sequence token that closes assistant turns), and the answers are
graded by :func:`databazaar.lm.tasks.score_outputs`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from databazaar.core.errors import InvalidInput
from databazaar.core.progress import ProgressFn
from databazaar.lm.chat import render_chat
from databazaar.lm.tasks import TaskExample, score_outputs

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def answer_prompts(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 32,
    progress: ProgressFn | None = None,
    num_threads: int | None = None,
    batch_size: int = 1,
) -> list[str]:
    """Greedy assistant answers to single-turn user ``prompts``.

    With ``batch_size=1`` each prompt is decoded on its own through
    :class:`~databazaar.lm.local_backend.LocalModelBackend`; a larger ``batch_size`` decodes
    that many prompts at once, left-padded (:func:`greedy_batch`), which is many times
    faster for small models and gives the same answers up to floating-point ties.
    """
    from databazaar.lm.local_backend import LocalModelBackend

    if batch_size < 1:
        raise InvalidInput(f"batch_size must be at least 1, got {batch_size}")
    texts = [
        render_chat(tokenizer, [{"role": "user", "content": p}], add_generation_prompt=True)
        for p in prompts
    ]
    if batch_size > 1:
        from databazaar.lm.train import set_threads

        set_threads(num_threads)
        out = []
        for i in range(0, len(texts), batch_size):
            chunk = texts[i : i + batch_size]
            out.extend(greedy_batch(model, tokenizer, chunk, max_new_tokens=max_new_tokens))
            if progress is not None:
                progress(len(chunk))
        return out
    backend = LocalModelBackend(model=model, tokenizer=tokenizer, num_threads=num_threads)
    out = []
    for text in texts:
        out.append(backend.generate([text], max_new_tokens=max_new_tokens, logprobs=False)[0].text)
        if progress is not None:
            progress(1)
    return out


def greedy_batch(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    *,
    max_new_tokens: int = 32,
) -> list[str]:
    """Greedy continuations of ``texts`` decoded together (left padding, attention mask).

    Each continuation is cut at the first end-of-sequence token; prompts plus answers
    must fit the model's context.
    """
    import torch
    from transformers import GenerationConfig

    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    ids = [tokenizer(t, add_special_tokens=True)["input_ids"] for t in texts]
    width = max(len(x) for x in ids)
    ctx = getattr(model.config, "n_positions", None) or getattr(
        model.config, "max_position_embeddings", None
    )
    if ctx is not None and width + max_new_tokens > ctx:
        raise InvalidInput(
            f"a prompt of {width} tokens plus {max_new_tokens} new tokens exceeds the "
            f"model's context of {ctx}",
            hint="shorten the prompts or ask for fewer tokens",
        )
    batch = torch.full((len(ids), width), pad, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, x in enumerate(ids):
        batch[i, width - len(x) :] = torch.tensor(x)
        mask[i, width - len(x) :] = 1
    gen = GenerationConfig(
        max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=eos, pad_token_id=pad
    )
    saved, model.generation_config = model.generation_config, GenerationConfig()
    try:
        with torch.no_grad():
            seqs = model.generate(batch, attention_mask=mask, generation_config=gen)
    finally:
        model.generation_config = saved
    out = []
    for row in seqs[:, width:].tolist():
        if eos in row:
            row = row[: row.index(eos)]
        out.append(tokenizer.decode(row, skip_special_tokens=True))
    return out


def evaluate_tasks(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[TaskExample],
    *,
    max_new_tokens: int = 32,
    progress: ProgressFn | None = None,
    num_threads: int | None = None,
    batch_size: int = 1,
) -> dict[str, Any]:
    """Per-family scores of the model's greedy answers (see ``score_outputs``).

    ``batch_size`` > 1 decodes prompts in left-padded batches (see :func:`answer_prompts`).

    The result also lists every ``prompt``/``answer``/``output`` under ``samples``.
    """
    if not examples:
        raise InvalidInput("no task examples to evaluate")
    outputs = answer_prompts(
        model,
        tokenizer,
        [e.prompt for e in examples],
        max_new_tokens=max_new_tokens,
        progress=progress,
        num_threads=num_threads,
        batch_size=batch_size,
    )
    scores = score_outputs(examples, outputs)
    scores["samples"] = [
        {"family": e.family, "prompt": e.prompt, "answer": e.answer, "output": o}
        for e, o in zip(examples, outputs, strict=True)
    ]
    return scores
