"""A zoo of tiny models trained from scratch: a base LM and an instruction-tuned assistant.

:func:`build_zoo` trains, in order,

1. a byte-level BPE tokenizer (digits split) on the task suite's training text,
2. the **base** model: a small causal LM pretrained with :func:`databazaar.lm.train.train_lm`
   on recall drills (facts, then one restated; :func:`databazaar.lm.tasks.recall_drills`),
   then on drills taking turns with the ``lookup`` family's training chats (the
   "bridge"); recipes without drills pretrain on plain ``prompt answer`` text of the
   benign task families instead (no refusals either way),
3. the **assistant**: the base model fine-tuned with :func:`databazaar.lm.sft.sft` on
   chat-formatted examples of every training family, including refusals of the
   surrogate unsafe family next to answers to its benign look-alikes,

then scores the assistant on held-out test prompts (a different ``eval_random_state``
than the training draw) and writes ``zoo.json``. The result is cached in
``<root>/<config hash>/``: the hash covers the whole :class:`ZooConfig`, the risk
category names read from the taxonomy and :data:`ZOO_VERSION`, so tests and benchmarks of
later issues reuse one build and a changed recipe builds a new one. A build is written
to a temporary folder and renamed into place when complete.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from databazaar.core.errors import InvalidInput
from databazaar.core.progress import ProgressFn
from databazaar.lm.model import ModelConfig
from databazaar.lm.sft import SFTConfig

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

    from databazaar.lm.tasks import TaskExample

ZOO_VERSION = 1
#: training examples per family: most on the two families the assistant must master
TRAIN_MIX = {
    "arithmetic": 6000,
    "lookup": 5000,
    "unsafe": 800,
    "benign": 1000,
    "multiple_choice": 300,
    "summarize": 300,
    "strings": 100,
    "classify": 100,
}
SMALL_MIX = {
    "unsafe": 1200,
    "benign": 1200,
    "classify": 300,
    "multiple_choice": 300,
    "arithmetic": 300,
    "lookup": 300,
    "strings": 100,
    "summarize": 100,
}
BASE_FAMILIES = ("arithmetic", "lookup", "strings", "multiple_choice", "summarize", "classify")


@dataclass(frozen=True)
class ZooConfig:
    """The recipe of a zoo build (every field enters the cache key).

    The defaults are recipe N: a 2 x 128 Llama on a 1,024-token vocabulary, 1,000 drill
    steps and 3,000 bridge steps at 3e-4 (batch 48), then 2,000 SFT steps at 1e-3 (batch
    64), answers led by a space. Its base stage is recipe L's (dev seed 99, row
    ``L_b48_d1000_b3000alt_s1700`` of ``lm_zoo_dev.jsonl``); L's SFT (1,700 steps at
    5e-4) left arithmetic on an edge (0.67 on its report seed), and the SFT settings were
    re-chosen on dev seeds (``lm_zoo_sft_dev.jsonl``). Reported on a fresh seed in
    ``benchmarks/results/lm_zoo.md``; :meth:`gpt2_v3` is the recipe the curriculum
    replaced.
    """

    model: ModelConfig = field(
        default_factory=lambda: ModelConfig(
            n_layer=2, n_embd=128, n_head=4, n_positions=160, architecture="llama"
        )
    )
    vocab_size: int = 1024
    n_train_per_family: dict[str, int] = field(default_factory=lambda: dict(TRAIN_MIX))
    base_steps: int = 1000
    base_lr: float = 3e-4
    base_batch_size: int = 48
    #: with N > 0 the base model is pretrained on N recall drills
    #: (:func:`~databazaar.lm.tasks.recall_drills`: facts, then one restated, the loss on
    #: the restated value only) instead of plain task text: in-context binding of a name
    #: to its value, which the ``lookup`` family needs and which tiny models trained on
    #: lookup chats alone never reach (benchmarks/results/lm_lookup_probe.md).
    recall_drills: int = 60_000
    #: with N > 0 (and drills) the base stage goes on for N more steps, drill batches
    #: taking turns with batches of the ``lookup`` family's training chats (chat template,
    #: loss on the answer), at the drills' constant rate: a curriculum from adjacent
    #: binding to the lookup layout, which the drills alone reach only partly and SFT on
    #: all families at once does not reach.
    bridge_steps: int = 3000
    sft: SFTConfig = field(
        default_factory=lambda: SFTConfig(max_steps=2000, lr=1e-3, batch_size=64, warmup_ratio=0.05)
    )
    n_eval_per_family: int = 100
    #: text put before every trained assistant answer. With ``" "`` an answer word is
    #: the same byte-level BPE token as that word inside the prompt (" Oslo" in both),
    #: so the model can answer a lookup by copying a prompt token; with ``""`` the answer
    #: after the template's newline is a different token sequence ("O" "slo"). Recipe 4
    #: (lead on, no drills) scored worse (lm_zoo_attempt4.md) because the template's
    #: newline and the lead merged into one token; with newlines kept apart
    #: (``train_bpe_tokenizer(isolate_newlines=True)``) the lead is part of the default.
    answer_lead: str = " "
    random_state: int = 0
    eval_random_state: int = 1
    num_threads: int | None = None

    @classmethod
    def small(cls) -> ZooConfig:
        """A reduced recipe for test suites (a few minutes on 2 cores).

        Weighted towards the refusal behaviour (unsafe vs benign look-alikes), which a
        small model learns in a few hundred steps; its arithmetic and lookup stay weak.
        """
        return replace(
            cls.gpt2_v3(),
            model=ModelConfig(n_layer=2, n_embd=64, n_head=4, n_positions=160),
            n_train_per_family=dict(SMALL_MIX),
            base_steps=10,
            sft=SFTConfig(max_steps=300, lr=3e-3, batch_size=32, warmup_ratio=0.05),
            n_eval_per_family=30,
        )

    @classmethod
    def gpt2_v3(cls) -> ZooConfig:
        """Recipe 3, the default until the recall-drill recipe (kept for builds made on it).

        A 2 x 128 GPT-2 on a 512-token vocabulary, 30 base steps on plain task text, 3,500
        SFT steps at 1.5e-3 (batch 32): arithmetic 0.83, lookup 0.34 on report seed 3
        (``benchmarks/results/lm_zoo.md``). :meth:`small` and the uncertainty
        benchmark's summariser derive from it, so their hashes and results hold.
        """
        return cls(
            model=ModelConfig(n_layer=2, n_embd=128, n_head=4, n_positions=160),
            vocab_size=512,
            n_train_per_family=dict(TRAIN_MIX),
            base_steps=30,
            base_lr=2e-3,
            base_batch_size=16,
            recall_drills=0,
            bridge_steps=0,
            sft=SFTConfig(max_steps=3500, lr=1.5e-3, batch_size=32, warmup_ratio=0.05),
            answer_lead="",
        )

    @property
    def total_steps(self) -> int:
        """Optimizer steps of a build (base, bridge and SFT), for progress bars."""
        bridge = self.bridge_steps if self.recall_drills and self.base_steps else 0
        return self.base_steps + bridge + (self.sft.max_steps or 0)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("num_threads")  # affects speed, not the result
        # fields added later leave the dict at their defaults: earlier builds keep their hash
        for name, default in (
            ("answer_lead", ""),
            ("base_batch_size", 16),
            ("recall_drills", 0),
            ("bridge_steps", 0),
        ):
            if d[name] == default:
                d.pop(name)
        for name in ("init_std", "intermediate_size"):  # likewise
            if d["model"][name] is None:
                d["model"].pop(name)
        return d


#: named recipes for scripts and benchmarks: the default, the test suite's reduced one and
#: recipe 3 (the default before the recall-drill curriculum)
RECIPES = {"default": ZooConfig, "small": ZooConfig.small, "gpt2_v3": ZooConfig.gpt2_v3}


def config_hash(config: ZooConfig, taxonomy: str | Path | None = None) -> str:
    """16 hex digits identifying the build: recipe, category names and zoo version."""
    from databazaar.lm.tasks import read_air_categories

    names = [c.name for c in read_air_categories(taxonomy)]
    key: dict[str, Any] = {"config": config.to_dict(), "categories": names, "version": ZOO_VERSION}
    if config.answer_lead:
        # builds with a lead made before newlines were isolated tokenized "\n " as one
        # token; this keeps them from being served from the cache
        key["tokenizer"] = "isolated-newlines"
    blob = json.dumps(key, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def default_zoo_root() -> Path:
    """``<data home>/zoo`` (``DATABAZAAR_HOME``, default ``~/.databazaar``)."""
    from databazaar.core.config import get_settings

    return Path(get_settings().home) / "zoo"


@dataclass
class Zoo:
    """A finished build: its folder, the two model folders and ``zoo.json``'s content."""

    root: Path
    meta: dict[str, Any]

    @property
    def base_dir(self) -> Path:
        return self.root / "base"

    @property
    def assistant_dir(self) -> Path:
        return self.root / "assistant"

    @property
    def scores(self) -> dict[str, Any]:
        return self.meta["scores"]


