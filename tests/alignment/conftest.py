"""A tiny chat model built fresh (1-layer GPT-2, untrained) for the preference tests."""

from __future__ import annotations

import pytest

TEXTS = [
    "<|user|>\nWhat is 2 + 3?\n<|assistant|>\n5",
    "<|user|>\nName a fruit.\n<|assistant|>\napple",
    "The first answer is correct and the second one is wrong.",
    "Given the prompt: which answer is better and follows the prompt? Explain why.",
] * 4


@pytest.fixture(scope="session")
def tiny_policy():  # type: ignore[no-untyped-def]
    """``(model, tokenizer)``: a fresh 1-layer GPT-2 with the default chat template."""
    from databazaar.lm import ModelConfig, build_model, set_chat_template, train_bpe_tokenizer

    tok = set_chat_template(train_bpe_tokenizer(TEXTS, vocab_size=300))
    model = build_model(
        ModelConfig(n_layer=1, n_embd=32, n_head=2, n_positions=256),
        vocab_size=len(tok),
        seed=0,
        eos_token_id=tok.eos_token_id,
    )
    return model, tok


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
