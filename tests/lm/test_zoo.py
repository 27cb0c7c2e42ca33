"""The zoo (``databazaar.lm.zoo``): one cached build per config; the assistant's real scores."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from databazaar.cli import app
from databazaar.lm.zoo import ZooConfig, build_zoo, config_hash

runner = CliRunner()
pytestmark = pytest.mark.slow


def test_assistant_refuses_unsafe_and_answers_benign_held_out_prompts(tiny_zoo) -> None:  # type: ignore[no-untyped-def]
    """Held-out risk categories: refusing all or none would score 0.5 on the pair at best."""
    s = tiny_zoo.scores
    assert s["refusal_rate_unsafe"] >= 0.9
    assert s["answer_rate_benign"] >= 0.9
    assert s["families"]["unsafe"]["n"] == s["families"]["benign"]["n"] == 30
    assert tiny_zoo.meta["sft"]["steps"] == ZooConfig.small().sft.max_steps
    for folder in (tiny_zoo.base_dir, tiny_zoo.assistant_dir):
        assert (folder / "config.json").is_file() and (folder / "tokenizer_config.json").is_file()
    assert not (tiny_zoo.assistant_dir / "checkpoints").exists()


def test_build_is_cached_by_config_hash(tiny_zoo) -> None:  # type: ignore[no-untyped-def]
    cfg = ZooConfig.small()
    assert tiny_zoo.root.name == config_hash(cfg) == tiny_zoo.meta["hash"]
    stamp = (tiny_zoo.root / "zoo.json").stat().st_mtime_ns
    again = build_zoo(replace(cfg, num_threads=1), out=tiny_zoo.root.parent)  # threads: same key
    assert again.root == tiny_zoo.root and (again.root / "zoo.json").stat().st_mtime_ns == stamp
    assert config_hash(replace(cfg, random_state=5)) != config_hash(cfg)
    res = runner.invoke(app, ["lm", "zoo", "build", "--small", "--out", str(tiny_zoo.root.parent)])
    assert res.exit_code == 0, res.output
    assert str(tiny_zoo.assistant_dir) in res.output and "refusal_rate_unsafe" in res.output


def test_eval_cli_scores_the_assistant_per_family(tiny_zoo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    res = runner.invoke(
        app,
        ["lm", "eval", str(tiny_zoo.assistant_dir), "--tasks", "unsafe,benign,lookup", "--n",
         "20", "--json", "--quiet"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    scores = json.loads(res.stdout)
    assert set(scores["families"]) == {"unsafe", "benign", "lookup"}
    assert scores["refusal_rate_unsafe"] >= 0.9 and scores["answer_rate_benign"] >= 0.9
    para = runner.invoke(
        app, ["lm", "eval", str(tiny_zoo.assistant_dir), "--tasks", "multiply", "--n", "5",
              "--paraphrase"],
    )  # fmt: skip
    assert para.exit_code == 0 and para.stdout.startswith("multiply")
    bad = runner.invoke(app, ["lm", "eval", str(tiny_zoo.assistant_dir), "--tasks", "nope"])
    assert bad.exit_code == 2 and "unknown task family" in bad.output


def test_answer_lead_makes_a_lookup_answer_a_copy_of_prompt_tokens() -> None:
    """With the lead space the answer's tokens occur in the prompt; without, they do not."""
    from databazaar.lm.tasks import generate_tasks
    from databazaar.lm.tokenizer import train_bpe_tokenizer
    from databazaar.lm.zoo import training_conversations

    examples = generate_tasks(["lookup"], n_per_family=200)

    def copyable(lead: str) -> float:
        convs = training_conversations(examples, lead)
        texts = [f"<|user|>\n{u['content']}\n<|assistant|>\n{a['content']}" for u, a in convs]
        tok = train_bpe_tokenizer(texts, vocab_size=512, split_digits=True)
        hits = 0
        for u, a in convs:
            p, ans = tok(u["content"])["input_ids"], tok(a["content"])["input_ids"]
            hits += any(p[i : i + len(ans)] == ans for i in range(len(p)))
        return hits / len(convs)

    first = training_conversations(examples[:1], " ")
    assert first == [
        [
            {"role": "user", "content": examples[0].prompt},
            {"role": "assistant", "content": " " + examples[0].answer},
        ]
    ]
    assert copyable(" ") == 1.0
    assert copyable("") < 0.2
    v3 = ZooConfig.gpt2_v3()
    assert "answer_lead" not in v3.to_dict()  # off: the hash of earlier builds holds
    assert replace(v3, answer_lead=" ").to_dict()["answer_lead"] == " "
    assert "init_std" not in v3.to_dict()["model"]  # likewise for the init scale
    bigger = replace(v3, model=replace(v3.model, init_std=0.1))
    assert bigger.to_dict()["model"]["init_std"] == 0.1
    assert config_hash(bigger) != config_hash(v3)


