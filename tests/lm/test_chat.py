"""Chat template, assistant-only loss masks and JSONL validation (``databazaar.lm.chat``)."""

from __future__ import annotations

import json

import pytest

from databazaar.core.errors import InvalidInput, NotFound
from databazaar.lm.chat import (
    CHAT_TEMPLATE,
    encode_chat,
    read_chat_jsonl,
    render_chat,
    set_chat_template,
    write_chat_jsonl,
)

CONV = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "2 + 3 ="},
    {"role": "assistant", "content": "5"},
    {"role": "user", "content": "and 4 + 4 ="},
    {"role": "assistant", "content": "8"},
]


@pytest.fixture()
def tok(tiny_lm: dict):  # type: ignore[no-untyped-def]
    from databazaar.lm import load_tokenizer

    return load_tokenizer(tiny_lm["folder"])


def test_render_uses_role_headers_and_ends_assistant_turns_with_eos(tok) -> None:  # type: ignore[no-untyped-def]
    text = render_chat(tok, CONV)
    eos = tok.eos_token
    assert text == (
        f"<|system|>\nBe brief.\n<|user|>\n2 + 3 =\n<|assistant|>\n5{eos}"
        f"<|user|>\nand 4 + 4 =\n<|assistant|>\n8{eos}"
    )
    prompt = render_chat(tok, CONV[:2], add_generation_prompt=True)
    assert prompt.endswith("<|user|>\n2 + 3 =\n<|assistant|>\n")
    assert tok.chat_template == CHAT_TEMPLATE


def test_assistant_mask_covers_exactly_the_assistant_content_and_eos(tok) -> None:  # type: ignore[no-untyped-def]
    enc = encode_chat(tok, CONV)
    assert len(enc.input_ids) == len(enc.assistant_mask)
    masked = [t for t, m in zip(enc.input_ids, enc.assistant_mask, strict=True) if m]
    eos = tok.eos_token
    assert tok.decode(masked) == f"5{eos}8{eos}"
    assert enc.n_trainable == len(masked)
    assert tok.decode(enc.input_ids) == render_chat(tok, CONV)
    short = encode_chat(tok, CONV, max_length=5)
    assert len(short.input_ids) == 5 and short.n_trainable == 0


def test_set_chat_template_keeps_a_marked_template_and_refuses_an_unmarked_one(tok) -> None:  # type: ignore[no-untyped-def]
    custom = CHAT_TEMPLATE.replace("<|assistant|>", "<|bot|>")
    assert custom != CHAT_TEMPLATE
    set_chat_template(tok, custom)
    set_chat_template(tok)
    assert tok.chat_template == custom
    with pytest.raises(InvalidInput, match="generation"):
        set_chat_template(tok, "{% for m in messages %}{{ m['content'] }}{% endfor %}")
    set_chat_template(tok, CHAT_TEMPLATE)


#: a real checkpoint's kind of template: no {% generation %} markers
PLAIN = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"


def test_an_own_template_without_markers_is_kept_for_rendering_and_refused_for_training(
    tok,  # type: ignore[no-untyped-def]
) -> None:
    tok.chat_template = PLAIN
    with pytest.raises(InvalidInput, match="own chat template has no") as err:
        set_chat_template(tok)
    assert "--chat-template" in (err.value.hint or "")
    assert tok.chat_template == PLAIN  # not overwritten
    with pytest.raises(InvalidInput, match="own chat template"):
        encode_chat(tok, CONV)
    assert render_chat(tok, CONV[:2]) == "[system] Be brief.\n[user] 2 + 3 =\n"
    assert tok.chat_template == PLAIN
    set_chat_template(tok, "default")
    assert tok.chat_template == CHAT_TEMPLATE
    assert encode_chat(tok, CONV).n_trainable > 0


def test_jsonl_round_trip_and_prompt_completion_pairs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = write_chat_jsonl([CONV], tmp_path / "a.jsonl")
    with path.open("a") as fh:
        fh.write("\n" + json.dumps({"prompt": "hi", "completion": "hello"}) + "\n")
    convs = read_chat_jsonl(path)
    assert convs == [
        CONV,
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
    ]


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"messages": [{"role": "user", "content": "x"}]}', "{not json"], ":2: malformed JSON"),
        (['{"messages": [{"role": "robot", "content": "x"}]}'], ":1: message 0 has unknown role"),
        (['{"messages": [{"role": "assistant", "content": "  "}]}'], "empty assistant turn"),
        (['{"prompt": "a", "completion": ""}'], ":1: message 1 is an empty assistant"),
        (['{"text": "a"}'], "needs 'messages' or both"),
        (['{"messages": []}'], "non-empty list"),
        (['{"messages": ["hi"]}'], "message 0 is not an object"),
        (['{"messages": [{"role": "user", "content": 3}]}'], "needs string 'content'"),
        (['{"prompt": 1, "completion": "a"}'], "must be strings"),
        (["[1, 2]"], "expected a JSON object"),
        (["", "  "], "holds no conversations"),
    ],
)
def test_bad_files_name_the_line(tmp_path, lines: list[str], message: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(")) as info:
        read_chat_jsonl(path)
    assert "bad.jsonl" in str(info.value)


def test_missing_and_binary_files(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(NotFound):
        read_chat_jsonl(tmp_path / "nope.jsonl")
    (tmp_path / "bin.jsonl").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(InvalidInput, match="not UTF-8"):
        read_chat_jsonl(tmp_path / "bin.jsonl")
