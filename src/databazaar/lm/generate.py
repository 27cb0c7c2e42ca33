"""Text generation behind one interface, from a local model folder or an HTTP endpoint.

Every backend implements :meth:`GenerationBackend.generate`, returning one
:class:`Generation` per prompt: the text, its tokens and each token's log-probability
(natural log, under the sampling distribution after temperature) where the backend
reports them.

* :class:`LocalModelBackend` runs a causal LM loaded from a local folder.
* :class:`OpenAICompatibleBackend` calls a server speaking the OpenAI completions or
  chat-completions API (``POST {base_url}/completions`` or ``/chat/completions``) with
  ``httpx``; :func:`databazaar.lm.serve.create_openai_app` is such a server.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from databazaar.core.errors import DatabazaarError, InvalidInput


class BackendError(DatabazaarError):
    """A generation backend failed (server unreachable, bad response, HTTP error)."""

    http_status = 502
    exit_code = 7
    code = "backend_error"


@dataclass
class Generation:
    """One completion: ``text``, its ``tokens`` and per-token log-probabilities."""

    text: str
    tokens: list[str] = field(default_factory=list)
    token_logprobs: list[float] | None = None
    finish_reason: str = "length"

    @property
    def logprob(self) -> float | None:
        """Sum of the token log-probabilities (the sequence log-likelihood), if known."""
        return None if self.token_logprobs is None else float(sum(self.token_logprobs))


def _check_args(prompts: Sequence[str], max_new_tokens: int, temperature: float) -> None:
    if isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts):
        raise InvalidInput("prompts must be a list of strings")
    if max_new_tokens < 1:
        raise InvalidInput(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    if temperature < 0:
        raise InvalidInput(f"temperature must be non-negative, got {temperature}")


class GenerationBackend(abc.ABC):
    """Anything that turns prompts into :class:`Generation` objects."""

    @abc.abstractmethod
    def generate(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int = 32,
        temperature: float = 0.0,
        seed: int | None = None,
        logprobs: bool = True,
    ) -> list[Generation]:
        """Complete each prompt; ``temperature=0`` is greedy decoding."""


class LocalModelBackend(GenerationBackend):
    """Generate with a causal LM from a local folder (or an already loaded model)."""

    def __init__(
        self,
        model_dir: str | Path | None = None,
        *,
        model: Any = None,
        tokenizer: Any = None,
        num_threads: int | None = None,
    ) -> None:
        if model is None:
            if model_dir is None:
                raise InvalidInput("pass model_dir or model and tokenizer")
            from databazaar.lm.model import load_model

            model, tokenizer = load_model(model_dir)
        if tokenizer is None:
            raise InvalidInput("a tokenizer is needed with an in-memory model")
        self.model = model
        self.tokenizer = tokenizer
        self.num_threads = num_threads
        self.name = str(model_dir) if model_dir is not None else type(model).__name__

    def generate(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int = 32,
        temperature: float = 0.0,
        seed: int | None = None,
        logprobs: bool = True,
    ) -> list[Generation]:
        """Decode each prompt separately (no padding effects); see the base class."""
        import torch

        from databazaar.lm.train import set_threads

        _check_args(prompts, max_new_tokens, temperature)
        set_threads(self.num_threads)
        tok = self.tokenizer
        eos = tok.eos_token_id
        limit = getattr(self.model.config, "n_positions", None)
        if limit is not None and max_new_tokens >= limit:
            raise InvalidInput(
                f"max_new_tokens ({max_new_tokens}) must be below the model context ({limit})",
                hint="ask for fewer tokens",
            )
        out: list[Generation] = []
        for i, prompt in enumerate(prompts):
            ids = tok(prompt, add_special_tokens=False)["input_ids"] or [eos]
            if limit is not None:
                ids = ids[-max(1, limit - max_new_tokens) :]
            if seed is not None:
                torch.manual_seed(seed + i)
            inputs = torch.tensor([ids], dtype=torch.long)
            kwargs: dict[str, Any] = {
                "max_new_tokens": max_new_tokens,
                "do_sample": temperature > 0,
                "pad_token_id": tok.pad_token_id if tok.pad_token_id is not None else eos,
                "eos_token_id": eos,
                "return_dict_in_generate": True,
                "output_scores": True,
            }
            if temperature > 0:
                kwargs.update(temperature=temperature, top_k=0, top_p=1.0)
            with torch.no_grad():
                res = self.model.generate(inputs, attention_mask=torch.ones_like(inputs), **kwargs)
            new = res.sequences[0, inputs.shape[1] :].tolist()
            lps: list[float] | None = None
            if logprobs:
                scores = self.model.compute_transition_scores(
                    res.sequences, res.scores, normalize_logits=True
                )
                lps = [float(x) for x in scores[0, : len(new)]]
            finish = "stop" if new and new[-1] == eos else "length"
            shown = new[:-1] if finish == "stop" else new
            out.append(
                Generation(
                    text=tok.decode(shown, skip_special_tokens=True),
                    tokens=[tok.decode([t]) for t in new],
                    token_logprobs=lps,
                    finish_reason=finish,
                )
            )
        return out


class OpenAICompatibleBackend(GenerationBackend):
    """Call an OpenAI-compatible server over HTTP (``httpx``).

    ``base_url`` is the API root, e.g. ``http://127.0.0.1:8000/v1``; ``endpoint`` picks
    ``"completions"`` (log-probabilities as ``tokens``/``token_logprobs``) or ``"chat"``
    (``logprobs.content[].{token, logprob}``).
    """

    def __init__(
        self,
        base_url: str,
        *,
        model: str = "default",
        api_key: str | None = None,
        endpoint: str = "completions",
        timeout: float = 60.0,
        transport: Any = None,
    ) -> None:
        if endpoint not in ("completions", "chat"):
            raise InvalidInput(f"unknown endpoint {endpoint!r}", hint="use completions or chat")
        if not base_url.startswith(("http://", "https://")):
            raise InvalidInput(f"base_url must start with http:// or https://, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.endpoint = endpoint
        self.timeout = timeout
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        import httpx

        self._client = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=timeout, transport=transport
        )

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        import httpx

        try:
            resp = self._client.post(path, json=body)
        except httpx.HTTPError as exc:
            raise BackendError(
                f"cannot reach {self.base_url}{path}: {exc}", hint="is the server running?"
            ) from exc
        if resp.status_code >= 400:
            raise BackendError(
                f"{self.base_url}{path} answered HTTP {resp.status_code}: {resp.text[:200]}"
            )
        try:
            data = resp.json()
        except ValueError as exc:
            raise BackendError(f"{self.base_url}{path} did not answer JSON") from exc
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
            raise BackendError(f"{self.base_url}{path} answered without 'choices'")
        return data

    def generate(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int = 32,
        temperature: float = 0.0,
        seed: int | None = None,
        logprobs: bool = True,
    ) -> list[Generation]:
        """One request per prompt; see the base class."""
        _check_args(prompts, max_new_tokens, temperature)
        out: list[Generation] = []
        for i, prompt in enumerate(prompts):
            body: dict[str, Any] = {
                "model": self.model,
                "max_tokens": max_new_tokens,
                "temperature": temperature,
            }
            if seed is not None:
                body["seed"] = seed + i
            if self.endpoint == "completions":
                body["prompt"] = prompt
                if logprobs:
                    body["logprobs"] = 1
                choice = self._post("/completions", body)["choices"][0]
                lp = choice.get("logprobs") or {}
                tokens = list(lp.get("tokens") or [])
                values = lp.get("token_logprobs")
                text = choice.get("text", "")
            else:
                body["messages"] = [{"role": "user", "content": prompt}]
                body["logprobs"] = bool(logprobs)
                choice = self._post("/chat/completions", body)["choices"][0]
                content = (choice.get("logprobs") or {}).get("content") or []
                tokens = [c["token"] for c in content]
                values = [c["logprob"] for c in content] if content else None
                text = (choice.get("message") or {}).get("content", "")
            out.append(
                Generation(
                    text=text,
                    tokens=tokens,
                    token_logprobs=[float(v) for v in values] if logprobs and values else None,
                    finish_reason=choice.get("finish_reason") or "length",
                )
            )
        return out
