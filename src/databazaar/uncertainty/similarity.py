"""Relations between sampled answers, for the meaning-based uncertainty estimators.

A :class:`Relation` turns the samples of one input into three ``n x n`` matrices:
``entail[i, j]`` (how strongly answer ``i`` supports answer ``j``), ``contra[i, j]`` (how
strongly it contradicts it) and the boolean ``is_entail[i, j]``. These are the
``semantic_matrix_entail`` / ``semantic_matrix_contra`` statistics LM-Polygraph computes
with a DeBERTa NLI model; offline we offer similarity relations, where a similarity
``s in [0, 1]`` is read as ``entail = s``, ``contra = 1 - s`` and ``is_entail = s > 0.5``
(so "entail > contra" and "is_entail" agree):

* ``rougeL``: ROUGE-L F-measure with the Porter stemmer (Lin, 2004);
* ``jaccard``: Jaccard index of the lower-cased word sets (LM-Polygraph's
  ``Jaccard_score``);
* ``minilm``: cosine similarity of the local MiniLM sentence embeddings, clipped at 0;
* ``nli:<folder>``: an NLI cross-encoder the user supplies (or the project trained), any
  ``transformers`` sequence-classification model in a local folder whose labels include
  ``entailment`` and ``contradiction``: for every ordered pair ``(i, j)`` the model reads
  premise ``i`` and hypothesis ``j``; ``entail`` and ``contra`` are the softmax
  probabilities of those labels and ``is_entail[i, j]`` says the most probable label is
  entailment, exactly the statistics LM-Polygraph computes with DeBERTa-MNLI.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from databazaar.core.errors import InvalidInput

Matrices = tuple[np.ndarray, np.ndarray, np.ndarray]


@functools.lru_cache(maxsize=8)
def _scorer(kind: str, stem: bool):  # type: ignore[no-untyped-def]
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer([kind], use_stemmer=stem)


def rouge_f(a: str, b: str, kind: str = "rougeL", *, stem: bool = True) -> float:
    """ROUGE-``kind`` F-measure between two texts (Lin, 2004; ``rouge-score`` package)."""
    return float(_scorer(kind, stem).score(a, b)[kind].fmeasure)


def jaccard(a: str, b: str) -> float:
    """``|A & B| / |A | B|`` of the lower-cased word sets (0 for two empty texts)."""
    sa, sb = set(a.lower().split()), set(b.lower().split())
    union = len(sa | sb)
    return len(sa & sb) / union if union else 0.0


class Relation:
    """A similarity relation; subclasses give :meth:`similarity` for one input's answers."""

    name = "relation"

    def similarity(self, texts: Sequence[str]) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def matrices(self, batches: Sequence[Sequence[str]]) -> list[Matrices]:
        """``(entail, contra, is_entail)`` per input."""
        out = []
        for texts in batches:
            s = np.clip(np.asarray(self.similarity(list(texts)), dtype=float), 0.0, 1.0)
            out.append((s, 1.0 - s, s > 0.5))
        return out


class PairwiseRelation(Relation):
    """A relation from a symmetric pairwise function with ``sim(x, x) = 1``."""

    def __init__(self, name: str, fn) -> None:  # type: ignore[no-untyped-def]
        self.name, self.fn = name, fn

    def similarity(self, texts: Sequence[str]) -> np.ndarray:
        n = len(texts)
        s = np.eye(n)
        for i in range(n):
            for j in range(i + 1, n):
                s[i, j] = s[j, i] = self.fn(texts[i], texts[j])
        return s


class MiniLMRelation(Relation):
    """Cosine similarity of MiniLM embeddings (all inputs encoded in one batch)."""

    name = "minilm"

    def __init__(self, embedder=None) -> None:  # type: ignore[no-untyped-def]
        self._embedder = embedder

    @property
    def embedder(self):  # type: ignore[no-untyped-def]
        if self._embedder is None:
            from databazaar.core.embeddings import MiniLMEmbedder

            self._embedder = MiniLMEmbedder()
        return self._embedder

    def similarity(self, texts: Sequence[str]) -> np.ndarray:
        v = self.embedder.encode(list(texts)).astype(float)
        s = v @ v.T
        np.fill_diagonal(s, 1.0)
        return s

    def matrices(self, batches: Sequence[Sequence[str]]) -> list[Matrices]:
        flat = [t for texts in batches for t in texts]
        vecs = self.embedder.encode(flat).astype(float)
        out, k = [], 0
        for texts in batches:
            v = vecs[k : k + len(texts)]
            k += len(texts)
            s = np.clip(v @ v.T, 0.0, 1.0)
            np.fill_diagonal(s, 1.0)
            out.append((s, 1.0 - s, s > 0.5))
        return out


