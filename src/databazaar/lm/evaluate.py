"""Score a chat model on task examples: greedy answers, graded per family.

Each example's user turn is rendered with the model's chat template and the assistant
header (:func:`~databazaar.lm.chat.render_chat` with ``add_generation_prompt=True``),
the model answers greedily through :class:`~databazaar.lm.generate.LocalModelBackend`
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
) -> list[str]:
    """Greedy assistant answers to single-turn user ``prompts``."""
    from databazaar.lm.generate import LocalModelBackend

    backend = LocalModelBackend(model=model, tokenizer=tokenizer, num_threads=num_threads)
    out: list[str] = []
    for p in prompts:
        text = render_chat(tokenizer, [{"role": "user", "content": p}], add_generation_prompt=True)
        out.append(backend.generate([text], max_new_tokens=max_new_tokens, logprobs=False)[0].text)
        if progress is not None:
            progress(1)
    return out


def evaluate_tasks(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[TaskExample],
    *,
    max_new_tokens: int = 32,
    progress: ProgressFn | None = None,
    num_threads: int | None = None,
) -> dict[str, Any]:
    """Per-family scores of the model's greedy answers (see ``score_outputs``).

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
    )
    scores = score_outputs(examples, outputs)
    scores["samples"] = [
        {"family": e.family, "prompt": e.prompt, "answer": e.answer, "output": o}
        for e, o in zip(examples, outputs, strict=True)
    ]
    return scores
