"""Tokenizer, model factory, training loop and token packing of databazaar.lm."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from databazaar.core.errors import InvalidInput, NotFound
from databazaar.lm import (
    EvalRecord,
    ModelConfig,
    TrainConfig,
    build_model,
    check_weights,
    count_parameters,
    evaluate_domains,
    load_model,
    load_tokenizer,
    pack_blocks,
    save_tokenizer,
    train_bpe_tokenizer,
    train_lm,
)
from databazaar.lm.train import batch_order, lr_at, token_losses

# ------------------------------------------------------------------ tokenizer


def test_tokenizer_round_trip_through_folder(tiny_lm: dict, tmp_path: Path) -> None:
    tok = tiny_lm["tokenizer"]
    assert len(tok) == 300
    text = "def café(x):\n    return '数据' + 🙂"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text  # byte-level: every string is representable
    save_tokenizer(tok, tmp_path / "tok")
    again = load_tokenizer(tmp_path / "tok")
    assert again(text, add_special_tokens=False)["input_ids"] == ids
    assert again.eos_token == "<|endoftext|>" and again.pad_token == "<|pad|>"
    assert again.eos_token_id == tok.eos_token_id
    # merges were learned: common text is shorter than its bytes
    assert len(tok("return a + b", add_special_tokens=False)["input_ids"]) < len("return a + b")


def test_tokenizer_training_is_deterministic(tiny_texts: list[str]) -> None:
    a = train_bpe_tokenizer(tiny_texts, vocab_size=290)
    b = train_bpe_tokenizer(tiny_texts, vocab_size=290)
    assert a.get_vocab() == b.get_vocab()


def test_tokenizer_errors(tmp_path: Path, tiny_texts: list[str]) -> None:
    with pytest.raises(InvalidInput, match="at least 260"):
        train_bpe_tokenizer(tiny_texts, vocab_size=100)
    with pytest.raises(InvalidInput, match="empty corpus"):
        train_bpe_tokenizer(["", ""], vocab_size=300)
    with pytest.raises(NotFound, match="tokenizer folder not found"):
        load_tokenizer(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInput, match="holds no tokenizer"):
        load_tokenizer(tmp_path / "empty")


# ---------------------------------------------------------------------- model


def test_model_round_trip_through_folder(tiny_lm: dict) -> None:
    model, folder = tiny_lm["model"], tiny_lm["folder"]
    assert (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file()
    loaded, tok = load_model(folder)
    assert type(loaded).__name__ == "GPT2LMHeadModel"
    assert tok is not None and len(tok) == 300
    assert not loaded.training
    batch = torch.from_numpy(tiny_lm["blocks"][:4])
    with torch.no_grad():
        assert torch.allclose(model(input_ids=batch).logits, loaded(input_ids=batch).logits)
    cfg = json.loads((folder / "config.json").read_text())
    assert (cfg["n_layer"], cfg["n_embd"], cfg["n_head"], cfg["vocab_size"]) == (1, 32, 2, 300)
    only_model, none = load_model(folder, with_tokenizer=False)
    assert none is None and count_parameters(only_model) == count_parameters(model)


def test_build_model_is_seeded_and_sized() -> None:
    cfg = ModelConfig(n_layer=2, n_embd=16, n_head=2, n_positions=8)
    a = build_model(cfg, vocab_size=50, seed=3)
    b = build_model(cfg, vocab_size=50, seed=3)
    c = build_model(cfg, vocab_size=50, seed=4)
    wa, wb, wc = (m.transformer.wte.weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)
    # tied embeddings: 50*16 + 8*16 + per layer 12*16^2 + 13*16 + final LN 2*16
    expected = 50 * 16 + 8 * 16 + 2 * (12 * 16 * 16 + 13 * 16) + 2 * 16
    assert count_parameters(a) == expected


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_init_std_sets_the_weight_scale(arch: str) -> None:
    """``init_std`` is the normal init's standard deviation; None keeps 0.02."""

    def attn_std(std: float | None) -> float:
        m = build_model(ModelConfig(n_embd=64, architecture=arch, init_std=std), vocab_size=50)
        w = (
            m.transformer.h[0].attn.c_attn.weight
            if arch == "gpt2"
            else (m.model.layers[0].self_attn.q_proj.weight)
        )
        return float(w.std())

    assert attn_std(None) == pytest.approx(0.02, rel=0.1)
    assert attn_std(0.1) == pytest.approx(0.1, rel=0.1)


