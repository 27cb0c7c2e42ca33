"""A LLaVA-style vision-language model from real ``transformers`` classes, tiny for a CPU.

The model is ``LlavaForConditionalGeneration`` (Liu et al., 2023): a CLIP vision tower
(``CLIPVisionConfig``), a two-layer GELU MLP projector and a Llama causal LM
(``LlamaConfig``), the architecture MLAN tunes (Tu et al., 2024, arXiv 2411.10557: frozen
CLIP ViT-L/14-336, 2-layer MLP projector, Llama 2 / Vicuna 7B), here with a 32 x 32
image cut into 8 x 8 patches (16 image tokens after the CLS token is dropped, LLaVA's
``vision_feature_select_strategy="default"``, features from the penultimate layer).
The processor is a real ``LlavaProcessor`` (CLIP image processor + the tokenizer, whose
chat template and ``<image>`` token it saves), so a model folder written by
:func:`save_multimodal` reloads with ``transformers`` alone::

    model = LlavaForConditionalGeneration.from_pretrained(folder)
    processor = AutoProcessor.from_pretrained(folder)

and :func:`load_multimodal` reads a real LLaVA checkpoint folder the same way.

The vision tower is random and stays frozen (a real checkpoint's CLIP tower would be
loaded instead); the language model is pretrained from scratch on plain text by
:func:`pretrain_base` before the two MLAN phases (:mod:`.train`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from databazaar.core.errors import InvalidInput
from databazaar.core.progress import ProgressFn

if TYPE_CHECKING:
    from transformers import LlavaForConditionalGeneration, LlavaProcessor

IMAGE_TOKEN = "<image>"
PART_PREFIXES = {
    "vision_tower": "model.vision_tower.",
    "projector": "model.multi_modal_projector.",
    "language_model": ("model.language_model.", "lm_head."),
}


@dataclass(frozen=True)
class MultimodalConfig:
    """Sizes of a tiny LLaVA: Llama text model, CLIP vision tower, image and patch size."""

    n_layer: int = 2
    n_embd: int = 128
    n_head: int = 4
    n_positions: int = 160
    vision_layers: int = 2
    vision_hidden: int = 64
    vision_heads: int = 4
    image_size: int = 32
    patch_size: int = 8
    vocab_size: int = 512

    def validate(self) -> None:
        """Raise :class:`InvalidInput` for sizes that cannot build."""
        for name, value in asdict(self).items():
            if value < 1:
                raise InvalidInput(f"{name} must be at least 1, got {value}")
        if self.n_embd % self.n_head or self.vision_hidden % self.vision_heads:
            raise InvalidInput("hidden sizes must be divisible by their head counts")
        if self.image_size % self.patch_size:
            raise InvalidInput(
                f"image_size ({self.image_size}) must be a multiple of "
                f"patch_size ({self.patch_size})"
            )
        if self.vocab_size < 260:
            raise InvalidInput(f"vocab_size must be at least 260, got {self.vocab_size}")

    @property
    def image_tokens(self) -> int:
        """Placeholder tokens per image: one per patch (the CLS feature is dropped)."""
        return (self.image_size // self.patch_size) ** 2

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def build_tokenizer(texts: Sequence[str], config: MultimodalConfig) -> Any:
    """A byte-level BPE tokenizer on ``texts`` with digits split, the chat template and
    the ``<image>`` placeholder as a special token."""
    from databazaar.lm.chat import set_chat_template
    from databazaar.lm.tokenizer import train_bpe_tokenizer

    tok = train_bpe_tokenizer(texts, vocab_size=config.vocab_size, split_digits=True)
    tok.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    set_chat_template(tok)
    return tok


def build_processor(tokenizer: Any, config: MultimodalConfig) -> LlavaProcessor:
    """A ``LlavaProcessor`` (CLIP preprocessing at ``image_size``) around ``tokenizer``."""
    from transformers import CLIPImageProcessorPil, LlavaProcessor

    size = config.image_size
    images = CLIPImageProcessorPil(
        size={"shortest_edge": size}, crop_size={"height": size, "width": size}
    )
    return LlavaProcessor(
        image_processor=images,
        tokenizer=tokenizer,
        patch_size=config.patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=tokenizer.chat_template,
    )


def build_multimodal(
    config: MultimodalConfig, tokenizer: Any, *, seed: int = 0
) -> LlavaForConditionalGeneration:
    """A freshly initialised tiny ``LlavaForConditionalGeneration`` (from ``seed``)."""
    import torch
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
    )

    config.validate()
    image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    if image_id is None or image_id == tokenizer.unk_token_id:
        raise InvalidInput(f"the tokenizer has no {IMAGE_TOKEN} token", hint="use build_tokenizer")
    vision = CLIPVisionConfig(
        hidden_size=config.vision_hidden,
        intermediate_size=4 * config.vision_hidden,
        num_hidden_layers=config.vision_layers,
        num_attention_heads=config.vision_heads,
        image_size=config.image_size,
        patch_size=config.patch_size,
        projection_dim=config.vision_hidden,
    )
    eos = tokenizer.eos_token_id
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.n_embd,
        intermediate_size=4 * config.n_embd,
        num_hidden_layers=config.n_layer,
        num_attention_heads=config.n_head,
        num_key_value_heads=config.n_head,
        max_position_embeddings=config.n_positions,
        bos_token_id=eos,
        eos_token_id=eos,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    llava = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=image_id,
        image_seq_length=config.image_tokens,
        projector_hidden_act="gelu",
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(llava)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = eos
    model.eval()
    return model


def part_parameters(model: Any, part: str) -> dict[str, Any]:
    """Name -> parameter of one part: ``vision_tower``, ``projector`` or ``language_model``."""
    if part not in PART_PREFIXES:
        raise InvalidInput(f"unknown part {part!r}", hint=f"use one of {', '.join(PART_PREFIXES)}")
    prefixes = PART_PREFIXES[part]
    return {n: p for n, p in model.named_parameters() if n.startswith(prefixes)}


def set_trainable(model: Any, parts: Sequence[str]) -> int:
    """Freeze every parameter except those of ``parts``; returns the trainable count."""
    for p in model.parameters():
        p.requires_grad_(False)
    n = 0
    for part in parts:
        for p in part_parameters(model, part).values():
            p.requires_grad_(True)
            n += p.numel()
    return n


def image_tokens(model: Any) -> int:
    """Placeholder tokens per image of ``model`` (patches, minus CLS for "default")."""
    vc = model.config.vision_config
    n = (vc.image_size // vc.patch_size) ** 2
    return n if model.config.vision_feature_select_strategy == "default" else n + 1


def pretrain_base(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    steps: int,
    lr: float = 2e-3,
    batch_size: int = 32,
    block_size: int = 64,
    seed: int = 0,
    num_threads: int | None = None,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Pretrain the language model of ``model`` on plain ``texts`` (packed blocks).

    The stand-in for the pretrained LLM (Llama 2) MLAN starts from: only the language
    model trains (vision tower and projector frozen). Returns steps and losses.
    """
    from databazaar.lm.data import pack_blocks
    from databazaar.lm.train import TrainConfig, train_lm

    if steps < 1:
        raise InvalidInput(f"pretraining steps must be at least 1, got {steps}")
    set_trainable(model, ["language_model"])
    blocks = pack_blocks(list(texts), tokenizer, block_size)
    if len(blocks) == 0:
        raise InvalidInput("the pretraining text is shorter than one block")
    cfg = TrainConfig(
        batch_size=batch_size, lr=lr, max_steps=steps, seed=seed, num_threads=num_threads
    )
    res = train_lm(model, blocks, config=cfg, progress=progress)
    return {
        "steps": res.steps,
        "tokens": res.tokens,
        "first_loss": res.train_loss[0],
        "final_loss": float(sum(res.train_loss[-20:]) / len(res.train_loss[-20:])),
        "seconds": res.seconds,
    }


