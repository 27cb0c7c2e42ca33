"""The local generation backend: log-probs against a forward pass, n samples, seeds,
top-p, stop sequences, chat through the chat template, and every bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from databazaar.core.errors import InvalidInput, NotFound
from databazaar.lm import LocalModelBackend, SamplingParams, read_conversations, render_chat

HELLO = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def local(tiny_lm: dict) -> LocalModelBackend:
    return LocalModelBackend(tiny_lm["folder"], num_threads=1)


@pytest.fixture(scope="module")
def chat_backend(tiny_chat_lm: dict) -> LocalModelBackend:
    return LocalModelBackend(tiny_chat_lm["folder"], num_threads=1)


def forward_logprobs(backend: LocalModelBackend, prompt_ids: list[int], new: list[int]):
    """log_softmax of the model's logits at each generated position (a direct pass)."""
    seq = torch.tensor([prompt_ids + new])
    with torch.no_grad():
        logits = backend.model(input_ids=seq).logits[0]
    return torch.log_softmax(logits, dim=-1)[len(prompt_ids) - 1 : len(prompt_ids) - 1 + len(new)]


def test_greedy_logprobs_match_a_forward_pass(local: LocalModelBackend) -> None:
    prompt = "def add(a, b):"
    (g,) = local.generate([prompt], max_new_tokens=6, top_logprobs=3)
    ids = local.tokenizer(prompt)["input_ids"]
    assert g.n_prompt_tokens == len(ids) and g.finish_reason == "length"
    assert len(g.token_ids) == len(g.tokens) == len(g.token_logprobs) == 6
    assert g.tokens == [local.tokenizer.decode([t]) for t in g.token_ids]
    assert g.text == local.tokenizer.decode(g.token_ids)
    logp = forward_logprobs(local, ids, g.token_ids)
    for k, t in enumerate(g.token_ids):
        assert int(logp[k].argmax()) == t  # greedy picks the arg-max
        assert g.token_logprobs[k] == pytest.approx(float(logp[k, t]), abs=1e-5)
        top = g.top_logprobs[k]
        assert len(top) == 3 and top[0] == (g.tokens[k], pytest.approx(g.token_logprobs[k]))
        assert [v for _, v in top] == sorted((v for _, v in top), reverse=True)
        assert top[2][1] == pytest.approx(float(logp[k].topk(3).values[2]), abs=1e-5)
    assert g.logprob == pytest.approx(sum(g.token_logprobs))
    again = local.generate([prompt], max_new_tokens=6, logprobs=False)[0]
    assert again.token_ids == g.token_ids and again.token_logprobs is None and again.logprob is None


def test_samples_are_distinct_seeded_and_scored_by_the_model(local: LocalModelBackend) -> None:
    rng_before = torch.get_rng_state()
    opts = {"max_new_tokens": 8, "temperature": 1.0, "n": 4, "random_state": 7}
    a = local.generate(["for i in", "The quick"], **opts)
    assert torch.equal(torch.get_rng_state(), rng_before)  # global random state untouched
    assert [(g.prompt_index, g.sample_index) for g in a] == [
        (i, j) for i in (0, 1) for j in range(4)
    ]
    for i in (0, 1):
        assert len({tuple(g.token_ids) for g in a[4 * i : 4 * i + 4]}) == 4
    done: list[int] = []
    b = local.generate(["for i in", "The quick"], progress=done.append, **opts)
    assert done == [1, 1]  # one step per prompt
    assert [g.token_ids for g in a] == [g.token_ids for g in b]
    assert [g.token_logprobs for g in a] == [g.token_logprobs for g in b]
    # prompt i is drawn with seed + i: alone, the second prompt needs seed 8
    alone = local.generate(["The quick"], **{**opts, "random_state": 8})
    assert [g.token_ids for g in alone] == [g.token_ids for g in a[4:]]
    other = local.generate(["for i in", "The quick"], **{**opts, "random_state": 8})
    assert [g.token_ids for g in other] != [g.token_ids for g in a]
    # a sample's log-probs are the model's (before temperature), so they match a forward pass
    g = a[1]
    logp = forward_logprobs(local, local.tokenizer("for i in")["input_ids"], g.token_ids)
    want = [float(logp[k, t]) for k, t in enumerate(g.token_ids)]
    assert g.token_logprobs == pytest.approx(want, abs=1e-5)