class NLIRelation(Relation):
    """Entailment and contradiction probabilities from a local NLI cross-encoder."""

    def __init__(self, model_dir: str, *, batch_size: int = 64) -> None:
        from pathlib import Path

        folder = Path(model_dir)
        if not (folder / "config.json").is_file():
            raise InvalidInput(
                f"nli relation: {model_dir!r} is not a model folder (no config.json)",
                hint="give a local transformers sequence-classification model trained for NLI",
            )
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        try:
            self.model = AutoModelForSequenceClassification.from_pretrained(
                folder, local_files_only=True
            ).eval()
            self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise InvalidInput(f"nli relation: cannot load {model_dir!r}: {exc}") from exc
        labels = {str(v).lower(): int(k) for k, v in self.model.config.id2label.items()}
        found = {
            want: next((i for name, i in labels.items() if name.startswith(want)), None)
            for want in ("entail", "contra")
        }
        if None in found.values():
            raise InvalidInput(
                f"nli relation: {model_dir!r} has labels {sorted(labels)}, without "
                "entailment and contradiction",
                hint="its config's id2label must name an entailment and a contradiction label",
            )
        self.entail_id, self.contra_id = found["entail"], found["contra"]
        self.name = f"nli:{model_dir}"
        self.batch_size = batch_size

    def probabilities(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """Softmax over the labels for each (premise, hypothesis) pair."""
        import torch

        out = []
        with torch.no_grad():
            for k in range(0, len(pairs), self.batch_size):
                chunk = pairs[k : k + self.batch_size]
                enc = self.tokenizer(
                    [a for a, _ in chunk],
                    [b for _, b in chunk],
                    padding=True,
                    truncation=True,
                    return_tensors="pt",
                )
                out.append(torch.softmax(self.model(**enc).logits.float(), dim=-1).numpy())
        n_labels = len(self.model.config.id2label)
        return np.concatenate(out) if out else np.zeros((0, n_labels))

    def matrices(self, batches: Sequence[Sequence[str]]) -> list[Matrices]:
        # every ordered pair, the diagonal included, as LM-Polygraph's semantic matrix
        index = [
            (b, i, j)
            for b, texts in enumerate(batches)
            for i in range(len(texts))
            for j in range(len(texts))
        ]
        probs = self.probabilities([(batches[b][i], batches[b][j]) for b, i, j in index])
        mats = []
        for texts in batches:
            n = len(texts)
            mats.append((np.zeros((n, n)), np.zeros((n, n)), np.zeros((n, n), dtype=bool)))
        for (b, i, j), p in zip(index, probs, strict=True):
            mats[b][0][i, j] = p[self.entail_id]
            mats[b][1][i, j] = p[self.contra_id]
            mats[b][2][i, j] = int(np.argmax(p)) == self.entail_id
        return mats


RELATIONS = ("rougeL", "jaccard", "minilm", "nli:<folder>")


def get_relation(relation: str | Relation) -> Relation:
    """A relation by name (``rougeL``, ``jaccard``, ``minilm``, ``nli:<folder>``) or the
    instance given."""
    if isinstance(relation, Relation):
        return relation
    if isinstance(relation, str) and relation.startswith("nli:"):
        return NLIRelation(relation[4:])
    if relation == "rougeL":
        return PairwiseRelation("rougeL", rouge_f)
    if relation == "jaccard":
        return PairwiseRelation("jaccard", jaccard)
    if relation == "minilm":
        return MiniLMRelation()
    raise InvalidInput(f"unknown relation {relation!r}", hint=f"choose from {', '.join(RELATIONS)}")
