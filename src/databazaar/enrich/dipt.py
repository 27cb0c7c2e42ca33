"""DiPT: diversified perspective-taking (Just, Dabas, Huang, Jin, Jia; arXiv 2409.06241).

Chain of thought follows one solution path. DiPT asks the model to look at the problem
from several perspectives before it answers: for a multiple-choice question, each
option in turn as the candidate answer (why it could or could not be right); for an
open-ended one, several solution methods that should agree. Two uses, both here:

* **at inference** (:class:`PerspectivePrompting`): a wrapper around any
  :class:`~databazaar.lm.generate.GenerationBackend`. ``mode="dipt"`` asks once per
  perspective (per option, or per solution method), extracts each answer
  (:func:`extract_answer`) and returns the majority over perspectives and samples
  (self-consistency, Wang et al., 2023); ``"cot"`` asks to think step by step and
  ``"plain"`` asks for the answer only, the two baselines of the paper;
* **for training data** (:func:`enrich_sft`): a backend that is told the gold answer
  writes a rationale from every perspective (for each option, why it is or is not the
  answer); the instruction-tuning target becomes that rationale followed by
  ``Answer: <gold>`` (the paper's data recipe: fine-tune on the enriched data instead
  of the raw answers). Generation runs in cached, resumable batches
  (:mod:`databazaar.enrich.batches`).

Records are SFT records: ``{"prompt", "completion"}`` or ``{"messages": [...]}`` (the
last assistant turn is the gold answer), as :mod:`databazaar.lm.chat` reads them.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from databazaar.core.errors import InvalidInput
from databazaar.core.progress import ProgressFn
from databazaar.enrich.batches import generate_texts
from databazaar.lm.generate import SamplingParams

if TYPE_CHECKING:
    from databazaar.lm.generate import GenerationBackend

MODES = ("plain", "cot", "dipt")
#: solution methods used as perspectives of an open-ended question
METHODS = (
    "Solve it directly.",
    "Solve it by restating the question in your own words first.",
    "Guess an answer, then check it against every detail of the question.",
)
_OPTION = re.compile(r"(?:^|\s)([A-H])\)\s*(.+?)(?=\s+[A-H]\)\s|\s+[A-H]\)$|\s+Answer with\b|\s*$)")
_ANSWER = re.compile(r"answer\s*(?:is)?\s*[:=]\s*(.+)", re.IGNORECASE)


def parse_options(question: str) -> dict[str, str]:
    """The lettered options ``A) ... B) ...`` of a multiple-choice question (may be empty)."""
    found = _OPTION.findall(question)
    letters = [k for k, _ in found]
    if len(found) < 2 or letters != sorted(letters) or len(set(letters)) != len(letters):
        return {}
    return {k: v.strip().rstrip(".") for k, v in found}


def extract_answer(text: str, options: Mapping[str, str] | None = None) -> str:
    """The final answer in a model's output ("" when none can be read).

    The text after the last ``Answer:`` (or the whole text when there is none); for a
    multiple-choice question the option letter there, or the letter of the option whose
    text it names; without ``Answer:``, the last option letter mentioned other than as
    a label (``So the fruit is B.`` gives B; ``A) saw is ...`` cut short gives "").
    """
    hits = _ANSWER.findall(text)
    tail = (hits[-1] if hits else text).strip()
    if not options:
        line = tail.splitlines()[0] if tail else ""
        return line.strip().strip(".").strip()
    if hits:
        m = re.match(r"\(?([A-H])\b\)?", tail)
        if m and m.group(1) in options:
            return m.group(1)
        low = tail.lower()
        named = [k for k, v in options.items() if v.lower() in low]
        return named[0] if len(named) == 1 else ""
    # no "Answer:": the last option letter that is not an option label ("B)"), so a
    # reasoning cut off before its conclusion gives no answer rather than option A
    letters = [k for k in re.findall(r"\b([A-H])\b(?!\))", text) if k in options]
    if letters:
        return letters[-1]
    named = [k for k, v in options.items() if text.strip().lower() == v.lower()]
    return named[0] if named else ""


def perspectives(question: str) -> list[str]:
    """One instruction per perspective: per option of a multiple-choice question, else
    per solution method of :data:`METHODS`."""
    opts = parse_options(question)
    if opts:
        return [
            f"Perspective: the answer is {k} ({v}). Check it against the other options, "
            "then end with 'Answer: <letter>'."
            for k, v in opts.items()
        ]
    return [f"{m} Then end with 'Answer: <answer>'." for m in METHODS]


def instruction(question: str, mode: str) -> list[str]:
    """The prompts of one question under ``mode`` (one per perspective for ``dipt``)."""
    if mode == "plain":
        return [question]
    if mode == "cot":
        return [f"{question}\nThink step by step, then end with 'Answer: <answer>'."]
    if mode == "dipt":
        return [f"{question}\n{p}" for p in perspectives(question)]
    raise InvalidInput(f"unknown mode {mode!r}", hint=f"use one of {', '.join(MODES)}")


@dataclass
class DiPTAnswer:
    """The voted answer of one question, the votes and the raw outputs behind it."""

    answer: str
    votes: dict[str, int] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class PerspectivePrompting:
    """Answer questions with a backend under plain, chain-of-thought or DiPT prompting.

    Args:
        backend: any generation backend (chat is used: each prompt is one user turn).
        mode: ``plain``, ``cot`` or ``dipt`` (see the module docstring).
        n_samples: samples per prompt (``temperature`` > 0 makes them differ); the
            answer is the majority over all perspectives and samples, ties to the
            answer seen first.
    """

    def __init__(
        self,
        backend: GenerationBackend,
        *,
        mode: str = "dipt",
        n_samples: int = 1,
        temperature: float = 0.0,
        max_new_tokens: int = 64,
        random_state: int = 0,
    ) -> None:
        if mode not in MODES:
            raise InvalidInput(f"unknown mode {mode!r}", hint=f"use one of {', '.join(MODES)}")
        self.backend = backend
        self.mode = mode
        self.params = SamplingParams(
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            n=n_samples,
            random_state=random_state,
            logprobs=False,
        )

    def answer(
        self, questions: Sequence[str], *, progress: ProgressFn | None = None
    ) -> list[DiPTAnswer]:
        """The voted answer of each question."""
        if isinstance(questions, str) or not all(
            isinstance(q, str) and q.strip() for q in questions
        ):
            raise InvalidInput("questions must be a list of non-empty strings")
        prompts: list[str] = []
        owner: list[int] = []
        for i, q in enumerate(questions):
            for p in instruction(q, self.mode):
                prompts.append(p)
                owner.append(i)
        gens = self.backend.chat([[{"role": "user", "content": p}] for p in prompts], self.params)
        n = self.params.n
        out = [DiPTAnswer(answer="") for _ in questions]
        for j, g in enumerate(gens):
            i = owner[j // n]
            out[i].outputs.append(g.text)
        for q, a in zip(questions, out, strict=True):
            opts = parse_options(q)
            votes = Counter(x for x in (extract_answer(o, opts) for o in a.outputs) if x)
            a.votes = dict(votes)
            a.answer = max(votes, key=lambda k: votes[k]) if votes else ""
            if progress is not None:
                progress(1)
        return out


# ---------------------------------------------------------------------- enrichment
def sft_record(record: Any, where: str) -> tuple[str, str]:
    """``(question, gold answer)`` of an SFT record (prompt/completion or messages)."""
    from databazaar.lm.chat import record_messages

    msgs = record_messages(record, where=where)
    users = [m for m in msgs if m["role"] == "user"]
    if msgs[-1]["role"] != "assistant" or not users:
        raise InvalidInput(f"{where}: the record must end with the assistant's (gold) answer")
    return users[-1]["content"], msgs[-1]["content"]


def rationale_request(question: str, gold: str) -> list[dict[str, str]]:
    """The conversation asking a model for a perspective-taking rationale (gold given)."""
    opts = parse_options(question)
    if opts:
        ask = (
            "Write a short rationale that takes each option's perspective in turn: for every "
            "option, say why it is or is not the answer. Then end with "
            f"'Answer: {gold}'."
        )
    else:
        ask = (
            "Write a short rationale that solves the question in two different ways and "
            f"checks that they agree. Then end with 'Answer: {gold}'."
        )
    return [
        {
            "role": "user",
            "content": f"Question: {question}\nCorrect answer: {gold}\n{ask}",
        }
    ]


def enriched_completion(rationale: str, gold: str) -> str:
    """The training target: the rationale, then ``Answer: <gold>`` (once)."""
    body = rationale.strip()
    hits = list(_ANSWER.finditer(body))
    if hits:
        body = body[: hits[-1].start()].rstrip()
    return f"{body}\nAnswer: {gold}" if body else f"Answer: {gold}"


def enrich_sft(
    records: Sequence[Any],
    backend: GenerationBackend,
    *,
    max_new_tokens: int = 96,
    temperature: float = 0.0,
    random_state: int = 0,
    batch_size: int = 16,
    cache: str | Path | None = None,
    progress: ProgressFn | None = None,
) -> list[dict[str, Any]]:
    """Each SFT record with a perspective-taking rationale written by ``backend``.

    Returns ``{"prompt", "completion", "answer", "rationale", "consistent", "method",
    "generator"}`` per record: ``completion`` is :func:`enriched_completion` (train on
    ``prompt`` -> ``completion``), ``consistent`` whether the rationale's own final
    answer (if it states one) agrees with the gold answer. All records are validated
    before any generation; a backend failure mid-run is resumable from ``cache``.
    """
    if isinstance(records, str | bytes | Mapping) or not isinstance(records, Sequence):
        raise InvalidInput("records must be a list of SFT records")
    if not records:
        raise InvalidInput("no records to enrich")
    pairs = [sft_record(r, f"record {i + 1}") for i, r in enumerate(records)]
    name = getattr(backend, "name", type(backend).__name__)
    texts = generate_texts(
        pairs,
        lambda qa: rationale_request(*qa),
        backend,
        task={"task": "dipt"},
        key_of=lambda qa: {"q": qa[0], "a": qa[1]},
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        random_state=random_state,
        batch_size=batch_size,
        cache=cache,
        progress=progress,
    )
    out = []
    for (q, gold), text in zip(pairs, texts, strict=True):
        opts = parse_options(q)
        stated = extract_answer(text, opts) if _ANSWER.search(text) else ""
        gold_norm = extract_answer(f"Answer: {gold}", opts)
        out.append(
            {
                "prompt": q,
                "completion": enriched_completion(text, gold),
                "answer": gold,
                "rationale": text,
                "consistent": (not stated) or stated.lower() == gold_norm.lower(),
                "method": "dipt",
                "generator": name,
            }
        )
    return out
