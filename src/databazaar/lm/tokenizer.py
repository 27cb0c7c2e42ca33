"""Byte-level BPE tokenizers trained offline with ``tokenizers``.

The tokenizer is the GPT-2 scheme (Radford et al., 2019, §2.2): text is mapped to bytes,
each byte to a printable symbol, and byte-pair merges are learned from the training
texts. Every string is representable (no unknown token). The result is wrapped as a
``transformers.PreTrainedTokenizerFast`` so it saves to and loads from a plain folder
next to a model (``AutoTokenizer.from_pretrained(folder)`` works).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from databazaar.core.errors import InvalidInput, NotFound

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"


def train_bpe_tokenizer(
    texts: Iterable[str],
    *,
    vocab_size: int = 2048,
    min_frequency: int = 2,
    split_digits: bool = False,
    isolate_newlines: bool = False,
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on ``texts``.

    The vocabulary holds the 256 byte symbols, the special tokens ``<|endoftext|>`` (used
    as BOS/EOS) and ``<|pad|>``, and up to ``vocab_size - 258`` learned merges.
    With ``split_digits`` every digit is its own token (no merges across digits), the
    number representation that lets small models learn arithmetic digit by digit.
    With ``isolate_newlines`` every newline is a token of its own, never merged with the
    spaces next to it: a chat prompt that ends with the assistant header's newline then
    tokenizes as the same prefix as the trained conversation. (Without it, an answer that
    starts with a space before a digit, ``"\n 7"``, trains the merged token ``"\n "``,
    which a generation prompt ending in ``"\n"`` never reaches.)
    Raises :class:`InvalidInput` for a vocabulary below 260 or no non-empty text.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size < 260:
        raise InvalidInput(
            f"vocab_size must be at least 260 (256 bytes + specials), got {vocab_size}"
        )
    data = [t for t in texts if isinstance(t, str) and t]
    if not data:
        raise InvalidInput("cannot train a tokenizer on an empty corpus", hint="pass some text")
    tok = Tokenizer(models.BPE())
    steps: list = []
    if isolate_newlines:
        steps.append(pre_tokenizers.Split("\n", behavior="isolated"))
    if split_digits:
        steps.append(pre_tokenizers.Digits(individual_digits=True))
    steps.append(pre_tokenizers.ByteLevel(add_prefix_space=False))
    tok.pre_tokenizer = steps[0] if len(steps) == 1 else pre_tokenizers.Sequence(steps)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[EOS_TOKEN, PAD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(data, trainer=trainer, length=len(data))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=EOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=None,
        pad_token=PAD_TOKEN,
        model_max_length=1_000_000,
    )


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, folder: str | Path) -> Path:
    """Save a tokenizer to ``folder`` (created if needed) in the ``transformers`` layout."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(out))
    return out


def load_tokenizer(folder: str | Path) -> PreTrainedTokenizerFast:
    """Load a tokenizer saved by :func:`save_tokenizer` (or any local HF tokenizer folder).

    Only the local folder is read: the hub is never contacted.
    """
    from transformers import AutoTokenizer

    path = Path(folder)
    if not path.is_dir():
        raise NotFound(f"tokenizer folder not found: {path}")
    if not (path / "tokenizer.json").is_file() and not (path / "tokenizer_config.json").is_file():
        raise InvalidInput(
            f"{path} holds no tokenizer", hint="expected tokenizer.json or tokenizer_config.json"
        )
    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok
