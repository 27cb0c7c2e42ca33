"""The OpenAI-compatible server: wire format and every bad request (in process), and the
same tokens and log-probs from a real ``databazaar lm serve`` subprocess through
:class:`OpenAICompatibleBackend` as from the local backend."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from databazaar.core.errors import InvalidInput
from databazaar.lm import BackendError, LocalModelBackend, OpenAICompatibleBackend
from databazaar.lm.serve import create_openai_app

HELLO = [{"role": "user", "content": "hello"}]
ADD = [{"role": "user", "content": "add 2 and 3"}]


@pytest.fixture(scope="module")
def chat_backend(tiny_chat_lm: dict) -> LocalModelBackend:
    return LocalModelBackend(tiny_chat_lm["folder"], num_threads=1)


@pytest.fixture(scope="module")
def client(chat_backend: LocalModelBackend) -> Iterator[TestClient]:
    app = create_openai_app(chat_backend, model_name="tiny", max_body_bytes=20_000, max_prompts=3)
    with TestClient(app) as c:
        yield c


def test_models_and_health(client: TestClient) -> None:
    models = client.get("/v1/models").json()
    assert models["object"] == "list"
    (card,) = models["data"]
    assert card["id"] == "tiny" and card["object"] == "model" and card["max_model_len"] == 96
    assert client.get("/v1/models/tiny").json() == card
    assert client.get("/health").json() == {"status": "ok"}


def test_completions_wire_format(client: TestClient, chat_backend: LocalModelBackend) -> None:
    prompts = ["The quick", "for i in"]
    body = {"model": "tiny", "prompt": prompts, "max_tokens": 4, "temperature": 0.8}
    r = client.post("/v1/completions", json={**body, "n": 2, "seed": 3, "logprobs": 2})
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["object"] == "text_completion" and data["model"] == "tiny"
    want = chat_backend.generate(
        prompts, max_new_tokens=4, temperature=0.8, n=2, random_state=3, top_logprobs=2
    )
    assert [c["index"] for c in data["choices"]] == [0, 1, 2, 3]
    for c, g in zip(data["choices"], want, strict=True):
        assert c["text"] == g.text and c["token_ids"] == g.token_ids
        assert c["finish_reason"] == g.finish_reason
        lp = c["logprobs"]
        assert lp["tokens"] == g.tokens and lp["token_logprobs"] == pytest.approx(g.token_logprobs)
        assert [list(d) for d in lp["top_logprobs"]] == [[t for t, _ in s] for s in g.top_logprobs]
        assert lp["text_offset"][1] == len(g.tokens[0])
    prompt_tokens = sum(len(chat_backend.tokenizer(p)["input_ids"]) for p in prompts)
    assert data["usage"] == {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": 16,
        "total_tokens": prompt_tokens + 16,
    }
    plain = client.post("/v1/completions", json={"prompt": "The quick", "temperature": 0}).json()
    (choice,) = plain["choices"]
    assert choice["logprobs"] is None and len(choice["token_ids"]) == 16  # OpenAI default
    nulls = {"n": None, "temperature": None, "top_p": None, "seed": None, "stop": None}
    r = client.post("/v1/completions", json={"prompt": "The quick", "max_tokens": 3, **nulls})
    assert r.status_code == 200 and len(r.json()["choices"]) == 1  # null means the default
    r = client.post(
        "/v1/completions", json={"prompt": "The quick", "max_tokens": None, "temperature": 0}
    )
    long = chat_backend.generate(["The quick"], max_new_tokens=None)[0]
    assert len(long.tokens) > 16 and r.json()["choices"][0]["token_ids"] == long.token_ids
    lp0 = client.post("/v1/completions", json={**body, "temperature": 0, "logprobs": 0}).json()[
        "choices"
    ][0]
    assert lp0["logprobs"]["top_logprobs"] is None and len(lp0["logprobs"]["token_logprobs"]) == 4


def test_chat_wire_format(client: TestClient) -> None:
    r = client.post(
        "/v1/chat/completions",
        json={"model": "tiny", "messages": HELLO, "temperature": 0, "logprobs": True,
              "top_logprobs": 2, "n": 2},
    )  # fmt: skip
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["object"] == "chat.completion" and [c["index"] for c in data["choices"]] == [0, 1]
    c = data["choices"][0]
    assert c["message"] == {"role": "assistant", "content": "hi there"}
    assert c["finish_reason"] == "stop"
    content = c["logprobs"]["content"]
    assert content[-1]["token"] == "<|endoftext|>" and len(content) == len(c["token_ids"])
    assert content[0]["bytes"] == list(content[0]["token"].encode())
    assert len(content[0]["top_logprobs"]) == 2
    assert content[0]["top_logprobs"][0]["logprob"] == pytest.approx(content[0]["logprob"])
    short = client.post(
        "/v1/chat/completions", json={"messages": ADD, "max_completion_tokens": 1, "temperature": 0}
    ).json()["choices"][0]
    assert short["message"]["content"] == "5" and short["finish_reason"] == "length"
    assert short["logprobs"] is None


@pytest.mark.parametrize(
    ("path", "body", "status", "match"),
    [
        ("/v1/completions", {"model": "gpt-4", "prompt": "x"}, 404, "'gpt-4' is not served"),
        ("/v1/completions", {"prompt": "x", "n": 17}, 422, "n must be an integer in 1..16"),
        ("/v1/completions", {"prompt": "x", "n": 0}, 422, "n must be"),
        ("/v1/completions", {"prompt": "x", "max_tokens": 5000}, 422, "max_tokens must be"),
        ("/v1/completions", {"prompt": "x", "max_tokens": 96}, 422, "context of 96 tokens"),
        ("/v1/completions", {"prompt": "x", "logprobs": 6}, 422, "logprobs must be"),
        ("/v1/completions", {"prompt": ["a", "b", "c", "d"]}, 422, "at most 3 per request"),
        ("/v1/completions", {"prompt": [1, 2]}, 422, "token-id prompts"),
        ("/v1/completions", {"prompt": []}, 422, "non-empty list"),
        ("/v1/completions", {}, 422, "prompt must be"),
        ("/v1/completions", {"prompt": "x", "stream": True}, 422, "stream is not supported"),
        ("/v1/completions", {"prompt": "x", "echo": True}, 422, "echo is not supported"),
        ("/v1/completions", {"prompt": "x", "best_of": 3}, 422, "best_of"),
        ("/v1/completions", {"prompt": "x", "stop": list("abcde")}, 422, "at most 4"),
        ("/v1/completions", {"prompt": "x", "temperature": -1}, 422, "temperature"),
        ("/v1/completions", {"prompt": "x", "top_p": 2}, 422, "top_p"),
        ("/v1/completions", {"prompt": "x", "seed": "s"}, 422, "seed"),
        ("/v1/chat/completions", {"messages": [{"role": "bot", "content": "x"}]}, 422, "role"),
        ("/v1/chat/completions", {"messages": []}, 422, "non-empty list"),
        ("/v1/chat/completions", {}, 422, "non-empty list"),
        ("/v1/chat/completions", {"messages": HELLO, "logprobs": 1}, 422, "true or false"),
        ("/v1/chat/completions", {"messages": HELLO, "top_logprobs": 3}, 422, "needs logprobs"),
        ("/v1/chat/completions", {"messages": HELLO, "tools": [{}]}, 422, "tools is not"),
        ("/v1/chat/completions", {"messages": HELLO * 257}, 422, "at most 256"),
        ("/v1/chat/completions", {"messages": HELLO, "presence_penalty": 1}, 422, "presence"),
    ],
)
def test_bad_requests_get_openai_errors(
    client: TestClient, path: str, body: dict, status: int, match: str
) -> None:
    r = client.post(path, json=body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert match in err["message"] and err["type"] == "invalid_request_error"
    assert "conversation 0" not in err["message"]


def test_bad_bodies_and_routes(client: TestClient) -> None:
    r = client.post("/v1/completions", json={"prompt": "x" * 25_000})
    assert r.status_code == 413 and "limit of 20000 bytes" in r.json()["error"]["message"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while it streams in
        yield b'{"prompt": "'
        for _ in range(50):
            yield b"x" * 500

    r = client.post("/v1/completions", content=chunks())
    assert r.status_code == 413
    r = client.post(
        "/v1/completions", content=b"{oops", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422 and "not valid JSON" in r.json()["error"]["message"]
    r = client.post("/v1/completions", json=["x"])
    assert r.status_code == 422 and "JSON object" in r.json()["error"]["message"]
    r = client.get("/v1/models/other")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = client.get("/v1/nothing")
    assert r.status_code == 404 and r.json()["error"]["code"] == "http_404"
    assert client.get("/v1/completions").status_code == 405
    with pytest.raises(InvalidInput, match="max_n"):
        create_openai_app(LocalModelBackend.__new__(LocalModelBackend), max_n=0)


def test_server_subprocess_matches_local_backend(
    tiny_chat_lm: dict, chat_backend: LocalModelBackend, http_subprocess
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = (
        "import sys; from databazaar.cli import main; "
        f"sys.argv = ['databazaar', 'lm', 'serve', {str(tiny_chat_lm['folder'])!r}, '--port', "
        f"'{port}', '--name', 'tiny', '--log-level', 'error', '--threads', '1']; main()"
    )
    base = f"http://127.0.0.1:{port}/v1"
    proc, models = http_subprocess(code, f"{base}/models")
    assert [m["id"] for m in models.json()["data"]] == ["tiny"]
    local = chat_backend
    with OpenAICompatibleBackend(base, model="tiny") as remote:
        prompts = ["The quick", "def add(a, b):"]
        for opts in (
            {"max_new_tokens": 6, "top_logprobs": 3},  # greedy
            {"max_new_tokens": 6, "temperature": 1.0, "n": 3, "random_state": 11},  # seeded samples
            {"max_new_tokens": 6, "stop": ["e"], "logprobs": False},
        ):
            got, want = remote.generate(prompts, **opts), local.generate(prompts, **opts)
            assert len(got) == len(want) == len(prompts) * opts.get("n", 1)
            for r, d in zip(got, want, strict=True):
                # OpenAI sends the tokens as text only with log-probs; the ids always come
                assert (r.text, r.token_ids) == (d.text, d.token_ids)
                assert r.tokens == (d.tokens if d.token_logprobs is not None else [])
                assert (r.finish_reason, r.prompt_index, r.sample_index) == (
                    d.finish_reason, d.prompt_index, d.sample_index,
                )  # fmt: skip
                if d.token_logprobs is None:
                    assert r.token_logprobs is None
                else:
                    assert r.token_logprobs == pytest.approx(d.token_logprobs, abs=1e-6)
                if d.top_logprobs is not None:
                    assert [[t for t, _ in s] for s in r.top_logprobs] == [
                        [t for t, _ in s] for s in d.top_logprobs
                    ]
        convs = [HELLO, ADD]
        for opts in (
            {"max_new_tokens": 8, "top_logprobs": 2},
            {"max_new_tokens": None, "temperature": 1.0, "n": 2, "random_state": 4},
        ):
            got, want = remote.chat(convs, **opts), local.chat(convs, **opts)
            for r, d in zip(got, want, strict=True):
                assert (r.text, r.tokens, r.token_ids) == (d.text, d.tokens, d.token_ids)
                assert r.token_logprobs == pytest.approx(d.token_logprobs, abs=1e-6)
                assert r.finish_reason == d.finish_reason
        assert [g.text for g in remote.chat(convs, max_new_tokens=8)] == ["hi there", "5"]
        # the client checks options before sending; the server's refusals come back readable
        with pytest.raises(InvalidInput, match="n must be"):
            remote.generate(["x"], n=0)
        with pytest.raises(BackendError, match=r"HTTP 422: .*context of 96 tokens"):
            remote.generate(["x"], max_new_tokens=96)
        with pytest.raises(BackendError, match=r"HTTP 422: .*n must be an integer in 1\.\.16"):
            remote.generate(["x"], n=17, temperature=1.0)
    with (
        OpenAICompatibleBackend(base, model="nope") as wrong,
        pytest.raises(BackendError, match="HTTP 404: model 'nope' is not served here"),
    ):
        wrong.chat([HELLO])
    check_with_the_official_openai_client(base, local)
    r = httpx.post(f"{base}/completions", json={"prompt": "x", "max_tokens": 0}, timeout=30)
    assert r.status_code == 422 and "max_tokens must be" in r.json()["error"]["message"]
    proc.terminate()
    out, _ = proc.communicate(timeout=30)
    assert f"127.0.0.1:{port}/v1" in out


def check_with_the_official_openai_client(base: str, local: LocalModelBackend) -> None:
    """The ``openai`` package (the reference client of the wire format) reads our answers."""
    import openai

    oa = openai.OpenAI(base_url=base, api_key="unused", max_retries=0)
    assert [m.id for m in oa.models.list()] == ["tiny"]
    chat = oa.chat.completions.create(
        model="tiny", messages=HELLO, max_tokens=8, temperature=0, n=2, logprobs=True,
        top_logprobs=2,
    )  # fmt: skip
    want = local.chat([HELLO], max_new_tokens=8, n=2, top_logprobs=2)
    assert [c.message.content for c in chat.choices] == [g.text for g in want] == ["hi there"] * 2
    assert chat.choices[0].finish_reason == "stop"
    content = chat.choices[0].logprobs.content
    assert [t.logprob for t in content] == pytest.approx(want[0].token_logprobs, abs=1e-6)
    assert [a.token for a in content[0].top_logprobs] == [t for t, _ in want[0].top_logprobs[0]]
    assert chat.usage.completion_tokens == sum(len(g.tokens) for g in want)
    prompts = ["The quick", "for i in"]
    comp = oa.completions.create(
        model="tiny", prompt=prompts, max_tokens=5, temperature=1.0, n=2, seed=3, logprobs=1
    )
    want = local.generate(prompts, max_new_tokens=5, temperature=1.0, n=2, random_state=3)
    assert [c.text for c in sorted(comp.choices, key=lambda c: c.index)] == [g.text for g in want]
    assert comp.choices[3].logprobs.token_logprobs == pytest.approx(
        want[3].token_logprobs, abs=1e-6
    )
    with pytest.raises(openai.NotFoundError, match="'gpt-4' is not served here"):
        oa.chat.completions.create(model="gpt-4", messages=HELLO)
    with pytest.raises(openai.UnprocessableEntityError, match="unknown role 'robot'"):
        oa.chat.completions.create(model="tiny", messages=[{"role": "robot", "content": "x"}])
    with pytest.raises(openai.UnprocessableEntityError, match="stream is not supported"):
        oa.completions.create(model="tiny", prompt="x", stream=True)


def test_client_errors() -> None:
    with pytest.raises(InvalidInput, match="http"):
        OpenAICompatibleBackend("ftp://example")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    with OpenAICompatibleBackend(f"http://127.0.0.1:{dead_port}/v1", timeout=2) as dead:
        with pytest.raises(BackendError, match="cannot reach"):
            dead.generate(["x"])


@pytest.mark.parametrize(
    ("status", "body", "msg"),
    [
        (200, b"<html>oops</html>", "did not answer JSON"),
        (200, b'{"id": 1}', "without 'choices'"),
        (200, b'{"choices": [{"text": "a"}, {"text": "b"}]}', "2 choices for n=1"),
        (
            200,
            b'{"choices": [{"text": "a", "logprobs": {"token_logprobs": ["x"]}}]}',
            "not numbers",
        ),
        (503, b"busy", "HTTP 503: busy"),
        (400, b'{"error": {"message": "bad thing"}}', "HTTP 400: bad thing"),
    ],
)
def test_client_rejects_misbehaving_servers(status: int, body: bytes, msg: str) -> None:
    # a misbehaving server, simulated at the transport level
    transport = httpx.MockTransport(lambda request: httpx.Response(status, content=body))
    with OpenAICompatibleBackend("http://127.0.0.1:9/v1", transport=transport) as bad:
        with pytest.raises(BackendError, match=msg):
            bad.generate(["x"])


def test_backend_failures_become_5xx_errors() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    # the server over a remote backend whose server is down: 502 with the reason
    proxy = OpenAICompatibleBackend(f"http://127.0.0.1:{dead_port}/v1", timeout=2)
    with TestClient(create_openai_app(proxy, model_name="proxy")) as c:
        r = c.post("/v1/completions", json={"prompt": "x"})
    assert r.status_code == 502
    err = r.json()["error"]
    assert err["type"] == "server_error" and err["code"] == "backend_error"
    assert "cannot reach" in err["message"]

    class Broken(OpenAICompatibleBackend):
        def _complete(self, prompts, params, progress):  # type: ignore[no-untyped-def]
            raise RuntimeError("out of memory")

    app = create_openai_app(Broken("http://127.0.0.1:9/v1"), model_name="broken")
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.post("/v1/completions", json={"prompt": "x"})
    assert r.status_code == 500
    assert r.json()["error"]["message"] == "the backend failed: RuntimeError"


def test_concurrent_seeded_requests_repeat(client: TestClient) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def ask(seed: int) -> list[list[int]]:
        body = {"prompt": "for i in", "max_tokens": 6, "n": 2, "seed": seed}
        return [c["token_ids"] for c in client.post("/v1/completions", json=body).json()["choices"]]

    alone = [ask(s) for s in range(4)]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(ask, range(4)))
    assert together == alone and len({str(a) for a in alone}) == 4


def test_api_key_guards_the_v1_routes(chat_backend: LocalModelBackend) -> None:
    app = create_openai_app(chat_backend, model_name="tiny", api_key="s3cret")
    with TestClient(app) as c:
        for method, path in [("get", "/v1/models"), ("get", "/v1/models/tiny")]:
            r = getattr(c, method)(path)
            assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
        body = {"messages": HELLO, "max_tokens": 3, "temperature": 0}
        for auth in (None, "Bearer wrong", "Basic s3cret", "Bearer"):
            headers = {"Authorization": auth} if auth else {}
            r = c.post("/v1/chat/completions", json=body, headers=headers)
            assert r.status_code == 401, auth
        r = c.post("/v1/completions", json={"prompt": "x"}, headers={"Authorization": "x"})
        assert r.status_code == 401
        assert c.get("/health").status_code == 200
        ok = c.post("/v1/chat/completions", json=body, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"] == "hi the"
    with pytest.raises(InvalidInput, match="api_key"):
        create_openai_app(chat_backend, api_key="")


def test_client_sends_the_openai_request_fields() -> None:
    import json

    sent: list[tuple[str, dict, str | None]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        sent.append((request.url.path, body, request.headers.get("authorization")))
        choice = {"index": 0, "text": "ok", "message": {"role": "assistant", "content": "ok"}}
        return httpx.Response(200, json={"choices": [choice] * body["n"]})

    transport = httpx.MockTransport(answer)
    with OpenAICompatibleBackend(
        "http://127.0.0.1:9/v1/", model="m", api_key="k", transport=transport
    ) as remote:
        done: list[int] = []
        gens = remote.generate(
            ["a", "b"], temperature=0.5, n=2, random_state=10, stop="\n", top_logprobs=1,
            progress=done.append,
        )  # fmt: skip
        assert done == [1, 1]
        remote.chat([HELLO], max_new_tokens=None, logprobs=False)
    assert [g.text for g in gens] == ["ok"] * 4 and gens[3].prompt_index == 1
    assert gens[3].sample_index == 1 and gens[0].token_logprobs is None  # none were sent
    (p1, b1, a1), (_, b2, _), (p3, b3, _) = sent
    assert (p1, p3, a1) == ("/v1/completions", "/v1/chat/completions", "Bearer k")
    assert b1 == {
        "model": "m", "prompt": "a", "max_tokens": 32, "temperature": 0.5, "top_p": 1.0,
        "n": 2, "seed": 10, "stop": ["\n"], "logprobs": 1,
    }  # fmt: skip
    assert b2["prompt"] == "b" and b2["seed"] == 11  # prompt i is sent with seed + i
    assert b3["messages"] == HELLO and b3["max_tokens"] is None and b3["logprobs"] is False
    assert "seed" not in b3 and "top_logprobs" not in b3
