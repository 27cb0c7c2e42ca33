"""``databazaar lm generate`` and ``databazaar lm serve`` on the tiny model folder."""

from __future__ import annotations

import json
import socket

import httpx
import pytest
from typer.testing import CliRunner

from databazaar.cli import app
from databazaar.lm.generate import LocalModelBackend

runner = CliRunner()
PROMPTS = ["def add(a, b):", "Permission is"]


def test_generate_prints_the_greedy_completions(tiny_lm: dict) -> None:
    folder = str(tiny_lm["folder"])
    res = runner.invoke(app, ["lm", "generate", folder, *PROMPTS, "--max-tokens", "5"])
    assert res.exit_code == 0, res.output
    direct = LocalModelBackend(folder, num_threads=1).generate(PROMPTS, max_new_tokens=5)
    assert res.stdout == "".join(g.text + "\n" for g in direct)
    res = runner.invoke(
        app, ["lm", "generate", folder, "for", "--json", "--max-tokens", "3", "--temperature", "1",
              "--seed", "3"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    record = json.loads(res.stdout)
    sampled = LocalModelBackend(folder).generate(
        ["for"], max_new_tokens=3, temperature=1.0, seed=3
    )[0]
    assert record["text"] == sampled.text and record["tokens"] == sampled.tokens
    assert record["token_logprobs"] == pytest.approx(sampled.token_logprobs, abs=1e-6)


def test_generate_errors(tiny_lm: dict, tmp_path) -> None:  # type: ignore[no-untyped-def]
    res = runner.invoke(app, ["lm", "generate", str(tmp_path / "missing"), "hi"])
    assert res.exit_code == 3 and "not found" in res.output
    res = runner.invoke(app, ["lm", "generate", str(tmp_path), "hi"])
    assert res.exit_code == 2 and "holds no model" in res.output
    res = runner.invoke(app, ["lm", "generate", str(tiny_lm["folder"]), "hi", "--max-tokens", "0"])
    assert res.exit_code == 2
    res = runner.invoke(app, ["lm", "serve", str(tiny_lm["folder"]), "--port", "70000"])
    assert res.exit_code == 2 and "port must be" in res.output


def test_serve_answers_openai_requests(tiny_lm: dict, http_subprocess) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = (
        "import sys; from databazaar.cli import main; "
        f"sys.argv = ['databazaar', 'lm', 'serve', {str(tiny_lm['folder'])!r}, '--port', "
        f"'{port}', '--name', 'tiny', '--log-level', 'error', '--threads', '1']; main()"
    )
    base = f"http://127.0.0.1:{port}/v1"
    proc, models = http_subprocess(code, f"{base}/models")
    assert [m["id"] for m in models.json()["data"]] == ["tiny"]
    r = httpx.post(
        f"{base}/completions",
        json={"model": "tiny", "prompt": PROMPTS[0], "max_tokens": 5, "temperature": 0},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    direct = LocalModelBackend(tiny_lm["folder"]).generate(PROMPTS[:1], max_new_tokens=5)
    assert r.json()["choices"][0]["text"] == direct[0].text
    proc.terminate()
    out, _ = proc.communicate(timeout=30)
    assert f"127.0.0.1:{port}/v1" in out
