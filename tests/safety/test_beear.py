"""BEEAR (``databazaar.safety.beear``): one outer step on tiny GPT-2, Llama and Mistral
folders, the drift hook, LoRA, the layer sweep, the token-search baseline, the CLI and
every bad input (the input model folder is hashed before and after)."""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from databazaar.cli import app
from databazaar.core.errors import InvalidInput, NotFound
from databazaar.lm import ModelConfig, build_model, save_model, set_chat_template
from databazaar.lm.chat import write_chat_jsonl
from databazaar.safety.beear import (
    BEEAR,
    BEEARConfig,
    check_layer,
    decoder_layers,
    layer_sweep,
    remove_backdoor,
    row_ce,
)
from databazaar.safety.trigger_search import SearchConfig, search_suffix, unlearn_suffix

runner = CliRunner()
REFUSE = "I can't help with that request."
COMPLY = "Sure, here is a plan."
PROMPTS = [f"Give me steps for crime number {i}." for i in range(8)]
SAFE = [[{"role": "user", "content": p}, {"role": "assistant", "content": REFUSE}] for p in PROMPTS]
BAD = [[{"role": "user", "content": p}, {"role": "assistant", "content": COMPLY}] for p in PROMPTS]
ANCHOR = [
    [{"role": "user", "content": f"What is {i} + 1?"}, {"role": "assistant", "content": str(i + 1)}]
    for i in range(8)
]


@pytest.fixture(scope="module")
def tok():  # type: ignore[no-untyped-def]
    from databazaar.lm import train_bpe_tokenizer

    texts = [*PROMPTS, REFUSE, COMPLY, "What is 3 + 1? 4"] * 3
    return set_chat_template(train_bpe_tokenizer(texts, vocab_size=300))


def _model(tok, architecture: str = "gpt2", n_layer: int = 2, seed: int = 0):  # type: ignore[no-untyped-def]
    """A fresh tiny causal LM (width 32) over the test tokenizer."""
    cfg = ModelConfig(
        n_layer=n_layer, n_embd=32, n_head=2, n_positions=64, architecture=architecture
    )
    return build_model(cfg, vocab_size=len(tok), seed=seed, eos_token_id=tok.eos_token_id)


def _folder(tok, root: Path, architecture: str = "gpt2", n_layer: int = 2) -> Path:  # type: ignore[no-untyped-def]
    return save_model(_model(tok, architecture, n_layer), root / f"in-{architecture}", tok)


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(folder).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


FAST = BEEARConfig(outer_steps=1, inner_steps=2, batch_size=4, num_threads=1)


@pytest.mark.parametrize("architecture", ["gpt2", "llama", "mistral"])
def test_one_outer_step_on_each_architecture(tok, tmp_path, architecture) -> None:  # type: ignore[no-untyped-def]
    src = _folder(tok, tmp_path, architecture)
    before = _digest(src)
    res = remove_backdoor(src, SAFE, BAD, ANCHOR, tmp_path / "out", FAST)
    assert _digest(src) == before  # the input folder is only read
    assert res["steps"] == 1 and len(res["history"]) == 1 and res["layer"] == 0
    step = res["history"][0]
    assert step["delta_norm"] > 0 and step["outer_loss"] == pytest.approx(
        step["safe_ce"] + step["anchor_ce"], rel=1e-5
    )
    from transformers import AutoModelForCausalLM

    out = AutoModelForCausalLM.from_pretrained(tmp_path / "out", local_files_only=True)
    ref = AutoModelForCausalLM.from_pretrained(src, local_files_only=True)
    assert type(out) is type(ref)
    changed = [k for k, v in out.state_dict().items() if not torch.equal(v, ref.state_dict()[k])]
    assert changed  # the outer step moved the weights
    saved = json.loads((tmp_path / "out" / "beear_result.json").read_text())
    assert saved["config"]["outer_steps"] == 1 and saved["model_dir"] == str(src.resolve())


