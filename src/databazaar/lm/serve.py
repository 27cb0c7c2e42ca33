"""A small OpenAI-compatible HTTP server over any :class:`GenerationBackend`.

Routes: ``GET /v1/models``, ``POST /v1/completions`` (``prompt`` string or list,
``max_tokens``, ``temperature``, ``logprobs``, ``seed``) and ``POST /v1/chat/completions``
(``messages``; the conversation is rendered as ``role: content`` lines followed by
``assistant:``). Responses follow the OpenAI JSON shapes, including log-probabilities.
Run it with uvicorn, e.g. ``uvicorn.run(create_openai_app(backend), host="127.0.0.1")``.
"""

# No "from __future__ import annotations": FastAPI must see the local request models.
import time
import uuid
from typing import Any

from databazaar.lm.generate import GenerationBackend


def create_openai_app(backend: GenerationBackend, *, model_name: str = "databazaar-local") -> Any:
    """Build a FastAPI app serving ``backend`` under the OpenAI API shapes."""
    from fastapi import FastAPI
    from pydantic import BaseModel, Field

    class CompletionRequest(BaseModel):
        model: str | None = None
        prompt: str | list[str]
        max_tokens: int = Field(default=16, ge=1, le=4096)
        temperature: float = Field(default=1.0, ge=0.0, le=5.0)
        logprobs: int | None = Field(default=None, ge=0, le=5)
        seed: int | None = None

    class Message(BaseModel):
        role: str
        content: str

    class ChatRequest(BaseModel):
        model: str | None = None
        messages: list[Message] = Field(min_length=1)
        max_tokens: int = Field(default=16, ge=1, le=4096)
        temperature: float = Field(default=1.0, ge=0.0, le=5.0)
        logprobs: bool = False
        seed: int | None = None

    app = FastAPI(title="databazaar OpenAI-compatible generation server")

    def _meta(kind: str) -> dict[str, Any]:
        return {
            "id": f"{kind}-{uuid.uuid4().hex[:12]}",
            "created": int(time.time()),
            "model": model_name,
        }

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": model_name, "object": "model"}]}

    @app.post("/v1/completions")
    def completions(req: CompletionRequest) -> dict[str, Any]:
        prompts = [req.prompt] if isinstance(req.prompt, str) else req.prompt
        gens = backend.generate(
            prompts,
            max_new_tokens=req.max_tokens,
            temperature=req.temperature,
            seed=req.seed,
            logprobs=req.logprobs is not None,
        )
        choices = []
        for i, g in enumerate(gens):
            lp = None
            if req.logprobs is not None:
                offsets, pos = [], 0
                for t in g.tokens:
                    offsets.append(pos)
                    pos += len(t)
                lp = {
                    "tokens": g.tokens,
                    "token_logprobs": g.token_logprobs,
                    "top_logprobs": None,
                    "text_offset": offsets,
                }
            choices.append(
                {"index": i, "text": g.text, "logprobs": lp, "finish_reason": g.finish_reason}
            )
        n_out = sum(len(g.tokens) for g in gens)
        return {
            **_meta("cmpl"),
            "object": "text_completion",
            "choices": choices,
            "usage": {"completion_tokens": n_out},
        }

    @app.post("/v1/chat/completions")
    def chat(req: ChatRequest) -> dict[str, Any]:
        prompt = "".join(f"{m.role}: {m.content}\n" for m in req.messages) + "assistant:"
        g = backend.generate(
            [prompt],
            max_new_tokens=req.max_tokens,
            temperature=req.temperature,
            seed=req.seed,
            logprobs=req.logprobs,
        )[0]
        lp = None
        if req.logprobs and g.token_logprobs is not None:
            lp = {
                "content": [
                    {"token": t, "logprob": v, "bytes": list(t.encode()), "top_logprobs": []}
                    for t, v in zip(g.tokens, g.token_logprobs, strict=True)
                ]
            }
        return {
            **_meta("chatcmpl"),
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": g.text},
                    "logprobs": lp,
                    "finish_reason": g.finish_reason,
                }
            ],
            "usage": {"completion_tokens": len(g.tokens)},
        }

    return app
