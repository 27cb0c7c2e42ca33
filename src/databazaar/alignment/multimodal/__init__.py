"""Language-only instruction tuning of vision-language models (MLAN, Tu et al., 2024).

A tiny LLaVA (``LlavaForConditionalGeneration``: CLIP vision tower, MLP projector, Llama
LM) built from ``transformers`` configs (:mod:`.model`); offline rendered scenes, charts
and their questions (:mod:`.scenes`, :mod:`.build`); the two training phases, projector
alignment on captions and instruction tuning on text-only, vision-language or mixed data
with token accounting (:mod:`.train`); zero-shot evaluation per task and modality
(:mod:`.evaluate`). The CLI is ``databazaar align multimodal*``.
"""

from databazaar.alignment.multimodal.build import (
    BaseConfig,
    DataConfig,
    build_base,
    build_data,
    pretraining_texts,
)
from databazaar.alignment.multimodal.data import MMExample, mix_examples, read_examples
from databazaar.alignment.multimodal.evaluate import answer, evaluate_examples
from databazaar.alignment.multimodal.model import (
    MultimodalConfig,
    build_multimodal,
    build_processor,
    build_tokenizer,
    load_multimodal,
    part_parameters,
    save_multimodal,
)
from databazaar.alignment.multimodal.train import (
    TuneConfig,
    TuneResult,
    align_projector,
    instruction_tune,
    save_tuned,
)

__all__ = [
    "BaseConfig",
    "DataConfig",
    "MMExample",
    "MultimodalConfig",
    "TuneConfig",
    "TuneResult",
    "align_projector",
    "answer",
    "build_base",
    "build_data",
    "build_multimodal",
    "build_processor",
    "build_tokenizer",
    "evaluate_examples",
    "instruction_tune",
    "load_multimodal",
    "mix_examples",
    "part_parameters",
    "pretraining_texts",
    "read_examples",
    "save_multimodal",
    "save_tuned",
]
