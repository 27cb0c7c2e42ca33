"""Zero-shot evaluation of a LLaVA model on language and vision task types.

Every prompt is rendered with the model's chat template (user turn, assistant header),
images go through the model's own ``LlavaProcessor``, and the model answers greedily
(``generate`` with ``do_sample=False``, at most ``max_new_tokens``, stopping at EOS): the
plain ``transformers`` path, so the answers are the ones a user gets from the saved
folder with ``transformers`` alone. Answers are graded per family by
:func:`databazaar.lm.tasks.score_outputs` (exact match, or the first number for the
``numeric`` grader). The **language score** is the mean exact match over the families
without images, the **vision score** over those with images (each family weighs the same,
as MLAN averages its datasets).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from databazaar.alignment.multimodal.data import MMExample
from databazaar.core.errors import InvalidInput
from databazaar.core.progress import ProgressFn


def render_prompt(processor: Any, prompt: str) -> str:
    """The chat-template text of one user ``prompt``, ending with the assistant header."""
    from databazaar.lm.chat import render_chat

    return render_chat(
        processor.tokenizer, [{"role": "user", "content": prompt}], add_generation_prompt=True
    )


def answer(
    model: Any,
    processor: Any,
    examples: Sequence[MMExample],
    *,
    max_new_tokens: int = 8,
    batch_size: int = 32,
    progress: ProgressFn | None = None,
) -> list[str]:
    """Greedy answers to ``examples`` (left-padded batches; text and image ones apart)."""
    import torch

    if batch_size < 1:
        raise InvalidInput(f"batch_size must be at least 1, got {batch_size}")
    tok = processor.tokenizer
    out: list[str | None] = [None] * len(examples)
    groups = [
        [i for i, e in enumerate(examples) if e.has_image],
        [i for i, e in enumerate(examples) if not e.has_image],
    ]
    side = tok.padding_side
    tok.padding_side = "left"
    try:
        for group in groups:
            for start in range(0, len(group), batch_size):
                idx = group[start : start + batch_size]
                texts = [render_prompt(processor, examples[i].prompt) for i in idx]
                imgs = [examples[i].image for i in idx if examples[i].image is not None]
                inputs = processor(
                    text=texts, images=imgs or None, padding=True, return_tensors="pt"
                )
                with torch.no_grad():
                    seqs = model.generate(
                        **inputs,
                        max_new_tokens=max_new_tokens,
                        do_sample=False,
                        pad_token_id=tok.pad_token_id,
                        eos_token_id=tok.eos_token_id,
                    )
                width = inputs["input_ids"].shape[1]
                for i, row in zip(idx, seqs[:, width:].tolist(), strict=True):
                    if tok.eos_token_id in row:
                        row = row[: row.index(tok.eos_token_id)]
                    out[i] = tok.decode(row, skip_special_tokens=True)
                if progress is not None:
                    progress(len(idx))
    finally:
        tok.padding_side = side
    return [o or "" for o in out]


def evaluate_examples(
    model: Any,
    processor: Any,
    examples: Sequence[MMExample],
    *,
    max_new_tokens: int = 8,
    batch_size: int = 32,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Per-family exact match, the ``language`` and ``vision`` scores and the samples.

    Returns ``families`` (family -> ``{exact_match, n, modality}``), ``language`` and
    ``vision`` (mean over their families, ``None`` when a modality has none) and
    ``samples`` (prompt, answer, output of each example).
    """
    from databazaar.lm.tasks import score_outputs

    if not examples:
        raise InvalidInput("no evaluation examples")
    outputs = answer(
        model,
        processor,
        examples,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        progress=progress,
    )
    tasks = [e.to_task() for e in examples]
    scored = score_outputs(tasks, outputs)["families"]
    modality = {
        t.family: ("vision" if e.has_image else "language")
        for t, e in zip(tasks, examples, strict=True)
    }
    families = {
        f: {"exact_match": float(s["exact_match"]), "n": int(s["n"]), "modality": modality[f]}
        for f, s in sorted(scored.items())
    }
    result: dict[str, Any] = {"families": families}
    for mod in ("language", "vision"):
        vals = [s["exact_match"] for s in families.values() if s["modality"] == mod]
        result[mod] = sum(vals) / len(vals) if vals else None
    result["samples"] = [
        {"family": t.family, "prompt": t.prompt, "answer": t.answer, "output": o}
        for t, o in zip(tasks, outputs, strict=True)
    ]
    return result
