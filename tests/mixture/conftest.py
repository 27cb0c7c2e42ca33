"""A small three-domain corpus, tokenizer and proxy config shared by the mixture tests.

The domains differ in how predictable they are (templated code, repetitive license-like
boilerplate, varied prose), so proxy runs see real loss differences between mixtures.
"""

from __future__ import annotations

import numpy as np
import pytest


def _texts(seed: int = 0) -> dict[str, list[str]]:
    rng = np.random.default_rng(seed)
    words = (
        "data market buyer seller price value model train token budget domain weight loss "
        "scale law fit curve proxy run step batch mixture corpus sample quality"
    ).split()
    code = [
        f"def f_{i}(x, y):\n    z = x * {i} + y\n    return z - {i % 7}\n" * 3 for i in range(40)
    ]
    boiler = [
        "Permission is hereby granted, free of charge, to any person obtaining a copy "
        f"of this software (version {i % 3}), to deal in the Software without restriction. "
        for i in range(40)
    ]
    prose = [" ".join(rng.choice(words, size=60).tolist()) + "." for _ in range(40)]
    return {"code": code, "boiler": boiler, "prose": prose}


@pytest.fixture(scope="session")
def mix_data():  # type: ignore[no-untyped-def]
    """(tokenizer, TokenizedCorpus) with block size 16 and a 300-token vocabulary."""
    from databazaar.lm import build_corpus
    from databazaar.mixture import prepare_data

    corpus = build_corpus(_texts(), val_fraction=0.2, seed=0)
    return prepare_data(corpus, vocab_size=300, block_size=16)


@pytest.fixture(scope="session")
def proxy():  # type: ignore[no-untyped-def]
    from databazaar.lm import ModelConfig, TrainConfig
    from databazaar.mixture import ProxyConfig

    return ProxyConfig(
        model=ModelConfig(n_layer=1, n_embd=16, n_head=2, n_positions=16),
        train=TrainConfig(batch_size=8, lr=1e-2),
        eval_blocks=8,
        num_threads=1,
    )


@pytest.fixture(scope="session")
def corpus_texts() -> dict[str, list[str]]:
    return _texts()