def test_greedy_n_repeats_the_greedy_answer_and_tiny_top_p_is_greedy(
    local: LocalModelBackend,
) -> None:
    gens = local.generate(["Permission is"], max_new_tokens=5, n=3)
    assert [g.sample_index for g in gens] == [0, 1, 2]
    assert all(g.token_ids == gens[0].token_ids for g in gens)
    gens[0].token_ids.append(-1)  # copies are independent
    assert gens[1].token_ids != gens[0].token_ids
    nucleus = local.generate(
        ["Permission is"], max_new_tokens=5, temperature=1.5, top_p=1e-6, random_state=1
    )
    assert nucleus[0].token_ids == gens[1].token_ids


def test_checkpoint_generation_defaults_do_not_change_decoding(local: LocalModelBackend) -> None:
    sample = {"max_new_tokens": 8, "temperature": 1.0, "n": 2, "random_state": 0}
    plain = local.generate(["for i in"], max_new_tokens=8)[0]
    drawn = local.generate(["for i in"], **sample)
    cfg = local.model.generation_config
    saved = cfg.to_dict()
    cfg.update(repetition_penalty=50.0, no_repeat_ngram_size=1, top_k=1, min_p=0.9, typical_p=0.1)
    try:
        assert local.generate(["for i in"], max_new_tokens=8)[0].token_ids == plain.token_ids
        again = local.generate(["for i in"], **sample)
        assert [g.token_ids for g in again] == [g.token_ids for g in drawn]
        assert local.model.generation_config is cfg
    finally:
        cfg.update(**saved)


def test_stop_sequences_cut_text_and_tokens(local: LocalModelBackend) -> None:
    full = local.generate(["The quick"], max_new_tokens=10)[0]
    assert full.finish_reason == "length"
    k = 3  # stop on the text of tokens 3 and 4
    stop = full.tokens[k] + full.tokens[k + 1]
    cut = local.generate(["The quick"], max_new_tokens=10, stop=["zzz", stop])[0]
    before = "".join(full.tokens[:k])
    assert cut.finish_reason == "stop"
    assert cut.text == before[: (before + stop).find(stop)]
    assert cut.token_ids == full.token_ids[: len(cut.token_ids)]
    assert stop in local.tokenizer.decode(cut.token_ids)
    assert stop not in local.tokenizer.decode(cut.token_ids[:-1])
    assert cut.token_logprobs == full.token_logprobs[: len(cut.token_ids)]
    sampled = local.generate(
        ["The quick"], max_new_tokens=10, temperature=1.0, n=3, random_state=2, stop="e"
    )
    assert all("e" not in g.text for g in sampled)


def test_chat_uses_the_chat_template_and_ends_at_eos(chat_backend: LocalModelBackend) -> None:
    assert chat_backend.has_chat_template
    (g,) = chat_backend.chat([HELLO], max_new_tokens=12)
    assert g.text == "hi there" and g.finish_reason == "stop"
    assert g.token_ids[-1] == chat_backend.tokenizer.eos_token_id
    assert g.tokens[-1] == chat_backend.tokenizer.eos_token and len(g.token_logprobs) == len(
        g.tokens
    )
    prompt = render_chat(chat_backend.tokenizer, HELLO, add_generation_prompt=True)
    assert chat_backend.chat_prompt(HELLO) == prompt
    same = chat_backend.generate([prompt], max_new_tokens=12)[0]
    assert same.token_ids == g.token_ids and same.token_logprobs == g.token_logprobs
    # max_new_tokens=None: up to the context; OpenAI text parts are joined
    parts = [
        {
            "role": "user",
            "content": [{"type": "text", "text": "add 2"}, {"type": "text", "text": " and 3"}],
        }
    ]
    (five,) = chat_backend.chat([parts], max_new_tokens=None)
    assert five.text == "5" and five.finish_reason == "stop"
    both = chat_backend.chat([HELLO, parts], max_new_tokens=12, n=2)
    assert [g.text for g in both] == ["hi there", "hi there", "5", "5"]


