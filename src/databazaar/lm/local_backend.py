"""The local backend of :mod:`databazaar.lm.generate`: a causal LM from a local folder.

:class:`LocalModelBackend` loads a ``transformers`` causal LM and its tokenizer from a
folder (a model of the zoo or real weights), renders chat prompts with the tokenizer's
chat template, samples with per-token log-probabilities (``log_softmax`` of the raw
logits, before temperature and top-p) and optional ``top_logprobs``, stops on strings,
and scores log-likelihoods of given continuations.  The interface, the options and the
result type are :mod:`databazaar.lm.generate`'s.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from databazaar.core.errors import InvalidInput
from databazaar.core.progress import ProgressFn
from databazaar.lm.generate import (
    Conversation,
    Generation,
    GenerationBackend,
    SamplingParams,
    check_conversation,
)


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
