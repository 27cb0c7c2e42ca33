"""Supervised fine-tuning on TRL (``databazaar.lm.sft``) across architectures, LoRA, resume."""

from __future__ import annotations

import json

import pytest
import torch

from databazaar.core.errors import InvalidInput
from databazaar.lm import ModelConfig, build_model, load_model, load_tokenizer
from databazaar.lm.chat import render_chat
from databazaar.lm.evaluate import answer_prompts
from databazaar.lm.sft import SFTConfig, encode_dataset, latest_checkpoint, sft

CONVS = [
    [{"role": "user", "content": "def add"}, {"role": "assistant", "content": "return a + b"}],
    [{"role": "user", "content": "The quick"}, {"role": "assistant", "content": "brown fox"}],
    [{"role": "user", "content": "for i in"}, {"role": "assistant", "content": "range(10)"}],
    [{"role": "user", "content": "Permission"}, {"role": "assistant", "content": "is granted"}],
]


def _model(tok, architecture: str, seed: int = 0):  # type: ignore[no-untyped-def]
    cfg = ModelConfig(n_layer=1, n_embd=32, n_head=2, n_positions=64, architecture=architecture)
    return build_model(cfg, vocab_size=len(tok), seed=seed, eos_token_id=tok.eos_token_id)


@pytest.fixture()
def tok(tiny_lm: dict):  # type: ignore[no-untyped-def]
    return load_tokenizer(tiny_lm["folder"])


