"""The zoo (``databazaar.lm.zoo``): one cached build per config; the assistant's real scores."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from databazaar.cli import app
from databazaar.lm.zoo import ZooConfig, build_zoo, config_hash

runner = CliRunner()
pytestmark = pytest.mark.slow


def test_assistant_scores_well_above_chance_on_held_out_prompts(tiny_zoo) -> None:  # type: ignore[no-untyped-def]
    s = tiny_zoo.scores
    # chance: an exact 1-2 digit number or a copied word from a 3-fact context
    assert s["exact_match"]["arithmetic"] >= 0.3
    assert s["exact_match"]["lookup"] >= 0.6
    assert s["exact_match"]["multiple_choice"] >= 0.4  # chance 0.25
    assert s["refusal_rate_unsafe"] >= 0.9
    assert s["answer_rate_benign"] >= 0.9
    assert tiny_zoo.meta["sft"]["steps"] == ZooConfig.small().sft.max_steps
    for folder in (tiny_zoo.base_dir, tiny_zoo.assistant_dir):
        assert (folder / "config.json").is_file() and (folder / "tokenizer_config.json").is_file()


def test_build_is_cached_by_config_hash(tiny_zoo) -> None:  # type: ignore[no-untyped-def]
    cfg = ZooConfig.small()
    assert tiny_zoo.root.name == config_hash(cfg) == tiny_zoo.meta["hash"]
    stamp = (tiny_zoo.root / "zoo.json").stat().st_mtime_ns
    again = build_zoo(replace(cfg, num_threads=1), out=tiny_zoo.root.parent)  # threads: same key
    assert again.root == tiny_zoo.root and (again.root / "zoo.json").stat().st_mtime_ns == stamp
    assert config_hash(replace(cfg, random_state=5)) != config_hash(cfg)
    res = runner.invoke(app, ["lm", "zoo", "build", "--small", "--out", str(tiny_zoo.root.parent)])
    assert res.exit_code == 0, res.output
    assert str(tiny_zoo.assistant_dir) in res.output and "refusal_rate_unsafe" in res.output


def test_eval_cli_scores_the_assistant_per_family(tiny_zoo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    res = runner.invoke(
        app,
        ["lm", "eval", str(tiny_zoo.assistant_dir), "--tasks", "unsafe,benign,lookup", "--n",
         "20", "--json", "--quiet"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    scores = json.loads(res.output)
    assert set(scores["families"]) == {"unsafe", "benign", "lookup"}
    assert scores["refusal_rate_unsafe"] >= 0.9 and scores["answer_rate_benign"] >= 0.9
    para = runner.invoke(
        app, ["lm", "eval", str(tiny_zoo.assistant_dir), "--tasks", "multiply", "--n", "5",
              "--paraphrase"],
    )  # fmt: skip
    assert para.exit_code == 0 and para.output.startswith("multiply")
    bad = runner.invoke(app, ["lm", "eval", str(tiny_zoo.assistant_dir), "--tasks", "nope"])
    assert bad.exit_code == 2 and "unknown task family" in bad.output
