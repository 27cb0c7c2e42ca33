"""Examples for the two MLAN phases: reading and checking JSONL files, mixing, encoding.

A data file is JSON lines, one example per line::

    {"prompt": "Scene: <image>\\nQuestion: What color is the circle?", "answer": "red",
     "image": "images/00017.png", "family": "image_color", "grader": "exact"}

``image`` (a path, relative to the file's folder unless absolute) makes it a
vision-language example, whose prompt must hold the ``<image>`` placeholder exactly once;
a text example has neither. ``family`` and ``grader`` (``exact`` or ``numeric``, see
:func:`databazaar.lm.tasks.grade`) matter for evaluation files only. Caption files for
phase 1 hold ``image`` and ``caption`` (or ``answer``); their prompt defaults to
:data:`CAPTION_PROMPT`.

:func:`read_examples` checks a whole file before anything trains or is written: a
malformed line, a missing field, an image path that does not exist, a file that is not an
image, an image example without the placeholder, or (for phase 1) an example without an
image raise one :class:`~databazaar.core.errors.InvalidInput` naming the file and line.
Images are loaded (RGB) while checking, so training never meets a bad file half-way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from databazaar.alignment.multimodal.model import IMAGE_TOKEN
from databazaar.core.errors import InvalidInput

if TYPE_CHECKING:
    from PIL import Image

CAPTION_PROMPT = f"Scene: {IMAGE_TOKEN}\nQuestion: Describe the scene."
KINDS = ("captions", "text", "vision", "eval")
GRADERS = ("exact", "numeric")


@dataclass
class MMExample:
    """One example: ``prompt`` -> ``answer``, with an image for vision-language ones."""

    prompt: str
    answer: str
    image: Image.Image | None = None
    family: str = ""
    grader: str = "exact"
    image_path: str | None = field(default=None, compare=False)

    @property
    def has_image(self) -> bool:
        return self.image is not None

    def to_task(self) -> Any:
        """The example as a :class:`~databazaar.lm.tasks.TaskExample` (for grading)."""
        from databazaar.lm.tasks import TaskExample

        return TaskExample(self.family or "unnamed", self.prompt, self.answer, self.grader)

    def to_record(self, image_path: str | None = None) -> dict[str, Any]:
        rec: dict[str, Any] = {"prompt": self.prompt, "answer": self.answer}
        if image_path or self.image_path:
            rec["image"] = image_path or self.image_path
        if self.family:
            rec["family"] = self.family
        rec["grader"] = self.grader
        return rec


def load_image(path: Path, where: str) -> Image.Image:
    """The RGB image at ``path``; :class:`InvalidInput` if it is missing or not an image."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise InvalidInput(f"{where}: image {path} does not exist", hint="fix the image path")
    try:
        with Image.open(path) as img:
            img.verify()
        with Image.open(path) as img:
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InvalidInput(
            f"{where}: {path} is not an image ({type(exc).__name__})",
            hint="give a PNG, JPEG or another format Pillow reads",
        ) from exc


def _text_field(rec: dict[str, Any], names: Sequence[str], where: str) -> str:
    for name in names:
        if name in rec:
            value = rec[name]
            if not isinstance(value, str) or not value.strip():
                raise InvalidInput(f"{where}: {name!r} must be a non-empty string")
            return value
    raise InvalidInput(f"{where}: missing {' or '.join(repr(n) for n in names)}")


def parse_record(rec: dict[str, Any], kind: str, base: Path, where: str) -> MMExample:
    """One checked :class:`MMExample` from a JSON record of a ``kind`` file."""
    image_ref = rec.get("image")
    if image_ref is not None and (not isinstance(image_ref, str) or not image_ref):
        raise InvalidInput(f"{where}: 'image' must be a path string")
    if kind == "captions":
        if image_ref is None:
            raise InvalidInput(
                f"{where}: a caption example without an image: phase 1 aligns the projector "
                "on image-caption pairs, text-only data cannot train it",
                hint="give the caption file (image + caption per line), not text instructions",
            )
        prompt = rec.get("prompt", CAPTION_PROMPT)
        answer = _text_field(rec, ("caption", "answer"), where)
    else:
        prompt = _text_field(rec, ("prompt",), where)
        answer = _text_field(rec, ("answer",), where)
    if not isinstance(prompt, str):
        raise InvalidInput(f"{where}: 'prompt' must be a string")
    if kind == "text" and image_ref is not None:
        raise InvalidInput(
            f"{where}: the text data holds an image example", hint="pass it with --vision"
        )
    if kind == "vision" and image_ref is None:
        raise InvalidInput(
            f"{where}: the vision data holds a text-only example", hint="pass it with --text"
        )
    n_placeholders = prompt.count(IMAGE_TOKEN)
    if image_ref is None and n_placeholders:
        raise InvalidInput(f"{where}: the prompt has {IMAGE_TOKEN} but the example no image")
    if image_ref is not None and n_placeholders != 1:
        raise InvalidInput(
            f"{where}: an image example needs {IMAGE_TOKEN} exactly once in its prompt, "
            f"found {n_placeholders}"
        )
    grader = rec.get("grader", "exact")
    if grader not in GRADERS:
        raise InvalidInput(f"{where}: unknown grader {grader!r}", hint="use exact or numeric")
    family = rec.get("family", "")
    if not isinstance(family, str):
        raise InvalidInput(f"{where}: 'family' must be a string")
    image = None
    if image_ref is not None:
        p = Path(image_ref)
        image = load_image(p if p.is_absolute() else base / p, where)
    return MMExample(prompt, answer, image, family, grader, image_ref)