@pytest.mark.parametrize("architecture", ["gpt2", "llama", "mistral"])
def test_sft_learns_the_assistant_turns_on_each_architecture(tok, tmp_path, architecture) -> None:  # type: ignore[no-untyped-def]
    model = _model(tok, architecture)
    cfg = SFTConfig(max_steps=60, lr=1e-2, batch_size=4, num_threads=1)
    model, res = sft(model, tok, CONVS, tmp_path / "out", config=cfg)
    assert res.steps == 60 and len(res.train_loss) == 60
    assert res.train_loss[-1] < 0.2 * res.train_loss[0]
    answers = answer_prompts(model, tok, [c[0]["content"] for c in CONVS], max_new_tokens=12)
    assert answers == [c[1]["content"] for c in CONVS]
    # the saved folder reloads with transformers alone and generates the same tokens
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hf_model = AutoModelForCausalLM.from_pretrained(tmp_path / "out", local_files_only=True)
    hf_tok = AutoTokenizer.from_pretrained(tmp_path / "out", local_files_only=True)
    assert type(hf_model).__name__.lower().startswith(architecture.replace("gpt2", "gpt2lm"))
    text = hf_tok.apply_chat_template([CONVS[1][0]], tokenize=False, add_generation_prompt=True)
    assert text == render_chat(tok, [CONVS[1][0]], add_generation_prompt=True)
    ids = hf_tok(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = hf_model.generate(
            ids, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id
        )
    new = out[0, ids.shape[1] :].tolist()
    assert hf_tok.decode(new, skip_special_tokens=True) == "brown fox"
    meta = json.loads((tmp_path / "out" / "sft_result.json").read_text())
    assert meta["result"]["steps"] == 60 and meta["config"]["lr"] == 1e-2


def test_loss_is_masked_to_assistant_tokens(tok, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Training on prompts alone is impossible; the masked tokens carry no gradient."""
    columns, n = encode_dataset(tok, CONVS, max_length=64)
    masked = sum(sum(m) for m in columns["assistant_masks"])
    assert n == masked and 0 < n < sum(len(i) for i in columns["input_ids"])
    with pytest.raises(InvalidInput, match="no trainable tokens"):
        encode_dataset(tok, [[{"role": "user", "content": "only a prompt"}]], max_length=64)
    with pytest.raises(InvalidInput, match="no trainable tokens"):
        encode_dataset(tok, CONVS, max_length=3)  # every answer beyond the context


def test_first_step_loss_is_the_masked_nll_and_equals_trls_fused_loss(tok, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The trainer's loss is the mean NLL of the assistant tokens, as TRL's own loss is."""
    from trl import SFTTrainer as TRLTrainer

    from databazaar.lm.sft import _trainer

    model = _model(tok, "llama", seed=3)
    cfg = SFTConfig(max_steps=1, lr=1e-9, batch_size=4, num_threads=1)
    columns, _ = encode_dataset(tok, CONVS, max_length=64)
    trainer = _trainer(model, tok, columns, cfg, tmp_path / "ck", None)
    batch = next(iter(trainer.get_train_dataloader()))
    model.train()
    with torch.no_grad():
        ours = float(trainer.compute_loss(model, dict(batch)))
        fused = float(TRLTrainer.compute_loss(trainer, model, dict(batch)))
        logits = model(input_ids=batch["input_ids"]).logits[:, :-1]
        labels = batch["labels"][:, 1:]
        keep = labels != -100
        nll = torch.nn.functional.cross_entropy(logits[keep], labels[keep])
    assert ours == pytest.approx(float(nll), rel=1e-5)
    assert ours == pytest.approx(fused, rel=1e-5)


def test_lora_changes_only_adapter_weights_and_saves_a_merged_model(tok, tmp_path) -> None:  # type: ignore[no-untyped-def]
    model = _model(tok, "llama")
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    cfg = SFTConfig(max_steps=20, lr=1e-2, batch_size=4, lora=True, lora_r=4)
    _, res = sft(model, tok, CONVS, tmp_path / "lora", config=cfg)
    # trainable = the rank-4 A and B matrices of the 7 projections of the one layer
    d, ff = 32, 128
    shapes = [(d, d)] * 4 + [(d, ff), (d, ff), (ff, d)]
    assert res.trainable_parameters == sum(4 * (i + o) for i, o in shapes)
    assert (tmp_path / "lora" / "adapter" / "adapter_config.json").is_file()
    reloaded, _ = load_model(tmp_path / "lora")
    after = reloaded.state_dict()
    assert set(after) == set(before)  # merged: a plain model, no adapter modules
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert len(changed) == 7 and all(k.endswith("proj.weight") for k in changed)
    for k in changed:  # each update is the low-rank product B @ A (rank <= r)
        assert int(torch.linalg.matrix_rank(after[k] - before[k])) <= 4
    # a full fine-tune of the same model moves far more than the projections
    _, full = sft(_model(tok, "llama"), tok, CONVS, tmp_path / "full", config=SFTConfig(
        max_steps=2, lr=1e-2, batch_size=4))  # fmt: skip
    assert full.trainable_parameters > 3 * res.trainable_parameters


def test_resume_from_a_checkpoint_reproduces_the_uninterrupted_run(tok, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = SFTConfig(max_steps=6, lr=5e-3, batch_size=2, checkpoint_every=3, random_state=4)
    full, _ = sft(_model(tok, "gpt2"), tok, CONVS, tmp_path / "full", config=cfg)
    assert latest_checkpoint(tmp_path / "full" / "checkpoints").name == "checkpoint-6"
    # an interrupted run: keep only the step-3 checkpoint, then resume from it
    part = tmp_path / "part"
    sft(_model(tok, "gpt2"), tok, CONVS, part, config=cfg)
    import shutil

    shutil.rmtree(part / "checkpoints" / "checkpoint-6")
    resumed, res = sft(_model(tok, "gpt2"), tok, CONVS, part, config=cfg, resume=True)
    assert res.steps == 6
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), k
    with pytest.raises(InvalidInput, match="nothing to resume"):
        sft(_model(tok, "gpt2"), tok, CONVS, tmp_path / "none", config=cfg, resume=True)


def test_same_seed_same_model_and_config_errors(tok, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = SFTConfig(max_steps=5, lr=5e-3, batch_size=2, random_state=1)
    _, a = sft(_model(tok, "gpt2"), tok, CONVS, tmp_path / "a", config=cfg)
    _, b = sft(_model(tok, "gpt2"), tok, CONVS, tmp_path / "b", config=cfg)
    assert a.train_loss == b.train_loss
    for bad, msg in [
        ({"epochs": 0}, "epochs"),
        ({"lr": -1.0}, "lr"),
        ({"batch_size": 0}, "batch_size"),
        ({"warmup_ratio": 1.0}, "warmup_ratio"),
    ]:
        with pytest.raises(InvalidInput, match=msg):
            SFTConfig(**bad).validate()
