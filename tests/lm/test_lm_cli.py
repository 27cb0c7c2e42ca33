"""``databazaar lm generate`` (completions, chat, samples, log-probs) on the tiny model
folders; ``lm serve`` runs as a subprocess in test_serve.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from databazaar.cli import app
from databazaar.lm.local_backend import LocalModelBackend

runner = CliRunner()
PROMPTS = ["def add(a, b):", "Permission is"]


def test_generate_prints_the_greedy_completions(tiny_lm: dict) -> None:
    folder = str(tiny_lm["folder"])
    res = runner.invoke(app, ["lm", "generate", folder, *PROMPTS, "--max-tokens", "5"])
    assert res.exit_code == 0, res.output
    local = LocalModelBackend(folder, num_threads=1)
    direct = local.generate(PROMPTS, max_new_tokens=5)
    assert res.stdout == "".join(g.text + "\n" for g in direct)
    args = [
        "lm",
        "generate",
        folder,
        "for",
        "--max-tokens",
        "3",
        "--temperature",
        "1",
        "--seed",
        "3",
    ]
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    record = json.loads(res.stdout)
    sampled = local.generate(["for"], max_new_tokens=3, temperature=1.0, random_state=3)[0]
    assert record["text"] == sampled.text and record["tokens"] == sampled.tokens
    assert record == {**sampled.to_dict(), "token_logprobs": None, "logprob": None}
    res = runner.invoke(app, [*args, "-n", "3", "--logprobs", "--top-logprobs", "2"])
    assert res.exit_code == 0, res.output
    records = [json.loads(line) for line in res.stdout.splitlines()]
    samples = local.generate(
        ["for"], max_new_tokens=3, temperature=1.0, random_state=3, n=3, top_logprobs=2
    )
    assert [r["sample_index"] for r in records] == [0, 1, 2]
    for r, g in zip(records, samples, strict=True):
        assert r["token_ids"] == g.token_ids
        assert r["token_logprobs"] == pytest.approx(g.token_logprobs, abs=1e-6)
        assert r["logprob"] == pytest.approx(g.logprob, abs=1e-5)
        assert [[t for t, _ in s] for s in r["top_logprobs"]] == [
            [t for t, _ in s] for s in g.top_logprobs
        ]
    res = runner.invoke(
        app,
        ["lm", "generate", folder, "The quick", "--max-tokens", "8", "--stop", "o", "--stop", "e"],
    )
    assert res.exit_code == 0 and "o" not in res.stdout and "e" not in res.stdout
    full = local.generate(["The quick"], max_new_tokens=8)[0].text
    assert res.stdout == full[: min(i for i in (full.find("o"), full.find("e")) if i >= 0)] + "\n"


def test_generate_chat(tiny_chat_lm: dict, tmp_path: Path) -> None:
    folder = str(tiny_chat_lm["folder"])
    res = runner.invoke(app, ["lm", "generate", folder, "--chat", "hello", "add 2 and 3"])
    assert res.exit_code == 0, res.output
    assert res.stdout == "hi there\n5\n"
    chats = tmp_path / "chats.jsonl"
    rows = [
        {"messages": [{"role": "user", "content": "hello"}]},
        {"messages": [{"role": "user", "content": "add 2 and 3"}]},
    ]
    chats.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = runner.invoke(app, ["lm", "generate", folder, "--messages", str(chats), "--json"])
    assert res.exit_code == 0, res.output
    records = [json.loads(line) for line in res.stdout.splitlines()]
    want = LocalModelBackend(folder).chat([r["messages"] for r in rows], max_new_tokens=32)
    assert [r["text"] for r in records] == [g.text for g in want]
    assert [r["finish_reason"] for r in records] == ["stop", "stop"]
    assert [r["prompt_index"] for r in records] == [0, 1]


def test_generate_errors(tiny_lm: dict, tiny_chat_lm: dict, tmp_path) -> None:  # type: ignore[no-untyped-def]
    folder = str(tiny_lm["folder"])
    res = runner.invoke(app, ["lm", "generate", str(tmp_path / "missing"), "hi"])
    assert res.exit_code == 3 and "not found" in res.output
    res = runner.invoke(app, ["lm", "generate", str(tmp_path), "hi"])
    assert res.exit_code == 2 and "holds no model" in res.output
    res = runner.invoke(app, ["lm", "generate", folder, "hi", "--max-tokens", "0"])
    assert res.exit_code == 2 and "max_new_tokens" in res.output
    res = runner.invoke(app, ["lm", "generate", folder, "hi", "-n", "0"])
    assert res.exit_code == 2 and "n must be" in res.output
    res = runner.invoke(app, ["lm", "generate", folder])
    assert res.exit_code == 2 and "nothing to generate" in res.output
    res = runner.invoke(app, ["lm", "generate", folder, "--chat", "hi"])
    assert res.exit_code == 2 and "no chat template" in res.output
    chat_folder = str(tiny_chat_lm["folder"])
    res = runner.invoke(app, ["lm", "generate", chat_folder, "hi", "--messages", "x.json"])
    assert res.exit_code == 2 and "not both" in res.output
    res = runner.invoke(
        app, ["lm", "generate", chat_folder, "--messages", str(tmp_path / "no.json")]
    )
    assert res.exit_code == 3 and "not found" in res.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "robot", "content": "hi"}]}\n')
    res = runner.invoke(app, ["lm", "generate", chat_folder, "--messages", str(bad)])
    assert res.exit_code == 2 and "bad.jsonl:1" in res.output and "unknown role" in res.output
    res = runner.invoke(app, ["lm", "serve", folder, "--port", "70000"])
    assert res.exit_code == 2 and "port must be" in res.output