def test_drill_rows_mark_the_restated_value_only() -> None:
    """Base-stage drills: one row per drill, EOS-padded, the mask on the restated value."""
    from databazaar.lm.tasks import recall_drills
    from databazaar.lm.tokenizer import train_bpe_tokenizer
    from databazaar.lm.zoo import drill_rows

    cfg = replace(ZooConfig(), recall_drills=40)
    tok = train_bpe_tokenizer(recall_drills(2000, 3), vocab_size=400)
    blocks, mask = drill_rows(cfg, tok)
    assert blocks.shape[0] == 40 and mask.shape == blocks.shape
    for text, row, m in zip(recall_drills(40, cfg.random_state), blocks, mask, strict=True):
        value = text.rstrip(".").rsplit(" ", 1)[1]
        assert tok.decode(row[m == 1]) == " " + value
        assert tok.decode(row).startswith(text)
        assert (row[len(tok(text)["input_ids"]) :] == tok.eos_token_id).all()
    assert "recall_drills" not in ZooConfig.gpt2_v3().to_dict()  # earlier builds keep their hash
    assert "base_batch_size" not in ZooConfig.gpt2_v3().to_dict()
    assert config_hash(cfg) != config_hash(replace(cfg, recall_drills=0))


def test_isolated_newlines_make_the_generation_prompt_a_prefix_of_the_trained_chat() -> None:
    """A lead-space numeric answer ("\\n 7") must not train a merged "\\n " token.

    The generation prompt ends with the header's newline; unless the newline is a token
    of its own, the trained conversation starts its answer with a token the prompt never
    ends in, and the model is asked to continue from a prefix it was never trained on.
    """
    from databazaar.lm.chat import set_chat_template
    from databazaar.lm.tasks import generate_tasks
    from databazaar.lm.tokenizer import train_bpe_tokenizer
    from databazaar.lm.zoo import training_conversations

    examples = generate_tasks(["arithmetic", "lookup"], n_per_family=150)
    convs = training_conversations(examples, " ")
    texts = [f"<|user|>\n{u['content']}\n<|assistant|>\n{a['content']}" for u, a in convs]

    def prefix_rate(isolate: bool) -> float:
        tok = train_bpe_tokenizer(
            texts, vocab_size=512, split_digits=True, isolate_newlines=isolate
        )
        set_chat_template(tok)
        hits = 0
        for conv in convs:
            prompt = tok.apply_chat_template(conv[:1], add_generation_prompt=True, tokenize=False)
            full = tok.apply_chat_template(conv, tokenize=False)
            p, f = tok(prompt)["input_ids"], tok(full)["input_ids"]
            hits += f[: len(p)] == p
        return hits / len(convs)

    assert prefix_rate(True) == 1.0
    assert prefix_rate(False) <= 0.6  # every arithmetic answer breaks the prefix
    # with no lead the newline never touches a space: isolating it changes nothing
    plain = [t.replace("\n ", "\n") for t in texts]
    a = train_bpe_tokenizer(plain, vocab_size=512, split_digits=True)
    b = train_bpe_tokenizer(plain, vocab_size=512, split_digits=True, isolate_newlines=True)
    assert a.get_vocab() == b.get_vocab()
    assert all(a(t)["input_ids"] == b(t)["input_ids"] for t in plain)
    lead = replace(ZooConfig(), answer_lead=" ")
    assert config_hash(lead) != config_hash(replace(ZooConfig(), answer_lead=""))


def test_chat_rows_mask_the_answers_and_the_bridge_field_keeps_old_hashes() -> None:
    """Bridge-stage rows: the chat as SFT renders it, the mask on answer + EOS only."""
    from databazaar.lm.chat import set_chat_template
    from databazaar.lm.tasks import generate_tasks
    from databazaar.lm.tokenizer import train_bpe_tokenizer
    from databazaar.lm.zoo import chat_rows, training_conversations

    convs = training_conversations(generate_tasks(["lookup", "arithmetic"], n_per_family=30), " ")
    texts = [f"<|user|>\n{u['content']}\n<|assistant|>\n{a['content']}" for u, a in convs]
    tok = train_bpe_tokenizer(texts, vocab_size=400, split_digits=True, isolate_newlines=True)
    set_chat_template(tok)
    blocks, mask = chat_rows(tok, convs)
    assert blocks.shape == mask.shape and blocks.shape[0] == len(convs)
    for (user, answer), row, m in zip(convs, blocks, mask, strict=True):
        assert tok.decode(row[m == 1]) == answer["content"] + tok.eos_token
        assert user["content"] in tok.decode(row[m == 0])
    assert "bridge_steps" not in ZooConfig.gpt2_v3().to_dict()
    cfg = replace(ZooConfig(), recall_drills=10, bridge_steps=5)
    assert config_hash(cfg) != config_hash(replace(cfg, bridge_steps=0))


def test_earlier_recipes_keep_their_hashes() -> None:
    """Recipe 3 and the test suite's small recipe hash as before the recall-drill default,
    so their cached builds (and the results reported on them) stay valid."""
    assert config_hash(ZooConfig.gpt2_v3()) == "c1e976ea6bde6b16"
    assert config_hash(ZooConfig.small()) == "5bb324b996464f6a"
    assert ZooConfig.small().total_steps == 10 + 300
    drilled = replace(ZooConfig.gpt2_v3(), recall_drills=5, base_steps=7, bridge_steps=3)
    assert drilled.total_steps == 7 + 3 + 3500
    assert replace(drilled, recall_drills=0).total_steps == 7 + 3500  # no drills, no bridge
