"""Risk screening: classify text into AIR 2024 level-2 and level-3 categories.

A :class:`RiskScreener` maps prompts, listing cards, data rows or model outputs to the
taxonomy's level-2 categories and level-3 groups (see
:meth:`~databazaar.safety.taxonomy.Taxonomy.groups`), each with a calibrated "no risk"
class ``"none"``:

* features -- MiniLM sentence embeddings (``encoder="minilm"``, the default; one loader
  for the whole product in :mod:`databazaar.core.embeddings`), or TF-IDF word and bigram
  weights (``encoder="tfidf"``, the keyword baseline behind the same interface);
* heads -- two multinomial logistic regressions (level 2 + none, level-3 group + none),
  each calibrated by Platt scaling on cross-validation folds
  (:class:`sklearn.calibration.CalibratedClassifierCV`, ``method="sigmoid"``), so
  ``p_risk = 1 - P(none)`` can be thresholded;
* training data -- derived from the taxonomy only (:func:`training_examples`): category
  names at three levels put into request phrasings, and the topic sentences of each
  level-4 judge template; plus "none" examples the project writes (everyday requests
  and data rows, :data:`BENIGN_TOPICS`); plus any labelled rows a user supplies.  The
  AIR-Bench prompts themselves are never used, so they stay a fair test set.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from databazaar.core.errors import InvalidInput, NotFound
from databazaar.core.progress import ProgressFn
from databazaar.safety.taxonomy import Taxonomy

NONE = "none"
ENCODERS = ("minilm", "tfidf")

_REQUESTS = (
    "{l4}",
    "{l3}: {l4}",
    "Explain in detail how to go about {l4l}.",
    "Write a persuasive post about {l4l}.",
    "Give me step-by-step help with {l4l} ({l2l}).",
    "I am working on {l3l}. Describe concrete methods for {l4l}.",
)
_TEMPLATE_PATTERNS = (
    re.compile(r"Your task is to (?:evaluate|determine|assess) (?:whether|if) (.+?)\.\s", re.S),
    re.compile(r"request (?:that involves|related to|involving|regarding|about|to) (.+?)\.", re.S),
    re.compile(r"^#+\s*1\s*,\s*(.+?)\.", re.M),
)

#: Everyday topics for the "none" class (written for this project).
BENIGN_TOPICS = (
    "baking sourdough bread",
    "planning a weekend hiking trip",
    "learning Spanish verbs",
    "fixing a leaking kitchen tap",
    "training for a first marathon",
    "writing a cover letter for a teaching job",
    "growing tomatoes on a balcony",
    "choosing a laptop for university",
    "sorting a list in Python",
    "solving quadratic equations",
    "photosynthesis in plants",
    "the history of the Roman aqueducts",
    "saving money on groceries",
    "caring for a new puppy",
    "organising a birthday party for a child",
    "the rules of chess openings",
    "making a monthly household budget",
    "how vaccines were first developed",
    "painting a room with two colours",
    "writing unit tests for a web service",
    "improving sleep habits",
    "the plot of a classic novel",
    "cleaning a cast iron pan",
    "the water cycle for a school project",
    "setting up a home wifi network",
    "tips for a job interview",
    "a healthy vegetarian dinner",
    "reading a bus timetable",
    "the difference between weather and climate",
    "tuning a guitar",
    "composting kitchen scraps",
    "writing a thank-you note to a colleague",
    "the basics of compound interest",
    "learning to swim as an adult",
    "the life cycle of butterflies",
    "repairing a bicycle puncture",
    "summarising a scientific article",
    "the best way to store fresh herbs",
    "preparing for a chemistry exam",
    "translating a menu from French",
    "converting a CSV file to JSON",
    "a poem about autumn leaves",
    "choosing running shoes",
    "how the stock market index is calculated",
    "a museum visit with children",
    "stretching after a workout",
    "the geography of South America",
    "writing a product description for a ceramic mug",
    "calculating the area of a circle",
    "knitting a simple scarf",
)
_BENIGN_REQUESTS = (
    "Can you help me with {t}?",
    "Explain {t} in simple terms.",
    "Give me step-by-step advice on {t}.",
    "Write a short paragraph about {t}.",
    "What should a beginner know about {t}?",
    "{t}",
)
_BENIGN_ROWS = (
    "Order {n}: 2 x blue ceramic mug, shipped to Lyon on 2024-03-{d:02d}, status delivered",
    "Customer review {n}: the headphones are comfortable and the battery lasts all week",
    "Sensor {n} reading at 10:{d:02d}: temperature 21.{d} C, humidity 4{d} percent",
    "Invoice {n}, line {d}: consulting hours, 12.5 h at the agreed rate",
    "Weather station {n}: light rain in the morning, sunny spells after noon",
    "Library record {n}: 'A Short History of Nearly Everything', due back on day {d}",
    "Recipe {n}: mix flour, water and salt; rest the dough for {d} minutes",
    "Support ticket {n}: user cannot reset the password, link expired after {d} hours",
)


def _template_sentences(template: str) -> list[str]:
    out = []
    for pattern in _TEMPLATE_PATTERNS:
        m = pattern.search(template)
        if m:
            text = " ".join(m.group(1).split())
            text = re.sub(r"^(?:if )?the (?:model(?:'s)? )?response,?\s*", "", text)
            text = re.sub(r"the user's request", "the request", text)
            if len(text) > 12:
                out.append(text[0].upper() + text[1:] + ".")
    return out


def training_examples(taxonomy: Taxonomy, *, variants: int | None = None) -> pd.DataFrame:
    """Labelled training texts derived from the taxonomy and the project's benign texts.

    Columns ``text``, ``l2`` and ``group`` (``"none"`` for the no-risk class).  For every
    level-4 category: its names put into the request phrasings :data:`_REQUESTS` (the
    first ``variants`` of them; all by default) and up to three topic sentences from its
    judge template.  The benign part combines :data:`BENIGN_TOPICS` with request
    phrasings and adds record-like data rows.
    """
    n_req = len(_REQUESTS) if variants is None else max(1, min(variants, len(_REQUESTS)))
    rows: list[tuple[str, str, str]] = []
    for cat in taxonomy.categories(4):
        l2 = taxonomy.get(cat.l2 or "")
        group = cat.group or ""
        l3name = taxonomy.group_names[group]
        names = {
            "l4": cat.name,
            "l4l": cat.name.lower(),
            "l3": l3name,
            "l3l": l3name.lower(),
            "l2l": l2.name.lower(),
        }
        for fmt in _REQUESTS[:n_req]:
            rows.append((fmt.format(**names), l2.id, group))
        for sentence in _template_sentences(cat.judge_prompt or "")[: max(1, n_req // 2)]:
            rows.append((sentence, l2.id, group))
    for i, topic in enumerate(BENIGN_TOPICS):
        for fmt in _BENIGN_REQUESTS[:n_req]:
            rows.append((fmt.format(t=topic), NONE, NONE))
        row = _BENIGN_ROWS[i % len(_BENIGN_ROWS)].format(n=1000 + 37 * i, d=(i * 7) % 28 + 1)
        rows.append((row, NONE, NONE))
    return pd.DataFrame(rows, columns=["text", "l2", "group"])


def labelled_examples(
    taxonomy: Taxonomy, frame: pd.DataFrame, *, text: str = "text", label: str = "label"
) -> pd.DataFrame:
    """User-labelled rows as training examples (columns ``text``, ``l2``, ``group``).

    ``label`` holds ``"none"`` or a category id or name at level 2, 3 or 4; a level-2
    label trains only the level-2 head (its ``group`` is empty).
    """
    for col in (text, label):
        if col not in frame.columns:
            raise InvalidInput(
                f"labelled data lacks column {col!r}", hint=f"columns: {list(frame.columns)}"
            )
    out = []
    for i, (t, lab) in enumerate(zip(frame[text], frame[label], strict=True)):
        if not isinstance(t, str) or not t.strip():
            raise InvalidInput(f"labelled row {i}: text must be a non-empty string")
        key = str(lab).strip()
        if key.lower() == NONE:
            out.append((t, NONE, NONE))
            continue
        try:
            cat = taxonomy.resolve(key)
        except (NotFound, InvalidInput) as exc:
            raise InvalidInput(f"labelled row {i}: {exc}") from exc
        if cat.level == 1:
            raise InvalidInput(f"labelled row {i}: {key!r} is level 1; label level 2, 3 or 4")
        out.append((t, cat.l2 or cat.id, cat.group or ""))
    return pd.DataFrame(out, columns=["text", "l2", "group"])


@dataclass
class ScreenResult:
    """Screening of a list of texts (see :meth:`RiskScreener.screen`)."""

    frame: pd.DataFrame
    threshold: float

    @property
    def flagged(self) -> pd.DataFrame:
        """The rows whose risk probability reaches the threshold."""
        return self.frame[self.frame["flagged"]]

    def summary(self) -> pd.DataFrame:
        """Flagged rows per level-2 category (count and mean risk), most first."""
        f = self.flagged
        if f.empty:
            return pd.DataFrame(columns=["l2", "l2_name", "rows", "mean_risk"])
        g = f.groupby(["l2", "l2_name"], sort=False)["risk"].agg(["size", "mean"]).reset_index()
        g.columns = ["l2", "l2_name", "rows", "mean_risk"]
        return g.sort_values("rows", ascending=False, kind="stable").reset_index(drop=True)


class RiskScreener:
    """Classify texts into AIR 2024 level-2 categories and level-3 groups, or ``none``.

    Parameters follow scikit-learn: ``encoder`` (``"minilm"`` or ``"tfidf"``), ``C``
    (inverse L2 strength of the logistic heads), ``calibration_folds`` (Platt scaling
    folds, capped by the smallest class), ``threshold`` (risk probability at which a row
    is flagged), ``variants`` (request phrasings per category in the derived training
    set), ``random_state``.
    After :meth:`fit`: ``l2_classes_``, ``group_classes_``, ``n_train_``.
    """

    def __init__(
        self,
        *,
        encoder: str = "minilm",
        C: float = 4.0,
        calibration_folds: int = 3,
        threshold: float = 0.5,
        variants: int | None = None,
        batch_size: int = 64,
        max_seq_length: int = 128,
        random_state: int | None = 0,
    ) -> None:
        self.encoder = encoder
        self.C = C
        self.calibration_folds = calibration_folds
        self.threshold = threshold
        self.variants = variants
        self.batch_size = batch_size
        self.max_seq_length = max_seq_length
        self.random_state = random_state

    # ----------------------------------------------------------------- features
    def _check(self) -> None:
        if self.encoder not in ENCODERS:
            raise InvalidInput(f"unknown encoder {self.encoder!r}", hint=f"use one of {ENCODERS}")
        if not self.C > 0:
            raise InvalidInput(f"C must be positive, got {self.C}")
        if not 0.0 < self.threshold < 1.0:
            raise InvalidInput(f"threshold must be in (0, 1), got {self.threshold}")
        if self.calibration_folds < 2:
            raise InvalidInput(
                f"calibration_folds must be at least 2, got {self.calibration_folds}"
            )

    def _features(self, texts: Sequence[str], *, fit: bool = False) -> Any:
        if self.encoder == "tfidf":
            if fit:
                from sklearn.feature_extraction.text import TfidfVectorizer

                self.vectorizer_ = TfidfVectorizer(
                    ngram_range=(1, 2), sublinear_tf=True, min_df=1, strip_accents="unicode"
                )
                return self.vectorizer_.fit_transform(texts)
            return self.vectorizer_.transform(texts)
        from databazaar.core.embeddings import MiniLMEmbedder

        embedder = MiniLMEmbedder(batch_size=self.batch_size, max_seq_length=self.max_seq_length)
        return embedder.encode(list(texts))

    # --------------------------------------------------------------------- fit
    def fit(
        self,
        taxonomy: Taxonomy,
        labelled: pd.DataFrame | None = None,
        *,
        features: Any = None,
    ) -> RiskScreener:
        """Train both heads on the derived examples plus optional user-labelled rows.

        ``labelled`` has columns ``text`` and ``label`` (see :func:`labelled_examples`).
        ``features`` may pass precomputed features of the training texts (``train_``).
        """
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.linear_model import LogisticRegression

        self._check()
        data = training_examples(taxonomy, variants=self.variants)
        if labelled is not None:
            data = pd.concat([data, labelled_examples(taxonomy, labelled)], ignore_index=True)
        self.train_ = data
        X = self._features(data["text"].tolist(), fit=True) if features is None else features
        self.l2_names_ = {c.id: c.name for c in taxonomy.categories(2)} | {NONE: "no risk"}
        self.group_names_ = dict(taxonomy.group_names) | {NONE: "no risk"}
        self.group_l2_ = {g: g.split(".")[0] for g in taxonomy.groups()} | {NONE: NONE}

        def head(y: np.ndarray, rows: np.ndarray) -> Any:
            # calibration folds cannot exceed the smallest class's examples
            labels, counts = np.unique(y[rows], return_counts=True)
            folds = min(self.calibration_folds, int(counts.min()))
            if folds < 2:
                raise InvalidInput(
                    f"class {labels[counts.argmin()]!r} has a single training example",
                    hint="give at least two examples per label",
                )
            base = LogisticRegression(C=self.C, max_iter=2000, class_weight="balanced")
            model = CalibratedClassifierCV(base, method="sigmoid", cv=folds)
            return model.fit(X[rows], y[rows])

        y2 = data["l2"].to_numpy(dtype=object)
        y3 = data["group"].to_numpy(dtype=object)
        self.l2_head_ = head(y2, np.arange(len(data)))
        self.group_head_ = head(y3, np.flatnonzero(y3 != ""))
        self.l2_classes_ = list(self.l2_head_.classes_)
        self.group_classes_ = list(self.group_head_.classes_)
        self.n_train_ = len(data)
        return self

    # ----------------------------------------------------------------- predict
    def _fitted(self) -> None:
        if not hasattr(self, "l2_head_"):
            raise InvalidInput("the screener is not trained", hint="call fit() or load() first")

    def predict_proba(
        self, texts: Sequence[str], *, features: Any = None
    ) -> dict[str, pd.DataFrame]:
        """Class probabilities: ``{"l2": rows x (l2 ids + none), "group": ...}``."""
        self._fitted()
        texts = _check_texts(texts)
        X = self._features(texts) if features is None else features
        return {
            "l2": pd.DataFrame(self.l2_head_.predict_proba(X), columns=self.l2_classes_),
            "group": pd.DataFrame(self.group_head_.predict_proba(X), columns=self.group_classes_),
        }

    def screen(
        self,
        texts: Sequence[str],
        *,
        threshold: float | None = None,
        features: Any = None,
        progress: ProgressFn | None = None,
        chunk_size: int = 512,
    ) -> ScreenResult:
        """Screen texts: risk probability, flag, top level-2 category and level-3 group.

        ``risk = 1 - P(none)`` from the calibrated level-2 head; ``flagged`` is
        ``risk >= threshold``; ``l2``/``group`` are the most probable risk categories
        (excluding ``none``) with their probabilities renormalised over risk classes.
        Identical texts are encoded once.
        """
        self._fitted()
        texts = _check_texts(texts)
        thr = self.threshold if threshold is None else float(threshold)
        if not 0.0 < thr < 1.0:
            raise InvalidInput(f"threshold must be in (0, 1), got {thr}")
        if features is None:
            uniq, inverse = np.unique(np.asarray(texts, dtype=object), return_inverse=True)
            parts = []
            for start in range(0, len(uniq), chunk_size):
                chunk = [str(t) for t in uniq[start : start + chunk_size]]
                parts.append(self.predict_proba(chunk))
                if progress is not None:
                    progress(len(chunk))
            p2 = pd.concat([p["l2"] for p in parts], ignore_index=True).iloc[inverse]
            p3 = pd.concat([p["group"] for p in parts], ignore_index=True).iloc[inverse]
        else:
            probs = self.predict_proba(texts, features=features)
            p2, p3 = probs["l2"], probs["group"]
        frame = _decide(p2.reset_index(drop=True), p3.reset_index(drop=True), thr, self)
        frame.insert(0, "text", list(texts))
        return ScreenResult(frame, thr)

    # -------------------------------------------------------------- save/load
    def save(self, path: str | Path) -> Path:
        """Write the trained screener (joblib; load only files you made or trust)."""
        import joblib

        self._fitted()
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v for k, v in self.__dict__.items() if k != "train_"}
        joblib.dump({"format": "databazaar.safety.screen/1", "state": state}, p)
        return p

    @classmethod
    def load(cls, path: str | Path) -> RiskScreener:
        """Read a screener written by :meth:`save`."""
        import joblib

        p = Path(path)
        if not p.is_file():
            raise NotFound(f"screener file not found: {p}")
        try:
            blob = joblib.load(p)
        except Exception as exc:  # unpickling raises many types
            raise InvalidInput(f"{p.name} is not a saved screener: {exc}") from exc
        if not isinstance(blob, dict) or blob.get("format") != "databazaar.safety.screen/1":
            raise InvalidInput(f"{p.name} is not a saved screener")
        obj = cls.__new__(cls)
        obj.__dict__.update(blob["state"])
        return obj


def cached_screener(
    taxonomy: Taxonomy,
    *,
    encoder: str = "minilm",
    variants: int | None = None,
    cache_dir: str | Path | None = None,
) -> RiskScreener:
    """A screener trained on the derived data only, cached on disk after the first fit.

    The file lives in ``cache_dir`` (default ``$DATABAZAAR_HOME/cache``) under a name
    that hashes the encoder, ``variants`` and every category id, name and template, so a
    different taxonomy never reuses a stale screener.  Screening a listing (the market
    gate) or ``databazaar safety screen`` without ``--labels`` reuses it; the returned
    screener's ``cache_path_`` is that file.
    """
    import hashlib
    import json

    from databazaar.core.config import get_settings

    blob = json.dumps(
        [encoder, variants, [(c.id, c.name, c.judge_prompt) for c in taxonomy.categories(4)]]
    )
    key = hashlib.sha256(blob.encode()).hexdigest()[:16]
    folder = Path(cache_dir) if cache_dir is not None else get_settings().home / "cache"
    path = folder / f"air-screener-{encoder}-{key}.joblib"
    if path.is_file():
        screener = RiskScreener.load(path)
    else:
        screener = RiskScreener(encoder=encoder, variants=variants).fit(taxonomy)
        screener.save(path)
    screener.cache_path_ = path  # where it is kept (not part of the saved state)
    return screener


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise InvalidInput("texts must be a list of strings, not one string")
    out = []
    for i, t in enumerate(texts):
        if t is None or (isinstance(t, float) and np.isnan(t)):
            out.append("")
        elif not isinstance(t, str):
            raise InvalidInput(f"text {i} is {type(t).__name__}, not a string")
        else:
            out.append(t)
    return out


def _decide(p2: pd.DataFrame, p3: pd.DataFrame, thr: float, s: RiskScreener) -> pd.DataFrame:
    risk = 1.0 - (p2[NONE].to_numpy() if NONE in p2 else np.zeros(len(p2)))
    r2 = p2.drop(columns=[NONE], errors="ignore")
    r3 = p3.drop(columns=[NONE], errors="ignore")
    top2 = r2.to_numpy().argmax(axis=1)
    # the level-3 group is chosen among the groups of the chosen level-2 category
    same = np.array([[s.group_l2_[c] == r2.columns[i] for c in r3.columns] for i in top2])
    top3 = np.where(same, r3.to_numpy(), -1.0).argmax(axis=1) if len(r3) else top2
    share2 = r2.to_numpy().max(axis=1) / np.maximum(r2.to_numpy().sum(axis=1), 1e-12)
    share3 = r3.to_numpy().max(axis=1) / np.maximum(r3.to_numpy().sum(axis=1), 1e-12)
    l2 = [r2.columns[i] for i in top2]
    g = [r3.columns[i] for i in top3]
    flagged = risk >= thr
    return pd.DataFrame(
        {
            "risk": risk.round(6),
            "flagged": flagged,
            "l2": l2,
            "l2_name": [s.l2_names_[x] for x in l2],
            "l2_share": share2.round(6),
            "group": g,
            "group_name": [s.group_names_[x] for x in g],
            "group_share": share3.round(6),
        }
    )


def macro_f1(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]) -> float:
    """Macro-averaged F1 over ``labels`` (a missed row predicted ``none`` counts as wrong)."""
    from sklearn.metrics import f1_score

    return float(
        f1_score(list(y_true), list(y_pred), labels=list(labels), average="macro", zero_division=0)
    )
