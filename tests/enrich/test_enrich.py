"""DiPT prompting and enrichment, pair rationales, resumable batches, the CLI."""

from __future__ import annotations

import json

import pytest

from databazaar.core.errors import InvalidInput
from databazaar.lm.generate import BackendError, GenerationBackend

MC = "Which one is a fruit? A) saw B) plum C) zebra D) red Answer with the letter."


class FailingAfter(GenerationBackend):
    """A real backend that goes away after answering ``ok`` conversations."""

    def __init__(self, inner: GenerationBackend, ok: int) -> None:
        self.inner, self.ok, self.name = inner, ok, inner.name

    def _complete(self, prompts, params, progress):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    def _chat(self, conversations, params, progress):  # type: ignore[no-untyped-def]
        if self.ok < len(conversations):
            raise BackendError("connection refused")
        self.ok -= len(conversations)
        return self.inner._chat(conversations, params, progress)


def test_options_and_answers_are_read() -> None:
    from databazaar.enrich import extract_answer, parse_options

    opts = parse_options(MC)
    assert opts == {"A": "saw", "B": "plum", "C": "zebra", "D": "red"}
    assert extract_answer("A is a tool ... Answer: B", opts) == "B"
    assert extract_answer("the answer is: (C)", opts) == "C"
    assert extract_answer("Answer: plum", opts) == "B"
    assert extract_answer("no idea", opts) == ""
    assert extract_answer("A) saw is a tool. B) plum is a fruit. So the fruit is B.", opts) == "B"
    assert extract_answer("A) saw is a tool, not a fruit. B) plum is", opts) == ""  # cut short
    assert extract_answer("B", opts) == "B" and extract_answer("plum", opts) == "B"
    assert extract_answer("3 + 4 = 7\nAnswer: 7.") == "7"
    assert parse_options("What is 3 + 4?") == {}


def test_dipt_prompting_votes_over_option_perspectives() -> None:
    from databazaar.enrich import PerspectivePrompting
    from databazaar.enrich.teacher import RuleTeacher

    teacher = RuleTeacher()
    res = PerspectivePrompting(teacher, mode="dipt").answer([MC, "What is 3 + 4?"])
    assert teacher.calls == 4 + 3  # one request per option, per solution method
    assert len(res[0].outputs) == 4 and len(res[1].outputs) == 3
    # the teacher cannot read perspective prompts of MC questions: no votes, no answer
    assert res[0].answer == "" and res[0].votes == {}
    assert res[1].answer == "7" and res[1].votes == {"7": 3}
    assert PerspectivePrompting(teacher, mode="plain").answer(["What is 9 - 4?"])[0].answer == "5"
    with pytest.raises(InvalidInput, match="unknown mode"):
        PerspectivePrompting(teacher, mode="tot")


def test_enrich_sft_writes_per_option_rationales() -> None:
    from databazaar.enrich import enrich_sft
    from databazaar.enrich.teacher import RuleTeacher

    recs = [{"prompt": MC, "completion": "B"}, {"prompt": "What is 3 + 4?", "completion": "7"}]
    out = enrich_sft(recs, RuleTeacher())
    assert out[0]["completion"] == (
        "A) saw is a tool, not a fruit. B) plum is a fruit. C) zebra is a animal, not a fruit. "
        "D) red is a color, not a fruit. So the fruit is B.\nAnswer: B"
    )
    assert (
        out[1]["completion"].endswith("\nAnswer: 7") and "3 plus 4 gives 7" in out[1]["completion"]
    )
    assert all(r["consistent"] and r["method"] == "dipt" for r in out)
    with pytest.raises(InvalidInput, match="record 2"):
        enrich_sft([recs[0], {"prompt": "x"}], RuleTeacher())
    with pytest.raises(InvalidInput, match="end with the assistant"):
        enrich_sft([{"messages": [{"role": "user", "content": "hi"}]}], RuleTeacher())


PAIRS = [
    {
        "prompt": f"What is {a} + {b}?",
        "chosen": str(a + b),
        "rejected": f"It is {a + b + 2} for sure.",
    }
    for a, b in [(1, 2), (3, 4), (2, 2), (5, 1), (6, 3), (4, 4), (7, 1)]
]