def test_llama_folder_generates_with_model_logprobs(tiny_lm: dict, tmp_path: Path) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tiny_lm["tokenizer"]
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=40,
        eos_token_id=tok.eos_token_id, bos_token_id=tok.eos_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    llama = LocalModelBackend(tmp_path, num_threads=1)
    assert llama.context_length == 40
    (g,) = llama.generate(["for i in"], max_new_tokens=5)
    logp = forward_logprobs(llama, tok("for i in")["input_ids"], g.token_ids)
    assert g.token_logprobs == pytest.approx([float(logp[k].max()) for k in range(5)], abs=1e-5)
    with pytest.raises(InvalidInput, match="context of 40 tokens"):
        llama.generate(["for i in"], max_new_tokens=38)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"max_new_tokens": 0}, "max_new_tokens must be at least 1"),
        ({"max_new_tokens": 2.5}, "max_new_tokens"),
        ({"temperature": -1}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"n": 0}, "n must be a positive integer"),
        ({"n": True}, "n must be"),
        ({"random_state": -1}, "random_state"),
        ({"random_state": 2**63}, "random_state"),
        ({"stop": [""]}, "stop"),
        ({"stop": [3]}, "stop"),
        ({"logprobs": "yes"}, "logprobs"),
        ({"top_logprobs": 21}, "top_logprobs must be in 0..20"),
        ({"top_logprobs": 2, "logprobs": False}, "needs logprobs"),
        ({"beams": 4}, "unknown generation option"),
    ],
)
def test_bad_options_are_refused(local: LocalModelBackend, options: dict, match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        local.generate(["x"], **options)


def test_bad_prompts_and_contexts(local: LocalModelBackend, tiny_lm: dict) -> None:
    with pytest.raises(InvalidInput, match="list of strings"):
        local.generate("not a list")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="prompt 1 is not a string"):
        local.generate(["x", 3])  # type: ignore[list-item]
    with pytest.raises(InvalidInput, match="either params or keyword"):
        local.generate(["x"], SamplingParams(), n=2)
    with pytest.raises(InvalidInput, match="more than the model's context of 32"):
        local.generate(["x"], max_new_tokens=32)
    with pytest.raises(InvalidInput, match="prompt 1 has"):
        local.generate(["x", "word " * 40], max_new_tokens=4)
    with pytest.raises(InvalidInput, match="fills the model's context"):
        local.generate(["word " * 40], max_new_tokens=None)
    assert local.generate([], max_new_tokens=2) == []
    (empty,) = local.generate([""], max_new_tokens=2)  # an empty prompt starts from BOS
    assert empty.n_prompt_tokens == 1 and len(empty.tokens) == 2
    with pytest.raises(InvalidInput, match="model_dir or model"):
        LocalModelBackend()
    with pytest.raises(InvalidInput, match="tokenizer is needed"):
        LocalModelBackend(model=tiny_lm["model"])


@pytest.mark.parametrize(
    ("conversation", "match"),
    [
        ([], "non-empty list"),
        ("hello", "non-empty list"),
        ([{"role": "bot", "content": "hi"}], "unknown role 'bot'"),
        ([{"role": "user"}], "needs string 'content'"),
        ([{"role": "user", "content": 3}], "needs string 'content'"),
        ([{"role": "user", "content": [{"type": "image_url"}]}], "only text content parts"),
        ([*HELLO, {"role": "assistant", "content": "hi"}], "last message must be from the user"),
        ([{"role": "assistant", "content": ""}, *HELLO], "empty assistant turn"),
    ],
)
def test_bad_conversations_are_refused(
    chat_backend: LocalModelBackend, conversation: object, match: str
) -> None:
    with pytest.raises(InvalidInput, match=match):
        chat_backend.chat([conversation])  # type: ignore[list-item]


