"""Token blocks per domain, and mixtures of them for a token budget.

Documents are tokenized, joined with the end-of-text token and cut into fixed-length
blocks (the standard causal-LM packing). A mixture with per-domain quantities
``N_i`` (tokens) takes ``round(N_i / block_size)`` blocks from domain ``i``; when a domain
has fewer blocks than asked, its blocks are repeated (new shuffle per pass), which is the
data-repetition regime of data-constrained scaling.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from databazaar.core.errors import InvalidInput

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from databazaar.lm.corpus import MultiDomainCorpus


@dataclass
class TokenizedCorpus:
    """Train and validation token blocks (``int64`` arrays of shape ``[n, block_size]``)."""

    domains: list[str]
    train: dict[str, np.ndarray]
    val: dict[str, np.ndarray]
    block_size: int
    vocab_size: int
    eos_token_id: int

    def train_tokens(self) -> dict[str, int]:
        """Tokens available for training per domain."""
        return {d: int(self.train[d].size) for d in self.domains}

    def limit_val(self, max_blocks: int) -> TokenizedCorpus:
        """A copy whose validation sets keep at most ``max_blocks`` blocks per domain."""
        return TokenizedCorpus(
            domains=list(self.domains),
            train=self.train,
            val={d: v[:max_blocks] for d, v in self.val.items()},
            block_size=self.block_size,
            vocab_size=self.vocab_size,
            eos_token_id=self.eos_token_id,
        )


def pack_blocks(
    docs: Sequence[str], tokenizer: PreTrainedTokenizerBase, block_size: int
) -> np.ndarray:
    """Tokenize ``docs``, join them with EOS and cut into ``[n, block_size]`` blocks."""
    if block_size < 2:
        raise InvalidInput(f"block_size must be at least 2, got {block_size}")
    eos = tokenizer.eos_token_id
    ids: list[int] = []
    if docs:
        enc = tokenizer(list(docs), add_special_tokens=False)["input_ids"]
        for row in enc:
            ids.extend(row)
            ids.append(eos)
    n = len(ids) // block_size
    return np.asarray(ids[: n * block_size], dtype=np.int64).reshape(n, block_size)


def tokenize_corpus(
    corpus: MultiDomainCorpus, tokenizer: PreTrainedTokenizerBase, *, block_size: int = 64
) -> TokenizedCorpus:
    """Pack every domain's train and validation documents into token blocks.

    Raises :class:`InvalidInput` if a domain yields no full block in either split.
    """
    train: dict[str, np.ndarray] = {}
    val: dict[str, np.ndarray] = {}
    for d in corpus.domains:
        train[d] = pack_blocks(corpus.train[d], tokenizer, block_size)
        val[d] = pack_blocks(corpus.val[d], tokenizer, block_size)
        if len(train[d]) == 0 or len(val[d]) == 0:
            raise InvalidInput(
                f"domain {d!r} has too little text for one {block_size}-token block per split",
                hint="add text or lower block_size",
            )
    return TokenizedCorpus(
        domains=corpus.domains,
        train=train,
        val=val,
        block_size=block_size,
        vocab_size=len(tokenizer),
        eos_token_id=int(tokenizer.eos_token_id),
    )


def check_weights(
    weights: Mapping[str, float] | Sequence[float], domains: Sequence[str]
) -> np.ndarray:
    """Validate mixture weights and return them as an array aligned with ``domains``.

    Weights must be finite, non-negative, cover exactly the given domains (for a
    mapping) and sum to 1 within 1e-6. Raises :class:`InvalidInput` otherwise.
    """
    if isinstance(weights, Mapping):
        unknown = sorted(set(weights) - set(domains))
        absent = [d for d in domains if d not in weights]
        if unknown or absent:
            raise InvalidInput(
                "weights do not match the corpus domains"
                + (f"; unknown: {', '.join(unknown)}" if unknown else "")
                + (f"; missing: {', '.join(absent)}" if absent else ""),
                hint=f"give one weight for each of {', '.join(domains)}",
            )
        w = np.array([float(weights[d]) for d in domains])
    else:
        w = np.asarray(list(weights), dtype=float)
        if w.shape != (len(domains),):
            raise InvalidInput(f"expected {len(domains)} weights, got {w.size}")
    if not np.all(np.isfinite(w)):
        raise InvalidInput("weights must be finite numbers")
    if np.any(w < 0):
        raise InvalidInput("weights must be non-negative")
    if abs(w.sum() - 1.0) > 1e-6:
        raise InvalidInput(f"weights must sum to 1, got {w.sum():.6g}", hint="normalise them")
    return w


def mixture_blocks(
    data: TokenizedCorpus,
    quantities: Mapping[str, float] | Sequence[float],
    *,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw a training set with ``quantities[i]`` tokens from domain ``i``.

    Returns ``(blocks, domain_index)``, shuffled together. Blocks of a domain are taken in
    a random order fixed by ``(seed, domain position)`` without replacement, starting a
    new random pass (repetition) only after all of that domain's blocks were used. For one
    seed, a larger quantity of a domain is a superset of a smaller one, whatever the other
    domains' quantities (common random numbers for proxy runs).
    """
    if isinstance(quantities, Mapping):
        unknown = sorted(set(quantities) - set(data.domains))
        if unknown:
            raise InvalidInput(
                f"quantities name unknown domain(s): {', '.join(unknown)}",
                hint=f"the corpus has {', '.join(data.domains)}",
            )
        q = np.array([float(quantities.get(d, 0.0)) for d in data.domains])
    else:
        q = np.asarray(list(quantities), dtype=float)
    if q.shape != (len(data.domains),) or not np.all(np.isfinite(q)) or np.any(q < 0):
        raise InvalidInput("quantities must be one finite non-negative token count per domain")
    parts: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    for i, d in enumerate(data.domains):
        n_blocks = int(np.rint(q[i] / data.block_size))
        pool = data.train[d]
        if n_blocks == 0:
            continue
        # one generator per domain: a larger quantity extends the same order (nested sets)
        dom_rng = np.random.default_rng([seed, i])
        passes = -(-n_blocks // len(pool))
        order = np.concatenate([dom_rng.permutation(len(pool)) for _ in range(passes)])
        order = order[:n_blocks]
        parts.append(pool[order])
        labels.append(np.full(n_blocks, i, dtype=np.int64))
    if not parts:
        raise InvalidInput("the mixture is empty: the budget buys no full block")
    blocks = np.concatenate(parts)
    lab = np.concatenate(labels)
    perm = np.random.default_rng([seed, len(data.domains)]).permutation(len(blocks))
    return blocks[perm], lab[perm]
