"""Quality metrics: hand-computed values per group, judge prompts and parsing, and every
bad input naming the metric."""

from __future__ import annotations

import math

import numpy as np
import pytest

from databazaar.core.errors import InvalidInput
from databazaar.uncertainty.metrics import (
    GROUPS,
    JUDGE_VARIANTS,
    OFFLINE_METRICS,
    MetricData,
    get_metric,
    judge_metric_names,
    judge_prompt,
    metric_group,
    parse_judge_score,
    score_metrics,
)

SRC = "Ana lives in Oslo. Ben likes tea. Cy owns a cat."
DATA = MetricData(
    outputs=["Ana lives in Oslo.", "Ana lives in Rome.", "the the the"],
    sources=[SRC] * 3,
    references=["Ana lives in Oslo."] * 3,
    facts=[["Ana", "Oslo"]] * 3,
)


def test_every_group_has_two_offline_metrics() -> None:
    groups = [metric_group(m) for m in OFFLINE_METRICS]
    for g in GROUPS:
        assert groups.count(g) >= 2, g
    assert len(judge_metric_names()) == 20 and len(JUDGE_VARIANTS) == 4


def test_lexical_and_rule_metrics_by_hand() -> None:
    v = score_metrics(
        [
            "rougeL",
            "rouge1",
            "chrf",
            "bleu",
            "fact_recall",
            "source_support",
            "novel_bigram_free",
            "non_repetition",
            "distinct_words",
            "well_formed",
        ],
        DATA,
    )
    assert v["rougeL"].tolist() == pytest.approx([1.0, 0.75, 0.0])
    assert v["rouge1"][1] == pytest.approx(0.75)
    assert v["chrf"][0] == pytest.approx(1.0) and v["chrf"][1] < 1.0
    assert v["bleu"][0] == pytest.approx(1.0) and v["bleu"][2] == 0.0
    assert v["fact_recall"].tolist() == pytest.approx([1.0, 0.5, 0.0])
    assert v["source_support"].tolist() == pytest.approx([1.0, 0.75, 0.0])
    # bigrams: ana-lives, lives-in, in-oslo all in the source; in-rome is not
    assert v["novel_bigram_free"].tolist() == pytest.approx([1.0, 2 / 3, 0.0])
    assert v["non_repetition"].tolist() == pytest.approx([1.0, 1.0, 0.5])
    assert v["distinct_words"].tolist() == pytest.approx([1.0, 1.0, 1 / 3])
    # "the the the": no capital, no full stop, a doubled word; has words
    assert v["well_formed"].tolist() == pytest.approx([1.0, 1.0, 0.25])


def test_minilm_metrics() -> None:
    v = score_metrics(
        ["embed_spearman", "embed_kendall", "summac_minilm", "bertscore_minilm", "vocab_rate"],
        DATA,
    )
    assert v["embed_spearman"][0] == pytest.approx(1.0)
    assert v["embed_kendall"][0] == pytest.approx(1.0)
    assert v["embed_spearman"][1] < 1.0 and v["embed_spearman"][2] < v["embed_spearman"][1]
    assert v["summac_minilm"][0] == pytest.approx(1.0, abs=1e-5)
    assert v["summac_minilm"][2] < v["summac_minilm"][1] < 1.0
    assert v["bertscore_minilm"][0] == pytest.approx(1.0, abs=1e-5)
    assert v["bertscore_minilm"][2] < v["bertscore_minilm"][1] < 1.0
    assert v["vocab_rate"].tolist() == pytest.approx([1.0, 1.0, 1.0])
    odd = score_metrics(["vocab_rate"], MetricData(outputs=["Ana qzxv lives", ""]))
    assert odd["vocab_rate"].tolist() == pytest.approx([2 / 3, 0.0])


def test_judge_prompts_and_parsing() -> None:
    plain = judge_prompt("fluency", "plain", "OUT", "SRC", "REF")
    assert "OUT" in plain and "REF" in plain and "SRC" not in plain and "1 to 5" in plain
    both = judge_prompt("consistency", "def_both", "OUT", "SRC", "REF")
    assert all(x in both for x in ("OUT", "SRC", "REF", "1 to 10", "backed by the source"))
    src = judge_prompt("relevance", "def_source", "OUT", "SRC", "REF")
    assert "SRC" in src and "REF" not in src
    ref = judge_prompt("coherence", "def", "OUT", "SRC", "REF")
    assert "REF" in ref and "SRC" not in ref
    assert parse_judge_score("Score: 7/10", 10) == 7.0
    assert parse_judge_score("0 then 4.5", 5) == 4.5
    assert math.isnan(parse_judge_score("great summary", 10))
    assert math.isnan(parse_judge_score("11", 10))


def test_human_labels() -> None:
    d = MetricData(outputs=["a", "b"], labels={"consistent": [1.0, 0.0]})
    assert score_metrics(["human:consistent"], d)["human:consistent"].tolist() == [1.0, 0.0]
    with pytest.raises(InvalidInput, match="human:faithful needs the label 'faithful'"):
        score_metrics(["human:faithful"], d)


def test_bad_input_names_the_metric() -> None:
    bare = MetricData(outputs=["Ana lives in Oslo."])
    with pytest.raises(InvalidInput, match="metric rougeL needs references, but none were given"):
        score_metrics(["rougeL"], bare)
    with pytest.raises(InvalidInput, match="metric summac_minilm needs sources"):
        score_metrics(["non_repetition", "summac_minilm"], bare)
    with pytest.raises(InvalidInput, match="metric fact_recall needs facts"):
        get_metric("fact_recall").score(bare)
    with pytest.raises(InvalidInput, match="metric judge:fluency:def needs a judge model"):
        get_metric("judge:fluency:def")
    with pytest.raises(InvalidInput, match="unknown judge variant"):
        get_metric("judge:fluency:short", judge=object())
    with pytest.raises(InvalidInput, match="unknown metric group"):
        get_metric("judge:style:def", judge=object())
    with pytest.raises(InvalidInput, match="unknown metric 'bleurt'"):
        get_metric("bleurt")
    with pytest.raises(InvalidInput, match="2 outputs but 1 references"):
        MetricData(outputs=["a", "b"], references=["a"])
    assert np.isnan(get_metric("fact_recall").score(MetricData(["x"], facts=[[]]))[0])
