"""Quality metrics for generated summaries, in UE-TS's five groups (higher is better).

UE-TS (He et al., 2024, Sec. 3.2) judges uncertainty against 31 NLG metrics grouped by the
quality dimension they measure (SummEval's relevance, consistency, coherence, fluency,
plus overall). This registry has offline metrics in every group, four LLM-judge prompt
variants per group through any OpenAI-compatible backend, and human labels:

relevance
    ``rougeL``, ``rouge1`` (F-measure vs the reference, stemmed; Lin, 2004); ``chrf``
    (Popovic, 2015; ``sacrebleu``); ``fact_recall`` (share of the item's key facts that
    appear in the output, the task suite's grader); ``embed_spearman`` / ``embed_kendall``
    (rank correlation between the output's and the reference's MiniLM embeddings, UE-TS's
    ``correlation_*`` metrics with MiniLM in place of distiluse).
consistency
    ``source_support``: share of the output's words found in the source (1 - the rate of
    unsupported words); ``summac_minilm``: SummaC-ZS-style sentence alignment (Laban et
    al., 2022) with MiniLM cosine in place of NLI entailment: mean over output sentences of
    the best match among source sentences; ``novel_bigram_free``: share of the output's
    word bigrams that occur in the source.
coherence
    ``non_repetition``: 1 - share of repeated word bigrams; ``distinct_words``: distinct
    words / words.
fluency
    ``well_formed``: share of four surface checks passed (starts with a capital, ends
    with sentence punctuation, no word doubled in a row, at least one word);
    ``vocab_rate``: share of words that are whole words in MiniLM's WordPiece vocabulary.
overall
    ``bertscore_minilm``: BERTScore F1 (Zhang et al., 2020) with MiniLM's contextual
    token embeddings; ``bleu``: sentence BLEU (Papineni et al., 2002; ``sacrebleu``).
judges
    ``judge:<group>:<variant>`` for the five groups and UE-TS's four prompt variants:
    ``plain`` (output and reference, 1-5, no definition), ``def`` (output and reference,
    with a definition of the aspect, 1-10), ``def_source`` (output and source) and
    ``def_both`` (output, source and reference). The first number in the judge's answer
    in range is the score; anything else is NaN (left out of PRR).
NLI
    ``summac_nli:<folder>`` (consistency): SummaC-ZS (Laban et al., 2022) with an NLI
    cross-encoder the user supplies (the ``nli:<folder>`` relation's model): for each
    output sentence the best ``p(entail) - p(contradict)`` over source sentences as
    premises, averaged over the output's sentences (0 for an empty output).
human
    ``human:<field>``: a label the data carries per item (e.g. TofuEval's consistency).
"""

from __future__ import annotations

import abc
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from databazaar.core.errors import InvalidInput

GROUPS = ("relevance", "consistency", "coherence", "fluency", "overall")
JUDGE_VARIANTS = ("plain", "def", "def_source", "def_both")
_WORD = re.compile(r"[A-Za-z0-9']+")
_SENT = re.compile(r"(?<=[.!?])\s+")