@pytest.mark.parametrize("arch", ["gpt2", "llama", "mistral"])
def test_intermediate_size_sets_the_mlp_width(arch: str) -> None:
    """``intermediate_size`` is the MLP's hidden width; None keeps 4 x n_embd."""

    def mlp_width(size: int | None) -> int:
        cfg = ModelConfig(n_embd=64, architecture=arch, intermediate_size=size)
        m = build_model(cfg, vocab_size=50)
        if arch == "gpt2":
            return int(m.transformer.h[0].mlp.c_fc.weight.shape[1])
        return int(m.model.layers[0].mlp.up_proj.weight.shape[0])

    assert mlp_width(None) == 256
    assert mlp_width(176) == 176


@pytest.mark.parametrize(
    ("cfg", "msg"),
    [
        (ModelConfig(n_layer=0), "n_layer"),
        (ModelConfig(intermediate_size=0), "intermediate_size"),
        (ModelConfig(n_embd=30, n_head=4), "divisible"),
        (ModelConfig(dropout=1.0), "dropout"),
        (ModelConfig(init_std=0.0), "init_std"),
    ],
)
def test_model_config_errors(cfg: ModelConfig, msg: str) -> None:
    with pytest.raises(InvalidInput, match=msg):
        build_model(cfg, vocab_size=10)


def test_build_model_rejects_tiny_vocab() -> None:
    with pytest.raises(InvalidInput, match="vocab_size"):
        build_model(ModelConfig(), vocab_size=1)


def test_loading_a_model_does_not_print_the_bitsandbytes_kernel_warning(
    tiny_lm: dict, capfd: pytest.CaptureFixture[str]
) -> None:
    """bitsandbytes' "pip install kernels" advice is for 4-bit matmuls, which nothing here
    does: importing the toolkit silences that one logger (its errors still show)."""
    import logging

    import peft  # noqa: F401  (imports bitsandbytes when it is installed)

    load_model(tiny_lm["folder"])
    assert logging.getLogger("bitsandbytes.backends.cpu.ops").level == logging.ERROR
    assert "kernels-community" not in capfd.readouterr().err


def test_load_model_errors(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="model folder not found"):
        load_model(tmp_path / "missing")
    with pytest.raises(InvalidInput, match="holds no model"):
        load_model(tmp_path)


# ------------------------------------------------------------------- training


def _tiny(seed: int = 0):  # type: ignore[no-untyped-def]
    return build_model(
        ModelConfig(n_layer=1, n_embd=16, n_head=2, n_positions=16), vocab_size=300, seed=seed
    )


def test_training_lowers_loss(tiny_lm: dict) -> None:
    res = tiny_lm["result"]
    assert res.steps == 40 and len(res.train_loss) == 40
    assert np.mean(res.train_loss[-5:]) < np.mean(res.train_loss[:5]) - 1.0
    assert res.tokens == 40 * 8 * 16


def test_training_is_deterministic_under_a_seed(tiny_lm: dict) -> None:
    blocks = tiny_lm["blocks"]
    cfg = TrainConfig(batch_size=4, max_steps=12, lr=5e-3, seed=7, num_threads=1)
    r1 = train_lm(_tiny(), blocks, config=cfg)
    r2 = train_lm(_tiny(), blocks, config=cfg)
    assert r1.train_loss == r2.train_loss
    r3 = train_lm(_tiny(), blocks, config=TrainConfig(batch_size=4, max_steps=12, seed=8))
    assert r3.train_loss != r1.train_loss


