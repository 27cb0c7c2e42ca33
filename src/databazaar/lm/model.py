"""Decoder-only language models from small ``transformers`` configs.

Models are the real GPT-2 classes (``GPT2LMHeadModel``) built from a small config and
initialised from a seed, so the same code path loads a real checkpoint from a local
folder with :func:`load_model` (``AutoModelForCausalLM.from_pretrained(folder)``, local
files only). The hub is never contacted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from databazaar.core.errors import InvalidInput, NotFound

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass(frozen=True)
class ModelConfig:
    """Size of a GPT-2 family model (Radford et al., 2019) built from scratch.

    Dropout defaults to 0 so training is a deterministic function of the seed and the
    data order.
    """

    n_layer: int = 2
    n_embd: int = 64
    n_head: int = 4
    n_positions: int = 128
    dropout: float = 0.0

    def validate(self) -> None:
        """Raise :class:`InvalidInput` for impossible sizes."""
        for name in ("n_layer", "n_embd", "n_head", "n_positions"):
            if getattr(self, name) < 1:
                raise InvalidInput(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.n_embd % self.n_head:
            raise InvalidInput(
                f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise InvalidInput(f"dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_model(
    config: ModelConfig, *, vocab_size: int, seed: int = 0, eos_token_id: int | None = None
) -> PreTrainedModel:
    """A freshly initialised ``GPT2LMHeadModel`` of the given size (weights from ``seed``)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    config.validate()
    if vocab_size < 2:
        raise InvalidInput(f"vocab_size must be at least 2, got {vocab_size}")
    hf = GPT2Config(
        vocab_size=vocab_size,
        n_positions=config.n_positions,
        n_embd=config.n_embd,
        n_layer=config.n_layer,
        n_head=config.n_head,
        resid_pdrop=config.dropout,
        embd_pdrop=config.dropout,
        attn_pdrop=config.dropout,
        bos_token_id=eos_token_id if eos_token_id is not None else 0,
        eos_token_id=eos_token_id if eos_token_id is not None else 0,
    )
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(hf)
    model.eval()
    return model


def count_parameters(model: PreTrainedModel) -> int:
    """Number of trainable parameters (tied embeddings counted once)."""
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


def save_model(
    model: PreTrainedModel,
    folder: str | Path,
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> Path:
    """Save model weights and config (and the tokenizer, if given) to ``folder``."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(out))
    return out


def load_model(
    folder: str | Path, *, with_tokenizer: bool = True
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase | None]:
    """Load a causal LM (and its tokenizer) from a local folder, e.g. a real checkpoint.

    Raises :class:`NotFound` if the folder does not exist and :class:`InvalidInput` if it
    holds no model config. The model is returned in eval mode.
    """
    from transformers import AutoModelForCausalLM

    from databazaar.lm.tokenizer import load_tokenizer

    path = Path(folder)
    if not path.is_dir():
        raise NotFound(f"model folder not found: {path}")
    if not (path / "config.json").is_file():
        raise InvalidInput(f"{path} holds no model", hint="expected config.json and weights")
    model = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True)
    model.eval()
    tok = load_tokenizer(path) if with_tokenizer else None
    return model, tok
