"""End to end on the zoo's tiny assistant: outputs from the real OpenAI-compatible server
(``databazaar lm serve``'s app on 127.0.0.1) through the HTTP backend,
``databazaar uncertainty score`` on them, the judge metrics through the same server,
``uncertainty bench`` with a report, the ensemble scorer, and every CLI error as one line
with exit code 2."""

from __future__ import annotations

import json
import math
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from databazaar.cli import app
from databazaar.lm.local_backend import LocalModelBackend
from databazaar.lm.openai_client import OpenAICompatibleBackend
from databazaar.uncertainty import estimate_all, generate_outputs, read_outputs, task_items
from databazaar.uncertainty.metrics import MetricData, get_metric
from databazaar.uncertainty.runner import ensemble_scores, write_outputs

runner = CliRunner()


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def assistant(tiny_zoo) -> LocalModelBackend:  # type: ignore[no-untyped-def]
    return LocalModelBackend(tiny_zoo.assistant_dir, num_threads=1)


@pytest.fixture()
def served(assistant) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """The assistant behind `databazaar lm serve`'s app on 127.0.0.1 (uvicorn in a thread of
    this process: a real socket, without a second interpreter's slow start)."""
    import threading
    import time

    import uvicorn

    from databazaar.lm.serve import create_openai_app

    port = _port()
    app_ = create_openai_app(assistant, model_name="tiny")
    server = uvicorn.Server(uvicorn.Config(app_, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/v1"
    server.should_exit = True
    thread.join(timeout=30)


def test_score_outputs_from_the_http_server(served, assistant, tmp_path):  # type: ignore[no-untyped-def]
    base = served
    items = task_items(4, random_state=3)
    with OpenAICompatibleBackend(base, model="tiny") as remote:
        outs = generate_outputs(remote, items, n_samples=3, max_new_tokens=12, random_state=5)
        # the judge path through the same server: the tiny model rarely answers a number,
        # so values are numbers in range or NaN, never an error
        judge = get_metric("judge:relevance:plain", judge=remote)
        data = MetricData(
            [o.output.text for o in outs], [i.source for i in items], [i.reference for i in items]
        )
        vals = judge.score(data)
        assert len(vals) == 4 and all(math.isnan(v) or 1 <= v <= 5 for v in vals)
    local = generate_outputs(assistant, items, n_samples=3, max_new_tokens=12, random_state=5)
    for r, lo in zip(outs, local, strict=True):  # the server returns the local numbers
        assert r.output.text == lo.output.text
        assert r.output.token_logprobs == pytest.approx(lo.output.token_logprobs, abs=1e-5)
        assert len(r.output.top_logprobs[0]) == 20
    src = write_outputs(outs, tmp_path / "outputs.jsonl")
    dst = tmp_path / "scored.jsonl"
    methods = "MSP,MeanTokenEntropy,MonteCarloSequenceEntropy,LexicalSimilarity,NumSemSets"
    res = runner.invoke(
        app, ["uncertainty", "score", str(src), "--out", str(dst), "--methods", methods]
    )
    assert res.exit_code == 0, res.output
    assert "scored 4 outputs" in res.output
    scored = [json.loads(x) for x in dst.read_text().splitlines()]
    want = estimate_all(read_outputs(src)[1], methods.split(","))
    for i, rec in enumerate(scored):
        assert rec["input"] == items[i].text
        for m in want:
            assert rec["uncertainty"][m] == pytest.approx(want[m][i])
    assert want["MSP"].tolist() == pytest.approx([-sum(o.output.token_logprobs) for o in outs])


def test_ensemble_scores_use_each_member(assistant) -> None:  # type: ignore[no-untyped-def]
    items = task_items(3, random_state=4)
    outs = generate_outputs(assistant, items, n_samples=3, max_new_tokens=16, random_state=1)
    ensemble_scores(outs, [assistant, assistant])
    tok, eos = assistant.tokenizer, assistant.eos_token_ids[:1]
    same = 0
    for o in outs:
        row0, row1 = o.member_logprobs
        assert row0 == row1  # the same model twice
        for s, lp in zip(o.samples, row0, strict=True):
            ids = tok(s.text, add_special_tokens=False)["input_ids"]
            if ids + (eos if s.finish_reason == "stop" else []) == s.token_ids:
                # teacher forcing the sampled tokens gives the sampling log-probabilities
                assert lp == pytest.approx(sum(s.token_logprobs), abs=1e-3)
                same += 1
    assert same >= 1
    r = estimate_all(outs, ["EnsembleRMI"])
    assert np.allclose(r["EnsembleRMI"], 0.0)


def test_bench_cli_writes_a_report(tiny_zoo, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "rep"
    res = runner.invoke(
        app,
        [
            "uncertainty", "bench", "--model", str(tiny_zoo.assistant_dir), "--data", "tasks:8",
            "--methods", "MSP,MeanTokenEntropy,LexicalSimilarity,EigValLaplacian",
            "--metrics", "rougeL,fact_recall,source_support,well_formed,non_repetition",
            "--samples", "3", "--max-tokens", "12", "--boot", "20", "--out", str(out),
            "--threads", "1", "--quiet",
        ],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    rep = json.loads((out / "report.json").read_text())
    assert set(rep["prr"]) == {"MSP", "MeanTokenEntropy", "LexicalSimilarity", "EigValLaplacian"}
    assert rep["n_items"] == 8 and rep["metric_groups"]["well_formed"] == "fluency"
    assert "relevance|consistency" in rep["kendall_tau"]["group_pairs"]
    assert (out / "prr_heatmap.svg").read_text().startswith("<?xml")
    assert "PRR" in (out / "report.md").read_text()


def _bad(args: list[str]) -> str:
    res = runner.invoke(app, ["uncertainty", *args])
    assert res.exit_code == 2, res.output
    lines = [x for x in res.output.strip().splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    assert "Traceback" not in res.output
    return lines[0]


def test_cli_errors_one_line_exit_2(tmp_path: Path) -> None:
    p = tmp_path / "o.jsonl"
    p.write_text(json.dumps({"input": "x", "output": "plain text", "samples": ["a", "b"]}) + "\n")
    out = tmp_path / "s.jsonl"
    assert "MSP needs logprobs" in _bad(["score", str(p), "--out", str(out), "--methods", "MSP"])
    assert not out.exists()  # nothing written on error
    p2 = tmp_path / "o2.jsonl"
    rec = {"input": "x", "output": {"text": "a b", "tokens": ["a", "b"], "token_logprobs": [-1.0]}}
    p2.write_text(json.dumps(rec) + "\n")
    assert "2 tokens but 1 token_logprobs" in _bad(["score", str(p2), "--out", str(out)])
    p3 = tmp_path / "o3.jsonl"
    p3.write_text('{"input": "x", "output": "a"}\n{broken\n')
    assert "o3.jsonl:2: malformed JSON" in _bad(["score", str(p3), "--out", str(out)])
    p4 = tmp_path / "o4.jsonl"
    p4.write_text(json.dumps({"input": "x", "output": "a", "samples": ["a"]}) + "\n")
    assert "LexicalSimilarity needs samples: output 0" in _bad(
        ["score", str(p4), "--out", str(out), "--methods", "LexicalSimilarity"]
    )
    assert "must differ from the input" in _bad(["score", str(p), "--out", str(p)])
    assert "unknown uncertainty method 'nope'" in _bad(
        ["score", str(p), "--out", str(out), "--methods", "nope"]
    )
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"source": "Ana lives in Oslo."}) + "\n")
    msg = _bad(["bench", "--model", str(tmp_path), "--data", str(data), "--metrics", "rougeL"])
    assert "metric rougeL needs references" in msg
    assert "unknown metric 'nope'" in _bad(
        ["bench", "--model", str(tmp_path), "--data", str(data), "--metrics", "nope"]
    )
    assert "needs a judge model" in _bad(
        ["bench", "--model", str(tmp_path), "--data", str(data), "--metrics", "judges"]
    )


def test_cli_errors_for_model_internals(tmp_path: Path) -> None:
    p = tmp_path / "o.jsonl"
    p.write_text(json.dumps({"input": "x", "output": "a", "embedding": [0.5, 1.0]}) + "\n")
    out = tmp_path / "s.jsonl"
    msg = _bad(["score", str(p), "--out", str(out), "--methods", "Mahalanobis"])
    assert "Mahalanobis needs train_embeddings: no training outputs" in msg
    train = tmp_path / "t.jsonl"
    train.write_text(json.dumps({"input": "y", "output": "b"}) + "\n")
    msg = _bad(["score", str(p), "--out", str(out), "--methods", "RDE", "--train", str(train)])
    assert "RDE needs embedding: output 0" in msg
    assert "PTrue needs ptrue" in _bad(["score", str(p), "--out", str(out), "--methods", "PTrue"])
    assert not out.exists()
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"source": "Ana lives in Oslo.", "reference": "Oslo."}) + "\n")
    url = "http://127.0.0.1:9/v1"  # never contacted: the check comes first
    for method, need in (("Mahalanobis", "embedding"), ("PTrue", "ptrue"), ("EPTtu", "token")):
        msg = _bad(
            [
                "bench",
                "--model",
                url,
                "--data",
                str(data),
                "--metrics",
                "rougeL",
                "--methods",
                method,
                "--train-data",
                "tasks:2",
                "--member",
                url,
            ]
        )
        assert f"{method} needs {need}" in msg and "not a local model" in msg, msg
    msg = _bad(
        [
            "bench",
            "--model",
            url,
            "--data",
            str(data),
            "--metrics",
            "rougeL",
            "--methods",
            "MSP,RDE",
        ]
    )
    assert "RDE needs train_embeddings: give --train-data" in msg


def test_bench_with_model_internals(tiny_zoo, tmp_path) -> None:  # type: ignore[no-untyped-def]
    model = str(tiny_zoo.assistant_dir)
    args = [
        "bench",
        "--model",
        model,
        "--data",
        "tasks:3",
        "--metrics",
        "rougeL,well_formed",
        "--samples",
        "2",
        "--max-tokens",
        "8",
        "--boot",
        "5",
        "-q",
    ]
    msg = _bad([*args, "--methods", "Mahalanobis"])
    assert "Mahalanobis needs train_embeddings: give --train-data" in msg
    assert "EPTtu needs token_ensemble: no ensemble member" in _bad([*args, "--methods", "EPTtu"])
    res = runner.invoke(
        app,
        [
            "uncertainty",
            *args,
            "--methods",
            "Mahalanobis,PTrue,PETmi,MSP",
            "--train-data",
            "tasks:6",
            "--member",
            model,
            "--out",
            str(tmp_path / "rep"),
        ],
    )
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert set(rep["prr"]) == {"Mahalanobis", "PTrue", "PETmi", "MSP"}
