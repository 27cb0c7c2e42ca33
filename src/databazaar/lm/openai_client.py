"""The client backend: any server speaking the OpenAI completions and chat-completions API.

:class:`OpenAICompatibleBackend` implements :class:`~databazaar.lm.generate.GenerationBackend`
over HTTP with ``httpx``, so a tool written against the interface runs unchanged on a local
model folder or a remote endpoint (:func:`databazaar.lm.serve.create_openai_app`, vLLM,
or a hosted API). Results have the shape of :class:`~databazaar.lm.generate.Generation`.
"""

from __future__ import annotations

from typing import Any

from databazaar.core.errors import InvalidInput
from databazaar.core.progress import ProgressFn
from databazaar.lm.generate import (
    BackendError,
    Conversation,
    Generation,
    GenerationBackend,
    SamplingParams,
)


class OpenAICompatibleBackend(GenerationBackend):
    """Call an OpenAI-compatible server over HTTP (``httpx``).

    ``base_url`` is the API root, e.g. ``http://127.0.0.1:8000/v1``. :meth:`generate`
    posts to ``/completions`` (log-probabilities from ``logprobs.tokens`` and
    ``token_logprobs``), :meth:`chat` to ``/chat/completions`` (``logprobs.content``), one
    request per prompt or conversation with ``n`` samples each; prompt ``i`` is sent with
    seed ``random_state + i``, as :class:`LocalModelBackend` uses. ``model=None`` leaves the model
    field out (the databazaar server then uses its only model). Token ids are read from the
    ``token_ids`` field databazaar's server adds to each choice, where present.
    """

    def __init__(
        self,
        base_url: str,
        *,
        model: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        transport: Any = None,
    ) -> None:
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise InvalidInput(f"base_url must start with http:// or https://, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.name = model or self.base_url
        self.timeout = timeout
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        import httpx

        self._client = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=timeout, transport=transport
        )

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()

    def __enter__(self) -> OpenAICompatibleBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        import httpx

        try:
            resp = self._client.post(path, json=body)
        except httpx.HTTPError as exc:
            raise BackendError(
                f"cannot reach {self.base_url}{path}: {exc}", hint="is the server running?"
            ) from exc
        if resp.status_code >= 400:
            try:
                detail = resp.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                detail = resp.text[:200]
            raise BackendError(f"{self.base_url}{path} answered HTTP {resp.status_code}: {detail}")
        try:
            data = resp.json()
        except ValueError as exc:
            raise BackendError(f"{self.base_url}{path} did not answer JSON") from exc
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
            raise BackendError(f"{self.base_url}{path} answered without 'choices'")
        return data

    def _body(self, params: SamplingParams) -> dict[str, Any]:
        body: dict[str, Any] = {
            "temperature": params.temperature,
            "top_p": params.top_p,
            "n": params.n,
            "max_tokens": params.max_new_tokens,  # null: up to the model's context
        }
        if self.model is not None:
            body["model"] = self.model
        if params.random_state is not None:
            body["seed"] = params.random_state
        if params.stop:
            body["stop"] = list(params.stop)
        return body

    def _complete(
        self, prompts: list[str], params: SamplingParams, progress: ProgressFn | None
    ) -> list[Generation]:
        return self._each(prompts, params, progress, self._complete_one)

    def _chat(
        self, conversations: list[Conversation], params: SamplingParams, progress: ProgressFn | None
    ) -> list[Generation]:
        return self._each(conversations, params, progress, self._chat_one)

    def _complete_one(self, prompt: str, params: SamplingParams) -> list[Generation]:
        body = {**self._body(params), "prompt": prompt}
        if params.logprobs:
            body["logprobs"] = params.top_logprobs
        data = self._post("/completions", body)
        out = []
        for j, choice in enumerate(_choices(data, params.n, self.base_url)):
            lp = choice.get("logprobs") or {}
            tops = lp.get("top_logprobs")
            g = _generation(choice, choice.get("text"), lp.get("tokens"), j, data)
            if params.logprobs:
                g.token_logprobs = _floats(lp.get("token_logprobs"), self.base_url)
                if params.top_logprobs and tops:
                    g.top_logprobs = [
                        sorted(((t, float(v)) for t, v in d.items()), key=lambda x: -x[1])
                        for d in tops
                    ]
            out.append(g)
        return out

    def _chat_one(self, messages: Conversation, params: SamplingParams) -> list[Generation]:
        body = {**self._body(params), "messages": messages, "logprobs": params.logprobs}
        if params.top_logprobs:
            body["top_logprobs"] = params.top_logprobs
        data = self._post("/chat/completions", body)
        out = []
        for j, choice in enumerate(_choices(data, params.n, self.base_url)):
            content = (choice.get("logprobs") or {}).get("content") or []
            text = (choice.get("message") or {}).get("content")
            g = _generation(choice, text, [c["token"] for c in content], j, data)
            if params.logprobs:
                g.token_logprobs = _floats([c["logprob"] for c in content], self.base_url)
                if params.top_logprobs:
                    g.top_logprobs = [
                        [(t["token"], float(t["logprob"])) for t in c.get("top_logprobs", [])]
                        for c in content
                    ]
            out.append(g)
        return out


def _choices(data: dict[str, Any], n: int, url: str) -> list[dict[str, Any]]:
    choices = sorted(data["choices"], key=lambda c: c.get("index", 0))
    if len(choices) != n:
        raise BackendError(f"{url} answered {len(choices)} choices for n={n}")
    return choices


def _floats(values: Any, url: str) -> list[float] | None:
    if values is None:
        return None
    try:
        return [float(v) for v in values]
    except (TypeError, ValueError) as exc:
        raise BackendError(f"{url} answered log-probabilities that are not numbers") from exc


def _generation(
    choice: dict[str, Any], text: Any, tokens: Any, sample: int, data: dict[str, Any]
) -> Generation:
    ids = choice.get("token_ids")
    usage = data.get("usage") or {}
    return Generation(
        text=text if isinstance(text, str) else "",
        tokens=list(tokens or []),
        token_ids=list(ids) if isinstance(ids, list) else None,
        finish_reason=choice.get("finish_reason") or "length",
        sample_index=sample,
        n_prompt_tokens=usage.get("prompt_tokens"),
    )


def open_backend(
    spec: str,
    *,
    api_model: str | None = None,
    api_key: str | None = None,
    threads: int | None = None,
) -> GenerationBackend:
    """A backend from a model folder or an OpenAI-compatible base URL (``http(s)://...``).

    A folder gives a :class:`~databazaar.lm.local_backend.LocalModelBackend` (``threads`` torch
    threads); a URL an :class:`OpenAICompatibleBackend` (``api_model`` names the served
    model, ``None`` lets a databazaar server use its only one).
    """
    from databazaar.lm.local_backend import LocalModelBackend

    if not spec.startswith(("http://", "https://")):
        return LocalModelBackend(spec, num_threads=threads)
    return OpenAICompatibleBackend(spec, model=api_model, api_key=api_key)
