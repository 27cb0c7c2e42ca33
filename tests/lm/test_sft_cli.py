"""``databazaar lm sft``, ``lm tasks`` and ``lm eval`` from the command line, and bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from databazaar.cli import app

runner = CliRunner()
GOOD = [
    {"messages": [{"role": "user", "content": "def add"}, {"role": "assistant", "content": "x"}]},
    {"prompt": "The quick", "completion": "brown fox"},
]


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_sft_cli_trains_saves_and_reports(tiny_lm: dict, tmp_path: Path) -> None:
    data = _write(tmp_path / "d.jsonl", [json.dumps(r) for r in GOOD])
    out = tmp_path / "out"
    res = runner.invoke(
        app,
        ["lm", "sft", str(tiny_lm["folder"]), str(data), "-o", str(out), "--max-steps", "3",
         "--lr", "1e-3", "--batch-size", "2", "--quiet", "--threads", "1"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "trained 3 steps on 2 conversations" in res.output
    assert (out / "config.json").is_file() and (out / "tokenizer_config.json").is_file()
    meta = json.loads((out / "sft_result.json").read_text())
    assert meta["result"]["steps"] == 3 and meta["config"]["lr"] == 1e-3
    again = runner.invoke(app, ["lm", "sft", str(tiny_lm["folder"]), str(data), "-o", str(out)])
    assert again.exit_code == 2 and "not empty" in again.output


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"messages": [{"role": "user", "content": "x"}', ""], "d.jsonl:1: malformed JSON"),
        (['{"messages": [{"role": "wizard", "content": "x"}]}'], "unknown role 'wizard'"),
        (['{"prompt": "a", "completion": "   "}'], "empty assistant turn"),
        (['{"messages": [{"role": "user", "content": "no answer"}]}'], "no trainable tokens"),
    ],
)
def test_sft_cli_bad_data_exits_2_and_writes_nothing(
    tiny_lm: dict, tmp_path: Path, lines: list[str], message: str
) -> None:
    data = _write(tmp_path / "d.jsonl", lines)
    out = tmp_path / "out"
    res = runner.invoke(app, ["lm", "sft", str(tiny_lm["folder"]), str(data), "-o", str(out)])
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert res.output.count("error:") == 1
    assert not out.exists()


def test_sft_cli_model_without_tokenizer_exits_2(tiny_lm: dict, tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    for f in ("config.json", "model.safetensors", "generation_config.json"):
        if (tiny_lm["folder"] / f).is_file():
            shutil.copy(tiny_lm["folder"] / f, bare / f)
    data = _write(tmp_path / "d.jsonl", [json.dumps(r) for r in GOOD])
    out = tmp_path / "out"
    res = runner.invoke(app, ["lm", "sft", str(bare), str(data), "-o", str(out)])
    assert res.exit_code == 2 and "holds no tokenizer" in res.output
    assert not out.exists()
    missing = runner.invoke(app, ["lm", "sft", str(tmp_path / "nope"), str(data), "-o", str(out)])
    assert missing.exit_code == 3 and not out.exists()


def test_sft_cli_keeps_or_replaces_a_models_own_chat_template(
    tiny_lm: dict, tmp_path: Path
) -> None:
    """An own template without generation markers: exit 2 and nothing written, unless
    --chat-template names a marked one (a file or 'default')."""
    from databazaar.lm.chat import CHAT_TEMPLATE

    model = tmp_path / "chat-model"
    shutil.copytree(tiny_lm["folder"], model)
    cfg_path = model / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["chat_template"] = "{% for m in messages %}{{ m['content'] }}\n{% endfor %}"
    cfg_path.write_text(json.dumps(cfg))
    (model / "chat_template.jinja").unlink(missing_ok=True)
    data = _write(tmp_path / "d.jsonl", [json.dumps(r) for r in GOOD])
    out = tmp_path / "out"
    args = ["lm", "sft", str(model), str(data), "-o", str(out), "--max-steps", "1", "--quiet"]
    res = runner.invoke(app, args)
    assert res.exit_code == 2 and "own chat template has no" in res.output, res.output
    assert res.output.count("error:") == 1 and not out.exists()
    missing = runner.invoke(app, [*args, "--chat-template", str(tmp_path / "none.jinja")])
    assert missing.exit_code == 3 and not out.exists()
    marked = tmp_path / "marked.jinja"
    marked.write_text(CHAT_TEMPLATE.replace("<|assistant|>", "<|bot|>"))
    ok = runner.invoke(app, [*args, "--chat-template", str(marked)])
    assert ok.exit_code == 0, ok.output
    from transformers import AutoTokenizer

    assert "<|bot|>" in AutoTokenizer.from_pretrained(str(out)).chat_template
    out2 = tmp_path / "out2"
    args[5] = str(out2)
    ok2 = runner.invoke(app, [*args, "--chat-template", "default"])
    assert ok2.exit_code == 0, ok2.output
    assert AutoTokenizer.from_pretrained(str(out2)).chat_template == CHAT_TEMPLATE


def test_tasks_cli_writes_trainable_chat_jsonl(tmp_path: Path) -> None:
    out = tmp_path / "t.jsonl"
    res = runner.invoke(
        app, ["lm", "tasks", "-o", str(out), "--tasks", "arithmetic,unsafe", "--n", "3",
              "--paraphrase"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    from databazaar.lm.chat import read_chat_jsonl

    convs = read_chat_jsonl(out)
    assert len(convs) == 6 and all(c[-1]["role"] == "assistant" for c in convs)
    assert sum(c[-1]["content"] == "I can't help with that request." for c in convs) == 3
    bad = runner.invoke(app, ["lm", "tasks", "-o", str(out), "--tasks", "poetry"])
    assert bad.exit_code == 2 and "unknown task family: poetry" in bad.output
    nope = runner.invoke(app, ["lm", "tasks", "-o", str(out), "--taxonomy", str(tmp_path)])
    assert nope.exit_code == 3 and "taxonomy file not found" in nope.output
