"""Offline vision-language data: rendered scenes and bar charts, captions and questions.

Every image is drawn with Pillow from a seeded description, so the data needs no
download and each image has an exact caption:

* a **shape scene**: one to three objects on a 2 x 2 grid of a white square, each a
  distinct colour (red, green, blue, yellow) and a distinct shape (circle, square,
  triangle), captioned "a red circle at top left, a blue square at bottom right.";
* a **bar chart**: three black bars A, B, C with distinct heights 1-5, captioned
  "a bar chart: A is 3, B is 1, C is 4.".

Questions about a scene come in types (the task types of MLAN's vision evaluation at a
toy scale: POPE existence, counting, spatial relations, chart reading, multiple choice):

========== ========================================= ===========
type       example                                   answer
========== ========================================= ===========
color      What color is the circle?                 red
shape      What shape is the blue object?            square
chart_max  Which bar is the tallest?                 C
exist      Is there a green triangle?                yes / no
count      How many objects are there?               2
position   Where is the red circle?                  top left
choice     Which object is in the scene? A) ... C)   B
chart_value What is the value of bar B?              1
========== ========================================= ===========

:data:`TUNING_TYPES` may appear in instruction tuning; :data:`HELDOUT_TYPES` never do
(zero-shot evaluation). Each question exists in two modalities: **vision**
(``image_<type>``: the prompt holds the ``<image>`` placeholder and the example an image)
and **language** (``scene_<type>``: the caption is written into the prompt, a reading
comprehension task without any image). Scenes are split into train and test by a stable
hash of their caption (:func:`databazaar.lm.tasks.split_of`), so a test image is never
seen in training, whatever the modality.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from databazaar.core.errors import InvalidInput
from databazaar.lm.corpus import _stable_seed
from databazaar.lm.tasks import split_of

if TYPE_CHECKING:
    from PIL import Image

IMAGE_TOKEN = "<image>"
IMAGE_SIZE = 32
COLORS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 60, 220),
    "yellow": (230, 200, 20),
}
SHAPES = ("circle", "square", "triangle")
CELLS = ("top left", "top right", "bottom left", "bottom right")
BARS = ("A", "B", "C")
TUNING_TYPES = ("color", "shape", "chart_max")
HELDOUT_TYPES = ("exist", "count", "position", "choice", "chart_value")
QUESTION_TYPES = TUNING_TYPES + HELDOUT_TYPES
CHART_TYPES = ("chart_max", "chart_value")
MODALITIES = ("vision", "language")
_MAX_DRAWS = 5000


@dataclass(frozen=True)
class Scene:
    """A shape scene (``objects``: (color, shape, cell) triples) or a bar chart (``bars``)."""

    objects: tuple[tuple[str, str, str], ...] = ()
    bars: tuple[int, ...] = ()

    @property
    def is_chart(self) -> bool:
        return bool(self.bars)

    @property
    def caption(self) -> str:
        """The exact text description of the image."""
        if self.is_chart:
            return (
                "a bar chart: "
                + ", ".join(f"{b} is {v}" for b, v in zip(BARS, self.bars, strict=True))
                + "."
            )
        return ", ".join(f"a {c} {s} at {cell}" for c, s, cell in self.objects) + "."

    def render(self, size: int = IMAGE_SIZE) -> Image.Image:
        """The scene drawn on a white ``size`` x ``size`` RGB image."""
        from PIL import Image, ImageDraw

        img = Image.new("RGB", (size, size), (255, 255, 255))
        draw = ImageDraw.Draw(img)
        if self.is_chart:
            width = size // 4
            gap = (size - 3 * width) // 4
            unit = (size - 2) / 5
            for i, v in enumerate(self.bars):
                x0 = gap + i * (width + gap)
                draw.rectangle(
                    [x0, size - 1 - round(v * unit), x0 + width - 1, size - 1], fill=(0, 0, 0)
                )
            return img
        half = size // 2
        pad = max(1, size // 16)
        for color, shape, cell in self.objects:
            r, c = divmod(CELLS.index(cell), 2)
            box = [
                c * half + pad,
                r * half + pad,
                (c + 1) * half - 1 - pad,
                (r + 1) * half - 1 - pad,
            ]
            rgb = COLORS[color]
            if shape == "circle":
                draw.ellipse(box, fill=rgb)
            elif shape == "square":
                draw.rectangle(box, fill=rgb)
            else:
                draw.polygon(
                    [(box[0], box[3]), (box[2], box[3]), ((box[0] + box[2]) / 2, box[1])], fill=rgb
                )
        return img


@dataclass(frozen=True)
class SceneQuestion:
    """One question about ``scene``: ``family`` is ``image_<type>`` or ``scene_<type>``."""

    scene: Scene
    qtype: str
    modality: str
    question: str
    answer: str
    grader: str = "exact"
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def family(self) -> str:
        return ("image_" if self.modality == "vision" else "scene_") + self.qtype

    @property
    def prompt(self) -> str:
        """The user turn: the image placeholder or the caption, then the question."""
        context = IMAGE_TOKEN if self.modality == "vision" else self.scene.caption
        return f"Scene: {context}\nQuestion: {self.question}"


def draw_scene(rng: np.random.Generator, chart: bool = False) -> Scene:
    """A random shape scene (or bar chart with ``chart``)."""
    if chart:
        return Scene(bars=tuple(int(v) for v in rng.choice(np.arange(1, 6), size=3, replace=False)))
    k = int(rng.integers(1, 4))
    colors = rng.choice(list(COLORS), size=k, replace=False)
    shapes = rng.choice(SHAPES, size=k, replace=False)
    cells = sorted(rng.choice(len(CELLS), size=k, replace=False))
    return Scene(
        objects=tuple(
            (str(c), str(s), CELLS[i]) for c, s, i in zip(colors, shapes, cells, strict=True)
        )
    )


def ask(
    scene: Scene, qtype: str, rng: np.random.Generator, modality: str = "vision"
) -> SceneQuestion:
    """A question of type ``qtype`` about ``scene`` (a chart for the chart types)."""
    if qtype not in QUESTION_TYPES:
        raise InvalidInput(
            f"unknown question type {qtype!r}", hint=f"use one of {', '.join(QUESTION_TYPES)}"
        )
    if modality not in MODALITIES:
        raise InvalidInput(f"unknown modality {modality!r}", hint="use vision or language")
    if (qtype in CHART_TYPES) != scene.is_chart:
        raise InvalidInput(
            f"a {qtype!r} question needs a {'chart' if qtype in CHART_TYPES else 'shape scene'}"
        )

    def make(question: str, answer: str, grader: str = "exact") -> SceneQuestion:
        return SceneQuestion(scene, qtype, modality, question, answer, grader)

    if qtype == "chart_max":
        return make("Which bar is the tallest?", BARS[int(np.argmax(scene.bars))])
    if qtype == "chart_value":
        i = int(rng.integers(3))
        return make(f"What is the value of bar {BARS[i]}?", str(scene.bars[i]), "numeric")
    objs = scene.objects
    color, shape, cell = objs[int(rng.integers(len(objs)))]
    present = {(c, s) for c, s, _ in objs}
    if qtype == "color":
        return make(f"What color is the {shape}?", color)
    if qtype == "shape":
        return make(f"What shape is the {color} object?", shape)
    if qtype == "count":
        return make("How many objects are there?", str(len(objs)), "numeric")
    if qtype == "position":
        return make(f"Where is the {color} {shape}?", cell)
    absent = [(c, s) for c in COLORS for s in SHAPES if (c, s) not in present]
    if qtype == "exist":
        if rng.random() < 0.5:
            return make(f"Is there a {color} {shape}?", "yes")
        c, s = absent[int(rng.integers(len(absent)))]
        return make(f"Is there a {c} {s}?", "no")
    # choice: one present object among two absent ones
    picks = [absent[i] for i in rng.choice(len(absent), size=2, replace=False)]
    options = [(color, shape), *picks]
    order = rng.permutation(3)
    letter = "ABC"[int(np.flatnonzero(order == 0)[0])]
    body = " ".join(
        f"{L}) {options[j][0]} {options[j][1]}" for L, j in zip("ABC", order, strict=True)
    )
    return make(f"Which object is in the scene? {body} Answer with the letter.", letter)


def generate_questions(
    qtypes: Sequence[str],
    *,
    n_per_type: int,
    modality: str = "vision",
    split: str = "train",
    random_state: int = 0,
) -> list[SceneQuestion]:
    """``n_per_type`` questions of each type about scenes of ``split`` (seeded).

    Raises :class:`InvalidInput` for an unknown type, modality or split or a count below 1.
    """
    if n_per_type < 1:
        raise InvalidInput(f"n_per_type must be at least 1, got {n_per_type}")
    if split not in ("train", "test"):
        raise InvalidInput(f"unknown split {split!r}", hint="use train or test")
    out: list[SceneQuestion] = []
    for qtype in qtypes:
        rng = np.random.default_rng(_stable_seed(random_state, f"{split}:{modality}:{qtype}"))
        got: list[SceneQuestion] = []
        draws = 0
        while len(got) < n_per_type:
            draws += 1
            if draws > _MAX_DRAWS * max(1, n_per_type // 100):
                raise InvalidInput(f"could not draw {n_per_type} {split} scenes for {qtype!r}")
            scene = draw_scene(rng, chart=qtype in CHART_TYPES)
            if split_of(scene.caption) != split:
                continue
            got.append(ask(scene, qtype, rng, modality))
        out.extend(got)
    return out


def draw_scenes(
    n: int, *, split: str = "train", random_state: int = 0, chart_share: float = 0.25
) -> list[Scene]:
    """``n`` scenes of ``split`` for captioning, a ``chart_share`` of them bar charts."""
    if n < 1:
        raise InvalidInput(f"n must be at least 1, got {n}")
    rng = np.random.default_rng(_stable_seed(random_state, f"{split}:captions"))
    out: list[Scene] = []
    while len(out) < n:
        scene = draw_scene(rng, chart=bool(rng.random() < chart_share))
        if split_of(scene.caption) == split:
            out.append(scene)
    return out
