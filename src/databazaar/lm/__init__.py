"""Shared language-model toolkit: corpora, tokenizers, models, training, chat + SFT, tasks, zoo.

Everything runs offline on a CPU: a byte-level BPE tokenizer is trained from local text,
models are real ``transformers`` GPT-2 classes built from small configs (the same loader
reads a real checkpoint from a local folder), and generation goes through one interface
for a local model folder or an OpenAI-compatible HTTP endpoint.
"""

import logging

from databazaar.lm.chat import (
    CHAT_TEMPLATE,
    EncodedChat,
    encode_chat,
    read_chat_jsonl,
    render_chat,
    set_chat_template,
    write_chat_jsonl,
)
from databazaar.lm.corpus import (
    BUILTIN_DOMAINS,
    MultiDomainCorpus,
    build_corpus,
    builtin_corpus,
    chunk_text,
    load_corpus_dir,
    split_documents,
)
from databazaar.lm.data import (
    TokenizedCorpus,
    check_weights,
    mixture_blocks,
    pack_blocks,
    tokenize_corpus,
)
from databazaar.lm.evaluate import evaluate_tasks
from databazaar.lm.generate import (
    BackendError,
    Generation,
    GenerationBackend,
    PromptsAsChat,
    SamplingParams,
    read_conversations,
)
from databazaar.lm.local_backend import LocalModelBackend
from databazaar.lm.model import ModelConfig, build_model, count_parameters, load_model, save_model
from databazaar.lm.openai_client import OpenAICompatibleBackend
from databazaar.lm.sft import SFTConfig, SFTResult, sft
from databazaar.lm.tasks import (
    FAMILIES,
    HELDOUT_FAMILIES,
    TRAIN_FAMILIES,
    TaskExample,
    generate_tasks,
    grade,
    paraphrase,
    score_outputs,
)
from databazaar.lm.tokenizer import load_tokenizer, save_tokenizer, train_bpe_tokenizer
from databazaar.lm.train import (
    EvalRecord,
    TrainConfig,
    TrainResult,
    evaluate_domains,
    token_losses,
    train_lm,
)
from databazaar.lm.zoo import Zoo, ZooConfig, build_zoo

# bitsandbytes (pulled in by LM-Polygraph, imported by transformers and PEFT) logs a
# warning on CPUs with AVX-512 BF16 that it could not fetch a 4-bit matmul kernel from
# the hub; nothing here quantizes to 4 bits, so the warning only misleads. Its errors
# still show.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

__all__ = [
    "BUILTIN_DOMAINS",
    "CHAT_TEMPLATE",
    "FAMILIES",
    "HELDOUT_FAMILIES",
    "TRAIN_FAMILIES",
    "BackendError",
    "EncodedChat",
    "EvalRecord",
    "Generation",
    "GenerationBackend",
    "LocalModelBackend",
    "ModelConfig",
    "MultiDomainCorpus",
    "OpenAICompatibleBackend",
    "PromptsAsChat",
    "SFTConfig",
    "SFTResult",
    "SamplingParams",
    "TaskExample",
    "TokenizedCorpus",
    "TrainConfig",
    "TrainResult",
    "Zoo",
    "ZooConfig",
    "build_corpus",
    "build_model",
    "build_zoo",
    "builtin_corpus",
    "check_weights",
    "chunk_text",
    "count_parameters",
    "encode_chat",
    "evaluate_domains",
    "evaluate_tasks",
    "generate_tasks",
    "grade",
    "load_corpus_dir",
    "load_model",
    "load_tokenizer",
    "mixture_blocks",
    "pack_blocks",
    "paraphrase",
    "read_chat_jsonl",
    "read_conversations",
    "render_chat",
    "save_model",
    "save_tokenizer",
    "score_outputs",
    "set_chat_template",
    "sft",
    "split_documents",
    "token_losses",
    "tokenize_corpus",
    "train_bpe_tokenizer",
    "train_lm",
    "write_chat_jsonl",
]