def _load(folder: Path) -> Zoo | None:
    meta = folder / "zoo.json"
    if not meta.is_file():
        return None
    return Zoo(root=folder, meta=json.loads(meta.read_text()))


def build_zoo(
    config: ZooConfig | None = None,
    *,
    out: str | Path | None = None,
    taxonomy: str | Path | None = None,
    force: bool = False,
    progress: ProgressFn | None = None,
) -> Zoo:
    """Build (or reuse from the cache) the tiny base model and assistant.

    ``out`` is the cache root (default :func:`default_zoo_root`); the build lands in
    ``out/<hash>``. With ``force`` an existing build is replaced. ``progress`` advances
    once per training step (base then SFT).
    """
    config = config or ZooConfig()
    key = config_hash(config, taxonomy)
    root = Path(out) if out is not None else default_zoo_root()
    final = root / key
    found = _load(final)
    if found is not None and not force:
        return found
    from databazaar.core.io import staged_dir

    with staged_dir(final) as tmp:
        meta = _build(config, tmp, taxonomy, progress)
        meta["hash"] = key
        (tmp / "zoo.json").write_text(json.dumps(meta, indent=1))
    return Zoo(root=final, meta=meta)


def training_data(
    config: ZooConfig, taxonomy: str | Path | None = None
) -> tuple[list[TaskExample], list[list[dict[str, str]]]]:
    """The build's training examples (shuffled by the recipe's seed) and their chats."""
    import numpy as np

    from databazaar.lm.tasks import generate_tasks

    train = generate_tasks(
        n_per_family=config.n_train_per_family,
        split="train",
        random_state=config.random_state,
        taxonomy=taxonomy,
    )
    order = np.random.default_rng(config.random_state).permutation(len(train))
    train = [train[i] for i in order]
    return train, training_conversations(train, config.answer_lead)


