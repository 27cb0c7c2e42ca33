"""Machine-written rationales for preference pairs (Just et al., 2024, arXiv 2407.14477).

The paper enriches a preference data set by asking an off-the-shelf model, for each
pair ``(x, y_w, y_l)`` and its known label, to explain why ``y_w`` is preferred; no
human writes a rationale. It uses two styles: a *general* rationale (a short,
high-level reason) and a *detailed* one that points at concrete content (what is
correct, relevant or concise in one answer and wrong or missing in the other). The
enriched pairs train RDPO and RORPO (:mod:`databazaar.alignment.preference`).

:func:`generate_rationales` works with any :class:`~databazaar.lm.generate.GenerationBackend`
(a local model folder or an OpenAI-compatible server), in cached, resumable batches
(:mod:`databazaar.enrich.batches`): a backend failing mid-run loses at most the batch
in flight, and the same call resumes without repeating or duplicating a record.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from databazaar.core.errors import InvalidInput
from databazaar.core.progress import ProgressFn
from databazaar.enrich.batches import generate_texts
from databazaar.lm.pairs import check_pairs

if TYPE_CHECKING:
    from databazaar.lm.generate import GenerationBackend

STYLES = ("general", "detailed")

_STYLE_ASK = {
    "general": "In one or two sentences, say at a high level why the first answer is better.",
    "detailed": (
        "Explain why the first answer is better, pointing at the concrete content: what it "
        "gets right (correctness, relevance, brevity) and what the second one gets wrong "
        "or adds without need."
    ),
}


def rationale_request(pair: Mapping[str, Any], style: str = "general") -> list[dict[str, str]]:
    """The conversation asking a model for the rationale of one pair (label included)."""
    if style not in STYLES:
        raise InvalidInput(f"unknown rationale style {style!r}", hint=f"use {' or '.join(STYLES)}")
    text = (
        f"A user wrote: {pair['prompt']}\n"
        f"First answer: {pair['chosen']}\n"
        f"Second answer: {pair['rejected']}\n"
        f"The first answer is preferred. {_STYLE_ASK[style]}"
    )
    return [{"role": "user", "content": text}]


def generate_rationales(
    pairs: Sequence[Mapping[str, Any]],
    backend: GenerationBackend,
    *,
    style: str = "general",
    max_new_tokens: int = 96,
    temperature: float = 0.0,
    random_state: int = 0,
    batch_size: int = 16,
    cache: str | Path | None = None,
    progress: ProgressFn | None = None,
) -> list[dict[str, Any]]:
    """Each pair with a ``rationale`` written by ``backend`` (and its style and generator).

    Pairs are validated first (:func:`~databazaar.lm.pairs.check_pair`: fields present,
    ``chosen`` differs from ``rejected``); nothing is generated for bad input. ``cache``
    is the resumable cache file (``None``: in memory). An empty rationale is a backend
    failure (:class:`~databazaar.lm.generate.BackendError`). Existing ``rationale``
    fields are replaced.
    """
    if style not in STYLES:
        raise InvalidInput(f"unknown rationale style {style!r}", hint=f"use {' or '.join(STYLES)}")
    checked = check_pairs(list(pairs))
    name = getattr(backend, "name", type(backend).__name__)
    core = [{f: p[f] for f in ("prompt", "chosen", "rejected")} for p in checked]
    texts = generate_texts(
        core,
        lambda p: rationale_request(p, style),
        backend,
        task={"task": "rationale", "style": style},
        key_of=lambda p: p,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        random_state=random_state,
        batch_size=batch_size,
        cache=cache,
        progress=progress,
    )
    return [
        {
            **p,
            "rationale": t,
            "rationale_style": style,
            "rationale_generator": name,
        }
        for p, t in zip(checked, texts, strict=True)
    ]
