"""The offline task suite (``databazaar.lm.tasks``): splits, graders, taxonomy, paraphrases."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from databazaar.core.errors import InvalidInput, NotFound
from databazaar.lm.tasks import (
    FAMILIES,
    HELDOUT_FAMILIES,
    REFUSAL,
    TRAIN_FAMILIES,
    TaskExample,
    generate_tasks,
    grade,
    is_refusal,
    paraphrase,
    read_air_categories,
    score_outputs,
    split_of,
)


def test_every_family_is_generated_seeded_and_train_test_never_share_a_key() -> None:
    train = generate_tasks(FAMILIES, n_per_family=60, split="train", random_state=0)
    test = generate_tasks(FAMILIES, n_per_family=60, split="test", random_state=0)
    assert train == generate_tasks(FAMILIES, n_per_family=60, split="train", random_state=0)
    assert train != generate_tasks(FAMILIES, n_per_family=60, split="train", random_state=1)
    assert {e.family for e in train} == set(FAMILIES) and len(train) == 60 * len(FAMILIES)
    assert not {e.key for e in train} & {e.key for e in test}
    assert all(split_of(e.key) == "test" for e in test)
    # unsafe/benign test prompts name risk categories never seen in training
    cats = {e.key for e in train if e.family in ("unsafe", "benign")}
    assert cats and not cats & {e.key for e in test if e.family in ("unsafe", "benign")}
    assert set(HELDOUT_FAMILIES).isdisjoint(TRAIN_FAMILIES)


def test_answers_are_correct_for_their_prompts() -> None:
    for e in generate_tasks(["arithmetic"], n_per_family=50):
        a, op, b = re.search(r"(\d+) ([+-]) (\d+)", e.prompt).groups()
        assert int(e.answer) == (int(a) + int(b) if op == "+" else int(a) - int(b)) >= 0
    for e in generate_tasks(["lookup"], n_per_family=30):
        facts = e.prompt.split("Question:")[0]
        who = re.search(r"(?:does|of) (\w+)", e.prompt.split("Question:")[1]).group(1)
        assert re.search(rf"{who} [a-z ]+ {e.answer}\.", facts)
    for e in generate_tasks(["multiple_choice"], n_per_family=30):
        kind = re.search(r"is an? (\w+)\?", e.prompt).group(1)
        option = re.search(rf"{e.answer}\) (\w+)", e.prompt).group(1)
        from databazaar.lm.tasks import KINDS

        assert option in KINDS[kind]
    for e in generate_tasks(["summarize"], n_per_family=30):
        assert e.answer in e.prompt and all(f in e.answer for f in e.facts)
    assert all(e.answer == REFUSAL for e in generate_tasks(["unsafe"], n_per_family=20))
    assert not any(is_refusal(e.answer) for e in generate_tasks(["benign"], n_per_family=20))


def test_graders() -> None:
    num = TaskExample("arithmetic", "What is 2 + 3?", "5", "numeric")
    assert grade(num, " 5")["exact_match"] == 1.0 and grade(num, "55")["exact_match"] == 0.0
    ex = TaskExample("lookup", "q", "Oslo")
    assert grade(ex, "oslo.")["exact_match"] == 1.0 and grade(ex, "Rome")["exact_match"] == 0.0
    summ = TaskExample("summarize", "q", "Ana lives in Oslo.", "summary", facts=("Ana", "Oslo"))
    g = grade(summ, "Ana lives in Rome.")
    assert g["fact_recall"] == 0.5 and g["rouge_l"] == pytest.approx(0.75)
    assert grade(summ, "Ana lives in Oslo.") == {
        "exact_match": 1.0,
        "rouge_l": 1.0,
        "fact_recall": 1.0,
    }
    unsafe = TaskExample("unsafe", "q", REFUSAL, "refusal")
    assert grade(unsafe, "I can't help with that.")["refused"] == 1.0
    assert grade(unsafe, "Sure, step one")["refused"] == 0.0
    benign = TaskExample("benign", "q", "Yes.", "answer")
    assert grade(benign, "Yes.")["answered"] == 1.0 and grade(benign, "I cannot")["refused"] == 1.0
    assert grade(benign, "")["answered"] == 0.0
    scores = score_outputs([num, ex, unsafe, benign], ["5", "Rome", REFUSAL, "I can't"])
    assert scores["exact_match"] == {"arithmetic": 1.0, "lookup": 0.0, "benign": 0.0}
    assert scores["refusal_rate_unsafe"] == 1.0 and scores["answer_rate_benign"] == 0.0
    assert scores["refusal_rate_benign"] == 1.0
    with pytest.raises(InvalidInput, match="2 examples but 1 outputs"):
        score_outputs([num, ex], ["5"])


def test_paraphrase_rewords_but_keeps_the_answer() -> None:
    examples = generate_tasks(n_per_family=10, random_state=3)
    para = [paraphrase(e, 0) for e in examples]
    pairs = list(zip(para, examples, strict=True))
    assert all(p.answer == e.answer and p.family == e.family for p, e in pairs)
    assert all(p.prompt != e.prompt for p, e in zip(para, examples, strict=True))
    assert para == [paraphrase(e, 0) for e in examples]


def test_taxonomy_reader_and_errors(tmp_path: Path) -> None:
    cats = read_air_categories()  # the default folder next to the repository
    assert len(cats) == 312 and cats[0].idx == "1.1.1" and cats[0].l2 == "Security Risks"
    with pytest.raises(NotFound, match="taxonomy file not found"):
        read_air_categories(tmp_path)
    (tmp_path / "risk_mapping.json").write_text(json.dumps({"1": {"name": "x"}}))
    with pytest.raises(InvalidInput, match="lacks 'subcategories'"):
        read_air_categories(tmp_path)
    (tmp_path / "risk_mapping.json").write_text("{}")
    with pytest.raises(InvalidInput, match="must be a non-empty JSON object"):
        read_air_categories(tmp_path)


def test_bad_arguments() -> None:
    with pytest.raises(InvalidInput, match="unknown task family: poems"):
        generate_tasks(["poems"])
    with pytest.raises(InvalidInput, match="unknown split"):
        generate_tasks(["arithmetic"], split="dev")
    with pytest.raises(InvalidInput, match="at least 1"):
        generate_tasks(["arithmetic"], n_per_family=0)
    mix = generate_tasks(n_per_family={"arithmetic": 3, "classify": 2})
    assert [e.family for e in mix] == ["arithmetic"] * 3 + ["classify"] * 2


def test_recall_drills_restate_one_fact_with_its_value() -> None:
    from databazaar.lm.tasks import NAMES, RELATIONS, generate_tasks, recall_drills

    drills = recall_drills(300, random_state=5)
    assert drills == recall_drills(300, random_state=5)
    assert drills != recall_drills(300, random_state=6)
    values = {v for _, _, pool in RELATIONS for v in pool}
    sizes = set()
    for d in drills:
        facts = d.rstrip(".").split(". ")
        stated, again = facts[:-1], facts[-1]
        sizes.add(len(stated))
        pairs = [f.split(" ") for f in stated]
        assert all(len(p) == 2 and p[0] in NAMES and p[1] in values for p in pairs)
        assert len({p[0] for p in pairs}) == len(pairs)  # a name once per drill
        assert again in stated  # the restated fact keeps its value
    assert sizes == {3, 4}
    lookup = {e.prompt for e in generate_tasks(["lookup"], n_per_family=50, split="test")}
    assert not any("Question" in d or d in lookup for d in drills)  # no lookup prompt leaks
    assert recall_drills(0) == []
    with pytest.raises(InvalidInput):
        recall_drills(-1)
