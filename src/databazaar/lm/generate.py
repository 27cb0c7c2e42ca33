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

* :class:`LocalModelBackend` runs a causal LM loaded from a local folder with
  ``transformers``; chat prompts are rendered with the tokenizer's chat template
  (``apply_chat_template``).
* :class:`~databazaar.lm.openai_client.OpenAICompatibleBackend` calls a server speaking
  the OpenAI completions and chat-completions API with ``httpx``;
  :func:`databazaar.lm.serve.create_openai_app` is such a server.
"""

from __future__ import annotations

import abc
import copy
import math
import threading
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


class _StopOnStrings:
    """A ``transformers`` stopping criterion: a sequence is done once its new text holds
    one of the stop strings."""

    def __init__(self, tokenizer: Any, prompt_len: int, stop: tuple[str, ...]) -> None:
        self.tokenizer, self.prompt_len, self.stop = tokenizer, prompt_len, stop

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        texts = [
            self.tokenizer.decode(row[self.prompt_len :], skip_special_tokens=True)
            for row in input_ids.tolist()
        ]
        done = [_first_stop(text, self.stop) is not None for text in texts]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


class LocalModelBackend(GenerationBackend):
    """Generate with a causal LM from a local folder (or an already loaded model).

    Each prompt is decoded on its own (no padding effects), its ``n`` samples in one
    batch. Calls are serialised by a lock, so a server running requests in threads keeps
    seeded sampling repeatable; the global torch random state is left untouched.
    """

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
        cfg = model.config
        self.context_length: int | None = getattr(cfg, "n_positions", None) or getattr(
            cfg, "max_position_embeddings", None
        )
        eos = model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
        if tokenizer.eos_token_id is not None:
            eos_ids.add(tokenizer.eos_token_id)
        self.eos_token_ids = sorted(eos_ids)
        self._lock = threading.Lock()

    @property
    def has_chat_template(self) -> bool:
        """Whether the tokenizer carries a chat template (needed by :meth:`chat`)."""
        return bool(getattr(self.tokenizer, "chat_template", None))

    def _complete(
        self, prompts: list[str], params: SamplingParams, progress: ProgressFn | None
    ) -> list[Generation]:
        tok = self.tokenizer
        ids = [tok(p, add_special_tokens=True)["input_ids"] for p in prompts]
        return self._generate_ids(ids, params, progress)

    def chat_prompt(self, messages: Sequence[Mapping[str, Any]]) -> str:
        """The prompt text for one conversation, from the tokenizer's chat template,
        ending with the assistant turn's opening (``add_generation_prompt=True``)."""
        if not self.has_chat_template:
            raise InvalidInput(
                f"{self.name} has no chat template, so it cannot answer conversations",
                hint="give its tokenizer a chat template (e.g. fine-tune it with "
                "`databazaar lm sft`), or use generate() with a plain prompt",
            )
        return self.tokenizer.apply_chat_template(
            check_conversation(list(messages)), add_generation_prompt=True, tokenize=False
        )

    def _chat(
        self, conversations: list[Conversation], params: SamplingParams, progress: ProgressFn | None
    ) -> list[Generation]:
        texts = [self.chat_prompt(c) for c in conversations]
        ids = [self.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
        return self._generate_ids(ids, params, progress)

    def prompt_ids(self, conversation: Sequence[Mapping[str, Any]] | str) -> list[int]:
        """Token ids of a plain prompt (with special tokens) or of a conversation rendered
        by the chat template up to the assistant turn's opening, as :meth:`generate` and
        :meth:`chat` feed them to the model."""
        tok = self.tokenizer
        if isinstance(conversation, str):
            return list(tok(conversation, add_special_tokens=True)["input_ids"])
        return list(tok(self.chat_prompt(conversation), add_special_tokens=False)["input_ids"])

    def loglikelihood(
        self,
        conversation: Sequence[Mapping[str, Any]] | str,
        continuations: Sequence[str],
        *,
        add_eos: bool = True,
    ) -> list[float]:
        """``log p(c | prompt)`` of each continuation text under this model (teacher forcing).

        The prompt is a conversation (rendered with the chat template, as :meth:`chat`
        does) or a plain prompt string; each continuation is tokenized on its own and, with
        ``add_eos``, followed by the end-of-sequence token, so a finished answer's score
        counts the model's decision to stop (as :class:`Generation` log-probabilities do).
        Used to score one model's answers under another model (ensembles).
        """
        import torch

        from databazaar.lm.train import set_threads

        tok = self.tokenizer
        prompt = self.prompt_ids(conversation)
        if not isinstance(continuations, Sequence) or isinstance(continuations, str):
            raise InvalidInput("continuations must be a list of strings")
        eos = self.eos_token_ids[:1] if add_eos and self.eos_token_ids else []
        out = []
        with self._lock, torch.no_grad():
            set_threads(self.num_threads)
            for c in continuations:
                cont = tok(c, add_special_tokens=False)["input_ids"] + eos
                if not cont:
                    out.append(0.0)
                    continue
                ids = (prompt or [cont[0]]) + cont
                if self.context_length is not None and len(ids) > self.context_length:
                    raise InvalidInput(
                        f"prompt and continuation have {len(ids)} tokens, more than the "
                        f"model's context of {self.context_length}"
                    )
                logits = self.model(torch.tensor([ids])).logits[0].float()
                logp = torch.log_softmax(logits[len(ids) - len(cont) - 1 : -1], dim=-1)
                out.append(float(logp.gather(1, torch.tensor(cont).unsqueeze(1)).sum()))
        return out

    def _budget(self, n_prompt: int, params: SamplingParams, index: int) -> int:
        ctx = self.context_length
        if params.max_new_tokens is None:
            if ctx is None:
                raise InvalidInput("the model's context length is unknown: set max_new_tokens")
            budget = ctx - n_prompt
            if budget < 1:
                raise InvalidInput(
                    f"prompt {index} has {n_prompt} tokens, which fills the model's "
                    f"context of {ctx} tokens",
                    hint="shorten the prompt",
                )
            return budget
        if ctx is not None and n_prompt + params.max_new_tokens > ctx:
            raise InvalidInput(
                f"prompt {index} has {n_prompt} tokens; with max_new_tokens="
                f"{params.max_new_tokens} that is more than the model's context of {ctx} tokens",
                hint="shorten the prompt or ask for fewer tokens",
            )
        return params.max_new_tokens

    def _generate_ids(
        self, prompt_ids: list[list[int]], params: SamplingParams, progress: ProgressFn | None
    ) -> list[Generation]:
        from databazaar.lm.train import set_threads

        start = self.tokenizer.bos_token_id
        if start is None:
            start = self.eos_token_ids[0] if self.eos_token_ids else 0
        prompt_ids = [ids or [start] for ids in prompt_ids]
        # every prompt is checked against the context before any work starts
        budgets = [self._budget(len(ids), params, i) for i, ids in enumerate(prompt_ids)]
        with self._lock:
            set_threads(self.num_threads)
            return self._each(
                list(zip(prompt_ids, budgets, strict=True)), params, progress, self._one_prompt
            )

    def _one_prompt(self, item: tuple[list[int], int], params: SamplingParams) -> list[Generation]:
        """The ``n`` samples of one tokenized prompt within its token ``budget``."""
        import torch

        with torch.random.fork_rng(devices=[]):
            if params.random_state is not None:
                torch.manual_seed(params.random_state)
            return self._decode(*item, params)

    def _decode(self, ids: list[int], budget: int, params: SamplingParams) -> list[Generation]:
        import torch
        from transformers import GenerationConfig, StoppingCriteriaList

        tok, model = self.tokenizer, self.model
        sample = params.temperature > 0
        rows = params.n if sample else 1
        pad = tok.pad_token_id
        if pad is None:
            pad = self.eos_token_ids[0] if self.eos_token_ids else 0
        gen = GenerationConfig(
            max_new_tokens=budget,
            do_sample=sample,
            num_return_sequences=rows,
            temperature=params.temperature if sample else 1.0,
            top_p=params.top_p if sample else 1.0,
            top_k=0 if sample else None,
            eos_token_id=self.eos_token_ids or None,
            pad_token_id=pad,
            return_dict_in_generate=True,
            output_logits=True,
        )
        inputs = torch.tensor([ids], dtype=torch.long)
        stopping = None
        if params.stop:
            stopping = StoppingCriteriaList([_StopOnStrings(tok, len(ids), params.stop)])
        # transformers fills options left unset from the checkpoint's generation defaults
        # (repetition penalty, top-k, min-p...); a blank config keeps the semantics above
        saved, model.generation_config = model.generation_config, GenerationConfig()
        try:
            with torch.no_grad():
                res = model.generate(
                    inputs,
                    attention_mask=torch.ones_like(inputs),
                    generation_config=gen,
                    stopping_criteria=stopping,
                )
        finally:
            model.generation_config = saved
        logp = torch.log_softmax(torch.stack(res.logits, dim=1).float(), dim=-1)
        gens = []
        for j in range(rows):
            new = res.sequences[j, len(ids) :].tolist()
            gens.append(self._finish(j, len(ids), new, logp[j], params))
        if not sample:  # greedy: the n samples are all the greedy continuation
            gens = [replace(copy.deepcopy(gens[0]), sample_index=j) for j in range(params.n)]
        return gens

    def _finish(
        self,
        sample: int,
        n_prompt: int,
        new: list[int],
        logp: Any,
        params: SamplingParams,
    ) -> Generation:
        """Cut one generated row at its end and gather its log-probabilities."""
        import torch

        tok = self.tokenizer
        finish = "length"
        for k, t in enumerate(new):
            if t in self.eos_token_ids:
                new, finish = new[: k + 1], "stop"
                break
        shown = new[:-1] if finish == "stop" else new
        text = tok.decode(shown, skip_special_tokens=True)
        if params.stop:
            cut = _first_stop(text, params.stop)
            if cut is not None:
                k = _stop_token(tok, shown, params.stop)
                new, finish, text = shown[: k + 1], "stop", text[:cut]
        g = Generation(
            text=text,
            tokens=[tok.decode([t]) for t in new],
            token_ids=new,
            finish_reason=finish,
            sample_index=sample,
            n_prompt_tokens=n_prompt,
        )
        if params.logprobs:
            steps = logp[: len(new)]
            chosen = steps.gather(1, torch.tensor(new, dtype=torch.long).unsqueeze(1))
            g.token_logprobs = [float(x) for x in chosen.squeeze(1)]
            if params.top_logprobs:
                vals, idx = steps.topk(params.top_logprobs, dim=-1)
                g.top_logprobs = [
                    [(tok.decode([int(t)]), float(v)) for v, t in zip(vr, ir, strict=True)]
                    for vr, ir in zip(vals.tolist(), idx.tolist(), strict=True)
                ]
        return g


def _first_stop(text: str, stop: tuple[str, ...]) -> int | None:
    hits = [i for i in (text.find(s) for s in stop) if i >= 0]
    return min(hits) if hits else None


def _stop_token(tok: Any, ids: list[int], stop: tuple[str, ...]) -> int:
    """Index of the token whose text completes the first stop string."""
    for k in range(len(ids)):
        if _first_stop(tok.decode(ids[: k + 1], skip_special_tokens=True), stop) is not None:
            return k
    return len(ids) - 1  # pragma: no cover - the caller found a stop string in the text
