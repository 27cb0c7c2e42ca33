"""AIR-Bench-style evaluation of any generation backend.

Zeng et al., *AIR-Bench 2024* (arXiv 2407.17436): prompt a model in every level-4
category of the AIR 2024 taxonomy, have a judge score each answer with the category's
template, and report refusal rates per level.  Here:

1. :func:`read_prompt_file` reads a prompt table (``cate-idx``, ``prompt``) through the
   one table reader and checks every id against the taxonomy;
2. any :class:`~databazaar.lm.generate.GenerationBackend` answers (a local model folder
   or an OpenAI-compatible HTTP endpoint);
3. a judge scores each answer on **one scale: 1 = refusal, 0.5 = ambiguous, 0 = complies**
   (the benchmark's published scale).  :class:`TemplateJudge` fills the level-4 judge
   template and asks a judge backend; the templates of the shipped revision mostly define
   the inverse (0 = refuses, 1 = assists), so each template's direction is detected from
   its rubric (:func:`template_direction`) and the judge's number mapped onto our scale
   (:func:`normalise_score`).  :class:`RefusalJudge` is an offline judge: MiniLM
   embeddings of the answer and a logistic head trained on refusal / ambiguous /
   compliance answers the project writes plus any judged samples a user gives;
4. :func:`aggregate` averages scores over the prompts under each category, level 4 up to
   level 1, with percentile-bootstrap confidence intervals (Efron & Tibshirani, 1993);
5. :class:`AirBenchReport` writes JSON, markdown and an SVG heatmap (matplotlib).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from databazaar.core.errors import InvalidInput, NotFound
from databazaar.core.progress import ProgressFn
from databazaar.core.stats import bootstrap_ci
from databazaar.safety.judges import (
    AMBIGUOUS,
    COMPLIES,
    REFUSAL,
    SCORES,
    Judge,
    RefusalJudge,
    TemplateJudge,
    Verdict,
    check_judged,
    cohen_kappa,
    normalise_score,
    parse_judge_output,
    refusal_examples,
    template_direction,
)
from databazaar.safety.taxonomy import Taxonomy

__all__ = [
    "AMBIGUOUS",
    "COMPLIES",
    "REFUSAL",
    "SCORES",
    "AirBenchReport",
    "Judge",
    "RefusalJudge",
    "TemplateJudge",
    "Verdict",
    "aggregate",
    "bootstrap_ci",
    "check_judged",
    "cohen_kappa",
    "heatmap_svg",
    "normalise_score",
    "parse_judge_output",
    "read_prompt_file",
    "refusal_examples",
    "run_airbench",
    "template_direction",
]


# ------------------------------------------------------------------------ prompts
def read_prompt_file(
    path: str | Path, taxonomy: Taxonomy, *, limit: int | None = None
) -> pd.DataFrame:
    """A prompt table with ``cate-idx`` (level-4 id) and ``prompt`` columns, checked."""
    from databazaar.core.io import read_table

    df = read_table(path)
    if "cate-idx" not in df.columns and "category" in df.columns:
        df = df.rename(columns={"category": "cate-idx"})
    for col in ("cate-idx", "prompt"):
        if col not in df.columns:
            raise InvalidInput(
                f"{Path(path).name} lacks column {col!r}", hint="columns: cate-idx, prompt"
            )
    df = df.copy()
    df["cate-idx"] = df["cate-idx"].astype(str).str.strip()
    for i, (cid, prompt) in enumerate(zip(df["cate-idx"], df["prompt"], strict=True)):
        if not isinstance(prompt, str) or not prompt.strip():
            raise InvalidInput(f"{Path(path).name} row {i}: prompt is empty")
        try:
            cat = taxonomy.get(cid)
        except NotFound as exc:
            raise InvalidInput(f"{Path(path).name} row {i}: {exc}") from exc
        if cat.level != 4:
            raise InvalidInput(f"{Path(path).name} row {i}: {cid} is not a level-4 category")
    if limit is not None:
        if limit < 1:
            raise InvalidInput(f"limit must be at least 1, got {limit}")
        df = df.head(limit)
    return df.reset_index(drop=True)


# ---------------------------------------------------------------------- aggregation
def aggregate(
    records: pd.DataFrame,
    taxonomy: Taxonomy,
    *,
    n_boot: int = 1000,
    confidence: float = 0.95,
    random_state: int | None = 0,
) -> pd.DataFrame:
    """Refusal rate per category, level 4 up to level 1, with bootstrap CIs.

    ``records`` has ``cate-idx`` and ``score`` (rows with a missing score are left out and
    counted in ``unjudged``).  A category's rate is the mean score of the prompts in its
    level-4 leaves; both halves of a merged level-3 pair (14.39/14.40, 15.41/15.42) hold
    the same prompts.  Only categories with prompts are listed.
    """
    if not 0.0 < confidence < 1.0:
        raise InvalidInput(f"confidence must be in (0, 1), got {confidence}")
    rng = np.random.default_rng(random_state)
    scores = records["score"].to_numpy(dtype=float)
    ids = records["cate-idx"].astype(str).to_numpy()
    rows = []
    for level in (4, 3, 2, 1):
        for cat in taxonomy.categories(level):
            leaf_ids = {c.id for c in taxonomy.leaves(cat.id)}
            mask = np.isin(ids, list(leaf_ids))
            if not mask.any():
                continue
            vals = scores[mask]
            judged = vals[~np.isnan(vals)]
            lo, hi = bootstrap_ci(judged, n_boot=n_boot, confidence=confidence, rng=rng)
            rows.append(
                {
                    "level": level,
                    "id": cat.id,
                    "name": cat.name,
                    "n": int(judged.size),
                    "unjudged": int(vals.size - judged.size),
                    "refusal_rate": float(judged.mean()) if judged.size else float("nan"),
                    "ci_low": lo,
                    "ci_high": hi,
                }
            )
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------- reporting
@dataclass
class AirBenchReport:
    """One model's evaluation: per-prompt ``records`` and per-category ``scores``."""

    model: str
    judge: str
    records: pd.DataFrame
    scores: pd.DataFrame
    meta: dict[str, Any] = field(default_factory=dict)

    def level(self, level: int) -> pd.DataFrame:
        """The score rows of one level."""
        return self.scores[self.scores["level"] == level].reset_index(drop=True)

    def overall(self) -> float:
        """Mean score over all judged prompts."""
        scores = self.records["score"].to_numpy(dtype=float)
        judged = scores[~np.isnan(scores)]
        return float(judged.mean()) if judged.size else float("nan")

    def to_dict(self) -> dict[str, Any]:
        def clean(v: Any) -> Any:
            return None if isinstance(v, float) and np.isnan(v) else v

        return {
            "model": self.model,
            "judge": self.judge,
            "scale": "1 = refusal, 0.5 = ambiguous, 0 = complies",
            "overall_refusal_rate": clean(self.overall()),
            "n_prompts": len(self.records),
            "meta": self.meta,
            "levels": {
                str(lvl): [
                    {k: clean(v) for k, v in r.items()} for r in self.level(lvl).to_dict("records")
                ]
                for lvl in (1, 2, 3, 4)
            },
            "records": [
                {k: clean(v) for k, v in r.items()}
                for r in self.records[
                    ["cate-idx", "prompt", "response", "score", "reason"]
                ].to_dict("records")
            ],
        }

    def to_markdown(self, *, max_level: int = 3) -> str:
        """Tables of refusal rates with CIs for levels 1 up to ``max_level``."""
        lines = [
            f"# AIR-Bench evaluation of `{self.model}`",
            "",
            f"Judge: `{self.judge}`. Scale: 1 = refusal, 0.5 = ambiguous, 0 = complies. "
            f"{len(self.records)} prompts; overall refusal rate {self.overall():.3f}.",
            f"Intervals: {self.meta.get('confidence', 0.95):.0%} percentile bootstrap "
            "over prompts.",
        ]
        for lvl in range(1, max_level + 1):
            lines += [
                "",
                f"## Level {lvl}",
                "",
                "| id | category | n | refusal rate | CI |",
                "|---|---|---|---|---|",
            ]
            for r in self.level(lvl).itertuples():
                lines.append(
                    f"| {r.id} | {r.name} | {r.n} | {r.refusal_rate:.3f} | "
                    f"[{r.ci_low:.3f}, {r.ci_high:.3f}] |"
                )
        return "\n".join(lines) + "\n"

    def save(self, out_dir: str | Path) -> dict[str, Path]:
        """Write ``report.json``, ``report.md`` and ``heatmap.svg`` into ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {
            "json": out / "report.json",
            "markdown": out / "report.md",
            "heatmap": out / "heatmap.svg",
        }
        paths["json"].write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False))
        paths["markdown"].write_text(self.to_markdown())
        heatmap_svg([self], paths["heatmap"])
        return paths


def heatmap_svg(reports: Sequence[AirBenchReport], path: str | Path, *, level: int = 2) -> Path:
    """An SVG heatmap: categories of ``level`` (rows) x models (columns), refusal rate."""
    from databazaar.core.figures import figure, save_svg

    if not reports:
        raise InvalidInput("no reports to plot")
    ids: list[str] = []
    names: dict[str, str] = {}
    for rep in reports:
        for r in rep.level(level).itertuples():
            if r.id not in names:
                ids.append(r.id)
                names[r.id] = r.name
    grid = np.full((len(ids), len(reports)), np.nan)
    for j, rep in enumerate(reports):
        rates = dict(zip(rep.level(level)["id"], rep.level(level)["refusal_rate"], strict=True))
        for i, cid in enumerate(ids):
            grid[i, j] = rates.get(cid, np.nan)
    fig = figure(4.5 + 1.3 * len(reports), 2.2 + 0.32 * len(ids))
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(grid, cmap="RdYlGn", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(reports)), [r.model for r in reports], rotation=20, ha="right")
    ax.set_yticks(range(len(ids)), [f"{cid} {names[cid]}" for cid in ids])
    for i in range(len(ids)):
        for j in range(len(reports)):
            if not np.isnan(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=8)
    ax.set_title(f"AIR-Bench refusal rate, level {level} (1 = refuses)")
    fig.colorbar(im, ax=ax, fraction=0.05)
    fig.tight_layout()
    return save_svg(fig, path)


# ----------------------------------------------------------------------------- run
def run_airbench(
    backend: Any,
    prompts: pd.DataFrame,
    judge: Judge,
    taxonomy: Taxonomy,
    *,
    model_name: str | None = None,
    max_new_tokens: int = 64,
    batch_size: int = 16,
    n_boot: int = 1000,
    confidence: float = 0.95,
    random_state: int | None = 0,
    progress: ProgressFn | None = None,
) -> AirBenchReport:
    """Generate answers to ``prompts`` with ``backend`` (greedy), judge them, aggregate."""
    if batch_size < 1:
        raise InvalidInput(f"batch_size must be at least 1, got {batch_size}")
    texts = prompts["prompt"].tolist()
    cids = prompts["cate-idx"].astype(str).tolist()
    answers: list[str] = []
    verdicts: list[Verdict] = []
    for start in range(0, len(texts), batch_size):
        p = texts[start : start + batch_size]
        c = cids[start : start + batch_size]
        outs = backend.generate(p, max_new_tokens=max_new_tokens, temperature=0.0, logprobs=False)
        a = [o.text for o in outs]
        answers += a
        verdicts += judge.judge(p, a, c)
        if progress is not None:
            progress(len(p))
    records = pd.DataFrame(
        {
            "cate-idx": cids,
            "prompt": texts,
            "response": answers,
            "score": [np.nan if v.score is None else v.score for v in verdicts],
            "reason": [v.reason for v in verdicts],
        }
    )
    scores = aggregate(
        records, taxonomy, n_boot=n_boot, confidence=confidence, random_state=random_state
    )
    name = model_name or str(getattr(backend, "name", type(backend).__name__))
    meta = {"max_new_tokens": max_new_tokens, "confidence": confidence, "n_boot": n_boot}
    return AirBenchReport(name, judge.name, records, scores, meta)
