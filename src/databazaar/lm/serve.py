"""An OpenAI-compatible HTTP server over any :class:`~databazaar.lm.generate.GenerationBackend`.

Routes (the OpenAI wire format for the fields listed; no streaming):

* ``GET /v1/models`` and ``GET /v1/models/{id}``: the one served model (with vLLM's
  ``max_model_len`` when the context is known); ``GET /health``.
* ``POST /v1/completions``: ``prompt`` (a string or a list of strings), ``max_tokens``
  (default 16; ``null`` fills the context, as in vLLM), ``temperature`` (default 1),
  ``top_p``, ``n``, ``seed``, ``stop`` (a string or up to 4), ``logprobs`` (0-5: per-token
  log-probabilities plus that many alternatives). Choice ``i * n + j`` is sample ``j`` of
  prompt ``i``.
* ``POST /v1/chat/completions``: ``messages`` (roles system/user/assistant, ending with a
  user turn; rendered with the model's chat template), ``max_tokens`` or
  ``max_completion_tokens`` (default: fill the context), ``temperature``, ``top_p``,
  ``n``, ``seed``, ``stop``, ``logprobs`` (bool) and ``top_logprobs`` (0-20).

Each choice also carries ``token_ids`` (the generated ids, an extension vLLM offers too),
which :class:`~databazaar.lm.openai_client.OpenAICompatibleBackend` reads. Log-probabilities
are those of :mod:`databazaar.lm.generate` (the model's distribution). Unknown fields are
ignored, as vLLM does; features we do not implement (``stream``, ``echo``, ``suffix``,
penalties, ``logit_bias``, tools, ``best_of`` other than ``n``) are refused when set to
anything but their neutral value.

With an API key set, the ``/v1`` routes answer 401 without ``Authorization: Bearer
KEY`` (``/health`` stays open). Bad requests get an OpenAI-style error body
``{"error": {"message", "type", "param", "code"}}`` whose status comes from the
:mod:`databazaar.core.errors` class (422 invalid input, 401 missing key, 404 unknown
model or route, 413 body over ``max_body_bytes``, 502 backend failure). Request size
is bounded: body bytes, prompts per request, ``n``, ``max_tokens`` and the number of
messages. Requests run in a worker thread; a
:class:`~databazaar.lm.local_backend.LocalModelBackend` serialises them with its lock.
Run it with ``databazaar lm serve`` or ``uvicorn.run(create_openai_app(backend))``.
"""

# No "from __future__ import annotations": FastAPI must resolve the local ``Request`` import.

import hmac
import json
import time
import uuid
from typing import Any

from databazaar.core.errors import (
    DatabazaarError,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
)
from databazaar.lm.generate import (
    MAX_TOP_LOGPROBS,
    Generation,
    GenerationBackend,
    SamplingParams,
    check_conversation,
)

MAX_COMPLETION_LOGPROBS = 5  # OpenAI's limit for the completions ``logprobs`` field
MAX_STOP = 4  # OpenAI's limit on stop sequences

# features this server does not implement, with the values that mean "not used"
_NEUTRAL: dict[str, tuple[Any, ...]] = {
    "stream": (None, False),
    "echo": (None, False),
    "suffix": (None, ""),
    "presence_penalty": (None, 0, 0.0),
    "frequency_penalty": (None, 0, 0.0),
    "logit_bias": (None, {}),
    "tools": (None, []),
    "tool_choice": (None, "none"),
    "functions": (None, []),
    "response_format": (None, {"type": "text"}),
}


def _field(body: dict[str, Any], name: str, default: Any) -> Any:
    """``body[name]``, or ``default`` when it is missing or null (clients send both)."""
    value = body.get(name)
    return default if value is None else value


def _int_field(body: dict[str, Any], name: str, default: Any, lo: int, hi: int) -> Any:
    value = _field(body, name, default)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise InvalidInput(f"{name} must be an integer in {lo}..{hi}, got {value!r}")
    return value


class _Limits:
    def __init__(self, max_body_bytes: int, max_n: int, max_prompts: int, max_tokens: int):
        for name, v in (
            ("max_body_bytes", max_body_bytes),
            ("max_n", max_n),
            ("max_prompts", max_prompts),
            ("max_tokens", max_tokens),
        ):
            if not isinstance(v, int) or v < 1:
                raise InvalidInput(f"{name} must be a positive integer, got {v!r}")
        self.body, self.n, self.prompts = max_body_bytes, max_n, max_prompts
        self.tokens, self.messages = max_tokens, 256


