"""The listing gate: screen a data product's card and a sample of its rows for AI risks.

On publish (see :mod:`databazaar.market.gatekeeping`) a version's card and a seeded
sample of its text rows are classified into the AIR 2024 level-2 categories by
:class:`databazaar.safety.screen.RiskScreener` (Zeng et al., 2024, arXiv 2406.17864),
and the market's policy decides per category:

* texts -- the card (title, description in chunks of whole sentences up to
  :data:`CHUNK_CHARS` characters, provenance, tags) and up to ``sample_rows`` rows drawn
  uniformly without replacement by ``numpy.random.default_rng(seed)``, the seed being
  the first 32 bits of the file's sha256 (the same file always gets the same sample).
  A row's text is its string cells joined by ``" | "`` (at most :data:`ROW_CHARS`
  characters; the screener reads the first 128 word pieces); rows without text are
  skipped;
* risk -- ``1 - P(none)`` of the screener's calibrated level-2 head, with the most
  likely level-2 category and level-3 group;
* policy -- a category *fires* when any card text, or at least
  ``max(min_rows, ceil(min_share * rows screened))`` sampled rows, reach the policy's
  ``threshold`` in it; each fired category takes the policy's
  action (``allow``, ``review`` or ``block``, else the default), and the most severe
  action decides: allow -> ``cleared`` (published), review -> ``held`` (waits for an
  admin), block -> ``blocked``.

This module holds no database code; it imports :mod:`databazaar.safety` (which never
imports the market).
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from databazaar.core.errors import InvalidInput

ACTIONS = ("allow", "review", "block")
SEVERITY = {"allow": 0, "review": 1, "block": 2}
STATE_OF = {"allow": "cleared", "review": "held", "block": "blocked"}
ENCODERS = ("minilm", "tfidf")
DEFAULT_SAMPLE_ROWS = 1000
MAX_SAMPLE_ROWS = 20_000
CHUNK_CHARS = 300
ROW_CHARS = 1000
SNIPPET_CHARS = 240
MAX_SNIPPETS = 5
#: the AIR 2024 level-2 ids (the policy can be edited while the gate is off)
LEVEL2_IDS = tuple(str(i) for i in range(1, 17))


# ------------------------------------------------------------------------- policy
@dataclass(frozen=True)
class Policy:
    """A version of the screening policy (see the module notes)."""

    version: int
    default_action: str
    rules: Mapping[str, str]
    threshold: float
    min_rows: int
    min_share: float = 0.0

    def action_for(self, l2: str) -> str:
        """The action for a level-2 category id."""
        return self.rules.get(l2, self.default_action)

    def to_dict(self) -> dict[str, Any]:
        """The policy's content (without its version), as stored in the audit trail."""
        return {
            "default_action": self.default_action,
            "rules": dict(sorted(self.rules.items(), key=lambda kv: int(kv[0]))),
            "threshold": self.threshold,
            "min_rows": self.min_rows,
            "min_share": self.min_share,
        }

    def rows_needed(self, rows_screened: int) -> int:
        """Flagged rows that make a category fire: ``max(min_rows, ceil(share * n))``."""
        return max(self.min_rows, math.ceil(self.min_share * rows_screened - 1e-9))


def check_action(action: object, what: str) -> str:
    """``allow``, ``review`` or ``block`` (case-insensitive), else :class:`InvalidInput`."""
    if not isinstance(action, str) or action.strip().lower() not in ACTIONS:
        raise InvalidInput(f"{what}: unknown action {action!r}", hint=f"use one of {ACTIONS}")
    return action.strip().lower()


def check_policy(
    default_action: object,
    rules: object,
    threshold: object,
    min_rows: object,
    min_share: object = 0.0,
    *,
    level2: Sequence[str] = LEVEL2_IDS,
) -> dict[str, Any]:
    """Validate a policy's fields; the clean content or :class:`InvalidInput`."""
    default = check_action(default_action, "default action")
    if not isinstance(rules, Mapping):
        raise InvalidInput("rules must map level-2 category ids to actions")
    clean: dict[str, str] = {}
    for key, action in rules.items():
        cid = str(key).strip()
        if cid not in level2:
            raise InvalidInput(
                f"unknown level-2 category {key!r}",
                hint=f"the AIR 2024 level-2 ids are {', '.join(level2)}",
            )
        clean[cid] = check_action(action, f"rule {cid}")
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise InvalidInput(f"threshold must be a number, got {threshold!r}")
    if not 0.0 < float(threshold) < 1.0:
        raise InvalidInput(f"threshold must be between 0 and 1 (exclusive), got {threshold}")
    if isinstance(min_rows, bool) or not isinstance(min_rows, int) or not 1 <= min_rows <= 10_000:
        raise InvalidInput(f"min_rows must be an integer from 1 to 10000, got {min_rows!r}")
    if isinstance(min_share, bool) or not isinstance(min_share, int | float):
        raise InvalidInput(f"min_share must be a number, got {min_share!r}")
    if not 0.0 <= float(min_share) <= 1.0:
        raise InvalidInput(f"min_share must be between 0 and 1, got {min_share}")
    return {
        "default_action": default,
        "rules": dict(sorted(clean.items(), key=lambda kv: int(kv[0]))),
        "threshold": float(threshold),
        "min_rows": int(min_rows),
        "min_share": float(min_share),
    }


