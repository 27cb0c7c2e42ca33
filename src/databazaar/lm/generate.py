"""Text generation behind one interface, from a local model folder or an HTTP endpoint.

Every backend implements two calls with the same options and the same result type:

* :meth:`GenerationBackend.generate` continues plain-text prompts (completions);
* :meth:`GenerationBackend.chat` answers conversations (lists of ``{"role", "content"}``
  messages as in :mod:`databazaar.lm.chat`, ending with a user turn).

Both return a flat list of :class:`Generation` objects in prompt-major order: with ``n``
samples per prompt, ``result[i * n + j]`` is sample ``j`` of prompt ``i`` (the order of the
OpenAI ``choices``). A generation holds the text, the generated token ids and strings, each
token's log-probability and optionally the ``top_logprobs`` alternatives, and the finish
reason (``"stop"`` for an end-of-sequence token or a stop sequence, ``"length"`` when the
token budget ran out). Options are checked once by :class:`SamplingParams`.

Log-probabilities are natural logs under the model's own next-token distribution
(``log_softmax`` of the raw logits, before temperature and top-p), as vLLM reports by
default: a sample's summed log-probability is then its log-likelihood under the model,
which is what uncertainty estimators such as LM-Polygraph's sequence likelihood use.

* :class:`~databazaar.lm.local_backend.LocalModelBackend` runs a causal LM loaded from a
  local folder with ``transformers``; chat prompts are rendered with the tokenizer's chat template
  (``apply_chat_template``).
* :class:`~databazaar.lm.openai_client.OpenAICompatibleBackend` calls a server speaking
  the OpenAI completions and chat-completions API with ``httpx``;
  :func:`databazaar.lm.serve.create_openai_app` is such a server.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from databazaar.core.errors import DatabazaarError, InvalidInput, NotFound
from databazaar.core.progress import ProgressFn

T = TypeVar("T")
#: One conversation: ``[{"role": ..., "content": ...}, ...]``.
Conversation = list[dict[str, str]]

MAX_TOP_LOGPROBS = 20


class BackendError(DatabazaarError):
    """A generation backend failed (server unreachable, bad response, HTTP error)."""

    http_status = 502
    exit_code = 7
    code = "backend_error"


@dataclass
class Generation:
    """One generated continuation.

    ``tokens`` are the generated tokens as text (an end-of-sequence token that ended the
    generation included, so its log-probability counts in :attr:`logprob`; it is not in
    ``text``), ``token_ids`` their ids where the backend reports them, ``token_logprobs``
    their log-probabilities and ``top_logprobs[k]`` the most likely ``(token, logprob)``
    pairs at step ``k``, best first. ``prompt_index``/``sample_index`` place the generation
    in its request; ``n_prompt_tokens`` is the prompt length in tokens, if known.
    """

    text: str
    tokens: list[str] = field(default_factory=list)
    token_ids: list[int] | None = None
    token_logprobs: list[float] | None = None
    top_logprobs: list[list[tuple[str, float]]] | None = None
    finish_reason: str = "length"
    prompt_index: int = 0
    sample_index: int = 0
    n_prompt_tokens: int | None = None

    @property
    def logprob(self) -> float | None:
        """Sum of the token log-probabilities (the sequence log-likelihood), if known."""
        return None if self.token_logprobs is None else float(sum(self.token_logprobs))

    def to_dict(self) -> dict[str, Any]:
        """The fields and :attr:`logprob` as JSON-ready values (pairs become lists)."""
        out = asdict(self)
        if self.top_logprobs is not None:
            out["top_logprobs"] = [[list(pair) for pair in step] for step in self.top_logprobs]
        out["logprob"] = self.logprob
        return out


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


@dataclass(frozen=True)
class SamplingParams:
    """Decoding options shared by every backend, checked on construction.

    ``temperature=0`` is greedy decoding (then all ``n`` samples are the greedy one);
    above 0, tokens are sampled from the softmax of ``logits / temperature`` restricted to
    the smallest set of tokens whose probability reaches ``top_p`` (nucleus sampling,
    Holtzman et al., 2020). ``random_state`` makes sampling repeatable: prompt ``i`` is
    sampled with seed ``random_state + i`` (the OpenAI ``seed`` field on the wire).
    Generation ends at an end-of-sequence token, after a ``stop`` string (cut from the
    text) or after ``max_new_tokens`` tokens (``None``: up to the model's context).
    ``logprobs`` asks for per-token log-probabilities, ``top_logprobs`` for that many
    alternatives per step.
    """

    max_new_tokens: int | None = 32
    temperature: float = 0.0
    top_p: float = 1.0
    n: int = 1
    random_state: int | None = None
    stop: tuple[str, ...] = ()
    logprobs: bool = True
    top_logprobs: int = 0

    def __post_init__(self) -> None:
        if self.max_new_tokens is not None and (
            not _is_int(self.max_new_tokens) or self.max_new_tokens < 1
        ):
            raise InvalidInput(f"max_new_tokens must be at least 1, got {self.max_new_tokens!r}")
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t) or t < 0:
            raise InvalidInput(f"temperature must be a finite number >= 0, got {t!r}")
        p = self.top_p
        if isinstance(p, bool) or not isinstance(p, int | float) or not 0 < p <= 1:
            raise InvalidInput(f"top_p must be in (0, 1], got {p!r}")
        if not _is_int(self.n) or self.n < 1:
            raise InvalidInput(f"n must be a positive integer, got {self.n!r}")
        rs = self.random_state
        if rs is not None and (not _is_int(rs) or not 0 <= rs < 2**63):
            raise InvalidInput(f"random_state must be an integer in [0, 2**63), got {rs!r}")
        stop = (self.stop,) if isinstance(self.stop, str) else self.stop
        if not isinstance(stop, Sequence) or not all(isinstance(s, str) and s for s in stop):
            raise InvalidInput("stop must be a string or a list of non-empty strings")
        object.__setattr__(self, "stop", tuple(stop))
        if not isinstance(self.logprobs, bool):
            raise InvalidInput(f"logprobs must be true or false, got {self.logprobs!r}")
        k = self.top_logprobs
        if not _is_int(k) or not 0 <= k <= MAX_TOP_LOGPROBS:
            raise InvalidInput(f"top_logprobs must be in 0..{MAX_TOP_LOGPROBS}, got {k!r}")
        if k and not self.logprobs:
            raise InvalidInput("top_logprobs needs logprobs=True")


def check_prompts(prompts: Any) -> list[str]:
    """The prompts as a list of strings, or :class:`InvalidInput`."""
    if isinstance(prompts, str) or not isinstance(prompts, Sequence):
        raise InvalidInput("prompts must be a list of strings", hint='e.g. ["Once upon"]')
    bad = [i for i, p in enumerate(prompts) if not isinstance(p, str)]
    if bad:
        raise InvalidInput(f"prompts must be a list of strings; prompt {bad[0]} is not a string")
    return list(prompts)


def _text_content(message: Any) -> Any:
    """OpenAI-style content parts (``[{"type": "text", "text": ...}]``) joined to a string;
    anything else is returned unchanged for :func:`databazaar.lm.chat.check_messages`."""
    if not isinstance(message, Mapping) or not isinstance(message.get("content"), list):
        return message
    parts = message["content"]
    if not all(isinstance(p, Mapping) and p.get("type") == "text" for p in parts) or not all(
        isinstance(p.get("text"), str) for p in parts
    ):
        raise InvalidInput("only text content parts ({type: text, text: ...}) are supported")
    return {**message, "content": "".join(p["text"] for p in parts)}


def check_conversation(messages: Any, *, where: str = "conversation") -> list[dict[str, str]]:
    """One conversation to answer, as ``[{"role", "content"}, ...]``, or :class:`InvalidInput`.

    The messages are checked by :func:`databazaar.lm.chat.check_messages` (roles
    ``system``/``user``/``assistant``, string content, no empty assistant turn); the last
    turn must be the user's, since the model answers it. OpenAI-style lists of text parts
    are joined into one string.
    """
    from databazaar.lm.chat import check_messages

    if isinstance(messages, list):
        messages = [_text_content(m) for m in messages]
    out = check_messages(messages, where=where)
    if out[-1]["role"] != "user":
        raise InvalidInput(f"{where}: the last message must be from the user")
    return out


def check_conversations(conversations: Any) -> list[Conversation]:
    """A list of conversations, each checked by :func:`check_conversation`."""
    if isinstance(conversations, str | bytes | Mapping) or not isinstance(conversations, Sequence):
        raise InvalidInput("conversations must be a list of message lists")
    return [check_conversation(c, where=f"conversation {i}") for i, c in enumerate(conversations)]


def read_conversations(path: str | Path) -> list[Conversation]:
    """Conversations to answer, from a file.

    ``*.jsonl``: one ``{"messages": [...]}`` record per line, read by
    :func:`databazaar.lm.chat.read_chat_jsonl` (errors give the line number). Any other
    file is JSON: one conversation (a list of messages or ``{"messages": [...]}``) or a
    list of them. Every conversation must end with a user turn.
    """
    import json

    from databazaar.lm.chat import read_chat_jsonl

    p = Path(path)
    if p.suffix == ".jsonl":
        convs = read_chat_jsonl(p)
    else:
        if not p.is_file():
            raise NotFound(f"messages file not found: {p}")
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"{p} is not valid JSON: {exc}") from exc
        if isinstance(data, dict) or (data and isinstance(data, list) and "role" in data[0]):
            data = [data]
        if not isinstance(data, list) or not data:
            raise InvalidInput(f"{p} holds no conversation", hint='e.g. {"messages": [...]}')
        convs = [c.get("messages") if isinstance(c, dict) else c for c in data]
    return [check_conversation(c, where=f"{p}: conversation {i}") for i, c in enumerate(convs)]


class GenerationBackend(abc.ABC):
    """Anything that turns prompts or conversations into :class:`Generation` objects.

    Subclasses implement :meth:`_complete` and :meth:`_chat`; the public calls check the
    input and the options first, so every backend rejects the same bad input, and
    :meth:`_each` runs the items one by one with the per-prompt seed and the progress
    callback (``progress(1)`` after each prompt or conversation).
    """

    name: str = "model"

    def generate(
        self,
        prompts: Sequence[str],
        params: SamplingParams | None = None,
        *,
        progress: ProgressFn | None = None,
        **options: Any,
    ) -> list[Generation]:
        """Continue each prompt; options as in :class:`SamplingParams` (or pass ``params``)."""
        checked = check_prompts(prompts)
        return self._complete(checked, _params(params, options), progress)

    def chat(
        self,
        conversations: Sequence[Sequence[Mapping[str, Any]]],
        params: SamplingParams | None = None,
        *,
        progress: ProgressFn | None = None,
        **options: Any,
    ) -> list[Generation]:
        """Answer each conversation with an assistant turn; options as in :meth:`generate`."""
        checked = check_conversations(conversations)
        return self._chat(checked, _params(params, options), progress)

    @abc.abstractmethod
    def _complete(
        self, prompts: list[str], params: SamplingParams, progress: ProgressFn | None
    ) -> list[Generation]:
        """Generate for checked prompts."""

    @abc.abstractmethod
    def _chat(
        self, conversations: list[Conversation], params: SamplingParams, progress: ProgressFn | None
    ) -> list[Generation]:
        """Generate for checked conversations."""

    @staticmethod
    def _each(
        items: Sequence[T],
        params: SamplingParams,
        progress: ProgressFn | None,
        one: Callable[[T, SamplingParams], list[Generation]],
    ) -> list[Generation]:
        """``one(item, params)`` for each item in order, item ``i`` with random state
        ``random_state + i``; the generations get their ``prompt_index``."""
        out: list[Generation] = []
        for i, item in enumerate(items):
            rs = params.random_state
            for g in one(item, params if rs is None else replace(params, random_state=rs + i)):
                g.prompt_index = i
                out.append(g)
            if progress is not None:
                progress(1)
        return out


class PromptsAsChat(GenerationBackend):
    """Wrap a chat model so that :meth:`generate` sends each prompt as one user turn.

    For tools that write plain prompts (judges, benchmark runners) and a model that is
    served only through a chat endpoint; :meth:`chat` passes conversations through.
    """

    def __init__(self, backend: GenerationBackend) -> None:
        self.backend = backend
        self.name = backend.name

    def _complete(
        self, prompts: list[str], params: SamplingParams, progress: ProgressFn | None
    ) -> list[Generation]:
        turns = [[{"role": "user", "content": p}] for p in prompts]
        return self.backend._chat(turns, params, progress)

    def _chat(
        self, conversations: list[Conversation], params: SamplingParams, progress: ProgressFn | None
    ) -> list[Generation]:
        return self.backend._chat(conversations, params, progress)


def _params(params: SamplingParams | None, options: dict[str, Any]) -> SamplingParams:
    if params is not None and options:
        raise InvalidInput("pass either params or keyword options, not both")
    if params is not None:
        return params
    try:
        return SamplingParams(**options)
    except TypeError as exc:
        raise InvalidInput(f"unknown generation option: {exc}") from None