def _sampling(
    body: dict[str, Any], limits: _Limits, *, max_tokens: Any, logprobs: bool, top: int
) -> SamplingParams:
    """The request's decoding options (wire names and limits checked here; the rest by
    :class:`SamplingParams`)."""
    for name, neutral in _NEUTRAL.items():
        if body.get(name) not in neutral:
            raise InvalidInput(f"{name} is not supported by this server", hint="leave it out")
    n = _int_field(body, "n", 1, 1, limits.n)
    if body.get("best_of") not in (None, n):
        raise InvalidInput("best_of is not supported by this server (other than best_of = n)")
    stop = body.get("stop")
    if isinstance(stop, list) and len(stop) > MAX_STOP:
        raise InvalidInput(f"stop holds {len(stop)} sequences; at most {MAX_STOP} are allowed")
    return SamplingParams(
        max_new_tokens=max_tokens,
        temperature=_field(body, "temperature", 1.0),
        top_p=_field(body, "top_p", 1.0),
        n=n,
        random_state=_int_field(body, "seed", None, 0, 2**63 - 1),
        stop=() if stop is None else stop,
        logprobs=logprobs,
        top_logprobs=top,
    )


def _usage(gens: list[Generation]) -> dict[str, int]:
    prompts = {g.prompt_index: g.n_prompt_tokens or 0 for g in gens}
    done = sum(len(g.tokens) for g in gens)
    return {
        "prompt_tokens": sum(prompts.values()),
        "completion_tokens": done,
        "total_tokens": sum(prompts.values()) + done,
    }


def _completion_choice(g: Generation, n: int, params: SamplingParams) -> dict[str, Any]:
    lp = None
    if params.logprobs:
        offsets, pos = [], 0
        for t in g.tokens:
            offsets.append(pos)
            pos += len(t)
        lp = {
            "tokens": g.tokens,
            "token_logprobs": g.token_logprobs,
            "top_logprobs": [dict(step) for step in g.top_logprobs] if g.top_logprobs else None,
            "text_offset": offsets,
        }
    return {
        "index": g.prompt_index * n + g.sample_index,
        "text": g.text,
        "logprobs": lp,
        "finish_reason": g.finish_reason,
        "token_ids": g.token_ids,
    }


