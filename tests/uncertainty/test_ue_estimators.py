"""UE methods: hand-computed numbers, every bad input naming the method, and the same
numbers as LM-Polygraph 0.7.0 on a shared case (PRR to 1e-9)."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from databazaar.core.errors import InvalidInput
from databazaar.lm.generate import Generation
from databazaar.uncertainty.crosscheck import INTERNAL_METHODS, METHODS, compare, polygraph_python
from databazaar.uncertainty.estimators import (
    ESTIMATORS,
    UEOutputs,
    ensemble_measures,
    estimate_all,
    get_estimator,
    semantic_classes,
)
from databazaar.uncertainty.internals import TOKEN_ESTIMATORS

POOL = [
    "Ana lives in Oslo.",
    "Ana lives in Rome.",
    "Ana lives in Oslo now.",
    "Ben likes tea.",
    "Ben likes hot tea.",
    "Cy owns a cat.",
    "the the the",
]


def sample(text: str, lps: list[float]) -> Generation:
    return Generation(text=text, tokens=[f"t{i}" for i in range(len(lps))], token_logprobs=lps)


def shared_case(n: int = 12, k: int = 5, seed: int = 3) -> list[UEOutputs]:
    rng = np.random.default_rng(seed)
    outs = []
    for i in range(n):
        steps = int(rng.integers(2, 6))
        lps = list(-rng.gamma(1.0, 0.7, steps))
        tops = []
        for s in range(steps):
            alt = -rng.gamma(1.0, 1.5, 4)
            tops.append([("tok", lps[s])] + [(f"a{s}{j}", float(v)) for j, v in enumerate(alt)])
        greedy = Generation(
            text=str(rng.choice(POOL)),
            tokens=[f"g{j}" for j in range(steps)],
            token_logprobs=lps,
            top_logprobs=tops,
        )
        samples = [
            sample(
                str(rng.choice(POOL[: 2 + i % 5])), list(-rng.gamma(1.0, 0.8, rng.integers(1, 6)))
            )
            for _ in range(k)
        ]
        members = [list(-rng.gamma(2.0, 2.0, k)) for _ in range(3)]
        outs.append(UEOutputs(f"input {i}", greedy, samples, members))
    return outs


def test_white_box_by_hand() -> None:
    g = Generation(
        text="x",
        tokens=["a", "b"],
        token_logprobs=[-0.5, -1.0],
        top_logprobs=[[("a", math.log(0.5)), ("c", math.log(0.5))], [("b", 0.0)]],
    )
    s = [sample("x", [-1.0, -1.0]), sample("y", [-3.0])]
    o = UEOutputs("p", g, s)
    r = estimate_all([o], ["MSP", "Perplexity", "MeanTokenEntropy", "MonteCarloSequenceEntropy"])
    assert r["MSP"][0] == pytest.approx(1.5)
    assert r["Perplexity"][0] == pytest.approx(0.75)
    assert r["MeanTokenEntropy"][0] == pytest.approx(math.log(2) / 2)  # H = ln 2, then 0
    assert r["MonteCarloSequenceEntropy"][0] == pytest.approx(2.5)  # -(-2 - 3) / 2
    norm = get_estimator("MonteCarloNormalizedSequenceEntropy").estimate([o])[0]
    assert norm == pytest.approx(2.0)  # -(-1 - 3) / 2


def test_black_box_by_hand() -> None:
    same = [sample("Ana lives in Oslo.", [-1.0])] * 4
    two = [sample("Ana lives in Oslo.", [-1.0])] * 2 + [sample("Ben likes tea.", [-2.0])] * 2
    outs = [UEOutputs("a", same[0], same), UEOutputs("b", two[0], two)]
    r = estimate_all(
        outs, ["LexicalSimilarity", "NumSemSets", "EigValLaplacian", "SemanticEntropy"]
    )
    assert r["LexicalSimilarity"].tolist() == pytest.approx([-1.0, -1 / 3])
    assert r["NumSemSets"].tolist() == [1.0, 2.0]
    # one complete graph: L has eigenvalues 0, 1, 1, 1 -> 1; two blocks of 2: 0, 0, 1, 1 -> 2
    assert r["EigValLaplacian"].tolist() == pytest.approx([1.0, 2.0])
    # two classes with log p = log(2 e^-1) and log(2 e^-2), each weighted by its 2 samples
    want = -np.mean([math.log(2) - 1, math.log(2) - 1, math.log(2) - 2, math.log(2) - 2])
    assert r["SemanticEntropy"][1] == pytest.approx(want)
    assert semantic_classes(np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]], dtype=bool)) == [0, 1, 0]


def test_ensemble_by_hand() -> None:
    lp = np.log([[0.5, 0.25], [0.25, 0.25]])  # 2 members x 2 candidates
    m = ensemble_measures(lp)
    pbar = np.array([0.375, 0.25])
    w = pbar / pbar.sum()
    assert m["tu"] == pytest.approx(-(pbar * w).sum())
    terms = (np.log(pbar)[None, :] - lp) * w[None, :]
    assert m["rmi"] == pytest.approx(terms.sum(1).mean())
    assert m["rmi_abs"] == pytest.approx(np.abs(terms).sum(1).mean())
    same = ensemble_measures(np.log([[0.5, 0.25], [0.5, 0.25]]))
    assert same["rmi"] == pytest.approx(0.0, abs=1e-12)  # members agree: no disagreement


def test_bad_input_names_the_method() -> None:
    no_lp = UEOutputs("p", Generation(text="x"), [Generation(text="a"), Generation(text="b")])
    with pytest.raises(InvalidInput, match="MSP needs logprobs: output 0"):
        get_estimator("MSP").estimate([no_lp])
    with pytest.raises(InvalidInput, match="MeanTokenEntropy needs logprobs"):
        get_estimator("MeanTokenEntropy").estimate([no_lp])
    with pytest.raises(InvalidInput, match="MonteCarloSequenceEntropy needs sample_logprobs"):
        get_estimator("MonteCarloSequenceEntropy").estimate([no_lp])
    one = UEOutputs("p", Generation(text="x"), [Generation(text="a")])
    with pytest.raises(InvalidInput, match="LexicalSimilarity needs samples: output 0"):
        get_estimator("LexicalSimilarity").estimate([one])
    with pytest.raises(InvalidInput, match="EnsembleTU needs members"):
        get_estimator("EnsembleTU").estimate([no_lp])
    bad_members = UEOutputs("p", Generation(text="x"), no_lp.samples, [[-1.0], [-2.0]])
    with pytest.raises(InvalidInput, match="EnsembleRMI needs members"):
        get_estimator("EnsembleRMI").estimate([bad_members])
    with pytest.raises(InvalidInput, match="unknown uncertainty method 'nope'"):
        get_estimator("nope")
    with pytest.raises(InvalidInput, match="EigValLaplacian: no outputs"):
        get_estimator("EigValLaplacian").estimate([])
    with pytest.raises(InvalidInput, match="unknown relation"):
        get_estimator("NumSemSets", relation="cosine")
    # all methods are checked before any runs
    with pytest.raises(InvalidInput, match="MSP needs logprobs"):
        estimate_all([no_lp], ["LexicalSimilarity", "MSP"])
    assert get_estimator("msp").name == "MSP"
    token_level = {c.name for c in TOKEN_ESTIMATORS}
    assert set(ESTIMATORS) == set(METHODS) | set(INTERNAL_METHODS) | token_level


def lm_polygraph_or_skip() -> str:
    python = polygraph_python()
    if python is None:
        from ci_rules import skip_or_fail  # type: ignore[import-not-found]

        skip_or_fail("LM-Polygraph not installed here and no peer venv (see docs/uncertainty.md)")
    if os.environ.get("DATABAZAAR_LMPOLYGRAPH_PYTHON"):
        assert os.path.exists(python), f"DATABAZAAR_LMPOLYGRAPH_PYTHON={python} does not exist"
    return python


@pytest.mark.slow  # ~15 s: LM-Polygraph's import pulls torch and transformers
def test_same_numbers_as_lm_polygraph() -> None:
    python = lm_polygraph_or_skip()
    outs = shared_case()
    rng = np.random.default_rng(9)
    q = rng.random(30)
    cases = [
        (-q + rng.normal(0, 0.3, 30), q),
        (rng.random(30), rng.integers(0, 3, 30).astype(float)),  # ties in the metric
        (np.round(rng.random(25), 1), rng.random(25)),  # ties in the uncertainty
    ]
    res = compare(outs, cases, python)
    assert res["prr_max_abs_diff"] <= 1e-9, res
    for m, d in res["method_max_abs_diff"].items():
        # LM-Polygraph takes log M of the ensemble size in float32 (torch.tensor(M).log()),
        # so its ensemble numbers carry float32 rounding (~5e-9); ours are float64
        assert d <= (1e-7 if m.startswith("Ensemble") else 1e-9), (m, d)
    assert sum(d <= 1e-9 for d in res["method_max_abs_diff"].values()) >= 10


@pytest.mark.slow  # ~10 s quiet (loads MiniLM's tokenizer, saves two small models)
def test_nli_relation_reads_the_models_probabilities(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A user's NLI cross-encoder (here a randomly initialised tiny BERT with NLI labels,
    saved to a folder): every ordered pair, the diagonal included, premise first."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from databazaar.core.embeddings import load_sentence_model
    from databazaar.uncertainty.similarity import get_relation

    tok = load_sentence_model().tokenizer
    labels = {0: "CONTRADICTION", 1: "NEUTRAL", 2: "ENTAILMENT"}
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=3,
        id2label=labels,
        label2id={v: k for k, v in labels.items()},
    )
    model = BertForSequenceClassification(cfg).eval()
    model.save_pretrained(tmp_path / "nli")
    tok.save_pretrained(tmp_path / "nli")
    rel = get_relation(f"nli:{tmp_path / 'nli'}")
    texts = ["Jon works as a baker.", "Jon works as a pilot.", "Ana likes cake."]
    entail, contra, is_entail = rel.matrices([texts, texts[:2]])[0]
    with torch.no_grad():
        enc = tok(texts[2], texts[0], return_tensors="pt")
        p = torch.softmax(model(**enc).logits, -1)[0].numpy()
    assert entail[2, 0] == pytest.approx(p[2], abs=1e-6)
    assert contra[2, 0] == pytest.approx(p[0], abs=1e-6)
    assert is_entail[2, 0] == (int(np.argmax(p)) == 2)
    assert entail.shape == (3, 3) and np.all((entail > 0) & (entail < 1))
    r = estimate_all(
        [UEOutputs("q", Generation(text="x"), [sample(t, [-1.0]) for t in texts])],
        ["NumSemSets", "EigValLaplacian"],
        relation=rel,
    )
    assert 1 <= r["NumSemSets"][0] <= 3 and np.isfinite(r["EigValLaplacian"][0])
    # SummaC-ZS with the same model: best entail - contradict over source sentences
    from databazaar.uncertainty.metrics import MetricData, get_metric, metric_group

    def margin(premise: str, hypothesis: str) -> float:
        with torch.no_grad():
            enc = tok(premise, hypothesis, return_tensors="pt")
            q = torch.softmax(model(**enc).logits, -1)[0].numpy()
        return float(q[2] - q[0])

    summac = get_metric(f"summac_nli:{tmp_path / 'nli'}")
    src = ["Jon works as a pilot.", "Ana likes cake."]
    data = MetricData(outputs=[texts[0] + " " + texts[2], ""], sources=[" ".join(src), "x."])
    want = np.mean([max(margin(p, h) for p in src) for h in (texts[0], texts[2])])
    assert summac.score(data).tolist() == pytest.approx([want, 0.0], abs=1e-6)
    assert metric_group(summac.name) == "consistency"
    with pytest.raises(InvalidInput, match="needs sources"):
        summac.score(MetricData(outputs=["x"]))
    with pytest.raises(InvalidInput, match=r"no config\.json"):
        get_relation(f"nli:{tmp_path / 'missing'}")
    cfg.id2label, cfg.label2id = {0: "A", 1: "B", 2: "C"}, {"A": 0, "B": 1, "C": 2}
    BertForSequenceClassification(cfg).save_pretrained(tmp_path / "plain")
    tok.save_pretrained(tmp_path / "plain")
    with pytest.raises(InvalidInput, match="without entailment and contradiction"):
        get_relation(f"nli:{tmp_path / 'plain'}")
