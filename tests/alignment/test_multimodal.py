"""alignment.multimodal: scenes and data files, the tiny LLaVA, the two MLAN phases (frozen
parts bit-identical), reload with transformers alone, mixing, bad input and the CLI."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from databazaar.alignment.multimodal import (
    BaseConfig,
    DataConfig,
    MMExample,
    MultimodalConfig,
    TuneConfig,
    align_projector,
    answer,
    build_base,
    build_data,
    instruction_tune,
    mix_examples,
    part_parameters,
    read_examples,
    save_tuned,
)
from databazaar.alignment.multimodal import scenes as sc
from databazaar.core.errors import InvalidInput, NotFound

SMALL_DATA = DataConfig(
    n_captions=64, n_text_per_family=12, n_vision_per_type=24, n_eval_per_family=4
)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mm") / "data"
    build_data(out, SMALL_DATA)
    return out


@pytest.fixture(scope="module")
def base() -> tuple:
    torch.set_num_threads(1)
    model, proc, info = build_base(MultimodalConfig(), BaseConfig(n_docs_per_family=30, steps=3))
    return model, proc, info


def _fresh(base: tuple) -> tuple:
    model, proc, _ = base
    return copy.deepcopy(model), proc


def _snapshot(model, part: str) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in part_parameters(model, part).items()}


def _identical(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------- scenes and data
def test_scene_captions_questions_and_images_agree() -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    scene = sc.Scene(objects=(("red", "circle", "top left"), ("blue", "square", "bottom right")))
    assert scene.caption == "a red circle at top left, a blue square at bottom right."
    img = scene.render()
    assert img.size == (32, 32)
    assert img.getpixel((8, 8)) == sc.COLORS["red"]  # centre of the top-left cell
    assert img.getpixel((24, 24)) == sc.COLORS["blue"]
    assert img.getpixel((24, 8)) == (255, 255, 255)  # empty cell
    assert sc.ask(scene, "count", rng).answer == "2"
    q = sc.ask(scene, "position", rng)
    assert q.answer in ("top left", "bottom right") and q.answer in scene.caption
    chart = sc.Scene(bars=(2, 5, 1))
    assert chart.caption == "a bar chart: A is 2, B is 5, C is 1."
    assert sc.ask(chart, "chart_max", rng).answer == "B"
    cimg = chart.render()
    heights = [sum(cimg.getpixel((x, y)) == (0, 0, 0) for y in range(32)) for x in (6, 16, 25)]
    assert heights[1] > heights[0] > heights[2] > 0
    for _ in range(40):  # existence answers are right in both directions
        q = sc.ask(scene, "exist", rng)
        named = tuple(q.question.removeprefix("Is there a ").rstrip("?").split())
        assert (q.answer == "yes") == (named in {("red", "circle"), ("blue", "square")})
    with pytest.raises(InvalidInput, match="chart"):
        sc.ask(scene, "chart_value", rng)
    with pytest.raises(InvalidInput, match="unknown question type"):
        sc.ask(scene, "colour", rng)


def test_data_files_keep_heldout_types_and_test_scenes_out_of_tuning(data_dir: Path) -> None:
    recs = {
        name: [json.loads(x) for x in (data_dir / name).read_text().splitlines()]
        for name in (
            "captions.jsonl",
            "text.jsonl",
            "vision.jsonl",
            "eval_language.jsonl",
            "eval_vision.jsonl",
        )
    }
    tuning_fams = {r["family"] for name in ("text.jsonl", "vision.jsonl") for r in recs[name]}
    eval_fams = {
        r["family"] for name in ("eval_language.jsonl", "eval_vision.jsonl") for r in recs[name]
    }
    assert tuning_fams.isdisjoint(eval_fams)
    assert {f"image_{t}" for t in sc.HELDOUT_TYPES} | {"multiply", "last_letter"} <= eval_fams
    assert all("image" not in r for r in recs["text.jsonl"])
    assert all("image" in r and "<image>" in r["prompt"] for r in recs["vision.jsonl"])
    assert len(recs["eval_vision.jsonl"]) == 5 * SMALL_DATA.n_eval_per_family
    # the eval scenes are test-split scenes: none of their captions is a training caption
    train_caps = {r["caption"] for r in recs["captions.jsonl"]}
    eval_caps = {
        r["prompt"].split("\n")[0].removeprefix("Scene: ")
        for r in recs["eval_language.jsonl"]
        if r["family"].startswith("scene_")
    }
    assert eval_caps and not eval_caps & train_caps
    ex = read_examples(data_dir / "eval_vision.jsonl", "eval")
    assert all(e.has_image and e.image.size == (32, 32) for e in ex)


def test_bad_data_files_are_one_clear_error(tmp_path: Path, data_dir: Path) -> None:
    def write(name: str, rec: object) -> Path:
        p = tmp_path / name
        p.write_text(json.dumps(rec) + "\n")
        return p

    (tmp_path / "fake.png").write_text("not an image at all")
    img = str(data_dir / "images" / "000000.png")
    good = {"prompt": "Scene: <image>\nQuestion: What color is the circle?", "answer": "red"}
    cases = [
        (write("a.jsonl", {**good, "image": "missing.png"}), "vision", "does not exist"),
        (write("b.jsonl", {**good, "image": "fake.png"}), "vision", "is not an image"),
        (
            write("c.jsonl", {"prompt": "What is 2 + 2?", "answer": "4"}),
            "captions",
            "without an image",
        ),
        (write("d.jsonl", {**good, "image": img}), "text", "holds an image example"),
        (
            write("e.jsonl", {"prompt": "no placeholder", "answer": "x", "image": img}),
            "vision",
            "exactly once",
        ),
        (write("f.jsonl", {"prompt": "Scene: <image>", "answer": "x"}), "text", "no image"),
        (
            write("g.jsonl", {"prompt": "x", "answer": "y", "grader": "fuzzy"}),
            "eval",
            "unknown grader",
        ),
        (write("h.jsonl", {"prompt": "x"}), "text", "missing 'answer'"),
    ]
    for path, kind, msg in cases:
        with pytest.raises(InvalidInput, match=msg):
            read_examples(path, kind)
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    with pytest.raises(InvalidInput, match=r"bad\.jsonl:1: malformed JSON"):
        read_examples(tmp_path / "bad.jsonl", "text")
    with pytest.raises(NotFound):
        read_examples(tmp_path / "absent.jsonl", "text")


def test_mixture_has_the_asked_ratio_and_refuses_impossible_ones() -> None:
    text = [MMExample(f"t{i}", "a") for i in range(50)]
    vision = [MMExample(f"Scene: <image> {i}", "b", image=object(), family="v") for i in range(20)]  # type: ignore[arg-type]
    mix = mix_examples(text, vision, ratio=0.125, n_examples=40, random_state=3)
    assert len(mix) == 40 and sum(e.has_image for e in mix) == 5
    assert len({e.prompt for e in mix}) == 40  # drawn without replacement
    assert mix == mix_examples(text, vision, ratio=0.125, n_examples=40, random_state=3)
    assert sum(e.has_image for e in mix_examples(text, vision, ratio=0.0, n_examples=30)) == 0
    assert len(mix_examples(text, vision, ratio=0.5)) == 40  # vision pool limits: 20 + 20
    for kwargs, msg in (
        ({"ratio": 1.5}, r"\[0, 1\]"),
        ({"ratio": -0.1}, r"\[0, 1\]"),
        ({"ratio": float("nan")}, r"\[0, 1\]"),
        ({"ratio": 0.5, "n_examples": 60}, "need 30 vision examples"),
    ):
        with pytest.raises(InvalidInput, match=msg):
            mix_examples(text, vision, **kwargs)
    with pytest.raises(InvalidInput, match="needs vision-language data"):
        mix_examples(text, [], ratio=0.2)


# ------------------------------------------------------------------ model and phases
def test_phase1_trains_only_the_projector(base: tuple, data_dir: Path) -> None:
    model, proc = _fresh(base)
    before = {p: _snapshot(model, p) for p in ("vision_tower", "projector", "language_model")}
    caps = read_examples(data_dir / "captions.jsonl", "captions")
    res = align_projector(model, proc, caps, config=TuneConfig(max_steps=3, batch_size=8))
    assert _identical(before["vision_tower"], _snapshot(model, "vision_tower"))
    assert _identical(before["language_model"], _snapshot(model, "language_model"))
    assert not _identical(before["projector"], _snapshot(model, "projector"))
    assert res.trainable_parameters == sum(
        p.numel() for p in part_parameters(model, "projector").values()
    )
    # token accounting: 16 image tokens per caption example, 3 steps x 8 examples
    assert res.image_tokens == 3 * 8 * 16 and res.n_vision_examples == len(caps)
    assert res.text_tokens > 0 and res.tokens == res.text_tokens + res.image_tokens


def test_phase2_freezes_the_vision_tower_and_counts_tokens(base: tuple, data_dir: Path) -> None:
    model, proc = _fresh(base)
    before = {p: _snapshot(model, p) for p in ("vision_tower", "projector", "language_model")}
    text = read_examples(data_dir / "text.jsonl", "text")
    vision = read_examples(data_dir / "vision.jsonl", "vision")
    mix = mix_examples(text, vision, ratio=0.5, n_examples=16, random_state=1)
    res = instruction_tune(model, proc, mix, config=TuneConfig(max_steps=2, batch_size=8))
    assert _identical(before["vision_tower"], _snapshot(model, "vision_tower"))
    assert not _identical(before["projector"], _snapshot(model, "projector"))
    assert not _identical(before["language_model"], _snapshot(model, "language_model"))
    assert res.n_vision_examples == 8 and res.image_tokens == 8 * 16  # one pass of 16 examples
    text_only = instruction_tune(
        _fresh(base)[0], proc, text[:16], config=TuneConfig(max_steps=2, batch_size=8)
    )
    assert text_only.image_tokens == 0 and text_only.text_tokens > 0


def test_saved_model_answers_identically_with_transformers_alone(
    base: tuple, data_dir: Path, tmp_path: Path
) -> None:
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    model, proc = _fresh(base)
    text = read_examples(data_dir / "text.jsonl", "text")
    # one small step: the weights change, the answers stay non-empty (a few steps more and
    # the barely pretrained model learns to answer EOS at once)
    res = instruction_tune(
        model, proc, text[:16], config=TuneConfig(max_steps=1, batch_size=8, lr=1e-4)
    )
    save_tuned(model, proc, tmp_path / "tuned", res)
    evals = read_examples(data_dir / "eval_vision.jsonl", "eval")[:4] + text[:2]
    mine = answer(model, proc, evals, max_new_tokens=6)
    # a fresh process would do exactly this: only transformers, only the folder
    m2 = LlavaForConditionalGeneration.from_pretrained(tmp_path / "tuned")
    p2 = AutoProcessor.from_pretrained(tmp_path / "tuned")
    theirs = []
    for e in evals:
        prompt = p2.tokenizer.apply_chat_template(
            [{"role": "user", "content": e.prompt}], tokenize=False, add_generation_prompt=True
        )
        inputs = p2(text=[prompt], images=[e.image] if e.has_image else None, return_tensors="pt")
        out = m2.generate(**inputs, max_new_tokens=6, do_sample=False)
        new = out[0, inputs["input_ids"].shape[1] :].tolist()
        if p2.tokenizer.eos_token_id in new:
            new = new[: new.index(p2.tokenizer.eos_token_id)]
        theirs.append(p2.tokenizer.decode(new, skip_special_tokens=True))
    assert theirs == mine
    assert any(o.strip() for o in mine)  # a real answer, not only empty strings
    meta = json.loads((tmp_path / "tuned" / "multimodal.json").read_text())
    assert meta["history"][-1]["result"]["tokens"] == res.tokens


# ---------------------------------------------------------------------------- CLI
def _cli(args: list[str]):  # type: ignore[no-untyped-def]
    from databazaar.cli import app

    return CliRunner().invoke(app, args)


@pytest.fixture(scope="module")
def aligned_dir(base: tuple, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from databazaar.alignment.multimodal import save_multimodal

    model, proc, _ = base
    out = tmp_path_factory.mktemp("mm-model") / "base"
    save_multimodal(model, proc, out)
    return out


def test_cli_bad_input_exits_2_and_writes_nothing(
    aligned_dir: Path, data_dir: Path, tmp_path: Path
) -> None:
    (tmp_path / "fake.png").write_bytes(b"\x89PNG but truncated")
    bad_missing = tmp_path / "missing.jsonl"
    bad_missing.write_text(
        json.dumps({"prompt": "Scene: <image>\nQ", "answer": "a", "image": "gone.png"}) + "\n"
    )
    bad_fake = tmp_path / "fake.jsonl"
    bad_fake.write_text(
        json.dumps({"prompt": "Scene: <image>\nQ", "answer": "a", "image": "fake.png"}) + "\n"
    )
    out = tmp_path / "out"
    text = str(data_dir / "text.jsonl")
    cases = [
        (
            [
                "multimodal",
                str(aligned_dir),
                "--text",
                text,
                "--vision",
                str(bad_missing),
                "-o",
                str(out),
            ],
            "does not exist",
        ),
        (
            [
                "multimodal",
                str(aligned_dir),
                "--text",
                text,
                "--vision",
                str(bad_fake),
                "-o",
                str(out),
            ],
            "is not an image",
        ),
        (
            [
                "multimodal",
                str(aligned_dir),
                "--text",
                text,
                "--vision",
                str(data_dir / "vision.jsonl"),
                "--ratio",
                "1.2",
                "-o",
                str(out),
            ],
            r"\[0, 1\]",
        ),
        (
            ["multimodal", str(aligned_dir), "--text", text, "--ratio", "-0.5", "-o", str(out)],
            r"\[0, 1\]",
        ),
        (
            ["multimodal", str(aligned_dir), "--text", text, "--ratio", "0.3", "-o", str(out)],
            "--vision",
        ),
        (
            ["multimodal-align", str(aligned_dir), text, "-o", str(out)],
            "text-only data cannot train it",
        ),
        (["multimodal-eval", str(aligned_dir), "--vision", str(bad_fake)], "is not an image"),
        (["multimodal-eval", str(aligned_dir)], "nothing to evaluate"),
    ]
    before = sorted(p.name for p in aligned_dir.iterdir())
    for args, msg in cases:
        res = _cli(["align", *args, "-q"])
        assert res.exit_code == 2, (args, res.output)
        errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and re.search(msg, errors[0]), res.stderr
        assert not out.exists()
    assert sorted(p.name for p in aligned_dir.iterdir()) == before


def test_cli_tunes_with_a_ratio_and_prints_per_task_scores(
    aligned_dir: Path, data_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "tuned"
    res = _cli(
        [
            "align",
            "multimodal",
            str(aligned_dir),
            "--text",
            str(data_dir / "text.jsonl"),
            "--vision",
            str(data_dir / "vision.jsonl"),
            "--ratio",
            "0.25",
            "--examples",
            "16",
            "--steps",
            "2",
            "--batch-size",
            "8",
            "-o",
            str(out),
            "-q",
        ]
    )
    assert res.exit_code == 0, res.output
    assert "vision ratio 0.250" in res.output and "(12 text, 4 vision)" in res.output
    meta = json.loads((out / "multimodal.json").read_text())
    assert meta["history"][-1]["mixture"]["ratio"] == 0.25
    assert meta["history"][-1]["result"]["image_tokens"] == 4 * 16
    res = _cli(
        [
            "align",
            "multimodal-eval",
            str(out),
            "--language",
            str(data_dir / "eval_language.jsonl"),
            "--vision",
            str(data_dir / "eval_vision.jsonl"),
            "--json",
        ]
    )
    assert res.exit_code == 0, res.output
    scores = json.loads(res.stdout)
    assert set(scores["families"]) == {"multiply", "last_letter"} | {
        f"{m}_{t}" for m in ("scene", "image") for t in sc.HELDOUT_TYPES
    }
    assert 0.0 <= scores["language"] <= 1.0 and 0.0 <= scores["vision"] <= 1.0
    res = _cli(
        [
            "align",
            "multimodal-eval",
            str(out),
            "--vision",
            str(data_dir / "eval_vision.jsonl"),
            "-q",
        ]
    )
    assert res.exit_code == 0 and "image_count" in res.output and "vision score" in res.output


def test_cli_data_init_and_phase1(tmp_path: Path) -> None:
    data = tmp_path / "d"
    res = _cli(
        [
            "align",
            "multimodal-data",
            str(data),
            "--captions",
            "16",
            "--text",
            "4",
            "--vision",
            "4",
            "--eval",
            "2",
            "-q",
        ]
    )
    assert res.exit_code == 0, res.output
    assert (data / "captions.jsonl").read_text().count("\n") == 16
    res = _cli(
        ["align", "multimodal-init", str(tmp_path / "m"), "--steps", "2", "--docs", "10", "-q"]
    )
    assert res.exit_code == 0, res.output
    res = _cli(
        [
            "align",
            "multimodal-align",
            str(tmp_path / "m"),
            str(data / "captions.jsonl"),
            "-o",
            str(tmp_path / "m1"),
            "--steps",
            "1",
            "--batch-size",
            "4",
            "-q",
        ]
    )
    assert res.exit_code == 0 and "(0 text, 16 vision)" in res.output, res.output
    hist = json.loads((tmp_path / "m1" / "multimodal.json").read_text())["history"]
    assert [h.get("phase") or h["result"]["phase"] for h in hist] == ["pretrain", "align"]