def training_conversations(
    examples: Sequence[TaskExample], answer_lead: str = ""
) -> list[list[dict[str, str]]]:
    """The examples as user/assistant chats, each answer prefixed by ``answer_lead``."""
    return [
        [
            {"role": "user", "content": e.prompt},
            {"role": "assistant", "content": answer_lead + e.answer},
        ]
        for e in examples
    ]


def drill_rows(config: ZooConfig, tok: Any) -> tuple[Any, Any]:
    """The recall drills of ``config`` as padded token rows and their loss masks.

    Each row is one drill (EOS-padded on the right); the mask marks the restated value,
    the one token the drill trains (as in a supervised answer).
    """
    from databazaar.lm.tasks import recall_drills

    texts = recall_drills(config.recall_drills, config.random_state)
    heads = [t[: t.rindex(" ", 0, len(t) - 1)] for t in texts]  # up to the restated value
    rows = tok(texts, add_special_tokens=False)["input_ids"]
    starts = [len(h) for h in tok(heads, add_special_tokens=False)["input_ids"]]
    # the target runs from the restated value to the full stop (not included)
    masks = [
        [int(a <= j < len(r) - 1) for j in range(len(r))] for a, r in zip(starts, rows, strict=True)
    ]
    return pad_rows(rows, masks, tok.eos_token_id)