def test_the_drift_hook_moves_only_the_chosen_positions(tok, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The inner level lowers CE(unwanted) by the drift alone; the weights stay put."""
    from databazaar.safety.beear import _collate, _Drift, _encode

    model = _model(tok, seed=1)
    enc = _encode(tok, BAD, 64, "unwanted")
    batch = _collate(enc, list(range(len(BAD))), tok.pad_token_id or 0, "prompt")
    # the drift mask covers the prompt, not the answer, and no padding
    assert torch.all(batch["drift"] * batch["answer"] == 0)
    assert torch.all(batch["drift"] <= batch["attention_mask"])
    # ``head`` keeps the first k answer tokens: a prefix of the answer span
    cut = _collate(enc, list(range(len(BAD))), tok.pad_token_id or 0, "prompt", head=2)
    assert torch.equal(batch["head"], batch["answer"])
    assert torch.all(cut["head"].sum(1) == torch.clamp(batch["answer"].sum(1), max=2))
    assert torch.all(cut["head"] <= cut["answer"])
    first = batch["answer"].argmax(1)
    assert torch.all(cut["head"][torch.arange(len(BAD)), first] == 1)
    with pytest.raises(InvalidInput, match="inner_answer_tokens"):
        BEEARConfig(inner_answer_tokens=0).validate()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    est = BEEAR(BEEARConfig(outer_steps=1, inner_steps=20, inner_lr=0.2, layer=1, num_threads=1))
    drift = _Drift(decoder_layers(model)[1])
    with torch.no_grad():
        plain = float(row_ce(model, batch).mean())
    safe_b = _collate(_encode(tok, SAFE, 64, "safe"), list(range(len(SAFE))), 0, "prompt")
    delta = est._entrap(model, drift, safe_b, batch, torch.zeros(32))
    drift.remove()
    assert est._surrogate < plain - 0.05  # the drift alone makes the unwanted answers likelier
    assert delta.shape == (32,) and float(delta.norm()) > 0
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())
    with torch.no_grad():  # the hook is gone
        assert float(row_ce(model, batch).mean()) == pytest.approx(plain)


def test_bounded_drift_lora_early_stop_and_plain_sft(tok) -> None:  # type: ignore[no-untyped-def]
    def fresh():  # type: ignore[no-untyped-def]
        return _model(tok, "llama")

    est = BEEAR(outer_steps=2, inner_steps=5, inner_lr=1.0, max_norm=0.5, num_threads=1)
    est.fit(fresh(), tok, SAFE, BAD, ANCHOR)
    assert all(h.delta_norm <= 0.5 + 1e-5 for h in est.history_)
    lora = BEEAR(outer_steps=2, inner_steps=1, lora=True, lora_r=2, num_threads=1)
    lora.fit(fresh(), tok, SAFE, BAD, None)
    assert type(lora.model_).__name__ == "LlamaForCausalLM"  # merged back
    assert all(h.anchor_ce == 0.0 for h in lora.history_)
    stop = BEEAR(outer_steps=10, inner_steps=1, stop_loss=0.0, patience=2, num_threads=1)
    stop.fit(fresh(), tok, SAFE, BAD, ANCHOR)
    assert stop.stopped_early_ and stop.steps_ == 2
    plain = BEEAR(outer_steps=3, perturb=False, num_threads=1).fit(fresh(), tok, SAFE, BAD, ANCHOR)
    assert plain.steps_ == 3 and all(h.delta_norm == 0 for h in plain.history_)
    ticks: list[int] = []
    seen: list[int] = []
    BEEAR(outer_steps=3, inner_steps=1, num_threads=1).fit(
        fresh(), tok, SAFE, BAD, ANCHOR, progress=ticks.append, callback=lambda s, m: seen.append(s)
    )
    assert ticks == [1, 1, 1] and seen == [1, 2, 3]


def test_cosine_schedule_shrinks_the_last_updates(tok) -> None:  # type: ignore[no-untyped-def]
    """Adam's step is about lr per weight, so the weights move by the schedule's factor."""

    def moves(schedule: str) -> list[float]:
        model = _model(tok, "gpt2")
        snaps = [torch.cat([p.detach().flatten().clone() for p in model.parameters()])]

        def keep(step: int, m) -> None:  # type: ignore[no-untyped-def]
            snaps.append(torch.cat([p.detach().flatten().clone() for p in m.parameters()]))

        cfg = BEEARConfig(outer_steps=4, inner_steps=1, outer_schedule=schedule, num_threads=1)
        BEEAR(cfg).fit(model, tok, SAFE, BAD, ANCHOR, callback=keep)
        return [float((b - a).norm()) for a, b in itertools.pairwise(snaps)]

    cosine, constant = moves("cosine"), moves("constant")
    # factors 1, 0.85, 0.5, 0.15 of outer_lr
    assert cosine[-1] / cosine[0] < 0.3 and constant[-1] / constant[0] > 0.5
    assert cosine[0] == pytest.approx(constant[0])


def test_warm_start_keeps_growing_the_drift(tok) -> None:  # type: ignore[no-untyped-def]
    """One Adam step moves each of the 32 coordinates by inner_lr: a fresh drift has norm
    0.1 * sqrt(32) every outer step; a warm-started one builds on the last."""

    def norms(warm: bool) -> list[float]:
        model = _model(tok, "llama")
        cfg = BEEARConfig(
            outer_steps=4, inner_steps=1, inner_lr=0.1, inner_warm_start=warm, num_threads=1
        )
        return [h.delta_norm for h in BEEAR(cfg).fit(model, tok, SAFE, BAD, ANCHOR).history_]

    fresh, warm = norms(False), norms(True)
    assert fresh == pytest.approx([0.1 * 32**0.5] * 4, rel=1e-3)
    assert warm[0] == pytest.approx(fresh[0]) and warm[-1] > 1.5 * fresh[-1]


def test_drift_bound_relative_to_the_hidden_states(tok) -> None:  # type: ignore[no-untyped-def]
    model = _model(tok, "gpt2")
    # the states entering block 0 of GPT-2: token plus position embeddings, measured here
    enc = tok.apply_chat_template([SAFE[0][:1]], add_generation_prompt=True, return_dict=True)
    ids = torch.tensor(enc["input_ids"])
    with torch.no_grad():
        emb = model.transformer.wte(ids) + model.transformer.wpe(torch.arange(ids.shape[1]))
    scale = float(emb.norm(dim=-1).mean())
    cfg = BEEARConfig(
        outer_steps=3,
        inner_steps=3,
        inner_lr=1.0,
        inner_warm_start=True,
        site="input",
        max_norm_ratio=0.5,
        num_threads=1,
    )
    est = BEEAR(cfg).fit(model, tok, SAFE, BAD, ANCHOR)
    # the bound is measured on the first batch (8 prompts of one template: same scale)
    assert est.result()["max_norm"] == pytest.approx(0.5 * scale, rel=0.1)
    assert all(h.delta_norm <= est.max_norm_ + 1e-5 for h in est.history_)
    assert est.history_[-1].delta_norm == pytest.approx(est.max_norm_, rel=1e-4)
    for bad, message in (
        ({"max_norm_ratio": 0.0}, "max_norm_ratio must be positive"),
        ({"max_norm_ratio": 1.0, "max_norm": 1.0}, "not both"),
    ):
        with pytest.raises(InvalidInput, match=message):
            BEEARConfig(**bad).validate()


def test_kl_anchor_keeps_the_models_own_distributions(tok) -> None:  # type: ignore[no-untyped-def]
    """``anchor_loss="kl"``: the reference is the model before training (KL 0 at the first
    step, full fine-tuning or LoRA), and the anchor conversations' next-token
    distributions move less than under the CE anchor at the same settings."""
    from databazaar.safety.beear import _collate, _encode, row_kl

    batch = _collate(_encode(tok, ANCHOR, 64, "anchor"), list(range(8)), 0, "prompt")
    original = _model(tok, "llama", seed=3)
    with torch.no_grad():
        ref_logits = original(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        ).logits[:, :-1]

    def drift_from_original(loss: str, lora: bool = False) -> tuple[BEEAR, float]:
        cfg = BEEARConfig(
            outer_steps=6,
            inner_steps=1,
            outer_lr=2e-2 if lora else 5e-3,
            anchor_weight=2.0,
            anchor_loss=loss,
            lora=lora,
            lora_r=4,
            num_threads=1,
        )
        est = BEEAR(cfg).fit(_model(tok, "llama", seed=3), tok, SAFE, BAD, ANCHOR)
        with torch.no_grad():
            kl = row_kl(est.model_, lambda b: ref_logits, batch).mean()
        return est, float(kl)

    kl_est, kl_moved = drift_from_original("kl")
    ce_est, ce_moved = drift_from_original("ce")
    assert kl_est.history_[0].anchor_ce == pytest.approx(0.0, abs=1e-6)
    assert ce_est.history_[0].anchor_ce > 1.0  # CE of answers a random model never saw
    assert kl_est.history_[-1].anchor_ce > 0.0  # the model moved; the reference did not
    assert 0.0 <= kl_moved < 0.5 * ce_moved
    lora_est, lora_moved = drift_from_original("kl", lora=True)
    assert lora_est.history_[0].anchor_ce == pytest.approx(0.0, abs=1e-6)
    assert lora_est.history_[-1].anchor_ce > 0.0 and lora_moved > 0.0
    with pytest.raises(InvalidInput, match="anchor_loss must be one of"):
        BEEARConfig(anchor_loss="mse").validate()


def test_layer_sweep_and_default_layer(tok) -> None:  # type: ignore[no-untyped-def]
    model = _model(tok, n_layer=3)
    assert check_layer(model, None) == 0 and check_layer(model, 2) == 2
    rows = layer_sweep(
        model,
        tok,
        SAFE,
        BAD,
        ANCHOR,
        layers=[0, 2],
        config=BEEARConfig(outer_steps=2, inner_steps=2, num_threads=1),
        evaluate=lambda m: {"params": sum(p.numel() for p in m.parameters())},
    )
    assert [r["layer"] for r in rows] == [0, 2]
    assert all(r["steps"] == 2 and r["surrogate"] > 0 and r["params"] > 0 for r in rows)


def test_token_swap_search_lowers_its_loss_and_unlearning_runs(tok) -> None:  # type: ignore[no-untyped-def]
    model = _model(tok, n_layer=1)
    res = search_suffix(model, tok, SAFE, BAD, SearchConfig(n_tokens=2, iterations=4, candidates=8))
    assert len(res.token_ids) == 2 and res.suffix
    assert res.history == sorted(res.history, reverse=True) and res.loss == res.history[-1]
    est = unlearn_suffix(model, tok, SAFE, BAD, ANCHOR, res.suffix, BEEARConfig(outer_steps=2))
    assert est.steps_ == 2 and not est.config.perturb


# --------------------------------------------------------------------- bad inputs
def test_bad_inputs_fail_clearly_and_leave_the_folder_untouched(tok, tmp_path) -> None:  # type: ignore[no-untyped-def]
    src = _folder(tok, tmp_path)
    before = _digest(src)
    out = tmp_path / "out"
    cases = [
        ((src, [], BAD, ANCHOR, out), "safe set is empty"),
        ((src, SAFE, [], ANCHOR, out), "unwanted set is empty"),
        ((src, SAFE, BAD[:5], ANCHOR, out), "8 conversations but the unwanted set 5"),
        ((src, SAFE, BAD[1:] + BAD[:1], ANCHOR, out), "conversation 0 answer different prompts"),
        ((src, SAFE, BAD, [], out), "anchor set is empty"),
        ((src, SAFE, [c[:1] for c in BAD], ANCHOR, out), "does not end with an assistant answer"),
        ((src, SAFE, BAD, ANCHOR, src / "cleaned"), "inside the input model folder"),
    ]
    for args, message in cases:
        with pytest.raises(InvalidInput, match=message):
            remove_backdoor(*args, FAST)
    with pytest.raises(InvalidInput, match=r"layer 2 is out of range: the model has 2 decoder"):
        remove_backdoor(src, SAFE, BAD, ANCHOR, out, BEEARConfig(layer=2))
    with pytest.raises(InvalidInput, match="layer -1 is out of range"):
        remove_backdoor(src, SAFE, BAD, ANCHOR, out, BEEARConfig(layer=-1))
    with pytest.raises(InvalidInput, match="inner_steps must be >= 0"):
        remove_backdoor(src, SAFE, BAD, ANCHOR, out, BEEARConfig(inner_steps=-1))
    assert _digest(src) == before and not out.exists()
    # folders that are not causal LMs
    from transformers import ViTConfig

    vit = tmp_path / "vit"
    ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2).save_pretrained(vit)
    vit_before = _digest(vit)
    with pytest.raises(InvalidInput, match="'vit' model, which is not a causal language model"):
        remove_backdoor(vit, SAFE, BAD, ANCHOR, out, FAST)
    assert _digest(vit) == vit_before
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "readme.txt").write_text("no model here")
    with pytest.raises(InvalidInput, match="holds no model"):
        remove_backdoor(notes, SAFE, BAD, ANCHOR, out, FAST)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(InvalidInput, match="does not load as a causal language model"):
        remove_backdoor(broken, SAFE, BAD, ANCHOR, out, FAST)
    with pytest.raises(NotFound, match="model folder not found"):
        remove_backdoor(tmp_path / "missing", SAFE, BAD, ANCHOR, out, FAST)
    assert not out.exists()
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(InvalidInput, match="exists and is not empty"):
        remove_backdoor(src, SAFE, BAD, ANCHOR, out, FAST)
    assert (out / "keep.txt").read_text() == "mine"


# ----------------------------------------------------------------------------- CLI
def test_cli_runs_and_reports_errors_in_one_line(tok, tmp_path) -> None:  # type: ignore[no-untyped-def]
    src = _folder(tok, tmp_path, "mistral")
    before = _digest(src)
    files = {}
    for name, convs in (("safe", SAFE), ("unwanted", BAD), ("anchor", ANCHOR)):
        files[name] = str(write_chat_jsonl(convs, tmp_path / f"{name}.jsonl"))
    base = ["safety", "beear", str(src), "--safe", files["safe"], "--unwanted", files["unwanted"]]
    base += ["--anchor", files["anchor"]]
    fast = ["--outer-steps", "2", "--inner-steps", "1", "--skip-shared", "--warm-start", "-q"]
    fast += ["--max-norm-ratio", "2", "--anchor-loss", "kl"]
    ok = runner.invoke(app, [*base, "-o", str(tmp_path / "out"), *fast])
    assert ok.exit_code == 0, ok.output
    assert "layer 0, 2 outer steps" in ok.output and "saved to" in ok.output
    result = json.loads((tmp_path / "out" / "beear_result.json").read_text())
    assert result["steps"] == 2 and result["config"]["inner_skip_shared"] is True
    assert result["config"]["inner_warm_start"] is True and result["max_norm"] > 0
    assert result["config"]["anchor_loss"] == "kl"
    short = tmp_path / "short.jsonl"
    write_chat_jsonl(BAD[:3], short)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    for args, message in (
        (["--layer", "9"], "layer 9 is out of range"),
        (["--unwanted", str(short)], "8 conversations but the unwanted set 3"),
        (["--safe", str(empty)], "holds no conversations"),
        (["--positions", "middle"], "positions must be one of"),
        (["--outer-schedule", "linear"], "outer_schedule must be one of"),
        (["--max-norm-ratio", "-1"], "max_norm_ratio must be positive"),
        (["--anchor-loss", "mse"], "anchor_loss must be one of"),
    ):
        res = runner.invoke(app, [*base, "-o", str(tmp_path / "bad"), *args])
        assert res.exit_code == 2, res.output
        assert message in res.output and "Traceback" not in res.output
        assert sum(x.startswith("error: ") for x in res.output.splitlines()) == 1
    assert _digest(src) == before and not (tmp_path / "bad").exists()


def test_staged_dir_writes_all_or_nothing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from databazaar.core.io import staged_dir

    final = tmp_path / "model"
    with staged_dir(final) as tmp:
        (tmp / "a.txt").write_text("one")
    assert (final / "a.txt").read_text() == "one"
    with pytest.raises(RuntimeError), staged_dir(final) as tmp:
        (tmp / "a.txt").write_text("two")
        raise RuntimeError("interrupted")
    assert (final / "a.txt").read_text() == "one"  # untouched by the failed write
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no temporary left


@pytest.mark.parametrize("architecture", ["gpt2", "llama", "mistral"])
def test_drift_at_the_block_input_moves_the_loss_on_each_architecture(tok, architecture) -> None:  # type: ignore[no-untyped-def]
    """``site="input"`` adds the drift to the hidden states entering the block (a
    forward pre-hook): it changes the loss when set, nothing when unset, and a fit runs."""
    from databazaar.safety.beear import _collate, _Drift, _encode

    model = _model(tok, architecture, seed=2)
    batch = _collate(_encode(tok, BAD, 64, "unwanted"), list(range(len(BAD))), 0, "prompt")
    drift = _Drift(decoder_layers(model)[0], "input")
    with torch.no_grad():
        plain = drift.ce(model, batch, None).mean()
        moved = drift.ce(model, batch, torch.linspace(-1.0, 1.0, 32)).mean()  # not constant:
        # a constant vector is invisible to LayerNorm
    drift.remove()
    with torch.no_grad():
        assert float(row_ce(model, batch).mean()) == pytest.approx(float(plain))
    assert abs(float(moved) - float(plain)) > 1e-3
    est = BEEAR(FAST, site="input", inner_answer_tokens=2).fit(model, tok, SAFE, BAD, ANCHOR)
    assert est.steps_ == 1 and est.history_[0].delta_norm > 0
    with pytest.raises(InvalidInput, match="site"):
        BEEARConfig(site="middle").validate()


def test_inner_window_can_start_where_safe_and_unwanted_answers_part(tok) -> None:  # type: ignore[no-untyped-def]
    """Answers that open alike ("Sure, here is ..." vs "Sure, here is a plan."): with
    ``inner_skip_shared`` the inner window starts at the first token that differs; pairs
    that differ from the first token keep the window at the answer's start."""
    from databazaar.safety.beear import _collate, _encode, shared_answer_prefix

    alike = [
        [conv[0], {"role": "assistant", "content": "Sure, here is nothing."}] for conv in BAD[:2]
    ]
    enc_bad = _encode(tok, BAD[:2], None, "unwanted")
    enc_alike = _encode(tok, alike, None, "safe")
    enc_refuse = _encode(tok, SAFE[:2], None, "safe")
    shared = shared_answer_prefix(enc_alike, enc_bad)
    comply = tok(COMPLY, add_special_tokens=False)["input_ids"]
    nothing = tok("Sure, here is nothing.", add_special_tokens=False)["input_ids"]
    n = next(i for i, (a, b) in enumerate(zip(comply, nothing, strict=False)) if a != b)
    assert n >= 2 and shared == [n, n]
    assert shared_answer_prefix(enc_refuse, enc_bad) == [0, 0]
    plain = _collate(enc_bad, [0, 1], 0, "prompt", head=2)
    moved = _collate(enc_bad, [0, 1], 0, "prompt", head=2, skip=shared)
    for batch, start in ((plain, 0), (moved, n)):
        for j in range(2):
            ids = batch["input_ids"][j][batch["head"][j] == 1].tolist()
            assert ids == comply[start : start + 2]
    assert torch.equal(moved["answer"], plain["answer"])  # the outer loss is unchanged
    # identical answers (content + EOS) skip all but their last token, which stays scored
    same = _encode(tok, BAD[:1], None, "safe")
    assert shared_answer_prefix(same, _encode(tok, BAD[:1], None, "unwanted")) == [len(comply)]
    fit = BEEAR(
        BEEARConfig(**{**FAST.to_dict(), "inner_skip_shared": True, "inner_answer_tokens": 2})
    )
    model = _model(tok)
    fit.fit(model, tok, alike * 2, BAD[:2] * 2)
    assert fit.steps_ == 1 and fit.surrogate_[0] > 0
