"""Decoder-only language models from small ``transformers`` configs.

Models are the real ``transformers`` classes (``GPT2LMHeadModel`` by default;
``LlamaForCausalLM`` and ``MistralForCausalLM`` with ``architecture="llama"`` or
``"mistral"``) built from a small config and initialised from a seed, so the same code
path loads a real checkpoint from a local folder with :func:`load_model`
(``AutoModelForCausalLM.from_pretrained(folder)``, local files only). The hub is never contacted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from databazaar.core.errors import InvalidInput, NotFound

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


ARCHITECTURES = ("gpt2", "llama", "mistral")


@dataclass(frozen=True)
class ModelConfig:
    """Size of a decoder-only model built from scratch.

    ``architecture`` picks GPT-2 (Radford et al., 2019: learned positions, LayerNorm,
    GELU MLP), Llama (Touvron et al., 2023: rotary positions, RMSNorm, SwiGLU MLP, untied
    head) or Mistral (Jiang et al., 2023: Llama's block with sliding-window attention;
    here the window is the context). For Llama and Mistral ``n_embd`` is the hidden size
    and the MLP is ``4 * n_embd`` wide. Dropout defaults to 0 so training is a
    deterministic function of the seed and the data order. ``init_std`` is the standard
    deviation of the normal initialisation of the weights (``initializer_range`` in
    ``transformers``; ``None`` keeps its default of 0.02). Tiny models escape the loss
    plateau of in-context retrieval faster from a larger scale (see ``lm.zoo``).
    """

    n_layer: int = 2
    n_embd: int = 64
    n_head: int = 4
    n_positions: int = 128
    dropout: float = 0.0
    architecture: str = "gpt2"
    init_std: float | None = None
    #: width of the MLP's hidden layer; ``None`` is ``4 * n_embd`` (GPT-2's). Llama's own
    #: recipe uses about ``8/3 * n_embd`` for its three-matrix SwiGLU MLP, the same
    #: parameters as GPT-2's two-matrix ``4 * n_embd`` MLP.
    intermediate_size: int | None = None

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
        if self.intermediate_size is not None and self.intermediate_size < 1:
            raise InvalidInput(
                f"intermediate_size must be at least 1, got {self.intermediate_size}"
            )
        if self.init_std is not None and not self.init_std > 0:
            raise InvalidInput(f"init_std must be positive, got {self.init_std}")
        if self.architecture not in ARCHITECTURES:
            raise InvalidInput(
                f"unknown architecture {self.architecture!r}",
                hint=f"use one of {', '.join(ARCHITECTURES)}",
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_model(
    config: ModelConfig, *, vocab_size: int, seed: int = 0, eos_token_id: int | None = None
) -> PreTrainedModel:
    """A freshly initialised causal LM of the given size and architecture (from ``seed``)."""
    import torch
    import transformers

    config.validate()
    if vocab_size < 2:
        raise InvalidInput(f"vocab_size must be at least 2, got {vocab_size}")
    eos = eos_token_id if eos_token_id is not None else 0
    init = {} if config.init_std is None else {"initializer_range": config.init_std}
    mlp = config.intermediate_size or 4 * config.n_embd
    if config.architecture == "gpt2":
        model_cls = transformers.GPT2LMHeadModel
        hf = transformers.GPT2Config(
            vocab_size=vocab_size,
            n_positions=config.n_positions,
            n_embd=config.n_embd,
            n_layer=config.n_layer,
            n_head=config.n_head,
            resid_pdrop=config.dropout,
            embd_pdrop=config.dropout,
            attn_pdrop=config.dropout,
            n_inner=mlp,
            bos_token_id=eos,
            eos_token_id=eos,
            **init,
        )
    else:
        name = "Llama" if config.architecture == "llama" else "Mistral"
        model_cls = getattr(transformers, f"{name}ForCausalLM")
        extra = {"sliding_window": config.n_positions} if name == "Mistral" else {}
        hf = getattr(transformers, f"{name}Config")(
            vocab_size=vocab_size,
            hidden_size=config.n_embd,
            intermediate_size=mlp,
            num_hidden_layers=config.n_layer,
            num_attention_heads=config.n_head,
            num_key_value_heads=config.n_head,
            max_position_embeddings=config.n_positions,
            attention_dropout=config.dropout,
            bos_token_id=eos,
            eos_token_id=eos,
            tie_word_embeddings=False,
            **extra,
            **init,
        )
    torch.manual_seed(seed)
    model = model_cls(hf)
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


def read_model_type(folder: str | Path) -> str | None:
    """The ``model_type`` in ``folder/config.json`` (no weights are read).

    Raises :class:`NotFound` for a missing folder and :class:`InvalidInput` for a folder
    without a config or with an unreadable one.
    """
    import json

    path = Path(folder)
    if not path.is_dir():
        raise NotFound(f"model folder not found: {path}")
    cfg = path / "config.json"
    if not cfg.is_file():
        raise InvalidInput(f"{path} holds no model", hint="expected config.json and weights")
    try:
        model_type = json.loads(cfg.read_text(encoding="utf-8")).get("model_type")
    except (ValueError, AttributeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{cfg} is not a readable model config: {exc}") from exc
    return None if model_type is None else str(model_type)


def check_causal_lm(folder: str | Path) -> str:
    """The ``model_type`` of the config in ``folder`` if it is a causal LM, else an error.

    Reads ``config.json`` only (no weights), so a wrong folder fails fast: :class:`NotFound`
    for a missing folder, :class:`InvalidInput` for no or unreadable config or a model type
    without a causal-LM head in ``transformers`` (an encoder, a vision model, ...).
    """
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    model_type = read_model_type(folder)
    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise InvalidInput(
            f"{Path(folder)} holds a {model_type!r} model, which is not a causal language model",
            hint="give a decoder-only model folder (GPT-2, Llama, Mistral, ...)",
        )
    return str(model_type)


def load_model(
    folder: str | Path, *, with_tokenizer: bool = True
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase | None]:
    """Load a causal LM (and its tokenizer) from a local folder, e.g. a real checkpoint.

    Raises :class:`NotFound` if the folder does not exist and :class:`InvalidInput` if it
    holds no model config, a model that is not a causal LM or unreadable weights. The
    model is returned in eval mode.
    """
    from transformers import AutoModelForCausalLM

    from databazaar.lm.tokenizer import load_tokenizer

    path = Path(folder)
    check_causal_lm(path)
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise InvalidInput(
            f"{path} does not load as a causal language model: {str(exc).splitlines()[0]}",
            hint="expected a transformers causal LM folder (config.json and weights)",
        ) from exc
    model.eval()
    tok = load_tokenizer(path) if with_tokenizer else None
    return model, tok