def test_rationales_in_two_styles_and_bad_pairs() -> None:
    from databazaar.enrich import generate_rationales
    from databazaar.enrich.teacher import RuleTeacher

    gen = generate_rationales(PAIRS[:1], RuleTeacher(), style="general")
    assert gen[0]["rationale"] == "The first answer gives the correct result."
    det = generate_rationales(PAIRS[:1], RuleTeacher(), style="detailed")[0]
    assert det["rationale"].startswith("The correct result is 3.") and "says 5" in det["rationale"]
    assert det["rationale_style"] == "detailed" and det["rationale_generator"] == "rule-teacher"
    same = [*PAIRS[:2], {**PAIRS[2], "rejected": PAIRS[2]["chosen"]}]
    with pytest.raises(InvalidInput, match=r"record 3.*identical"):
        generate_rationales(same, RuleTeacher())
    with pytest.raises(InvalidInput, match=r"missing field.*rejected"):
        generate_rationales([{"prompt": "p", "chosen": "c"}], RuleTeacher())
    with pytest.raises(InvalidInput, match="style"):
        generate_rationales(PAIRS, RuleTeacher(), style="terse")


def test_backend_failing_mid_run_resumes_without_duplicates(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from databazaar.enrich import generate_rationales
    from databazaar.enrich.teacher import RuleTeacher

    cache = tmp_path / "cache.jsonl"
    teacher = RuleTeacher()
    with pytest.raises(BackendError, match=r"after 3 of 7 distinct records.*resume"):
        generate_rationales(PAIRS, FailingAfter(teacher, ok=5), batch_size=3, cache=cache)
    assert teacher.calls == 3  # the second batch failed as a whole; only the first is cached
    assert len(cache.read_text().splitlines()) == 3
    with cache.open("a") as fh:  # a torn line from a crash during an append is ignored
        fh.write('{"key": "abc", "val')
    out = generate_rationales(PAIRS, teacher, batch_size=3, cache=cache)
    assert teacher.calls == 7  # the 4 missing ones, each once
    assert [p["prompt"] for p in out] == [p["prompt"] for p in PAIRS]
    again = RuleTeacher()
    assert generate_rationales(PAIRS, again, batch_size=3, cache=cache) == out
    assert again.calls == 0


def test_cli_enrich_and_align(tmp_path, tiny_policy) -> None:  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from databazaar.cli import app
    from databazaar.lm import save_model

    runner = CliRunner()
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(p) + "\n" for p in PAIRS))
    out = tmp_path / "rat.jsonl"
    res = runner.invoke(
        app, ["enrich", "rationales", str(pairs), "-b", "rule-teacher", "-o", str(out), "-q"]
    )
    assert res.exit_code == 0, res.output
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 7 and all(r["rationale"] for r in rows)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({**PAIRS[0], "rejected": PAIRS[0]["chosen"]}) + "\n")
    res = runner.invoke(
        app,
        ["enrich", "rationales", str(bad), "-b", "rule-teacher", "-o", str(tmp_path / "x.jsonl")],
    )
    assert res.exit_code == 2 and "identical" in res.output
    assert not (tmp_path / "x.jsonl").exists()
    sft = tmp_path / "sft.jsonl"
    sft.write_text(json.dumps({"prompt": MC, "completion": "B"}) + "\n")
    res = runner.invoke(
        app, ["enrich", "dipt", str(sft), "-b", "rule-teacher", "-o", str(tmp_path / "d.jsonl")]
    )
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "d.jsonl").read_text())["completion"].endswith("Answer: B")
    model, tok = tiny_policy
    save_model(model, tmp_path / "m", tok)
    res = runner.invoke(
        app,
        [
            "align",
            "rdpo",
            str(tmp_path / "m"),
            str(out),
            "-o",
            str(tmp_path / "r"),
            "--steps",
            "2",
            "-q",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "rdpo: 2 steps on 7 pairs" in res.output
    res = runner.invoke(
        app, ["align", "rdpo", str(tmp_path / "m"), str(pairs), "-o", str(tmp_path / "s")]
    )
    assert res.exit_code == 2 and "rationale" in res.output and not (tmp_path / "s").exists()


def test_perspective_prompting_with_a_local_model_samples_every_perspective(tiny_policy) -> None:  # type: ignore[no-untyped-def]
    from databazaar.enrich import PerspectivePrompting
    from databazaar.lm.local_backend import LocalModelBackend

    model, tok = tiny_policy
    backend = LocalModelBackend(model=model, tokenizer=tok, num_threads=1)
    dipt = PerspectivePrompting(backend, n_samples=2, temperature=1.0, max_new_tokens=6)
    res = dipt.answer([MC, "What is 3 + 4?"])
    assert [len(r.outputs) for r in res] == [4 * 2, 3 * 2]  # perspectives x samples
    for r in res:
        assert sum(r.votes.values()) <= len(r.outputs)
        assert r.answer == (max(r.votes, key=r.votes.get) if r.votes else "")
    again = PerspectivePrompting(backend, n_samples=2, temperature=1.0, max_new_tokens=6)
    assert [r.outputs for r in again.answer([MC, "What is 3 + 4?"])] == [r.outputs for r in res]
