"""A rule-based teacher: a generation backend that writes correct rationales for the task suite.

DiPT and rationale enrichment need a model that can explain a known answer. No such
model is available offline, and the tiny models of :mod:`databazaar.lm.zoo` cannot, so
for the task suite of :mod:`databazaar.lm.tasks` this backend plays the teacher: it
reads the enrichment requests of :mod:`databazaar.enrich.dipt` and
:mod:`databazaar.enrich.rationales` and writes the rationale a careful annotator would,
by rule:

* a DiPT request about a ``multiple_choice`` question: each option's perspective in
  turn (``A) plum is a fruit, not an animal.``), then the answer;
* a DiPT request about ``arithmetic``: the sum computed two ways (left to right, and
  from the other operand), which agree;
* a rationale request for an arithmetic preference pair: the rule that decides it (the
  first answer states the right value and the second a wrong one, or adds words),
  in the ``general`` or ``detailed`` style.

Requests it cannot read get the answer without reasoning. It is a real backend (chat
and completions through the common interface), used by the enrichment benchmarks and
tests; with a real model folder or server the same enrichment code runs unchanged.
"""

from __future__ import annotations

import re

from databazaar.core.progress import ProgressFn
from databazaar.lm.generate import Conversation, Generation, GenerationBackend, SamplingParams
from databazaar.lm.tasks import KINDS

_KIND_OF = {w: k for k, words in KINDS.items() for w in words}


def kind_of(word: str) -> str:
    """The kind (fruit, animal, tool, color) of a word of the multiple-choice task."""
    return _KIND_OF.get(word.lower(), "unknown thing")


def _mc_rationale(question: str, gold: str) -> str | None:
    from databazaar.enrich.dipt import parse_options

    opts = parse_options(question)
    m = re.search(r"(?:Which|What) one is an? (\w+)\?", question)
    if not opts or not m:
        return None
    kind = m.group(1)
    parts = []
    for k, v in opts.items():
        got = kind_of(v)
        parts.append(f"{k}) {v} is a {got}" + ("." if got == kind else f", not a {kind}."))
    return " ".join(parts) + f" So the {kind} is {gold}."


def _sum_of(question: str) -> tuple[int, str, int, int] | None:
    m = re.search(r"(\d+)\s*([+-])\s*(\d+)", question)
    if not m:
        return None
    a, op, b = int(m.group(1)), m.group(2), int(m.group(3))
    return (a + b if op == "+" else a - b), op, a, b


def _arith_rationale(question: str) -> str | None:
    got = _sum_of(question)
    if got is None:
        return None
    value, op, a, b = got
    if op == "+":
        return f"{a} plus {b} gives {value}; {b} plus {a} also gives {value}."
    return f"Taking {b} from {a} gives {value}; check: {value} + {b} = {a}."


def _pair_rationale(text: str) -> str:
    prompt = re.search(r"A user wrote: (.*)", text)
    first = re.search(r"First answer: (.*)", text)
    second = re.search(r"Second answer: (.*)", text)
    detailed = "concrete content" in text
    if not (prompt and first and second):
        return "The first answer follows the prompt better."
    got = _sum_of(prompt.group(1))
    a_txt, b_txt = first.group(1).strip(), second.group(1).strip()
    if got is None:
        return "The first answer follows the prompt better."
    value = got[0]
    nums = re.findall(r"-?\d+", b_txt)
    b_right = bool(nums) and int(nums[0]) == value
    if not detailed:
        return (
            "The first answer gives the correct result."
            if not b_right
            else "Both are correct, but the first is short and direct."
        )
    if not b_right:
        wrong = nums[0] if nums else "no number"
        return (
            f"The correct result is {value}. The first answer says {a_txt}, which is right; "
            f"the second says {wrong}, which is wrong, however long it is."
        )
    return (
        f"Both give {value}, but the second adds words the question did not ask for; "
        "the short answer is better."
    )


def teach(text: str) -> str:
    """The teacher's answer to one request (see the module docstring)."""
    if "First answer:" in text and "The first answer is preferred" in text:
        return _pair_rationale(text)
    q = re.search(r"Question: (.*)\nCorrect answer: (.*)\n", text)
    if q:
        question, gold = q.group(1), q.group(2).strip()
        body = _mc_rationale(question, gold) or _arith_rationale(question)
        return f"{body} Answer: {gold}" if body else f"Answer: {gold}"
    got = _sum_of(text)
    return f"Answer: {got[0]}" if got else "I do not know."


class RuleTeacher(GenerationBackend):
    """The rule-based teacher as a backend (deterministic; ``n`` copies per prompt)."""

    name = "rule-teacher"

    def __init__(self) -> None:
        self.calls = 0  # requests answered (one per prompt or conversation)

    def _answer(self, text: str, params: SamplingParams) -> list[Generation]:
        self.calls += 1
        out = teach(text)
        if params.max_new_tokens is not None:
            out = " ".join(out.split(" ")[: params.max_new_tokens])
        return [Generation(text=out, finish_reason="stop", sample_index=j) for j in range(params.n)]

    def _complete(
        self, prompts: list[str], params: SamplingParams, progress: ProgressFn | None
    ) -> list[Generation]:
        return self._each(prompts, params, progress, self._answer)

    def _chat(
        self, conversations: list[Conversation], params: SamplingParams, progress: ProgressFn | None
    ) -> list[Generation]:
        texts = [c[-1]["content"] for c in conversations]
        return self._each(texts, params, progress, self._answer)


def open_enrich_backend(spec: str, api_model: str | None = None) -> GenerationBackend:
    """``rule-teacher``, a model folder or an OpenAI-compatible base URL as a backend."""
    if spec == "rule-teacher":
        return RuleTeacher()
    from databazaar.lm.openai_client import open_backend

    return open_backend(spec, api_model=api_model)