def test_loss_mask_trains_only_the_marked_tokens(tiny_lm: dict) -> None:
    """With a mask the loss is the marked tokens' mean; a bad mask is refused."""
    blocks = tiny_lm["blocks"][:8]
    mask = np.zeros_like(blocks)
    mask[:, -1] = 1  # only each block's last token is a target
    cfg = TrainConfig(batch_size=8, max_steps=1, lr=1e-9, seed=0, num_threads=1)
    model = _tiny()
    expected = float(token_losses(model, torch.from_numpy(blocks))[:, -1].mean())
    res = train_lm(model, blocks, config=cfg, loss_mask=mask)
    assert res.train_loss[0] == pytest.approx(expected, rel=1e-5)
    full = float(token_losses(_tiny(), torch.from_numpy(blocks)).mean())
    assert full != expected
    assert train_lm(_tiny(), blocks, config=cfg).train_loss[0] == pytest.approx(full, rel=1e-5)
    with pytest.raises(InvalidInput, match="loss_mask"):
        train_lm(_tiny(), blocks, config=cfg, loss_mask=mask[:, :-1])
    empty = mask.copy()
    empty[3] = 0  # a row with no target
    with pytest.raises(InvalidInput, match="loss_mask"):
        train_lm(_tiny(), blocks, config=cfg, loss_mask=empty)


def test_masked_batches_are_cut_after_their_last_target(tiny_lm: dict) -> None:
    """Padding after the last target costs nothing and changes no loss (causal model)."""
    blocks = tiny_lm["blocks"][:8]
    mask = np.zeros_like(blocks)
    mask[:, 5:9] = 1  # targets end at column 8 of a longer block
    cfg = TrainConfig(batch_size=8, max_steps=1, lr=1e-9, seed=0, num_threads=1)
    short = blocks[:, :9]
    expected = float(token_losses(_tiny(), torch.from_numpy(short))[:, 4:8].mean())
    res = train_lm(_tiny(), blocks, config=cfg, loss_mask=mask)
    assert res.train_loss[0] == pytest.approx(expected, rel=1e-5)
    noisy = blocks.copy()
    noisy[:, 9:] = (noisy[:, 9:] + 7) % 50  # other tokens after the last target
    assert train_lm(_tiny(), noisy, config=cfg, loss_mask=mask).train_loss[0] == pytest.approx(
        expected, rel=1e-5
    )


def test_grouped_batch_order_takes_turns() -> None:
    """With groups every batch comes from one group and the groups alternate."""
    groups = np.array([0] * 6 + [1] * 10)
    order = batch_order(16, 9, TrainConfig(batch_size=4, seed=3), groups)
    assert order.shape == (9, 4)
    for step, rows in enumerate(order):
        assert set(groups[rows]) == {step % 2}
    first_pass = order[1::2].ravel()[:10]  # group 1's stream starts with a permutation
    assert sorted(first_pass.tolist()) == list(range(6, 16))
    assert np.array_equal(order, batch_order(16, 9, TrainConfig(batch_size=4, seed=3), groups))
    with pytest.raises(InvalidInput, match="one label per block"):
        batch_order(16, 9, TrainConfig(batch_size=4), groups[:-1])


def test_training_evaluates_every_domain_and_calls_progress(tiny_lm: dict) -> None:
    blocks = tiny_lm["blocks"]
    evals = {"a": blocks[:3], "b": blocks[3:7]}
    ticks: list[int] = []
    seen: list[EvalRecord] = []
    res = train_lm(
        _tiny(),
        blocks,
        config=TrainConfig(batch_size=4, max_steps=10, eval_every=4),
        eval_sets=evals,
        progress=ticks.append,
        on_eval=seen.append,
    )
    assert [h.step for h in res.history] == [4, 8, 10]
    assert seen == res.history
    assert sum(ticks) == 10
    final = res.final
    assert final is not None and set(final.losses) == {"a", "b"}
    assert final.average == pytest.approx((final.losses["a"] + final.losses["b"]) / 2)
    # evaluation is the mean token cross-entropy, recomputed independently here
    model = _tiny()
    direct = evaluate_domains(model, {"a": blocks[:3]})["a"]
    with torch.no_grad():
        x = torch.from_numpy(blocks[:3])
        logits = model(input_ids=x).logits[:, :-1]
        ref = torch.nn.functional.cross_entropy(logits.reshape(-1, 300), x[:, 1:].reshape(-1))
    assert direct == pytest.approx(float(ref), rel=1e-5)


