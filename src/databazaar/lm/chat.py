"""Chat data: conversations as JSONL, one chat template, loss masks on assistant turns.

A conversation is a list of messages ``{"role": "system"|"user"|"assistant", "content": str}``.
Files are JSON Lines with one record per line, either

* ``{"messages": [{"role": ..., "content": ...}, ...]}`` (a conversation), or
* ``{"prompt": "...", "completion": "..."}`` (one user turn and one assistant turn),

and :func:`read_chat_jsonl` rejects a malformed file with the line number of the first
bad record. The chat template is a Jinja template stored on the tokenizer
(``tokenizer.chat_template``, saved in ``tokenizer_config.json`` next to the model) and
applied with ``transformers``' ``apply_chat_template``, so a model folder reloads with
``transformers`` alone and renders prompts the way it was trained. The default template
:data:`CHAT_TEMPLATE` uses plain-text role headers (``<|user|>`` and so on) that every
byte-level tokenizer can spell, so it needs no new embeddings on a real checkpoint; each
assistant turn ends with the tokenizer's end-of-sequence token, which is inside the
``{% generation %}`` span so the model learns to stop. Supervised fine-tuning trains only
on the tokens of that span: :func:`encode_chat` returns ``assistant_mask`` (1 on
assistant tokens, 0 elsewhere), the masking of Ouyang et al. (2022, §3.5) and of TRL's
``assistant_only_loss``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from databazaar.core.errors import InvalidInput, NotFound

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

ROLES = ("system", "user", "assistant")

#: The default template: ``<|role|>`` header line, content, and for assistant turns the
#: EOS token inside the ``{% generation %}`` span (trained, so generation stops there).
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{ '<|assistant|>\\n' }}{% generation %}{{ message['content'] }}{{ eos_token }}"
    "{% endgeneration %}"
    "{%- else -%}"
    "{{ '<|' + message['role'] + '|>\\n' + message['content'] + '\\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|assistant|>\\n' }}{%- endif -%}"
)

Message = dict[str, str]


def has_generation_markers(template: str | None) -> bool:
    """Whether a chat template marks assistant spans with ``{% generation %}``."""
    return bool(template) and "generation %}" in str(template)


def set_chat_template(
    tokenizer: PreTrainedTokenizerBase, template: str | None = None
) -> PreTrainedTokenizerBase:
    """Give ``tokenizer`` a chat template with ``{% generation %}`` markers (in place).

    ``template`` is a Jinja template, ``"default"`` (:data:`CHAT_TEMPLATE`) or ``None``:

    * ``None`` keeps the tokenizer's own template when it already marks assistant spans
      with ``{% generation %}`` (for example one saved by ``lm sft``); a tokenizer without
      any template gets :data:`CHAT_TEMPLATE`. A tokenizer whose own template has no
      markers (a real chat checkpoint's, usually) is **not** overwritten: its format is
      the one the model was trained on, and markers cannot be inserted into an arbitrary
      Jinja template safely, so this raises :class:`InvalidInput` asking for a marked
      template or ``"default"`` (``--chat-template FILE|default`` on the CLI).
    * A given template must have the markers (the loss mask of supervised fine-tuning
      comes from them); one without is refused.
    """
    if template is None:
        own = getattr(tokenizer, "chat_template", None)
        if has_generation_markers(own):
            return tokenizer
        if own:
            raise InvalidInput(
                "the tokenizer's own chat template has no {% generation %} ... "
                "{% endgeneration %} span, so the loss cannot be masked to assistant turns",
                hint="pass a copy of that template with the assistant content (and its "
                "end-of-turn token) inside {% generation %} markers (--chat-template FILE), "
                "or --chat-template default to train with databazaar's template instead",
            )
        template = CHAT_TEMPLATE
    elif template == "default":
        template = CHAT_TEMPLATE
    if not has_generation_markers(template):
        raise InvalidInput(
            "the chat template has no {% generation %} ... {% endgeneration %} span",
            hint="mark the assistant content (and its end-of-turn token) so loss can be masked",
        )
    tokenizer.chat_template = template
    return tokenizer


def check_messages(messages: Any, *, where: str = "conversation") -> list[Message]:
    """Validate one conversation and return it as a list of ``{"role", "content"}`` dicts.

    Raises :class:`InvalidInput` (naming ``where``) for a non-list or empty list, a
    message that is not an object, an unknown role, non-string content, or an assistant
    turn with empty content.
    """
    if not isinstance(messages, list) or not messages:
        raise InvalidInput(f"{where}: 'messages' must be a non-empty list")
    out: list[Message] = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise InvalidInput(f"{where}: message {i} is not an object")
        role, content = m.get("role"), m.get("content")
        if role not in ROLES:
            raise InvalidInput(
                f"{where}: message {i} has unknown role {role!r}",
                hint=f"use one of {', '.join(ROLES)}",
            )
        if not isinstance(content, str):
            raise InvalidInput(f"{where}: message {i} ({role}) needs string 'content'")
        if role == "assistant" and not content.strip():
            raise InvalidInput(f"{where}: message {i} is an empty assistant turn")
        out.append({"role": role, "content": content})
    return out


def record_messages(record: Any, *, where: str = "record") -> list[Message]:
    """The conversation of one JSONL record (``messages``, or ``prompt`` + ``completion``)."""
    if not isinstance(record, dict):
        raise InvalidInput(f"{where}: expected a JSON object")
    if "messages" in record:
        return check_messages(record["messages"], where=where)
    if "prompt" in record and "completion" in record:
        prompt, completion = record["prompt"], record["completion"]
        if not isinstance(prompt, str) or not isinstance(completion, str):
            raise InvalidInput(f"{where}: 'prompt' and 'completion' must be strings")
        msgs = [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}]
        return check_messages(msgs, where=where)
    raise InvalidInput(
        f"{where}: a record needs 'messages' or both 'prompt' and 'completion'",
        hint='e.g. {"messages": [{"role": "user", "content": "hi"}, ...]}',
    )


def read_chat_jsonl(path: str | Path) -> list[list[Message]]:
    """Read and validate a chat JSONL file; errors name the file and line number.

    Blank lines are skipped. Raises :class:`NotFound` for a missing file and
    :class:`InvalidInput` for malformed JSON, a bad record or a file with no records.
    """
    p = Path(path)
    if not p.is_file():
        raise NotFound(f"chat data file not found: {p}")
    out: list[list[Message]] = []
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{p} is not UTF-8 text: {exc}") from exc
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{p}:{n}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInput(
                f"{where}: malformed JSON ({exc.msg} at column {exc.colno})"
            ) from exc
        out.append(record_messages(record, where=where))
    if not out:
        raise InvalidInput(f"{p} holds no conversations", hint="one JSON object per line")
    return out


def write_chat_jsonl(conversations: Iterable[Sequence[Message]], path: str | Path) -> Path:
    """Write conversations as ``{"messages": [...]}`` lines (validated first)."""
    rows = [check_messages(list(c), where=f"conversation {i}") for i, c in enumerate(conversations)]
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("w", encoding="utf-8") as fh:
        for msgs in rows:
            fh.write(json.dumps({"messages": msgs}, ensure_ascii=False) + "\n")
    return p


def render_chat(
    tokenizer: PreTrainedTokenizerBase,
    messages: Sequence[Message],
    *,
    add_generation_prompt: bool = False,
) -> str:
    """The text of ``messages`` under the tokenizer's chat template.

    With ``add_generation_prompt=True`` the text ends with the assistant header, ready
    for the model to continue (how a chat prompt is turned into a completion prompt).
    The tokenizer's own template is used as it is (markers are not needed to render); a
    tokenizer without one gets :data:`CHAT_TEMPLATE` first.
    """
    if not getattr(tokenizer, "chat_template", None):
        set_chat_template(tokenizer)
    msgs = check_messages(list(messages), where="messages")
    return tokenizer.apply_chat_template(
        msgs, tokenize=False, add_generation_prompt=add_generation_prompt
    )


@dataclass
class EncodedChat:
    """Token ids of a rendered conversation and the 0/1 mask of its assistant tokens."""

    input_ids: list[int]
    assistant_mask: list[int]

    @property
    def n_trainable(self) -> int:
        """Tokens that carry loss."""
        return int(sum(self.assistant_mask))


def encode_chat(
    tokenizer: PreTrainedTokenizerBase,
    messages: Sequence[Message],
    *,
    max_length: int | None = None,
) -> EncodedChat:
    """Tokenize ``messages`` with the chat template; mask = the ``{% generation %}`` spans.

    ``max_length`` keeps the first ``max_length`` tokens (the model's context).
    """
    set_chat_template(tokenizer)
    msgs = check_messages(list(messages), where="messages")
    enc = tokenizer.apply_chat_template(
        msgs, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    ids = list(enc["input_ids"])
    mask = [int(x) for x in enc["assistant_masks"]]
    if max_length is not None:
        ids, mask = ids[:max_length], mask[:max_length]
    return EncodedChat(input_ids=ids, assistant_mask=mask)
