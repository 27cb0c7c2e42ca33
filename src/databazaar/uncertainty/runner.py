"""Run a UE benchmark: generate with any backend, estimate, score, compare (PRR).

* :func:`read_items` reads a JSONL of ``{"source", "reference", "prompt"?, "facts"?,
  "labels"?}`` records (the input to summarise, its reference summary, the prompt sent to
  the model when it differs from the source, key facts and human labels);
  :func:`task_items` draws them from the task suite's ``summarize`` family;
* :func:`generate_outputs` asks a :class:`~databazaar.lm.generate.GenerationBackend`
  (local folder or OpenAI-compatible URL) for the greedy answer with log-probabilities and
  ``n_samples`` sampled answers per item; :func:`ensemble_scores` scores the samples
  under each ensemble member;
* :func:`run_benchmark` estimates every method, scores every metric and computes the
  PRR table with bootstrap CIs, Kendall's tau between metric and metric-group rankings
  and metric clusters, returning a :class:`~databazaar.uncertainty.report.BenchmarkReport`;
* :func:`read_outputs` / :func:`score_file` add uncertainty scores to outputs a user
  already has (``databazaar uncertainty score``).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from databazaar.core.errors import InvalidInput
from databazaar.core.progress import ProgressFn
from databazaar.lm.generate import Generation, GenerationBackend
from databazaar.uncertainty.estimators import UEOutputs, estimate_all, get_estimator


@dataclass
class Item:
    """One input to summarise, with what the metrics compare against."""

    source: str
    reference: str | None = None
    prompt: str | None = None
    facts: list[str] = field(default_factory=list)
    labels: dict[str, float] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """What the model is asked (the prompt, else the source)."""
        return self.prompt if self.prompt is not None else self.source


def _item(rec: dict[str, Any], where: str) -> Item:
    src = rec.get("source")
    if not isinstance(src, str) or not src.strip():
        raise InvalidInput(f"{where}: 'source' must be a non-empty string")
    for key in ("reference", "prompt"):
        if rec.get(key) is not None and not isinstance(rec[key], str):
            raise InvalidInput(f"{where}: '{key}' must be a string")
    facts = rec.get("facts") or []
    if not isinstance(facts, list) or not all(isinstance(f, str) for f in facts):
        raise InvalidInput(f"{where}: 'facts' must be a list of strings")
    labels = rec.get("labels") or {}
    if not isinstance(labels, dict) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in labels.values()
    ):
        raise InvalidInput(f"{where}: 'labels' must map names to numbers")
    return Item(src, rec.get("reference"), rec.get("prompt"), list(facts), dict(labels))


def read_items(path: str | Path) -> list[Item]:
    """Items from a JSONL file (errors name the line)."""
    from databazaar.core.io import read_jsonl_records

    return [_item(r, f"{path}:{i + 1}") for i, r in enumerate(read_jsonl_records(path))]


def task_items(n: int = 100, *, split: str = "test", random_state: int = 0) -> list[Item]:
    """``n`` summarisation-as-fact-selection items from the task suite (seeded)."""
    from databazaar.lm.tasks import generate_tasks

    items = []
    for ex in generate_tasks(["summarize"], n_per_family=n, split=split, random_state=random_state):
        passage = ex.prompt.split("Passage: ", 1)[-1].split(" Summarize", 1)[0]
        items.append(Item(passage, ex.answer, ex.prompt, list(ex.facts)))
    return items


def _check_items(items: Sequence[Item]) -> list[Item]:
    if isinstance(items, Item | str) or not isinstance(items, Sequence) or not items:
        raise InvalidInput("items must be a non-empty list of Item")
    return list(items)


def generate_outputs(
    backend: GenerationBackend,
    items: Sequence[Item],
    *,
    n_samples: int = 8,
    temperature: float = 1.0,
    max_new_tokens: int = 40,
    top_logprobs: int = 20,
    chat: bool = True,
    random_state: int = 0,
    progress: ProgressFn | None = None,
) -> list[UEOutputs]:
    """Greedy answer (with ``top_logprobs`` alternatives) and ``n_samples`` samples per item.

    ``chat`` sends each prompt as a user turn (``backend.chat``), else as a plain
    completion prompt. ``progress`` advances twice per item (greedy, then samples).
    """
    items = _check_items(items)
    if n_samples < 0:
        raise InvalidInput(f"n_samples must be >= 0, got {n_samples}")
    call = backend.chat if chat else backend.generate
    prompts: list[Any] = [
        [{"role": "user", "content": it.text}] if chat else it.text for it in items
    ]
    greedy = call(
        prompts,
        temperature=0.0,
        max_new_tokens=max_new_tokens,
        logprobs=True,
        top_logprobs=top_logprobs,
        progress=progress,
    )
    samples: list[Generation] = []
    if n_samples:
        samples = call(
            prompts,
            temperature=temperature,
            n=n_samples,
            max_new_tokens=max_new_tokens,
            logprobs=True,
            random_state=random_state,
            progress=progress,
        )
    return [
        UEOutputs(
            it.text,
            greedy[i],
            samples[i * n_samples : (i + 1) * n_samples] if n_samples else [],
        )
        for i, it in enumerate(items)
    ]


def ensemble_scores(
    outputs: Sequence[UEOutputs], members: Sequence[Any], *, chat: bool = True
) -> None:
    """Fill ``member_logprobs``: each sample's log-likelihood under each member.

    Members are :class:`~databazaar.lm.local_backend.LocalModelBackend` objects (anything with
    ``loglikelihood(prompt, texts)``); the texts are re-tokenized per member, so members
    may have different tokenizers. A sample that stopped by itself is scored with the
    end-of-sequence token.
    """
    if len(members) < 2:
        raise InvalidInput("an ensemble needs at least 2 members")
    for o in outputs:
        if not o.samples:
            raise InvalidInput("ensemble scores need sampled answers (n_samples >= 1)")
        prompt: Any = [{"role": "user", "content": o.input}] if chat else o.input
        rows = []
        for m in members:
            stop = [s for s in o.samples if s.finish_reason == "stop"]
            cut = [s for s in o.samples if s.finish_reason != "stop"]
            scores = dict(
                zip(
                    [id(s) for s in stop],
                    m.loglikelihood(prompt, [s.text for s in stop], add_eos=True),
                    strict=True,
                )
            )
            scores.update(
                zip(
                    [id(s) for s in cut],
                    m.loglikelihood(prompt, [s.text for s in cut], add_eos=False),
                    strict=True,
                )
            )
            rows.append([scores[id(s)] for s in o.samples])
        o.member_logprobs = rows


def item_metric_data(items: Sequence[Item], outputs: Sequence[UEOutputs] | Sequence[str]):  # type: ignore[no-untyped-def]
    """The :class:`~databazaar.uncertainty.metrics.MetricData` of the greedy answers."""
    from databazaar.uncertainty.metrics import MetricData

    if len(items) != len(outputs):
        raise InvalidInput(f"{len(items)} items but {len(outputs)} outputs")
    refs = [it.reference for it in items]
    label_names = sorted({k for it in items for k in it.labels})
    return MetricData(
        outputs=[o if isinstance(o, str) else o.output.text for o in outputs],
        sources=[it.source for it in items],
        references=None if any(r is None for r in refs) else [str(r) for r in refs],
        facts=[it.facts for it in items] if all(it.facts for it in items) else None,
        labels={k: [it.labels.get(k, math.nan) for it in items] for k in label_names},
    )


def check_metric_inputs(items: Sequence[Item], metrics: Sequence[str], judge: Any = None) -> None:
    """Fail fast, before any generation, if a metric lacks what the items give it."""
    from databazaar.uncertainty.metrics import get_metric

    data = item_metric_data(items, [""] * len(items))
    for name in metrics:
        m = get_metric(name, judge=judge)
        if name.startswith("human:"):
            m.score(data)  # checks the label exists
        for need in m.needs:
            if getattr(data, need) is None:
                m.score(data)  # raises the metric's own error


def run_benchmark(
    items: Sequence[Item],
    outputs: Sequence[UEOutputs],
    methods: Sequence[str],
    metrics: Sequence[str],
    *,
    relation: str = "rougeL",
    judge: Any = None,
    train_outputs: Sequence[UEOutputs] | None = None,
    n_boot: int = 200,
    confidence: float = 0.95,
    random_state: int = 0,
    meta: dict[str, Any] | None = None,
):  # type: ignore[no-untyped-def]
    """Estimate, score and compare: a :class:`~databazaar.uncertainty.report.BenchmarkReport`.

    Every method and metric is checked against the outputs and items before any work
    (a missing log-probability or reference fails fast, naming the method or metric).
    ``train_outputs`` (with embeddings) fit the density methods (Mahalanobis, RDE).
    """
    from databazaar.uncertainty.benchmark import bootstrap_prr, cluster_metrics
    from databazaar.uncertainty.metrics import metric_group, score_metrics
    from databazaar.uncertainty.report import BenchmarkReport

    items = _check_items(items)
    if len(items) != len(outputs):
        raise InvalidInput(f"{len(items)} items but {len(outputs)} outputs")
    if not methods or not metrics:
        raise InvalidInput("give at least one method and one metric")
    check_metric_inputs(items, metrics, judge)
    data = item_metric_data(items, outputs)
    t0 = time.perf_counter()
    unc = estimate_all(outputs, methods, relation=relation, train_outputs=train_outputs)
    t1 = time.perf_counter()
    values = score_metrics(metrics, data, judge=judge)
    t2 = time.perf_counter()
    inputs = [o.input for o in outputs]
    groups = {name: metric_group(name) for name in values}
    stats = bootstrap_prr(
        unc,
        values,
        inputs,
        groups=groups,
        n_boot=n_boot,
        confidence=confidence,
        random_state=random_state,
    )
    clusters = None
    usable = {
        k: v
        for k, v in values.items()
        if np.isfinite(v).sum() >= 3 and np.ptp(v[np.isfinite(v)]) > 0
    }
    if len(usable) >= 2:
        clusters = cluster_metrics(usable)
    t3 = time.perf_counter()
    timings = {"estimators": t1 - t0, "metrics": t2 - t1, "statistics": t3 - t2}
    return BenchmarkReport(
        methods=list(unc),
        metrics=list(values),
        groups=groups,
        uncertainties=unc,
        metric_values=values,
        inputs=inputs,
        stats=stats,
        clusters=clusters,
        timings=timings,
        meta=dict(meta or {}),
    )


# --------------------------------------------------------------- user's own outputs
def _generation(d: Any, where: str) -> Generation:
    if isinstance(d, str):
        return Generation(text=d)
    if not isinstance(d, dict) or not isinstance(d.get("text"), str):
        raise InvalidInput(f"{where}: an answer must be a string or an object with 'text'")
    lp = d.get("token_logprobs")
    if lp is not None and (
        not isinstance(lp, list)
        or not all(isinstance(x, int | float) and not isinstance(x, bool) for x in lp)
    ):
        raise InvalidInput(f"{where}: 'token_logprobs' must be a list of numbers")
    tokens = d.get("tokens") or []
    if lp is not None and tokens and len(tokens) != len(lp):
        raise InvalidInput(
            f"{where}: {len(tokens)} tokens but {len(lp)} token_logprobs",
            hint="give one log-probability per token",
        )
    tops = d.get("top_logprobs")
    if tops is not None:
        if not isinstance(tops, list) or (lp is not None and len(tops) != len(lp)):
            raise InvalidInput(f"{where}: 'top_logprobs' must have one list per token")
        try:
            tops = [[(str(t), float(v)) for t, v in step] for step in tops]
        except (TypeError, ValueError) as exc:
            raise InvalidInput(
                f"{where}: 'top_logprobs' steps must be [token, logprob] pairs"
            ) from exc
    return Generation(
        text=d["text"],
        tokens=list(tokens),
        token_logprobs=None if lp is None else [float(x) for x in lp],
        top_logprobs=tops,
        finish_reason=str(d.get("finish_reason") or "length"),
    )


def outputs_from_records(
    records: Sequence[dict[str, Any]], where: str = "record"
) -> list[UEOutputs]:
    """:class:`UEOutputs` from JSON records ``{"input", "output", "samples"?, "member_logprobs"?}``.

    ``output`` and each sample are a string or a :meth:`Generation.to_dict` object (text,
    tokens, token_logprobs, top_logprobs, finish_reason).
    """
    out = []
    for i, r in enumerate(records):
        w = f"{where} {i + 1}"
        if not isinstance(r.get("input"), str):
            raise InvalidInput(f"{w}: 'input' must be a string")
        if "output" not in r:
            raise InvalidInput(f"{w}: no 'output'")
        samples = r.get("samples") or []
        if not isinstance(samples, list):
            raise InvalidInput(f"{w}: 'samples' must be a list")
        members = r.get("member_logprobs")
        if members is not None and (
            not isinstance(members, list) or any(len(m) != len(samples) for m in members)
        ):
            raise InvalidInput(
                f"{w}: 'member_logprobs' must hold one row per member with one value per sample"
            )
        out.append(
            UEOutputs(
                r["input"],
                _generation(r["output"], f"{w} output"),
                [_generation(s, f"{w} sample {j + 1}") for j, s in enumerate(samples)],
                members,
                **_statistics(r, w),
            )
        )
    return out


def _numbers(x: Any) -> bool:
    return isinstance(x, list) and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in x
    )


def _statistics(r: dict[str, Any], w: str) -> dict[str, Any]:
    """The optional model statistics of a record (embedding, ptrue_logprob, token_ensemble)."""
    emb, pt, tok = r.get("embedding"), r.get("ptrue_logprob"), r.get("token_ensemble")
    if emb is not None and not _numbers(emb):
        raise InvalidInput(f"{w}: 'embedding' must be a list of numbers")
    if pt is not None and not _numbers([pt]):
        raise InvalidInput(f"{w}: 'ptrue_logprob' must be a number")
    if tok is not None and (
        not isinstance(tok, dict) or not all(_numbers(v) and v for v in tok.values())
    ):
        raise InvalidInput(f"{w}: 'token_ensemble' must map measure names to lists of numbers")
    return {"embedding": emb, "ptrue_logprob": pt, "token_ensemble": tok}


def read_outputs(path: str | Path) -> tuple[list[dict[str, Any]], list[UEOutputs]]:
    """The raw records and their :class:`UEOutputs` from a JSONL file."""
    from databazaar.core.io import read_jsonl_records

    records = read_jsonl_records(path)
    return records, outputs_from_records(records, where=str(path) + " line")


def write_outputs(outputs: Sequence[UEOutputs], path: str | Path) -> Path:
    """Write outputs as JSONL (one :meth:`UEOutputs.to_dict` per line)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("".join(json.dumps(o.to_dict()) + "\n" for o in outputs), encoding="utf-8")
    return p


def score_file(
    path: str | Path,
    out: str | Path,
    methods: Sequence[str],
    *,
    relation: str = "rougeL",
    train: str | Path | None = None,
) -> dict[str, np.ndarray]:
    """Add ``uncertainty: {method: value}`` to every record of a JSONL of outputs.

    ``train`` is a JSONL of training outputs with embeddings, for Mahalanobis and RDE.
    The files are read and every method checked before anything is written; the result
    goes to ``out`` (which may not be the input file), so the input is never changed.
    """
    if Path(out).resolve() == Path(path).resolve():
        raise InvalidInput("the output file must differ from the input file")
    for m in methods:
        get_estimator(m, relation=relation)
    records, outputs = read_outputs(path)
    train_outputs = read_outputs(train)[1] if train is not None else None
    unc = estimate_all(outputs, methods, relation=relation, train_outputs=train_outputs)
    lines = []
    for i, rec in enumerate(records):
        scores = {k: float(v[i]) for k, v in unc.items()}
        lines.append(
            json.dumps({**rec, "uncertainty": {**(rec.get("uncertainty") or {}), **scores}})
        )
    p = Path(out)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return unc