def test_checkpoint_resume_continues_exactly(tiny_lm: dict, tmp_path: Path) -> None:
    blocks = tiny_lm["blocks"]
    base = TrainConfig(batch_size=4, max_steps=8, lr=5e-3, seed=1)
    full = train_lm(_tiny(), blocks, config=base)
    ckpt = TrainConfig(
        batch_size=4, max_steps=8, lr=5e-3, seed=1, checkpoint_dir=str(tmp_path), checkpoint_every=3
    )
    train_lm(_tiny(), blocks, config=ckpt)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint-3",
        "checkpoint-6",
        "checkpoint-8",
    ]
    resumed = train_lm(_tiny(), blocks, config=base, resume_from=tmp_path / "checkpoint-3")
    assert resumed.train_loss == pytest.approx(full.train_loss, rel=1e-5)
    with pytest.raises(NotFound, match="checkpoint folder not found"):
        train_lm(_tiny(), blocks, config=base, resume_from=tmp_path / "nope")
    with pytest.raises(InvalidInput, match="not a training checkpoint"):
        train_lm(_tiny(), blocks, config=base, resume_from=tmp_path)


def test_lr_schedule_and_batch_order() -> None:
    cfg = TrainConfig(warmup_fraction=0.1, min_lr_ratio=0.1)
    assert lr_at(0, 100, cfg) == pytest.approx(0.1)
    assert lr_at(9, 100, cfg) == pytest.approx(1.0)
    assert lr_at(100, 100, cfg) == pytest.approx(0.1)
    order = batch_order(10, 5, TrainConfig(batch_size=4, seed=0))
    assert order.shape == (5, 4)
    flat = order.ravel()
    assert sorted(flat[:10].tolist()) == list(range(10))  # first pass is a permutation
    assert np.array_equal(order, batch_order(10, 5, TrainConfig(batch_size=4, seed=0)))


@pytest.mark.parametrize(
    ("cfg", "msg"),
    [
        (TrainConfig(batch_size=0), "batch sizes"),
        (TrainConfig(lr=0), "lr must be positive"),
        (TrainConfig(max_steps=0), "max_steps"),
        (TrainConfig(epochs=0), "epochs"),
        (TrainConfig(warmup_fraction=1.0), "warmup_fraction"),
        (TrainConfig(eval_every=0), "eval_every"),
    ],
)
def test_train_config_errors(tiny_lm: dict, cfg: TrainConfig, msg: str) -> None:
    with pytest.raises(InvalidInput, match=msg):
        train_lm(_tiny(), tiny_lm["blocks"], config=cfg)


def test_train_rejects_bad_blocks(tiny_lm: dict) -> None:
    with pytest.raises(InvalidInput, match="non-empty"):
        train_lm(_tiny(), np.zeros((0, 8), dtype=np.int64))
    with pytest.raises(InvalidInput, match="exceed the model context"):
        train_lm(_tiny(), np.zeros((2, 32), dtype=np.int64))
    with pytest.raises(InvalidInput, match="is empty"):
        evaluate_domains(_tiny(), {"x": np.zeros((0, 8), dtype=np.int64)})


# --------------------------------------------------------------------- packing


def test_pack_blocks_joins_documents_with_eos(tiny_lm: dict) -> None:
    tok = tiny_lm["tokenizer"]
    docs = ["hello world", "def f(): pass"]
    blocks = pack_blocks(docs, tok, 4)
    ids = [*tok(docs[0])["input_ids"], tok.eos_token_id, *tok(docs[1])["input_ids"]]
    ids.append(tok.eos_token_id)
    n = len(ids) // 4
    assert blocks.shape == (n, 4) and blocks.dtype == np.int64
    assert blocks.ravel().tolist() == ids[: n * 4]
    with pytest.raises(InvalidInput, match="block_size"):
        pack_blocks(docs, tok, 1)


def test_check_weights() -> None:
    doms = ["a", "b"]
    assert check_weights({"a": 0.25, "b": 0.75}, doms).tolist() == [0.25, 0.75]
    assert check_weights([0.5, 0.5], doms).tolist() == [0.5, 0.5]
    for bad, msg in [
        ({"a": 1.0}, "missing: b"),
        ({"a": 0.5, "b": 0.25, "c": 0.25}, "unknown: c"),
        ([1.0], "expected 2 weights"),
        ([0.5, float("nan")], "finite"),
        ([1.5, -0.5], "non-negative"),
        ([0.5, 0.6], "sum to 1"),
    ]:
        with pytest.raises(InvalidInput, match=msg):
            check_weights(bad, doms)  # type: ignore[arg-type]
