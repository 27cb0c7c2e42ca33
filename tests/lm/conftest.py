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


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tokenizer (vocab 300) and a 1-layer GPT-2 trained 40 steps, saved to a folder."""
    from databazaar.lm import (
        ModelConfig,
        TrainConfig,
        build_model,
        pack_blocks,
        save_model,
        train_bpe_tokenizer,
        train_lm,
    )

    tok = train_bpe_tokenizer(TEXTS, vocab_size=300)
    blocks = pack_blocks(TEXTS, tok, 16)
    model = build_model(
        ModelConfig(n_layer=1, n_embd=32, n_head=2, n_positions=32),
        vocab_size=len(tok),
        seed=0,
        eos_token_id=tok.eos_token_id,
    )
    res = train_lm(
        model, blocks, config=TrainConfig(batch_size=8, max_steps=40, lr=1e-2, num_threads=1)
    )
    folder: Path = tmp_path_factory.mktemp("tiny_lm")
    save_model(model, folder, tok)
    return {"model": model, "tokenizer": tok, "folder": folder, "blocks": blocks, "result": res}


@pytest.fixture()
def tiny_texts() -> list[str]:
    return list(TEXTS)