def read_examples(path: str | Path, kind: str) -> list[MMExample]:
    """Every example of a JSONL file of ``kind`` (captions, text, vision or eval), checked.

    Raises :class:`~databazaar.core.errors.NotFound` for a missing file and
    :class:`InvalidInput` (file and line named) for anything wrong inside it.
    """
    from databazaar.core.io import read_jsonl_records

    if kind not in KINDS:
        raise InvalidInput(f"unknown data kind {kind!r}", hint=f"use one of {', '.join(KINDS)}")
    p = Path(path)
    records = read_jsonl_records(p)
    return [parse_record(r, kind, p.parent, f"{p}:{i}") for i, r in enumerate(records, start=1)]


def mix_examples(
    text: Sequence[MMExample],
    vision: Sequence[MMExample],
    *,
    ratio: float,
    n_examples: int | None = None,
    random_state: int = 0,
) -> list[MMExample]:
    """A shuffled mixture of ``n_examples`` examples, a share ``ratio`` of them vision.

    ``round(ratio * n)`` vision examples and the rest text, drawn without replacement;
    ``n_examples`` defaults to the most the two pools allow at that ratio. Raises
    :class:`InvalidInput` for a ratio outside [0, 1], a pool too small for its share or a
    ratio above 0 without vision data.
    """
    if not isinstance(ratio, (int, float)) or not 0.0 <= float(ratio) <= 1.0:
        raise InvalidInput(f"the vision ratio must be in [0, 1], got {ratio}")
    if ratio > 0 and not vision:
        raise InvalidInput(
            f"a vision ratio of {ratio} needs vision-language data", hint="pass --vision"
        )
    if ratio < 1 and not text:
        raise InvalidInput(f"a vision ratio of {ratio} needs text data", hint="pass --text")
    if n_examples is None:
        caps = []
        if ratio > 0:
            caps.append(int(len(vision) / ratio))
        if ratio < 1:
            caps.append(int(len(text) / (1 - ratio)))
        n_examples = min(caps)
    if n_examples < 1:
        raise InvalidInput(f"the mixture needs at least one example, got {n_examples}")
    n_vision = round(ratio * n_examples)
    n_text = n_examples - n_vision
    for name, need, pool in (("text", n_text, text), ("vision", n_vision, vision)):
        if need > len(pool):
            raise InvalidInput(
                f"{n_examples} examples at vision ratio {ratio} need {need} {name} examples, "
                f"the data holds {len(pool)}",
                hint="give more data or ask for fewer examples",
            )
    rng = np.random.default_rng(random_state)
    picked = [text[i] for i in rng.choice(len(text), size=n_text, replace=False)] if n_text else []
    if n_vision:
        picked += [vision[i] for i in rng.choice(len(vision), size=n_vision, replace=False)]
    return [picked[i] for i in rng.permutation(len(picked))]


@dataclass
class Encoded:
    """Token ids of one example and the 0/1 mask of the tokens that carry loss."""

    input_ids: list[int]
    loss_mask: list[int]
    n_image_tokens: int


def encode_example(
    tokenizer: Any, example: MMExample, *, n_image_tokens: int, chat: bool, max_length: int
) -> Encoded:
    """Tokenize ``example`` with its image placeholder expanded to ``n_image_tokens``.

    ``chat=True`` renders the chat template (user prompt, assistant answer; loss on the
    assistant span, see :func:`databazaar.lm.chat.encode_chat`); ``chat=False`` is the
    plain ``prompt\\nanswer<eos>`` format of pretraining (phase 1, loss on answer + EOS).
    Raises :class:`InvalidInput` when the prompt alone fills ``max_length``.
    """
    from databazaar.lm.chat import encode_chat

    prompt = example.prompt.replace(IMAGE_TOKEN, IMAGE_TOKEN * n_image_tokens)
    if chat:
        msgs = [
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": example.answer},
        ]
        enc = encode_chat(tokenizer, msgs)
        ids, mask = enc.input_ids, enc.assistant_mask
    else:
        head = tokenizer(prompt + "\n", add_special_tokens=False)["input_ids"]
        tail = tokenizer(example.answer, add_special_tokens=False)["input_ids"] + [
            tokenizer.eos_token_id
        ]
        ids, mask = head + tail, [0] * len(head) + [1] * len(tail)
    image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    n_img = sum(1 for t in ids if t == image_id)
    first_loss = mask.index(1) if 1 in mask else len(mask)
    if first_loss >= max_length or n_img != (n_image_tokens if example.has_image else 0):
        raise InvalidInput(
            f"an example does not fit the model context of {max_length} tokens: "
            f"{example.prompt[:60]!r}",
            hint="shorten the prompt",
        )
    return Encoded(ids[:max_length], mask[:max_length], n_img)
