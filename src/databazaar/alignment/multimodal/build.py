"""The offline data set and the pretrained tiny base model of the MLAN experiment.

:func:`build_data` writes a data folder (all seeded, images as PNG files)::

    images/           rendered scenes and bar charts (:mod:`.scenes`)
    captions.jsonl    phase 1: image + caption, train scenes
    text.jsonl        phase 2 language instructions: the task suite's families
                      (:data:`TEXT_FAMILIES`, :mod:`databazaar.lm.tasks`) and reading
                      comprehension over written scenes of the tuning types (scene_color, ...)
    vision.jsonl      phase 2 vision instructions: image_<type> of the tuning types
    eval_language.jsonl  held-out language types: the suite's held-out families
                      (multiply, last_letter) and scene_<type> of the held-out types
    eval_vision.jsonl held-out vision types: image_<type> of the held-out types

Train files use train-split scenes and prompts, evaluation files test-split ones, and no
held-out *type* appears in any tuning file.

:func:`build_base` stands in for the pretrained multimodal model MLAN starts from: it
trains the tokenizer, builds the tiny LLaVA (:mod:`.model`) and pretrains its language
model on plain ``prompt\\nanswer`` text (:func:`pretraining_texts`): the task suite's
families (held-out ones included: a pretrained LLM *knows* products and spellings, the
instruction format is what it has not seen), written scenes with questions of every type,
and scene descriptions. No chat format and no image occurs in pretraining. Phase 1 then
aligns the projector (:func:`databazaar.alignment.multimodal.train.align_projector`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from databazaar.alignment.multimodal import scenes as sc
from databazaar.alignment.multimodal.data import CAPTION_PROMPT, MMExample
from databazaar.core.errors import InvalidInput
from databazaar.core.progress import ProgressFn

TEXT_FAMILIES = ("arithmetic", "lookup", "strings", "multiple_choice", "classify")
LANGUAGE_HELDOUT = ("multiply", "last_letter")
FILES = ("captions.jsonl", "text.jsonl", "vision.jsonl", "eval_language.jsonl", "eval_vision.jsonl")


@dataclass(frozen=True)
class DataConfig:
    """How many examples each file gets (per family / type)."""

    n_captions: int = 2000
    n_text_per_family: int = 400
    n_vision_per_type: int = 600
    n_eval_per_family: int = 50
    random_state: int = 0

    def validate(self) -> None:
        for name, value in asdict(self).items():
            if name != "random_state" and value < 1:
                raise InvalidInput(f"{name} must be at least 1, got {value}")

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def _question_record(q: sc.SceneQuestion, image_path: str | None) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "prompt": q.prompt,
        "answer": q.answer,
        "family": q.family,
        "grader": q.grader,
    }
    if image_path is not None:
        rec["image"] = image_path
    return rec


def _task_record(t: Any) -> dict[str, Any]:
    if t.grader not in ("exact", "numeric"):
        raise InvalidInput(f"family {t.family!r} has no exact-match grader")
    return {"prompt": t.prompt, "answer": t.answer, "family": t.family, "grader": t.grader}


def build_data(
    out: str | Path, config: DataConfig | None = None, *, progress: ProgressFn | None = None
) -> dict[str, int]:
    """Write the data folder ``out`` (all files or nothing); returns lines per file."""
    from databazaar.core.io import staged_dir
    from databazaar.lm.pairs import write_jsonl
    from databazaar.lm.tasks import generate_tasks

    config = config or DataConfig()
    config.validate()
    seed = config.random_state
    counts: dict[str, int] = {}
    with staged_dir(out) as tmp:
        (tmp / "images").mkdir()
        n_img = 0

        def save(scene: sc.Scene) -> str:
            nonlocal n_img
            rel = f"images/{n_img:06d}.png"
            scene.render().save(tmp / rel)
            n_img += 1
            if progress is not None:
                progress(1)
            return rel

        caps = [
            {"image": save(s), "caption": s.caption, "prompt": CAPTION_PROMPT}
            for s in sc.draw_scenes(config.n_captions, split="train", random_state=seed)
        ]
        text = [
            _task_record(t)
            for t in generate_tasks(
                TEXT_FAMILIES,
                n_per_family=config.n_text_per_family,
                split="train",
                random_state=seed,
            )
        ]
        text += [
            _question_record(q, None)
            for q in sc.generate_questions(
                sc.TUNING_TYPES,
                n_per_type=config.n_text_per_family,
                modality="language",
                random_state=seed,
            )
        ]
        vision = [
            _question_record(q, save(q.scene))
            for q in sc.generate_questions(
                sc.TUNING_TYPES, n_per_type=config.n_vision_per_type, random_state=seed
            )
        ]
        n_eval = config.n_eval_per_family
        eval_lang = [
            _task_record(t)
            for t in generate_tasks(
                LANGUAGE_HELDOUT, n_per_family=n_eval, split="test", random_state=seed
            )
        ]
        eval_lang += [
            _question_record(q, None)
            for q in sc.generate_questions(
                sc.HELDOUT_TYPES,
                n_per_type=n_eval,
                modality="language",
                split="test",
                random_state=seed,
            )
        ]
        eval_vis = [
            _question_record(q, save(q.scene))
            for q in sc.generate_questions(
                sc.HELDOUT_TYPES, n_per_type=n_eval, split="test", random_state=seed
            )
        ]
        rng = np.random.default_rng(seed)
        text = [text[i] for i in rng.permutation(len(text))]
        for name, rows in zip(FILES, (caps, text, vision, eval_lang, eval_vis), strict=True):
            write_jsonl(rows, tmp / name)
            counts[name] = len(rows)
        counts["images"] = n_img
    return counts


def pretraining_texts(n_per_family: int = 600, *, random_state: int = 0) -> list[str]:
    """Plain ``prompt\\nanswer`` documents of the base LM (shuffled, seeded).

    ``n_per_family`` of each: the suite's :data:`TEXT_FAMILIES` and
    :data:`LANGUAGE_HELDOUT` families (both splits of the held-out ones: knowledge, not
    format), written train scenes with a question of every type, and train-scene
    descriptions in the phase-1 caption format.
    """
    from databazaar.lm.tasks import generate_tasks

    if n_per_family < 1:
        raise InvalidInput(f"n_per_family must be at least 1, got {n_per_family}")
    seed = random_state + 7919  # other draws than the tuning files of the same seed
    docs = [
        f"{t.prompt}\n{t.answer}"
        for split in ("train", "test")
        for t in generate_tasks(
            LANGUAGE_HELDOUT, n_per_family=n_per_family, split=split, random_state=seed
        )
    ]
    docs += [
        f"{t.prompt}\n{t.answer}"
        for t in generate_tasks(
            TEXT_FAMILIES, n_per_family=n_per_family, split="train", random_state=seed
        )
    ]
    docs += [
        f"{q.prompt}\n{q.answer}"
        for q in sc.generate_questions(
            sc.QUESTION_TYPES, n_per_type=n_per_family, modality="language", random_state=seed
        )
    ]
    describe = CAPTION_PROMPT.replace(sc.IMAGE_TOKEN, "{}")
    docs += [
        f"{describe.format(s.caption)}\n{s.caption}"
        for s in sc.draw_scenes(n_per_family, split="train", random_state=seed)
    ]
    rng = np.random.default_rng(seed)
    return [docs[i] for i in rng.permutation(len(docs))]


@dataclass(frozen=True)
class BaseConfig:
    """Recipe of the base model: sizes, pretraining text and steps."""

    n_docs_per_family: int = 600
    steps: int = 1500
    lr: float = 2e-3
    batch_size: int = 32
    block_size: int = 64
    random_state: int = 0

    def validate(self) -> None:
        for name in ("n_docs_per_family", "steps", "batch_size", "block_size"):
            if getattr(self, name) < 1:
                raise InvalidInput(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise InvalidInput(f"lr must be positive, got {self.lr}")


def build_base(
    model_config: Any = None,
    config: BaseConfig | None = None,
    *,
    num_threads: int | None = None,
    progress: ProgressFn | None = None,
) -> tuple[Any, Any, dict[str, Any]]:
    """Tokenizer, tiny LLaVA and its language model pretrained on plain text.

    Returns ``(model, processor, info)``; nothing is written.
    """
    from databazaar.alignment.multimodal.model import (
        MultimodalConfig,
        build_multimodal,
        build_processor,
        build_tokenizer,
        pretrain_base,
    )

    mcfg = model_config or MultimodalConfig()
    config = config or BaseConfig()
    config.validate()
    mcfg.validate()
    docs = pretraining_texts(config.n_docs_per_family, random_state=config.random_state)
    tok = build_tokenizer(docs, mcfg)
    model = build_multimodal(mcfg, tok, seed=config.random_state)
    processor = build_processor(tok, mcfg)
    info = pretrain_base(
        model,
        tok,
        docs,
        steps=config.steps,
        lr=config.lr,
        batch_size=config.batch_size,
        block_size=min(config.block_size, mcfg.n_positions),
        seed=config.random_state,
        num_threads=num_threads,
        progress=progress,
    )
    info |= {"documents": len(docs), "model": mcfg.to_dict(), "base": asdict(config)}
    return model, processor, info


def caption_examples(scenes: list[sc.Scene]) -> list[MMExample]:
    """Phase-1 examples of ``scenes`` in memory (image, caption)."""
    return [MMExample(CAPTION_PROMPT, s.caption, s.render(), "caption") for s in scenes]