@dataclass
class MetricData:
    """What the metrics see: outputs and, per item, source, reference, facts and labels."""

    outputs: list[str]
    sources: list[str] | None = None
    references: list[str] | None = None
    facts: list[list[str]] | None = None
    labels: dict[str, list[float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.outputs)
        for name in ("sources", "references", "facts"):
            v = getattr(self, name)
            if v is not None and len(v) != n:
                raise InvalidInput(f"{n} outputs but {len(v)} {name}")
        for k, v in self.labels.items():
            if len(v) != n:
                raise InvalidInput(f"{n} outputs but {len(v)} values of label {k!r}")


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def _sentences(text: str) -> list[str]:
    return [s for s in _SENT.split(text.strip()) if s.strip()]


class Metric(abc.ABC):
    """One quality metric; ``needs`` names the fields of :class:`MetricData` it reads."""

    name: str
    group: ClassVar[str] = "overall"
    needs: ClassVar[tuple[str, ...]] = ()

    def score(self, data: MetricData) -> np.ndarray:
        """One value per output (NaN where undefined); checks the needed fields first."""
        for need in self.needs:
            if getattr(data, need) is None:
                raise InvalidInput(
                    f"metric {self.name} needs {need}, but none were given",
                    hint=f"add a {need[:-1] if need.endswith('s') else need} to every item "
                    "or leave this metric out",
                )
        return np.asarray(self._score(data), dtype=float)

    @abc.abstractmethod
    def _score(self, data: MetricData) -> Sequence[float]: ...


class _PerItem(Metric):
    """A metric computed item by item from (output, source, reference, facts)."""

    def __init__(self, name: str, group: str, needs: tuple[str, ...], fn) -> None:  # type: ignore[no-untyped-def]
        self.name, self._fn = name, fn
        self.group, self.needs = group, needs  # type: ignore[misc]

    def _score(self, data: MetricData) -> list[float]:
        n = len(data.outputs)
        src = data.sources or [""] * n
        ref = data.references or [""] * n
        facts = data.facts or [[] for _ in range(n)]
        return [
            float(self._fn(o, s, r, f))
            for o, s, r, f in zip(data.outputs, src, ref, facts, strict=True)
        ]


# ------------------------------------------------------------------- item functions
def _rouge(kind: str):  # type: ignore[no-untyped-def]
    from databazaar.uncertainty.similarity import rouge_f

    return lambda o, s, r, f: rouge_f(r, o, kind)


def _chrf(o: str, s: str, r: str, f: Any) -> float:
    import sacrebleu

    return sacrebleu.sentence_chrf(o, [r]).score / 100.0


def _bleu(o: str, s: str, r: str, f: Any) -> float:
    import sacrebleu

    return sacrebleu.sentence_bleu(o, [r]).score / 100.0


def _fact_recall(o: str, s: str, r: str, facts: Sequence[str]) -> float:
    from databazaar.lm.tasks import fact_recall

    return fact_recall(facts, o) if facts else float("nan")


def _source_support(o: str, s: str, r: str, f: Any) -> float:
    words = _words(o)
    if not words:
        return 0.0
    src = set(_words(s))
    return sum(w in src for w in words) / len(words)


def _bigrams(words: list[str]) -> list[tuple[str, str]]:
    return list(itertools.pairwise(words))


def _novel_bigram_free(o: str, s: str, r: str, f: Any) -> float:
    grams = _bigrams(_words(o))
    if not grams:
        return _source_support(o, s, r, f)
    src = set(_bigrams(_words(s)))
    return sum(g in src for g in grams) / len(grams)


def _non_repetition(o: str, s: str, r: str, f: Any) -> float:
    grams = _bigrams(_words(o))
    if not grams:
        return 1.0 if _words(o) else 0.0
    return 1.0 - (len(grams) - len(set(grams))) / len(grams)


def _distinct_words(o: str, s: str, r: str, f: Any) -> float:
    words = _words(o)
    return len(set(words)) / len(words) if words else 0.0


def _well_formed(o: str, s: str, r: str, f: Any) -> float:
    text = o.strip()
    words = _words(text)
    checks = [
        bool(text) and text[0].isupper(),
        text.endswith((".", "!", "?")),
        all(a != b for a, b in itertools.pairwise(words)),
        bool(words),
    ]
    return sum(checks) / len(checks)


# ----------------------------------------------------------------- MiniLM metrics
class _Embedding(Metric):
    """Metrics over MiniLM sentence embeddings of the outputs and the references."""

    needs = ("references",)
    group = "relevance"

    def __init__(self, name: str, kind: str) -> None:
        self.name, self.kind = name, kind

    def _score(self, data: MetricData) -> list[float]:
        from scipy.stats import kendalltau, spearmanr

        from databazaar.core.embeddings import MiniLMEmbedder

        emb = MiniLMEmbedder()
        a = emb.encode(data.outputs)
        b = emb.encode(data.references or [])
        f = spearmanr if self.kind == "spearman" else kendalltau
        return [float(f(x, y).statistic) for x, y in zip(a, b, strict=True)]


class SummaCMiniLM(Metric):
    """Mean over output sentences of the best MiniLM cosine to a source sentence."""

    name, group, needs = "summac_minilm", "consistency", ("sources",)

    def _score(self, data: MetricData) -> list[float]:
        from databazaar.core.embeddings import MiniLMEmbedder

        emb = MiniLMEmbedder()
        out_s = [_sentences(o) for o in data.outputs]
        src_s = [_sentences(s) or [s] for s in data.sources or []]
        vo = emb.encode([x for xs in out_s for x in xs])
        vs = emb.encode([x for xs in src_s for x in xs])
        res, i, j = [], 0, 0
        for os_, ss in zip(out_s, src_s, strict=True):
            a, b = vo[i : i + len(os_)], vs[j : j + len(ss)]
            i, j = i + len(os_), j + len(ss)
            res.append(float((a @ b.T).max(axis=1).mean()) if len(os_) else 0.0)
        return res


class BERTScoreMiniLM(Metric):
    """BERTScore F1: greedy cosine matching of contextual token embeddings (MiniLM)."""

    name, group, needs = "bertscore_minilm", "overall", ("references",)

    def _score(self, data: MetricData) -> list[float]:
        from databazaar.core.embeddings import load_sentence_model

        model = load_sentence_model()
        refs = data.references or []

        def tokens(texts: list[str]) -> list[np.ndarray]:
            raw = model.encode(texts, output_value="token_embeddings", show_progress_bar=False)
            out = []
            for t in raw:
                v = np.asarray(t, dtype=float)[1:-1]  # drop [CLS] and [SEP]
                norms = np.linalg.norm(v, axis=1, keepdims=True)
                out.append(v / np.where(norms == 0, 1, norms))
            return out

        hyp, ref = tokens(list(data.outputs)), tokens(list(refs))
        res = []
        for h, r in zip(hyp, ref, strict=True):
            if not len(h) or not len(r):
                res.append(0.0)
                continue
            sim = h @ r.T
            p, rc = sim.max(axis=1).mean(), sim.max(axis=0).mean()
            res.append(float(2 * p * rc / (p + rc)) if p + rc > 0 else 0.0)
        return res


class VocabRate(Metric):
    """Share of the output's words that are whole words of MiniLM's WordPiece vocabulary."""

    name, group = "vocab_rate", "fluency"

    def _score(self, data: MetricData) -> list[float]:
        from databazaar.core.embeddings import load_sentence_model

        vocab = load_sentence_model().tokenizer.get_vocab()
        res = []
        for o in data.outputs:
            words = _words(o)
            res.append(sum(w in vocab for w in words) / len(words) if words else 0.0)
        return res


# ------------------------------------------------------------------------- judges
_DEFINITIONS = {
    "relevance": "how well the summary keeps the important content of the source and "
    "leaves out what is unimportant",
    "consistency": "whether every statement in the summary is backed by the source, with "
    "no invented or contradicted facts",
    "coherence": "whether the summary is well organised, with sentences that follow from "
    "one another",
    "fluency": "whether each sentence is grammatical, well written and easy to read",
    "overall": "the overall quality of the summary, taking relevance, consistency, "
    "coherence and fluency together",
}


def judge_prompt(group: str, variant: str, output: str, source: str, reference: str) -> str:
    """The judge prompt for one output (our wording of UE-TS's four variants)."""
    if variant == "plain":
        return (
            f"Generated summary: {output}\nOriginal text: {reference}\n"
            f"Rate the {group} of the generated summary on a scale from 1 to 5, "
            "higher is better. Reply with the number only."
        )
    parts = [f"Generated summary: {output}"]
    if variant in ("def_source", "def_both"):
        parts.append(f"Source text: {source}")
    if variant in ("def", "def_both"):
        parts.append(f"Reference summary: {reference}")
    parts.append(
        f"Rate the {group} of the generated summary on a scale from 1 to 10, higher is "
        f"better. {group.capitalize()} means {_DEFINITIONS[group]}. Reply with the number only."
    )
    return "\n".join(parts)


def parse_judge_score(text: str, top: int) -> float:
    """The first number in ``text`` within ``[1, top]``, else NaN."""
    for m in re.finditer(r"-?\d+(?:\.\d+)?", text or ""):
        v = float(m.group())
        if 1 <= v <= top:
            return v
    return float("nan")


class JudgeMetric(Metric):
    """An LLM judge's score of one aspect, through any generation backend."""

    def __init__(self, group: str, variant: str, backend: Any, *, max_new_tokens: int = 8):
        if group not in GROUPS:
            raise InvalidInput(f"unknown metric group {group!r}", hint=", ".join(GROUPS))
        if variant not in JUDGE_VARIANTS:
            raise InvalidInput(f"unknown judge variant {variant!r}", hint=", ".join(JUDGE_VARIANTS))
        self.name = f"judge:{group}:{variant}"
        self.group = group  # type: ignore[misc]
        self.variant, self.backend, self.max_new_tokens = variant, backend, max_new_tokens
        needs = {"plain": ("references",), "def": ("references",)}
        self.needs = needs.get(
            variant, ("sources",) if variant == "def_source" else ("sources", "references")
        )  # type: ignore[misc]

    def _score(self, data: MetricData) -> list[float]:
        n = len(data.outputs)
        src, ref = data.sources or [""] * n, data.references or [""] * n
        prompts = [
            judge_prompt(self.group, self.variant, o, s, r)
            for o, s, r in zip(data.outputs, src, ref, strict=True)
        ]
        outs = self.backend.generate(prompts, max_new_tokens=self.max_new_tokens, logprobs=False)
        top = 5 if self.variant == "plain" else 10
        return [parse_judge_score(g.text, top) for g in outs]


class SummaCNLI(Metric):
    """SummaC-ZS with a local NLI cross-encoder (``summac_nli:<folder>``)."""

    group, needs = "consistency", ("sources",)

    def __init__(self, folder: str) -> None:
        from databazaar.uncertainty.similarity import NLIRelation

        self.name = f"summac_nli:{folder}"
        self.nli = NLIRelation(folder)

    def _score(self, data: MetricData) -> list[float]:
        out_s = [_sentences(o) for o in data.outputs]
        src_s = [_sentences(s) or [s] for s in data.sources or []]
        pairs = [(p, h) for os_, ss in zip(out_s, src_s, strict=True) for h in os_ for p in ss]
        probs = self.nli.probabilities(pairs)
        score = probs[:, self.nli.entail_id] - probs[:, self.nli.contra_id]
        res, k = [], 0
        for os_, ss in zip(out_s, src_s, strict=True):
            n = len(os_) * len(ss)
            block = score[k : k + n].reshape(len(os_), len(ss)) if os_ else np.zeros((0, 1))
            k += n
            res.append(float(block.max(axis=1).mean()) if len(os_) else 0.0)
        return res


class HumanLabel(Metric):
    """A human label carried by the data (``labels[field]``), e.g. TofuEval's."""

    group = "overall"

    def __init__(self, field_name: str, group: str = "overall") -> None:
        self.name, self.field, self.group = f"human:{field_name}", field_name, group  # type: ignore[misc]

    def _score(self, data: MetricData) -> list[float]:
        if self.field not in data.labels:
            raise InvalidInput(
                f"metric {self.name} needs the label {self.field!r}, but the data has none",
                hint=f"labels given: {', '.join(data.labels) or 'none'}",
            )
        return list(data.labels[self.field])


# ----------------------------------------------------------------------- registry
_OFFLINE: dict[str, tuple[str, tuple[str, ...], Any]] = {
    "rougeL": ("relevance", ("references",), _rouge("rougeL")),
    "rouge1": ("relevance", ("references",), _rouge("rouge1")),
    "chrf": ("relevance", ("references",), _chrf),
    "fact_recall": ("relevance", ("facts",), _fact_recall),
    "source_support": ("consistency", ("sources",), _source_support),
    "novel_bigram_free": ("consistency", ("sources",), _novel_bigram_free),
    "non_repetition": ("coherence", (), _non_repetition),
    "distinct_words": ("coherence", (), _distinct_words),
    "well_formed": ("fluency", (), _well_formed),
    "bleu": ("overall", ("references",), _bleu),
}
_CLASSES: dict[str, Any] = {
    "embed_spearman": lambda: _Embedding("embed_spearman", "spearman"),
    "embed_kendall": lambda: _Embedding("embed_kendall", "kendall"),
    "summac_minilm": SummaCMiniLM,
    "bertscore_minilm": BERTScoreMiniLM,
    "vocab_rate": VocabRate,
}
OFFLINE_METRICS = tuple(_OFFLINE) + tuple(_CLASSES)


def get_metric(name: str, *, judge: Any = None) -> Metric:
    """A metric by name: offline ones, ``judge:<group>:<variant>`` (needs ``judge``, a
    generation backend), ``human:<field>`` or ``summac_nli:<folder>`` (an NLI model)."""
    if name in _OFFLINE:
        group, needs, fn = _OFFLINE[name]
        return _PerItem(name, group, needs, fn)
    if name in _CLASSES:
        return _CLASSES[name]()
    if name.startswith("judge:"):
        parts = name.split(":")
        if len(parts) != 3:
            raise InvalidInput(f"judge metric {name!r} must be judge:<group>:<variant>")
        if judge is None:
            raise InvalidInput(
                f"metric {name} needs a judge model", hint="pass --judge URL or a backend"
            )
        return JudgeMetric(parts[1], parts[2], judge)
    if name.startswith("human:") and len(name) > 6:
        return HumanLabel(name[6:])
    if name.startswith("summac_nli:") and len(name) > 11:
        return SummaCNLI(name[11:])
    raise InvalidInput(
        f"unknown metric {name!r}",
        hint=f"choose from {', '.join(OFFLINE_METRICS)}, judge:<group>:<variant>, "
        "human:<field>, summac_nli:<folder>",
    )


def metric_group(name: str) -> str:
    """The group of a metric name (``human:*`` count as ``overall``)."""
    if name.startswith("judge:") and name.count(":") == 2:
        return name.split(":")[1]
    if name.startswith("human:"):
        return "overall"
    if name.startswith("summac_nli:"):
        return "consistency"
    return get_metric(name).group


def judge_metric_names(groups: Sequence[str] = GROUPS) -> list[str]:
    """All ``judge:<group>:<variant>`` names for the groups."""
    return [f"judge:{g}:{v}" for g in groups for v in JUDGE_VARIANTS]


def score_metrics(
    names: Sequence[str], data: MetricData, *, judge: Any = None
) -> dict[str, np.ndarray]:
    """Metric name -> values; every metric is built and its inputs checked before any runs."""
    metrics = [get_metric(n, judge=judge) for n in names]
    for m in metrics:
        for need in m.needs:
            if getattr(data, need) is None:
                m.score(data)  # raises the metric's own error
    return {m.name: m.score(data) for m in metrics}
