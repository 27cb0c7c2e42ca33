"""Win rate (grader or backend judge), mean length."""

from __future__ import annotations

import pytest

from databazaar.core.errors import InvalidInput
from databazaar.lm.generate import Generation, GenerationBackend


class AlwaysFirst(GenerationBackend):
    """A judge with total position bias: it always answers "1"."""

    name = "always-first"

    def _complete(self, prompts, params, progress):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    def _chat(self, conversations, params, progress):  # type: ignore[no-untyped-def]
        return [Generation(text="1", finish_reason="stop") for _ in conversations]


class PrefersShorter(AlwaysFirst):
    """A judge that prefers the shorter answer, wherever it is shown."""

    name = "prefers-shorter"

    def _chat(self, conversations, params, progress):  # type: ignore[no-untyped-def]
        out = []
        for c in conversations:
            text = c[-1]["content"]
            a = text.split("Answer 1: ")[1].split("\nAnswer 2: ")[0]
            b = text.split("Answer 2: ")[1].split("\nWhich")[0]
            out.append(Generation(text="1" if len(a) <= len(b) else "2", finish_reason="stop"))
        return out


def test_win_rate_by_grader_and_by_judge() -> None:
    from databazaar.alignment import mean_length, win_rate
    from databazaar.lm.tasks import TaskExample

    exs = [TaskExample("arithmetic", f"What is {i} + 1?", str(i + 1), "numeric") for i in range(4)]
    mine = ["1", "2", "9", "It is 4."]  # right, right, wrong, right
    ref = ["0", "2", "3", "5"]  # wrong, right, right, wrong
    assert win_rate(mine, ref, examples=exs) == pytest.approx((1 + 0.5 + 0 + 1) / 4)
    prompts = [e.prompt for e in exs]
    # asked both ways round, a judge that always says "1" has no preference at all
    assert win_rate(mine, ref, judge=AlwaysFirst(), prompts=prompts) == 0.5
    # "It is 4." is longer than "5"; the others tie on length (first shown wins ties)
    assert win_rate(mine, ref, judge=PrefersShorter(), prompts=prompts) == pytest.approx(
        (0.5 + 0.5 + 0.5 + 0.0) / 4
    )
    assert mean_length(mine) == pytest.approx((1 + 1 + 1 + 3) / 4)
    with pytest.raises(InvalidInput, match="one of them"):
        win_rate(mine, ref)
    with pytest.raises(InvalidInput, match="equal length"):
        win_rate(mine, ref[:2], examples=exs)
    with pytest.raises(InvalidInput, match="needs the prompts"):
        win_rate(mine, ref, judge=AlwaysFirst())
