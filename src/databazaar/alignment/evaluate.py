"""Evaluation of preference-trained models (DPO, ORPO, RDPO, RORPO).

* implicit-reward accuracy: the share of held-out pairs whose chosen answer gets the
  higher ``log pi(y|x) - log ref(y|x)`` (DPO's implicit reward up to ``beta``, Rafailov
  et al., 2023, §5), with the starting model as the reference for every method;
* win rate of the model's greedy answers against the reference model's, judged by the
  task grader of :mod:`databazaar.lm.tasks` or by a generation backend asked both ways
  round (to cancel its position bias);
* mean answer length in words (verbosity).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from databazaar.core.errors import InvalidInput
from databazaar.lm.pairs import check_pairs

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from databazaar.lm.generate import GenerationBackend
    from databazaar.lm.tasks import TaskExample


def completion_logps(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompt: str,
    completions: Sequence[str],
) -> list[float]:
    """``log pi(y | x)`` of each completion after the user turn ``prompt`` (EOS included)."""
    from databazaar.lm.local_backend import LocalModelBackend

    backend = LocalModelBackend(model=model, tokenizer=tokenizer)
    return backend.loglikelihood([{"role": "user", "content": prompt}], list(completions))


def implicit_reward_accuracy(
    model: PreTrainedModel,
    ref_model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[Mapping[str, Any]],
) -> dict[str, float]:
    """Share of held-out pairs ranked right by the implicit reward and by the policy.

    ``reward_accuracy``: ``log pi(y_w|x) - log ref(y_w|x) > log pi(y_l|x) - log ref(y_l|x)``
    (DPO's implicit reward up to ``beta``, Rafailov et al., 2023, §5; the same reference,
    the starting model, for every method); ``policy_accuracy``: ``log pi(y_w|x) >
    log pi(y_l|x)``.
    """
    checked = check_pairs(list(pairs))
    right_r = right_p = 0
    for p in checked:
        pw, pl = completion_logps(model, tokenizer, p["prompt"], [p["chosen"], p["rejected"]])
        rw, rl = completion_logps(ref_model, tokenizer, p["prompt"], [p["chosen"], p["rejected"]])
        right_r += (pw - rw) > (pl - rl)
        right_p += pw > pl
    n = len(checked)
    return {"reward_accuracy": right_r / n, "policy_accuracy": right_p / n}


def judge_pairwise(backend: GenerationBackend, prompt: str, first: str, second: str) -> float:
    """1.0 if ``backend`` prefers ``first``, 0.0 if ``second``, 0.5 if it names neither."""
    ask = (
        f"A user wrote: {prompt}\nAnswer 1: {first}\nAnswer 2: {second}\n"
        "Which answer is better? Reply with 1 or 2."
    )
    text = backend.chat([[{"role": "user", "content": ask}]], max_new_tokens=8, logprobs=False)[
        0
    ].text
    for ch in text:
        if ch in "12":
            return 1.0 if ch == "1" else 0.0
    return 0.5


def win_rate(
    outputs: Sequence[str],
    reference_outputs: Sequence[str],
    *,
    examples: Sequence[TaskExample] | None = None,
    judge: GenerationBackend | None = None,
    prompts: Sequence[str] | None = None,
) -> float:
    """Share of prompts where ``outputs`` beat ``reference_outputs`` (ties count half).

    Judged by the task grader (``examples``: a higher exact-match score wins) or by a
    ``judge`` backend (:func:`judge_pairwise`, asked both ways round to cancel its
    position bias).
    """
    if len(outputs) != len(reference_outputs) or not outputs:
        raise InvalidInput("outputs and reference outputs must be non-empty and of equal length")
    if (examples is None) == (judge is None):
        raise InvalidInput(
            "judge by the task grader (examples) or by a backend (judge), one of them"
        )
    scores = []
    if examples is not None:
        from databazaar.lm.tasks import grade

        for ex, a, b in zip(examples, outputs, reference_outputs, strict=True):
            sa, sb = grade(ex, a)["exact_match"], grade(ex, b)["exact_match"]
            scores.append(1.0 if sa > sb else 0.0 if sa < sb else 0.5)
    else:
        if prompts is None or len(prompts) != len(outputs):
            raise InvalidInput("a backend judge needs the prompts")
        assert judge is not None
        for p, a, b in zip(prompts, outputs, reference_outputs, strict=True):
            scores.append((judge_pairwise(judge, p, a, b) + 1 - judge_pairwise(judge, p, b, a)) / 2)
    return sum(scores) / len(scores)


def mean_length(outputs: Sequence[str]) -> float:
    """Mean length of the outputs in whitespace-separated words."""
    return sum(len(o.split()) for o in outputs) / max(1, len(outputs))


def evaluate_preference(
    model: PreTrainedModel,
    ref_model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[Mapping[str, Any]],
    *,
    examples: Sequence[TaskExample] | None = None,
    judge: GenerationBackend | None = None,
    max_new_tokens: int = 32,
    batch_size: int = 32,
) -> dict[str, Any]:
    """Implicit-reward accuracy on ``pairs``; with ``examples``, the greedy answers'
    win rate against the reference model (task grader, or ``judge`` if given), mean
    lengths and exact match of both."""
    out: dict[str, Any] = dict(implicit_reward_accuracy(model, ref_model, tokenizer, pairs))
    if examples:
        from databazaar.lm.evaluate import answer_prompts
        from databazaar.lm.tasks import score_outputs

        prompts = [e.prompt for e in examples]
        kw = {"max_new_tokens": max_new_tokens, "batch_size": batch_size}
        mine = answer_prompts(model, tokenizer, prompts, **kw)
        ref = answer_prompts(ref_model, tokenizer, prompts, **kw)
        if judge is None:
            out["win_rate"] = win_rate(mine, ref, examples=examples)
        else:
            out["win_rate"] = win_rate(mine, ref, judge=judge, prompts=prompts)
        out["win_rate_judge"] = "grader" if judge is None else getattr(judge, "name", "backend")
        out["mean_length"] = mean_length(mine)
        out["reference_mean_length"] = mean_length(ref)
        for key, outs in (("exact_match", mine), ("reference_exact_match", ref)):
            fams = score_outputs(examples, outs)["families"]
            n = sum(f["n"] for f in fams.values())
            out[key] = sum(f.get("exact_match", 0.0) * f["n"] for f in fams.values()) / n
        out["examples"] = [
            {"prompt": p, "output": a, "reference": b}
            for p, a, b in list(zip(prompts, mine, ref, strict=True))[:5]
        ]
    return out
