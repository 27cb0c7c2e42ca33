"""UE methods on a model's internals: Mahalanobis, RDE and P(True) give LM-Polygraph
0.7.0's numbers, the token-level ensemble measures match a step-by-step computation, the
statistics come from a real model (the zoo's tiny assistant), and bad input names the
method."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import entropy
from test_ue_estimators import lm_polygraph_or_skip  # type: ignore[import-not-found]

from databazaar.core.errors import InvalidInput
from databazaar.lm.generate import Generation
from databazaar.lm.local_backend import LocalModelBackend
from databazaar.uncertainty import estimate_all, generate_outputs, get_estimator, task_items
from databazaar.uncertainty.crosscheck import compare
from databazaar.uncertainty.estimators import UEOutputs
from databazaar.uncertainty.internals import (
    PTRUE_PROMPT,
    Mahalanobis,
    add_embeddings,
    add_ptrue,
    add_token_ensemble,
    token_ensemble_measures,
)
from databazaar.uncertainty.runner import outputs_from_records


def with_stats(n: int, d: int = 24, seed: int = 0) -> list[UEOutputs]:
    rng = np.random.default_rng(seed)
    scale = np.linspace(0.5, 2.0, d)
    return [
        UEOutputs(
            f"q{i}",
            Generation(text=f"answer {i % 4}", tokens=["a"], token_logprobs=[-0.2]),
            embedding=list(rng.normal(size=d) * scale + (3.0 if i % 7 == 0 else 0.0)),
            ptrue_logprob=float(-rng.gamma(1.0)),
        )
        for i in range(n)
    ]


def test_mahalanobis_by_hand() -> None:
    train = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0], [2.0, 4.0]])
    md = Mahalanobis().fit(train)
    # centroid (1, 2); unbiased variances 4/3 and 16/3, no covariance
    out = UEOutputs("q", Generation(text="x"), embedding=[3.0, 2.0])
    assert md.estimate([out])[0] == pytest.approx(2.0 / math.sqrt(4 / 3), rel=1e-9)
    far = UEOutputs("q", Generation(text="x"), embedding=[1.0, 10.0])
    assert md.estimate([far])[0] == pytest.approx(8.0 / math.sqrt(16 / 3), rel=1e-9)


@pytest.mark.slow  # ~30-60 s: LM-Polygraph's import, and MinCovDet in 100 dimensions twice
def test_density_and_ptrue_match_lm_polygraph() -> None:
    python = lm_polygraph_or_skip()
    test, train = with_stats(25, seed=1), with_stats(140, seed=2)
    res = compare(test, [], python, methods=("PTrue", "Mahalanobis", "RDE"), train_outputs=train)
    assert res["not_checked"] == []
    assert res["method_max_abs_diff"]["PTrue"] == 0.0
    assert res["method_max_abs_diff"]["RDE"] <= 1e-9
    # LM-Polygraph inverts the covariance in float32
    assert res["method_max_rel_diff"]["Mahalanobis"] <= 1e-5


def reference_token_measures(lp: np.ndarray, answer: list[int]) -> dict[str, list[float]]:
    """Step by step as an ensemble decoder does it (Malinin and Gales, 2021)."""
    m, steps, _ = lp.shape
    hypo = np.zeros(m)
    out: dict[str, list[float]] = {}
    for t in range(steps):
        probs = np.exp(lp[:, t])
        du = float(np.mean([entropy(p) for p in probs]))
        av_logs = lp[:, t].mean(0)
        pe = np.exp(logsumexp(lp[:, t], axis=0) - np.log(m))
        ep = np.exp(logsumexp(lp[:, t] + hypo[:, None], axis=0) - logsumexp(hypo))
        for mode, p in (("pe", pe), ("ep", ep)):
            tu = float(entropy(p))
            cross = float(-(av_logs * p).sum())
            for k, v in (
                ("tu", tu),
                ("du", du),
                ("mi", tu - du),
                ("epkl", cross - du),
                ("rmi", cross - tu),
            ):
                out.setdefault(f"{mode}_{k}", []).append(v)
        hypo = hypo + lp[:, t, answer[t]]
    return out


def test_token_level_measures_step_by_step() -> None:
    rng = np.random.default_rng(4)
    logits = rng.normal(0, 2, (3, 5, 11))
    lp = logits - logsumexp(logits, axis=-1, keepdims=True)
    answer = [int(i) for i in rng.integers(0, 11, 5)]
    ours, ref = token_ensemble_measures(lp, answer), reference_token_measures(lp, answer)
    assert set(ours) == set(ref) and len(ours) == 10
    for k in ref:
        np.testing.assert_allclose(ours[k], ref[k], rtol=1e-10, atol=1e-12, err_msg=k)
    # members that agree: no epistemic part; EP and PE coincide
    same = token_ensemble_measures(np.stack([lp[0], lp[0]]), answer)
    np.testing.assert_allclose(same["pe_mi"], 0.0, atol=1e-12)
    np.testing.assert_allclose(same["ep_rmi"], 0.0, atol=1e-12)
    np.testing.assert_allclose(same["pe_tu"], [entropy(np.exp(r)) for r in lp[0]], rtol=1e-10)
    o = UEOutputs("q", Generation(text="x"), token_ensemble=ours)
    r = estimate_all([o], ["PETtu", "EPTrmi"])
    assert r["PETtu"][0] == pytest.approx(np.mean(ref["pe_tu"]))
    assert r["EPTrmi"][0] == pytest.approx(np.mean(ref["ep_rmi"]))
    with pytest.raises(InvalidInput, match="one step per answer token"):
        token_ensemble_measures(lp, answer[:3])


def test_bad_input_names_the_method() -> None:
    bare = UEOutputs("q", Generation(text="x", token_logprobs=[-1.0], tokens=["x"]))
    with pytest.raises(InvalidInput, match="Mahalanobis needs embedding: output 0"):
        get_estimator("Mahalanobis").estimate([bare])
    with pytest.raises(InvalidInput, match="PTrue needs ptrue: output 0"):
        get_estimator("PTrue").estimate([bare])
    with pytest.raises(InvalidInput, match="EPTtu needs token_ensemble: output 0"):
        get_estimator("EPTtu").estimate([bare])
    outs = with_stats(5)
    with pytest.raises(InvalidInput, match="RDE needs train_embeddings: no training outputs"):
        estimate_all(outs, ["MSP", "RDE"])
    with pytest.raises(InvalidInput, match="Mahalanobis needs train_embeddings: it is not fitted"):
        get_estimator("Mahalanobis").estimate(outs)
    with pytest.raises(InvalidInput, match="Mahalanobis: embeddings of size 24 but the density"):
        Mahalanobis().fit(np.ones((4, 3)) + np.eye(4, 3)).estimate(outs)
    with pytest.raises(InvalidInput, match="at least 2 rows"):
        Mahalanobis().fit(np.ones((1, 3)))
    with pytest.raises(InvalidInput, match="NaN"):
        Mahalanobis().fit(np.full((3, 2), np.nan))
    nan_emb = UEOutputs("q", Generation(text="x"), embedding=[float("nan")] * 24)
    with pytest.raises(InvalidInput, match="Mahalanobis needs embedding"):
        estimate_all([nan_emb], ["Mahalanobis"], train_outputs=outs)
    with pytest.raises(InvalidInput, match="'embedding' must be a list of numbers"):
        outputs_from_records([{"input": "q", "output": "x", "embedding": "no"}])
    with pytest.raises(InvalidInput, match="'ptrue_logprob' must be a number"):
        outputs_from_records([{"input": "q", "output": "x", "ptrue_logprob": [1]}])
    with pytest.raises(InvalidInput, match="'token_ensemble' must map"):
        outputs_from_records([{"input": "q", "output": "x", "token_ensemble": {"pe_tu": []}}])


@pytest.mark.slow  # uses the session's tiny zoo build
def test_statistics_from_a_real_model(tiny_zoo) -> None:  # type: ignore[no-untyped-def]
    import torch
    from transformers import GenerationConfig

    model = LocalModelBackend(tiny_zoo.assistant_dir, num_threads=1)
    items = task_items(3, random_state=5)
    outs = generate_outputs(model, items, n_samples=0, max_new_tokens=10, top_logprobs=0)
    add_embeddings(model, outs)
    add_ptrue(model, outs)
    add_token_ensemble(outs, [model, model])
    # the embedding is the mean last hidden state over the prompt and the fed-back answer
    # tokens, as the hidden states of generate() give them
    o = outs[0]
    prompt = model.prompt_ids([{"role": "user", "content": o.input}])
    n_new = len(o.output.token_ids)
    cfg = GenerationConfig(
        max_new_tokens=n_new,
        do_sample=False,
        eos_token_id=model.eos_token_ids,
        pad_token_id=model.eos_token_ids[0],
        output_hidden_states=True,
        output_logits=True,
        return_dict_in_generate=True,
    )
    with torch.no_grad():
        res = model.model.generate(
            torch.tensor([prompt]),
            attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
            generation_config=cfg,
        )
    assert res.sequences[0, len(prompt) :].tolist() == o.output.token_ids
    states = [res.hidden_states[0][-1][0]] + [h[-1][0] for h in res.hidden_states[1:]]
    want = torch.cat(states)[: len(prompt) + n_new - 1].mean(0)
    np.testing.assert_allclose(o.embedding, want.numpy(), rtol=1e-4, atol=1e-5)
    # P(True) is the model's log-probability of "True" after the prompt
    text = PTRUE_PROMPT.format(q=o.input, a=o.output.text)
    lp = model.loglikelihood([{"role": "user", "content": text}], ["True"], add_eos=False)[0]
    assert o.ptrue_logprob == pytest.approx(lp) and lp < 0
    # one model twice: no disagreement, and the total uncertainty at each step is the
    # entropy of the model's next-token distribution during generation
    for out in outs:
        assert max(abs(v) for v in out.token_ensemble["pe_mi"]) < 1e-6
        assert len(out.token_ensemble["ep_tu"]) == len(out.output.token_ids)
    step_logp = torch.log_softmax(torch.stack(res.logits, dim=1)[0].double(), dim=-1)
    entropies = -(step_logp.exp() * step_logp).sum(-1).numpy()
    np.testing.assert_allclose(o.token_ensemble["pe_tu"], entropies, rtol=1e-4, atol=1e-5)
    r = estimate_all(outs, ["Mahalanobis", "PTrue", "EPTmi"], train_outputs=outs + outs)
    assert all(np.isfinite(v).all() for v in r.values())
