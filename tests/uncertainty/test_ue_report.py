"""run_benchmark and its report on hand-made outputs (no model): PRR table, CIs, taus,
clusters, JSON/markdown/SVG files, and the runner's input checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from databazaar.core.errors import InvalidInput
from databazaar.lm.generate import Generation
from databazaar.uncertainty import Item, UEOutputs, prr, read_items, run_benchmark

GOOD = "Ana lives in Oslo."
BAD = ["Ana lives in Rome.", "Ben likes tea.", "tea tea tea", "Ana Ana"]


def make_case(n: int = 30, seed: int = 0) -> tuple[list[Item], list[UEOutputs]]:
    rng = np.random.default_rng(seed)
    items, outs = [], []
    for i in range(n):
        good = rng.random() < 0.5
        text = GOOD if good else str(rng.choice(BAD))
        conf = -0.1 if good else -1.5
        g = Generation(text=text, tokens=["a", "b"], token_logprobs=[conf + rng.normal(0, 0.3)] * 2)
        pool = [GOOD] * 4 if good else list(rng.choice([GOOD, *BAD], 4))
        samples = [Generation(text=str(t), token_logprobs=[-1.0]) for t in pool]
        src = f"Passage {i}: Ana lives in Oslo. Ben likes tea."
        items.append(Item(src, GOOD, f"Summarize {i}", ["Ana", "Oslo"]))
        outs.append(UEOutputs(items[-1].text, g, samples))
    return items, outs


def test_run_benchmark_and_report(tmp_path: Path) -> None:
    items, outs = make_case()
    metrics = ["rougeL", "fact_recall", "source_support", "well_formed", "non_repetition"]
    rep = run_benchmark(items, outs, ["MSP", "LexicalSimilarity", "NumSemSets"], metrics, n_boot=30)
    q = rep.metric_values["rougeL"]
    assert rep.prr["MSP"]["rougeL"] == pytest.approx(prr(rep.uncertainties["MSP"], q))
    assert rep.prr["MSP"]["rougeL"] > 0.5  # confident answers are the good ones
    lo, hi = rep.stats["prr_ci"]["MSP"]["rougeL"]
    assert lo <= rep.prr["MSP"]["rougeL"] <= hi
    assert rep.groups["well_formed"] == "fluency" and rep.groups["fact_recall"] == "relevance"
    summary = rep.rankings_change()
    assert summary["pairs"] == 4 * 3 // 2  # relevance, consistency, fluency, coherence
    paths = rep.save(tmp_path / "r")
    d = json.loads(paths["json"].read_text())
    assert set(d["prr"]) == {"MSP", "LexicalSimilarity", "NumSemSets"}
    assert d["n_items"] == 30 and d["kendall_tau"]["summary"]["pairs"] == 6
    assert paths["heatmap"].read_text().startswith("<?xml")
    assert "dendrogram" in paths and "<svg" in paths["dendrogram"].read_text()
    md = paths["markdown"].read_text()
    assert "| MSP |" in md and "Kendall's tau" in md and "Metric clusters" in md


def test_runner_input_checks(tmp_path: Path) -> None:
    items, outs = make_case(4)
    with pytest.raises(InvalidInput, match="4 items but 3 outputs"):
        run_benchmark(items, outs[:3], ["MSP"], ["rougeL"])
    no_ref = [Item(it.source) for it in items]
    with pytest.raises(InvalidInput, match="metric rougeL needs references"):
        run_benchmark(no_ref, outs, ["MSP"], ["rougeL"])
    with pytest.raises(InvalidInput, match="give at least one method"):
        run_benchmark(items, outs, [], ["rougeL"])
    p = tmp_path / "items.jsonl"
    p.write_text('{"source": "a", "reference": "b", "facts": ["a"]}\n{"source": ""}\n')
    with pytest.raises(InvalidInput, match=r"items.jsonl:2: 'source' must be a non-empty"):
        read_items(p)
    p.write_text('{"source": "a", "labels": {"x": "high"}}\n')
    with pytest.raises(InvalidInput, match="'labels' must map names to numbers"):
        read_items(p)
    p.write_text('{"source": "a", "labels": {"x": 1}, "prompt": "Summarize: a"}\n')
    (it,) = read_items(p)
    assert it.text == "Summarize: a" and it.labels == {"x": 1}