# -------------------------------------------------------------------------- texts
@dataclass
class ListingTexts:
    """The texts screened for one version: card chunks first, then sampled rows."""

    texts: list[str]
    sources: list[str]
    card_texts: int
    rows_total: int
    rows_screened: int
    seed: int
    columns: list[str]

    def sample(self) -> dict[str, Any]:
        """What was drawn, as stored with the screening."""
        return {
            "rows_total": self.rows_total,
            "rows_screened": self.rows_screened,
            "card_texts": self.card_texts,
            "seed": self.seed,
            "columns": self.columns,
        }


def _chunks(text: str, limit: int = CHUNK_CHARS) -> list[str]:
    """Whole sentences packed into chunks of at most ``limit`` characters."""
    out: list[str] = []
    current = ""
    for sentence in re.split(r"(?<=[.!?;])\s+|\n+", text):
        sentence = " ".join(sentence.split())
        while len(sentence) > limit:  # a run-on "sentence" is cut at the limit
            out.append(sentence[:limit])
            sentence = sentence[limit:]
        if not sentence:
            continue
        if current and len(current) + 1 + len(sentence) > limit:
            out.append(current)
            current = sentence
        else:
            current = f"{current} {sentence}".strip()
    if current:
        out.append(current)
    return out


def card_texts(card: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(source, text)`` pairs of a card: title, description and provenance chunks, tags."""
    out: list[tuple[str, str]] = []
    title = str(card.get("title") or "").strip()
    if title:
        out.append(("card: title", title))
    for part in ("description", "provenance"):
        out += [(f"card: {part}", c) for c in _chunks(str(card.get(part) or ""))]
    tags = [str(t) for t in card.get("tags") or []]
    if tags:
        out.append(("card: tags", ", ".join(tags)))
    return out


def text_columns(frame: pd.DataFrame) -> list[str]:
    """The columns holding strings (object or string dtype with at least one str)."""
    cols = []
    for c in frame.columns:
        col = frame[c]
        if pd.api.types.is_string_dtype(col) or col.dtype == object:
            if col.map(lambda x: isinstance(x, str)).any():
                cols.append(str(c))
    return cols


def sample_seed(sha256: str) -> int:
    """The sampling seed of a file: the first 32 bits of its sha256."""
    try:
        return int(sha256[:8], 16)
    except ValueError:
        raise InvalidInput(f"not a sha256 digest: {sha256!r}") from None


def listing_texts(
    card: Mapping[str, Any],
    frame: pd.DataFrame | None,
    *,
    sample_rows: int = DEFAULT_SAMPLE_ROWS,
    seed: int = 0,
) -> ListingTexts:
    """The card's texts and the text of up to ``sample_rows`` seeded sample rows."""
    pairs = card_texts(card)
    n_card = len(pairs)
    n_total = 0 if frame is None else len(frame)
    cols: list[str] = []
    if frame is not None and n_total:
        cols = text_columns(frame)
        if cols:
            take = min(n_total, sample_rows)
            rng = np.random.default_rng(seed)
            idx = np.sort(rng.choice(n_total, size=take, replace=False))
            part = frame.iloc[idx][cols]
            for i, values in zip(idx, part.itertuples(index=False, name=None), strict=True):
                cells = [" ".join(v.split()) for v in values if isinstance(v, str) and v.strip()]
                if cells:
                    pairs.append((f"row {int(i)}", " | ".join(cells)[:ROW_CHARS]))
    return ListingTexts(
        texts=[t for _, t in pairs],
        sources=[s for s, _ in pairs],
        card_texts=n_card,
        rows_total=n_total,
        rows_screened=len(pairs) - n_card,
        seed=seed,
        columns=cols,
    )


# ----------------------------------------------------------------------- decision
@dataclass
class Screened:
    """The screener's answer for one listing (before any policy is applied)."""

    texts: ListingTexts
    frame: pd.DataFrame  # risk, l2, l2_name, group_name per text, in ``texts`` order
    model: str
    seconds: float


@dataclass
class Decision:
    """A policy applied to a screening: the decision, the state and the findings."""

    decision: str
    state: str
    max_risk: float
    findings: list[dict[str, Any]] = field(default_factory=list)


def decide(screened: Screened, policy: Policy) -> Decision:
    """Apply ``policy`` to a screening (see the module notes for the rule)."""
    f = screened.frame
    n_card = screened.texts.card_texts
    risk = f["risk"].to_numpy(dtype=float)
    is_card = np.arange(len(f)) < n_card
    flagged = risk >= policy.threshold
    needed = policy.rows_needed(screened.texts.rows_screened)
    findings: list[dict[str, Any]] = []
    decision = "allow"
    for l2 in pd.unique(f.loc[flagged, "l2"]):
        sel = flagged & (f["l2"].to_numpy() == l2)
        card_hit = bool((sel & is_card).any())
        rows = int((sel & ~is_card).sum())
        fired = card_hit or rows >= needed
        action = policy.action_for(str(l2))
        if fired and SEVERITY[action] > SEVERITY[decision]:
            decision = action
        order = np.flatnonzero(sel)[np.argsort(-risk[sel], kind="stable")][:MAX_SNIPPETS]
        snippets = [
            {
                "source": screened.texts.sources[i],
                "text": _snippet(screened.texts.texts[i]),
                "risk": round(float(risk[i]), 4),
                "group": str(f["group_name"].iat[i]),
            }
            for i in order
        ]
        findings.append(
            {
                "l2": str(l2),
                "l2_name": str(f.loc[sel, "l2_name"].iat[0]),
                "action": action,
                "fired": fired,
                "card": card_hit,
                "rows": rows,
                "max_risk": round(float(risk[sel].max()), 4),
                "snippets": snippets,
            }
        )
    findings.sort(key=lambda x: (not x["fired"], -SEVERITY[x["action"]], -x["max_risk"]))
    max_risk = round(float(risk.max()), 4) if len(risk) else 0.0
    return Decision(decision, STATE_OF[decision], max_risk, findings)


def _snippet(text: str) -> str:
    return text if len(text) <= SNIPPET_CHARS else text[: SNIPPET_CHARS - 1] + "\u2026"


# --------------------------------------------------------------------------- gate
class ListingGate:
    """The market's screening step: a taxonomy, a trained screener and the sample size.

    ``taxonomy`` is a loaded :class:`~databazaar.safety.taxonomy.Taxonomy` (or pass
    ``data_dir``, the AIR-Bench folder).  ``screener`` may be a trained
    :class:`~databazaar.safety.screen.RiskScreener`; by default one is trained on the
    taxonomy once and cached on disk (:func:`~databazaar.safety.screen.cached_screener`,
    in ``cache_dir``), then loaded the first time a listing is screened.
    """

    def __init__(
        self,
        taxonomy: Any = None,
        *,
        data_dir: str | Path | None = None,
        encoder: str = "minilm",
        sample_rows: int = DEFAULT_SAMPLE_ROWS,
        screener: Any = None,
        cache_dir: str | Path | None = None,
    ) -> None:
        if encoder not in ENCODERS:
            raise InvalidInput(f"unknown screening encoder {encoder!r}", hint=f"use {ENCODERS}")
        if isinstance(sample_rows, bool) or not 1 <= int(sample_rows) <= MAX_SAMPLE_ROWS:
            raise InvalidInput(
                f"sample_rows must be from 1 to {MAX_SAMPLE_ROWS}, got {sample_rows!r}"
            )
        if taxonomy is None:
            from databazaar.safety.taxonomy import load_taxonomy

            taxonomy = load_taxonomy(data_dir)
        self.taxonomy = taxonomy
        self.encoder = encoder
        self.sample_rows = int(sample_rows)
        self.cache_dir = cache_dir
        self._screener = screener
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Any) -> ListingGate | None:
        """The gate the settings ask for (``DATABAZAAR_GATE``), or ``None`` when off."""
        mode = str(getattr(settings, "gate", "off") or "off").lower()
        if mode == "off":
            return None
        return cls(
            data_dir=getattr(settings, "air_bench_dir", None),
            encoder=mode,
            sample_rows=getattr(settings, "gate_sample_rows", DEFAULT_SAMPLE_ROWS),
            cache_dir=Path(settings.home) / "cache",
        )

    @property
    def level2(self) -> dict[str, str]:
        """Level-2 category id -> name."""
        return {c.id: c.name for c in self.taxonomy.categories(2)}

    @property
    def screener(self) -> Any:
        """The trained screener (trained or loaded once, on first use)."""
        with self._lock:
            if self._screener is None:
                from databazaar.safety.screen import cached_screener

                self._screener = cached_screener(
                    self.taxonomy, encoder=self.encoder, cache_dir=self.cache_dir
                )
            return self._screener

    @property
    def model_name(self) -> str:
        enc = getattr(self._screener, "encoder", self.encoder)
        return f"AIR 2024 screener ({'MiniLM' if enc == 'minilm' else 'TF-IDF'})"

    def screen(
        self, card: Mapping[str, Any], frame: pd.DataFrame | None, *, seed: int = 0
    ) -> Screened:
        """Screen a card and a seeded sample of ``frame``'s rows (no policy applied)."""
        texts = listing_texts(card, frame, sample_rows=self.sample_rows, seed=seed)
        screener = self.screener
        start = time.perf_counter()
        if texts.texts:
            result = screener.screen(texts.texts)
            frame_out = result.frame[["risk", "l2", "l2_name", "group_name"]]
        else:
            frame_out = pd.DataFrame(columns=["risk", "l2", "l2_name", "group_name"])
        return Screened(
            texts=texts,
            frame=frame_out.reset_index(drop=True),
            model=self.model_name,
            seconds=round(time.perf_counter() - start, 3),
        )