def chat_rows(tok: Any, conversations: Sequence[list[dict[str, str]]]) -> tuple[Any, Any]:
    """Chats rendered with ``tok``'s chat template as padded rows and assistant masks.

    The mask marks the tokens inside the template's ``{% generation %}`` spans (answers
    and their EOS), the tokens supervised fine-tuning trains.
    """
    out = tok.apply_chat_template(
        list(conversations), tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    return pad_rows(out["input_ids"], out["assistant_masks"], tok.eos_token_id)


def pad_rows(
    rows: Sequence[Sequence[int]], masks: Sequence[Sequence[int]], pad: int
) -> tuple[Any, Any]:
    """Token rows and their loss masks as ``[n, longest + 1]`` arrays padded with ``pad``
    (mask 0), so every row ends in at least one pad token (its EOS)."""
    import numpy as np

    width = max(len(r) for r in rows) + 1
    blocks = np.full((len(rows), width), pad, dtype=np.int64)
    mask = np.zeros_like(blocks)
    for i, (r, m) in enumerate(zip(rows, masks, strict=True)):
        blocks[i, : len(r)] = r
        mask[i, : len(m)] = m
    return blocks, mask


def stack_rows(pad: int, *parts: tuple[Any, Any]) -> tuple[Any, Any]:
    """Row sets of different widths as one block array and mask, padded with ``pad``."""
    import numpy as np

    width = max(b.shape[1] for b, _ in parts)
    blocks = np.concatenate(
        [np.pad(b, ((0, 0), (0, width - b.shape[1])), constant_values=pad) for b, _ in parts]
    )
    mask = np.concatenate([np.pad(m, ((0, 0), (0, width - m.shape[1]))) for _, m in parts])
    return blocks, mask


def zoo_tokenizer(
    conversations: Sequence[list[dict[str, str]]], vocab_size: int
) -> PreTrainedTokenizerFast:
    """The zoo's tokenizer: byte-level BPE trained on the chats as the template renders
    them, single-digit tokens, newlines as tokens of their own, the chat template set."""
    from databazaar.lm.chat import set_chat_template
    from databazaar.lm.tokenizer import train_bpe_tokenizer

    texts = [f"<|user|>\n{u['content']}\n<|assistant|>\n{a['content']}" for u, a in conversations]
    tok = train_bpe_tokenizer(
        texts, vocab_size=vocab_size, split_digits=True, isolate_newlines=True
    )
    set_chat_template(tok)
    return tok


def _build(
    config: ZooConfig, folder: Path, taxonomy: str | Path | None, progress: ProgressFn | None
) -> dict[str, Any]:
    import numpy as np

    from databazaar.lm.data import pack_blocks
    from databazaar.lm.evaluate import evaluate_tasks
    from databazaar.lm.model import build_model, count_parameters, save_model
    from databazaar.lm.sft import sft
    from databazaar.lm.tasks import TRAIN_FAMILIES, generate_tasks
    from databazaar.lm.train import TrainConfig, set_threads, train_lm

    if config.base_steps < 0:
        raise InvalidInput(f"base_steps must be >= 0, got {config.base_steps}")
    set_threads(config.num_threads)
    t0 = time.perf_counter()
    train, conversations = training_data(config, taxonomy)
    plain = [f"{e.prompt} {e.answer}" for e in train if e.family in BASE_FAMILIES]
    tok = zoo_tokenizer(conversations, config.vocab_size)
    model = build_model(
        config.model,
        vocab_size=len(tok),
        seed=config.random_state,
        eos_token_id=tok.eos_token_id,
    )
    timings: dict[str, float] = {"tokenizer_and_data": time.perf_counter() - t0}
    t1 = time.perf_counter()
    base_result: dict[str, Any] = {"steps": 0}
    if config.base_steps:
        mask = None
        if config.recall_drills:
            blocks, mask = drill_rows(config, tok)
        else:
            blocks = pack_blocks(plain, tok, min(64, config.model.n_positions))
        base_cfg = TrainConfig(
            batch_size=config.base_batch_size,
            lr=config.base_lr,
            max_steps=config.base_steps,
            seed=config.random_state,
            num_threads=config.num_threads,
            weight_decay=0.0 if config.recall_drills else TrainConfig.weight_decay,
            # drills keep their rate after warm-up: binding starts late and a decaying
            # rate stalls it (benchmarks/results/lm_lookup_probe.md, session 9)
            min_lr_ratio=1.0 if config.recall_drills else TrainConfig.min_lr_ratio,
        )
        res = train_lm(model, blocks, config=base_cfg, progress=progress, loss_mask=mask)
        base_result = {"steps": res.steps, "final_train_loss": res.train_loss[-1]}
        if config.recall_drills and config.bridge_steps:
            lookup = [c for c, e in zip(conversations, train, strict=True) if e.family == "lookup"]
            # drill batches and lookup-chat batches take turns (as many drills as chats)
            drills = (blocks[: len(lookup)], mask[: len(lookup)])
            blocks, mask = stack_rows(tok.eos_token_id, drills, chat_rows(tok, lookup))
            groups = np.repeat([0, 1], [len(drills[0]), len(blocks) - len(drills[0])])
            res = train_lm(
                model,
                blocks,
                # the drill stage's settings (no decay, constant rate), its own steps and seed
                config=replace(
                    base_cfg, max_steps=config.bridge_steps, seed=config.random_state + 1
                ),
                progress=progress,
                loss_mask=mask,
                groups=groups,
            )
            base_result["bridge_steps"] = res.steps
            base_result["bridge_final_train_loss"] = res.train_loss[-1]
    save_model(model, folder / "base", tok)
    timings["base"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    sft_cfg = SFTConfig(**{**config.sft.to_dict(), "random_state": config.random_state})
    model, result = sft(
        model,
        tok,
        conversations,
        folder / "assistant",
        config=sft_cfg,
        progress=progress,
    )
    shutil.rmtree(folder / "assistant" / "checkpoints", ignore_errors=True)
    timings["sft"] = time.perf_counter() - t2
    build_seconds = time.perf_counter() - t0
    t3 = time.perf_counter()
    test = generate_tasks(
        TRAIN_FAMILIES,
        n_per_family=config.n_eval_per_family,
        split="test",
        random_state=config.eval_random_state,
        taxonomy=taxonomy,
    )
    scores = evaluate_tasks(model, tok, test, num_threads=config.num_threads)
    timings["eval"] = time.perf_counter() - t3
    return {
        "config": config.to_dict(),
        "zoo_version": ZOO_VERSION,
        "parameters": count_parameters(model),
        "vocab_size": len(tok),
        "base": base_result,
        "sft": {k: v for k, v in result.to_dict().items() if k != "scores"},
        "build_seconds": build_seconds,
        "timings": timings,
        "scores": scores,
    }
