"""Generation backends: a local model folder and an OpenAI-compatible HTTP server.

The HTTP test starts a real uvicorn server on 127.0.0.1 that serves the tiny model
through :class:`LocalModelBackend`, and talks to it with :class:`OpenAICompatibleBackend`.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import torch

from databazaar.core.errors import InvalidInput
from databazaar.lm import BackendError, LocalModelBackend, OpenAICompatibleBackend
from databazaar.lm.serve import create_openai_app


@pytest.fixture(scope="module")
def local(tiny_lm: dict) -> LocalModelBackend:
    return LocalModelBackend(tiny_lm["folder"], num_threads=1)


@pytest.fixture(scope="module")
def server(local: LocalModelBackend) -> Iterator[str]:
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_openai_app(local, model_name="tiny")
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        if time.monotonic() > deadline:  # pragma: no cover - only on a broken machine
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/v1"
    srv.should_exit = True
    thread.join(timeout=10)


def test_local_greedy_generation_with_logprobs(local: LocalModelBackend) -> None:
    g1, g2 = local.generate(["def add(a, b):", "The quick"], max_new_tokens=6)
    again = local.generate(["def add(a, b):"], max_new_tokens=6)[0]
    assert g1.text == again.text and g1.token_logprobs == again.token_logprobs
    for g in (g1, g2):
        assert 1 <= len(g.tokens) <= 6
        assert g.token_logprobs is not None and len(g.token_logprobs) == len(g.tokens)
        assert all(lp <= 0 for lp in g.token_logprobs)
        assert g.logprob == pytest.approx(sum(g.token_logprobs))
    # greedy: each reported log-prob is the max of the next-token log-softmax, recomputed
    tok, model = local.tokenizer, local.model
    ids = tok("def add(a, b):", add_special_tokens=False)["input_ids"]
    new_ids = tok("".join(g1.tokens), add_special_tokens=False)["input_ids"]
    seq = torch.tensor([ids + new_ids])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=seq).logits[0], dim=-1)
    first = logp[len(ids) - 1]
    assert g1.token_logprobs[0] == pytest.approx(float(first.max()), abs=1e-4)
    assert int(first.argmax()) == new_ids[0]


def test_local_sampling_is_seeded(local: LocalModelBackend) -> None:
    a = local.generate(["for i in"], max_new_tokens=8, temperature=1.0, seed=5)[0]
    b = local.generate(["for i in"], max_new_tokens=8, temperature=1.0, seed=5)[0]
    assert a.text == b.text and a.token_logprobs == b.token_logprobs
    texts = {
        local.generate(["for i in"], max_new_tokens=8, temperature=1.5, seed=s)[0].text
        for s in range(6)
    }
    assert len(texts) > 1
    no_lp = local.generate(["x"], max_new_tokens=3, logprobs=False)[0]
    assert no_lp.token_logprobs is None and no_lp.logprob is None


def test_local_backend_errors(local: LocalModelBackend, tiny_lm: dict) -> None:
    with pytest.raises(InvalidInput, match="list of strings"):
        local.generate("not a list")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="max_new_tokens"):
        local.generate(["x"], max_new_tokens=0)
    with pytest.raises(InvalidInput, match="temperature"):
        local.generate(["x"], temperature=-1)
    with pytest.raises(InvalidInput, match="below the model context"):
        local.generate(["x"], max_new_tokens=32)
    # a long prompt is cut to its last tokens so prompt + new tokens fit the context
    long = local.generate(["word " * 200], max_new_tokens=4)[0]
    assert 1 <= len(long.tokens) <= 4
    with pytest.raises(InvalidInput, match="model_dir or model"):
        LocalModelBackend()
    with pytest.raises(InvalidInput, match="tokenizer is needed"):
        LocalModelBackend(model=tiny_lm["model"])


def test_http_backend_matches_local_model(local: LocalModelBackend, server: str) -> None:
    http = OpenAICompatibleBackend(server, model="tiny")
    try:
        prompts = ["def add(a, b):", "Permission is"]
        remote = http.generate(prompts, max_new_tokens=5)
        direct = local.generate(prompts, max_new_tokens=5)
        for r, d in zip(remote, direct, strict=True):
            assert r.text == d.text
            assert r.tokens == d.tokens
            assert r.token_logprobs == pytest.approx(d.token_logprobs, abs=1e-6)
            assert r.finish_reason == d.finish_reason
        sampled = http.generate(["for"], max_new_tokens=4, temperature=1.0, seed=3)[0]
        assert (
            sampled.text
            == local.generate(["for"], max_new_tokens=4, temperature=1.0, seed=3)[0].text
        )
        no_lp = http.generate(["x"], max_new_tokens=2, logprobs=False)[0]
        assert no_lp.token_logprobs is None
    finally:
        http.close()


def test_http_chat_endpoint(local: LocalModelBackend, server: str) -> None:
    chat = OpenAICompatibleBackend(server, endpoint="chat")
    try:
        g = chat.generate(["hello"], max_new_tokens=4)[0]
    finally:
        chat.close()
    d = local.generate(["user: hello\nassistant:"], max_new_tokens=4)[0]
    assert g.text == d.text
    assert g.token_logprobs == pytest.approx(d.token_logprobs, abs=1e-6)
    models = httpx.get(server + "/models").json()
    assert models["data"][0]["id"] == "tiny"


def test_http_server_validates_requests(server: str) -> None:
    r = httpx.post(server + "/completions", json={"prompt": "x", "max_tokens": 0})
    assert r.status_code == 422
    with pytest.raises(BackendError, match="HTTP 422"):
        OpenAICompatibleBackend(server)._post("/completions", {"prompt": "x", "max_tokens": -1})


def test_http_backend_errors(server: str) -> None:
    with pytest.raises(InvalidInput, match="http"):
        OpenAICompatibleBackend("ftp://example")
    with pytest.raises(InvalidInput, match="unknown endpoint"):
        OpenAICompatibleBackend(server, endpoint="embeddings")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    dead = OpenAICompatibleBackend(f"http://127.0.0.1:{dead_port}/v1", timeout=2)
    with pytest.raises(BackendError, match="cannot reach"):
        dead.generate(["x"])
    wrong = OpenAICompatibleBackend(server.removesuffix("/v1") + "/nope")
    with pytest.raises(BackendError, match="HTTP 404"):
        wrong.generate(["x"])
    with pytest.raises(BackendError, match="HTTP 405"):
        OpenAICompatibleBackend(server)._post("/models", {})  # a GET-only route


@pytest.mark.parametrize(
    ("body", "msg"), [(b"<html>oops</html>", "did not answer JSON"), (b'{"id": 1}', "choices")]
)
def test_http_backend_rejects_malformed_answers(body: bytes, msg: str) -> None:
    # a misbehaving server, simulated at the transport level
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=body))
    bad = OpenAICompatibleBackend("http://127.0.0.1:9/v1", transport=transport)
    with pytest.raises(BackendError, match=msg):
        bad.generate(["x"])
