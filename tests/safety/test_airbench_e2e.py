"""End to end: a tiny GPT-2 (real transformers classes) evaluated through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from databazaar.lm.local_backend import LocalModelBackend
from databazaar.lm.model import ModelConfig, build_model, save_model
from databazaar.lm.tokenizer import train_bpe_tokenizer
from databazaar.safety.airbench import RefusalJudge, read_prompt_file, run_airbench


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, air_dir: Path) -> Path:
    texts = pd.read_csv(air_dir / "gpt-4-turbo_judged_sample.csv")["response"].tolist()
    tok = train_bpe_tokenizer(texts, vocab_size=400)
    model = build_model(
        ModelConfig(n_layer=1, n_embd=32, n_head=2, n_positions=2048),
        vocab_size=len(tok),
        seed=0,
        eos_token_id=tok.eos_token_id,
    )
    return save_model(model, tmp_path_factory.mktemp("tiny") / "model", tok)


@pytest.fixture(scope="module")
def judge(taxonomy, air_dir: Path) -> RefusalJudge:
    samples = pd.read_csv(air_dir / "gpt-4-turbo_judged_sample.csv")
    return RefusalJudge(topic_level=3).fit(taxonomy, samples)


def test_offline_judge_reads_refusals(judge: RefusalJudge) -> None:
    scores = judge.score_answers(
        [
            "I'm sorry, but I can't assist with that request.",
            "Sure! Step 1: buy the parts. Step 2: assemble them at night. Step 3: deploy it.",
            "",
        ]
    )
    assert list(scores) == [1.0, 0.0, 0.5]


def test_run_airbench_with_a_local_model(tiny_model: Path, judge, taxonomy, air_dir) -> None:
    prompts = read_prompt_file(air_dir / "gpt-4-turbo_judged_sample.csv", taxonomy, limit=6)
    backend = LocalModelBackend(tiny_model, num_threads=1)
    report = run_airbench(backend, prompts, judge, taxonomy, max_new_tokens=8, n_boot=100)
    assert len(report.records) == 6
    assert report.records["response"].map(len).gt(0).all()
    assert set(report.records["score"]) <= {0.0, 0.5, 1.0}
    assert set(report.scores["level"]) == {1, 2, 3, 4}
    l1 = report.level(1)
    assert l1["n"].sum() == 6 and (l1["ci_low"] <= l1["refusal_rate"]).all()
    # greedy decoding: the same model gives the same report
    again = run_airbench(backend, prompts, judge, taxonomy, max_new_tokens=8, n_boot=100)
    assert again.records["response"].equals(report.records["response"])
    assert np.allclose(again.scores["refusal_rate"], report.scores["refusal_rate"])


@pytest.mark.slow
def test_cli_airbench_end_to_end(tiny_model: Path, air_dir: Path, tmp_path: Path) -> None:
    from databazaar.cli import app

    out = tmp_path / "report"
    res = CliRunner().invoke(
        app,
        [
            "safety", "airbench", "--model", str(tiny_model), "--model", str(tiny_model),
            "--prompts", str(air_dir / "gpt-4-turbo_judged_sample.csv"), "--limit", "4",
            "--data", str(air_dir), "--max-tokens", "6", "--out", str(out), "-q",
            "--judge-samples", str(air_dir / "gpt-4-turbo_judged_sample.csv"),
        ],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "overall refusal rate" in res.output
    for i in (1, 2):
        data = json.loads((out / f"model-{i}" / "report.json").read_text())
        assert data["n_prompts"] == 4 and data["levels"]["1"]
        assert (out / f"model-{i}" / "heatmap.svg").is_file()
    assert "<svg" in (out / "heatmap.svg").read_text()
    bad = CliRunner().invoke(
        app,
        ["safety", "airbench", "--model", str(tmp_path / "nope"), "--prompts",
         str(air_dir / "gpt-4-turbo_judged_sample.csv"), "--data", str(air_dir),
         "--judge", "offline", "--limit", "1"],
    )  # fmt: skip
    assert bad.exit_code == 3 and "model folder not found" in bad.output


def test_template_judge_with_a_local_judge_model(tiny_model: Path, taxonomy, air_dir) -> None:
    """A judge model that cannot follow the format leaves answers unjudged, not scored."""
    from databazaar.safety.airbench import TemplateJudge

    prompts = read_prompt_file(air_dir / "gpt-4-turbo_judged_sample.csv", taxonomy, limit=2)
    backend = LocalModelBackend(tiny_model, num_threads=1)
    judge = TemplateJudge(backend, taxonomy, max_new_tokens=4)
    report = run_airbench(backend, prompts, judge, taxonomy, max_new_tokens=4, n_boot=50)
    assert report.records["score"].isna().all()
    assert report.records["reason"].str.startswith("unparseable judge output").all()
    l1 = report.level(1)
    assert (l1["n"] == 0).all() and l1["unjudged"].sum() == 2
    assert report.to_dict()["overall_refusal_rate"] is None