def _entry(token: str, logprob: float) -> dict[str, Any]:
    return {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8"))}


def _chat_choice(g: Generation, params: SamplingParams) -> dict[str, Any]:
    lp = None
    if params.logprobs and g.token_logprobs is not None:
        tops = g.top_logprobs or [[] for _ in g.tokens]
        lp = {
            "content": [
                {**_entry(t, v), "top_logprobs": [_entry(a, b) for a, b in top]}
                for t, v, top in zip(g.tokens, g.token_logprobs, tops, strict=True)
            ]
        }
    return {
        "index": g.sample_index,
        "message": {"role": "assistant", "content": g.text},
        "logprobs": lp,
        "finish_reason": g.finish_reason,
        "token_ids": g.token_ids,
    }


def _error_body(status: int, message: str, code: str) -> dict[str, Any]:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def create_openai_app(
    backend: GenerationBackend,
    *,
    model_name: str = "databazaar-local",
    max_body_bytes: int = 1_000_000,
    max_n: int = 16,
    max_prompts: int = 32,
    max_tokens: int = 4096,
    api_key: str | None = None,
) -> Any:
    """Build a FastAPI app serving ``backend`` as model ``model_name`` under the OpenAI
    API shapes, with the request bounds given (see the module docstring). With
    ``api_key``, every ``/v1`` route needs ``Authorization: Bearer <api_key>`` (401
    otherwise), as OpenAI clients send it."""
    from fastapi import Depends, FastAPI, Request
    from fastapi.responses import JSONResponse
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException as StarletteHTTPException

    limits = _Limits(max_body_bytes, max_n, max_prompts, max_tokens)
    created = int(time.time())
    context = getattr(backend, "context_length", None)
    app = FastAPI(title="databazaar OpenAI-compatible generation server")

    @app.exception_handler(DatabazaarError)
    async def _known(_request: Request, exc: DatabazaarError) -> JSONResponse:
        return JSONResponse(_error_body(exc.http_status, str(exc), exc.code), exc.http_status)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        body = _error_body(exc.status_code, str(exc.detail), f"http_{exc.status_code}")
        return JSONResponse(body, exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        msg = f"the backend failed: {type(exc).__name__}"
        return JSONResponse(_error_body(500, msg, "internal_error"), 500)

    if api_key is not None and (not isinstance(api_key, str) or not api_key):
        raise InvalidInput("api_key must be a non-empty string")

    def authorize(request: Request) -> None:
        if api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), api_key.encode()):
            raise Unauthorized("a valid API key is needed", hint="send Authorization: Bearer KEY")

    guarded = [Depends(authorize)]

    async def read_body(request: Request) -> dict[str, Any]:
        """The JSON object of the request, read at most ``max_body_bytes`` bytes far."""
        too_big = f"request body is larger than the limit of {limits.body} bytes"
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limits.body:
            raise PayloadTooLarge(too_big)
        raw = bytearray()
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > limits.body:
                raise PayloadTooLarge(too_big)
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise InvalidInput("the request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise InvalidInput("the request body must be a JSON object")
        model = body.get("model")
        if model is not None and model != model_name:
            raise NotFound(
                f"model {model!r} is not served here", hint=f"this server serves {model_name!r}"
            )
        return body

    def meta(kind: str) -> dict[str, Any]:
        stamp = int(time.time())
        return {"id": f"{kind}-{uuid.uuid4().hex}", "created": stamp, "model": model_name}

    def card() -> dict[str, Any]:
        out = {"id": model_name, "object": "model", "created": created, "owned_by": "databazaar"}
        if context is not None:
            out["max_model_len"] = context
        return out

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models", dependencies=guarded)
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [card()]}

    @app.get("/v1/models/{model_id}", dependencies=guarded)
    def model_card(model_id: str) -> dict[str, Any]:
        if model_id != model_name:
            raise NotFound(f"model {model_id!r} is not served here")
        return card()

    @app.post("/v1/completions", dependencies=guarded)
    async def completions(request: Request) -> dict[str, Any]:
        body = await read_body(request)
        prompt = body.get("prompt")
        prompts = [prompt] if isinstance(prompt, str) else prompt
        if not isinstance(prompts, list) or not prompts:
            raise InvalidInput("prompt must be a string or a non-empty list of strings")
        if not all(isinstance(p, str) for p in prompts):
            raise InvalidInput("prompt must be text: token-id prompts are not supported")
        if len(prompts) > limits.prompts:
            raise InvalidInput(f"{len(prompts)} prompts; at most {limits.prompts} per request")
        lp = _int_field(body, "logprobs", None, 0, MAX_COMPLETION_LOGPROBS)
        params = _sampling(
            body,
            limits,
            max_tokens=None  # an explicit null fills the context, as in vLLM
            if "max_tokens" in body and body["max_tokens"] is None
            else _int_field(body, "max_tokens", 16, 1, limits.tokens),
            logprobs=lp is not None,
            top=lp or 0,
        )
        gens = await run_in_threadpool(backend.generate, prompts, params)
        return {
            **meta("cmpl"),
            "object": "text_completion",
            "choices": [_completion_choice(g, params.n, params) for g in gens],
            "usage": _usage(gens),
        }

    @app.post("/v1/chat/completions", dependencies=guarded)
    async def chat(request: Request) -> dict[str, Any]:
        body = await read_body(request)
        messages = body.get("messages")
        if isinstance(messages, list) and len(messages) > limits.messages:
            raise InvalidInput(f"{len(messages)} messages; at most {limits.messages} allowed")
        logprobs = body.get("logprobs", False)
        if not isinstance(logprobs, bool | None):
            raise InvalidInput(f"logprobs must be true or false, got {logprobs!r}")
        top = _int_field(body, "top_logprobs", 0, 0, MAX_TOP_LOGPROBS)
        if top and not logprobs:
            raise InvalidInput("top_logprobs needs logprobs: true")
        budget = "max_completion_tokens" if body.get("max_completion_tokens") else "max_tokens"
        params = _sampling(
            body,
            limits,
            max_tokens=_int_field(body, budget, None, 1, limits.tokens),
            logprobs=bool(logprobs),
            top=top,
        )
        checked = check_conversation(messages, where="messages")  # errors name no index
        gens = await run_in_threadpool(backend.chat, [checked], params)
        return {
            **meta("chatcmpl"),
            "object": "chat.completion",
            "choices": [_chat_choice(g, params) for g in gens],
            "usage": _usage(gens),
        }

    return app
