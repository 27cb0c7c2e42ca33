"""A tiny tokenizer and GPT-2 model trained from scratch, shared by the LM tests."""

from __future__ import annotations

from pathlib import Path

import pytest

TEXTS = [
    "def add(a, b):\n    return a + b\n",
    "The quick brown fox jumps over the lazy dog. " * 3,
    "Permission is hereby granted, free of charge, to any person obtaining a copy.",
    "NAME\n    ls - list directory contents\nSYNOPSIS\n    ls [OPTION]... [FILE]...",
    "for i in range(10):\n    print(i * i)\n",
    "Unicode: café, naïve, 数据, emoji 🙂 and tabs\tend.",
] * 4


def train_tiny_gpt2(
    tok, texts: list[str], *, block_size: int, n_positions: int, max_steps: int
) -> tuple:
    """A 1-layer GPT-2 trained on ``texts`` packed into blocks: ``(model, blocks, result)``."""
    from databazaar.lm import ModelConfig, TrainConfig, build_model, pack_blocks, train_lm

    blocks = pack_blocks(texts, tok, block_size)
    model = build_model(
        ModelConfig(n_layer=1, n_embd=32, n_head=2, n_positions=n_positions),
        vocab_size=len(tok),
        seed=0,
        eos_token_id=tok.eos_token_id,
    )
    config = TrainConfig(batch_size=8, max_steps=max_steps, lr=1e-2, num_threads=1)
    return model, blocks, train_lm(model, blocks, config=config)


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tokenizer (vocab 300) and a 1-layer GPT-2 trained 40 steps, saved to a folder."""
    from databazaar.lm import save_model, train_bpe_tokenizer

    tok = train_bpe_tokenizer(TEXTS, vocab_size=300)
    model, blocks, res = train_tiny_gpt2(tok, TEXTS, block_size=16, n_positions=32, max_steps=40)
    folder: Path = tmp_path_factory.mktemp("tiny_lm")
    save_model(model, folder, tok)
    return {"model": model, "tokenizer": tok, "folder": folder, "blocks": blocks, "result": res}


@pytest.fixture()
def tiny_texts() -> list[str]:
    return list(TEXTS)


CHATS = [
    [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi there"}],
    [{"role": "user", "content": "add 2 and 3"}, {"role": "assistant", "content": "5"}],
    [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "name a fox"},
        {"role": "assistant", "content": "the quick brown fox"},
    ],
]


@pytest.fixture(scope="session")
def tiny_chat_lm(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A 1-layer GPT-2 with the default chat template, trained 150 steps on three short
    conversations so it answers them and ends its turn with EOS; saved to a folder."""
    from databazaar.lm import render_chat, save_model, set_chat_template, train_bpe_tokenizer

    tok = set_chat_template(train_bpe_tokenizer(TEXTS, vocab_size=300))
    # render_chat ends each assistant turn with EOS; pack_blocks adds one between texts
    texts = [render_chat(tok, c) for c in CHATS] * 8
    model, _, _ = train_tiny_gpt2(tok, texts, block_size=48, n_positions=96, max_steps=150)
    folder: Path = tmp_path_factory.mktemp("tiny_chat_lm")
    save_model(model, folder, tok)
    return {"model": model, "tokenizer": tok, "folder": folder}