def save_multimodal(model: Any, processor: Any, folder: str | Path, **meta: Any) -> Path:
    """Save weights, config and processor (tokenizer, image processor, chat template);
    ``meta`` goes to ``multimodal.json`` next to them."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    processor.save_pretrained(str(out))
    if meta:
        (out / "multimodal.json").write_text(json.dumps(meta, indent=1, default=str))
    return out


def load_multimodal(folder: str | Path) -> tuple[Any, Any]:
    """Load a LLaVA model and its processor from a local folder (no hub).

    Raises :class:`NotFound` for a missing folder and :class:`InvalidInput` for a folder
    whose config is not a LLaVA model or which does not load.
    """
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    from databazaar.lm.model import read_model_type

    path = Path(folder)
    model_type = read_model_type(path)
    if model_type != "llava":
        raise InvalidInput(
            f"{path} holds a {model_type!r} model, not a LLaVA vision-language model",
            hint="create one with `databazaar align multimodal-init`",
        )
    try:
        model = LlavaForConditionalGeneration.from_pretrained(str(path), local_files_only=True)
        processor = AutoProcessor.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"{path} does not load: {str(exc).splitlines()[0]}") from exc
    if processor.tokenizer.pad_token is None:
        processor.tokenizer.pad_token = processor.tokenizer.eos_token
    model.eval()
    return model, processor


def read_meta(folder: str | Path) -> dict[str, Any]:
    """``multimodal.json`` of a model folder (empty for a folder without one)."""
    p = Path(folder) / "multimodal.json"
    return json.loads(p.read_text()) if p.is_file() else {}
