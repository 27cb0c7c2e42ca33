"""Preference pairs shared by the alignment tests (the model: ``tiny_policy``)."""

from __future__ import annotations

import pytest

PAIRS = [
    {
        "prompt": f"What is {a} + {b}?",
        "chosen": str(a + b),
        "rejected": f"I think it is {a + b + 1}, clearly.",
        "rationale": f"The first is right: {a} + {b} = {a + b}; the second is off by one.",
    }
    for a, b in [(1, 2), (3, 4), (2, 2), (5, 1), (6, 3), (4, 4), (7, 1), (0, 5)]
]


@pytest.fixture()
def pairs() -> list[dict[str, str]]:
    return [dict(p) for p in PAIRS]