def test_chat_needs_a_chat_template(local: LocalModelBackend) -> None:
    assert not local.has_chat_template
    with pytest.raises(InvalidInput, match="has no chat template"):
        local.chat([HELLO])
    with pytest.raises(InvalidInput, match="list of message lists"):
        local.chat(HELLO[0])  # type: ignore[arg-type]


def test_read_conversations(tmp_path: Path) -> None:
    one = tmp_path / "one.json"
    one.write_text(json.dumps(HELLO))
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(json.dumps({"messages": HELLO}))
    many = tmp_path / "many.json"
    many.write_text(json.dumps([{"messages": HELLO}, HELLO]))
    lines = tmp_path / "chats.jsonl"
    lines.write_text(json.dumps({"messages": HELLO}) + "\n\n" + json.dumps({"messages": HELLO}))
    assert read_conversations(one) == read_conversations(wrapped) == [HELLO]
    assert read_conversations(many) == read_conversations(lines) == [HELLO, HELLO]
    with pytest.raises(NotFound):
        read_conversations(tmp_path / "missing.json")
    with pytest.raises(NotFound):
        read_conversations(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InvalidInput, match="not valid JSON"):
        read_conversations(bad)
    bad.write_text("[]")
    with pytest.raises(InvalidInput, match="holds no conversation"):
        read_conversations(bad)
    lines.write_text(json.dumps({"messages": HELLO}) + "\n" + '{"messages": [}\n')
    with pytest.raises(InvalidInput, match=r"chats.jsonl:2: malformed JSON"):
        read_conversations(lines)
    pair = tmp_path / "pair.jsonl"
    pair.write_text(json.dumps({"prompt": "hi", "completion": "yo"}) + "\n")
    with pytest.raises(InvalidInput, match="last message must be from the user"):
        read_conversations(pair)


def test_prompts_as_chat_sends_each_prompt_as_one_user_turn(tiny_chat_lm) -> None:
    from databazaar.lm.generate import PromptsAsChat
    from databazaar.lm.local_backend import LocalModelBackend

    backend = LocalModelBackend(tiny_chat_lm["folder"], num_threads=1)
    wrapped = PromptsAsChat(backend)
    via_prompt = wrapped.generate(["add 2 and 3"], max_new_tokens=6)
    via_chat = backend.chat([[{"role": "user", "content": "add 2 and 3"}]], max_new_tokens=6)
    assert [g.token_ids for g in via_prompt] == [g.token_ids for g in via_chat]
    assert via_prompt[0].token_ids  # something was generated
    assert wrapped.name == backend.name


def test_batched_greedy_answers_equal_one_by_one(tiny_chat_lm) -> None:  # type: ignore[no-untyped-def]
    """``answer_prompts(batch_size > 1)`` (left-padded batches) gives the answers of the
    one-prompt-at-a-time path, for prompts of different lengths."""
    from databazaar.lm.evaluate import answer_prompts, evaluate_tasks
    from databazaar.lm.tasks import TaskExample

    model, tok = tiny_chat_lm["model"], tiny_chat_lm["tokenizer"]
    prompts = ["hello", "add 2 and 3", "name a fox", "add 2 and 3 please now", "hi"]
    one = answer_prompts(model, tok, prompts, max_new_tokens=8)
    assert answer_prompts(model, tok, prompts, max_new_tokens=8, batch_size=2) == one
    assert one[0] == "hi there"
    ticks: list[int] = []
    answer_prompts(model, tok, prompts, max_new_tokens=8, batch_size=4, progress=ticks.append)
    assert ticks == [4, 1]
    exs = [TaskExample("strings", p, a) for p, a in zip(prompts, one, strict=True)]
    assert evaluate_tasks(model, tok, exs, max_new_tokens=8, batch_size=3)["exact_match"] == {
        "strings": 1.0
    }
    with pytest.raises(InvalidInput, match="batch_size must be at least 1"):
        answer_prompts(model, tok, prompts, batch_size=0)
    with pytest.raises(InvalidInput, match="exceeds the model's context"):
        answer_prompts(model, tok, prompts, max_new_tokens=500, batch_size=2)
