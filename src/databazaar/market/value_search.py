r"""Value-aware search: rank products by what they are worth for *the buyer's* task.

The buyer uploads a small validation set (features and a label column).  Candidate
products are pooled into one training set, each row tagged with its product, and the
market computes exact KNN-Shapley values (Jia et al. 2019, Thm. 1) of every row for the
buyer's validation points; a product's value is the sum of its rows' values (group
mode), so values are *marginal contributions in the joint market*: a product that only
repeats what others offer, or whose labels disagree with the buyer's, is worth little or
negative.  As in :mod:`databazaar.market.allocation` the values measure the gain over
chance (a randomly labelled product is worth about 0).

Features: numeric columns shared by the buyer's set and every candidate, standardised
with the buyer's statistics (the buyer's distribution defines the metric), plus MiniLM
sentence embeddings (``all-MiniLM-L6-v2``, 384 dimensions, from the market's
:mod:`~databazaar.core.embeddings`) of shared text columns.

Uncertainty: a product's value is a mean over the buyer's validation points, so the
report gives a confidence interval by batch means: the validation set is split into
``B`` folds, the exact group values are computed per fold, and the interval is
:math:`\bar v \pm t_{B-1,1-\alpha/2}\, s_B / \sqrt{B}` (it covers the value the product
would have on the buyer's *distribution*; the training data are held fixed).

The report also holds point-removal curves (remove the highest- / lowest-valued rows of
the pool and retrain a KNN classifier; Ghorbani & Zou 2019's protocol, via
:func:`databazaar.valuation.evaluate.point_removal_curve`) drawn as an SVG.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from databazaar.core.errors import InvalidInput
from databazaar.market.common import frame_from

MAX_CANDIDATES = 50
MIN_VALIDATION = 4
TEXT_MIN_MEAN_LENGTH = 12


def _is_text(series: pd.Series) -> bool:
    if pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
        return False
    vals = series.dropna().astype(str)
    return len(vals) > 0 and vals.str.len().mean() >= TEXT_MIN_MEAN_LENGTH


@dataclass
class Featurizer:
    """Turn tables with the buyer's columns into a numeric matrix for KNN.

    ``fit`` picks the numeric and text columns shared by all tables (minus the label and
    ``exclude``), learns the buyer's means and scales; ``transform`` standardises
    numeric columns and appends unit-length MiniLM embeddings of text columns.
    """

    label_column: str
    exclude: Sequence[str] = ()
    embedder: Any = None
    numeric_: list[str] = field(default_factory=list)
    text_: list[str] = field(default_factory=list)

    def fit(self, validation: pd.DataFrame, others: Sequence[pd.DataFrame]) -> Featurizer:
        if self.label_column not in validation.columns:
            raise InvalidInput(
                f"the validation set has no label column {self.label_column!r}",
                hint=f"its columns are {list(validation.columns)[:10]}",
            )
        skip = {self.label_column, *self.exclude}
        shared = [
            c for c in validation.columns if c not in skip and all(c in f.columns for f in others)
        ]
        self.numeric_ = [
            c
            for c in shared
            if pd.api.types.is_numeric_dtype(validation[c])
            and not pd.api.types.is_bool_dtype(validation[c])
            and all(pd.api.types.is_numeric_dtype(f[c]) for f in others)
        ]
        self.text_ = [c for c in shared if c not in self.numeric_ and _is_text(validation[c])]
        if not self.numeric_ and not self.text_:
            raise InvalidInput(
                "the validation set and the products share no numeric or text feature column",
                hint="name your columns like the products' columns",
            )
        num = validation[self.numeric_].apply(pd.to_numeric, errors="coerce")
        self.mean_ = num.mean().fillna(0.0).to_numpy(dtype=np.float64)
        std = num.std(ddof=0).fillna(0.0).to_numpy(dtype=np.float64)
        self.scale_ = np.where(std > 0, std, 1.0)
        return self

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        parts = []
        if self.numeric_:
            num = (
                frame[self.numeric_]
                .apply(pd.to_numeric, errors="coerce")
                .to_numpy(dtype=np.float64)
            )
            num = np.where(np.isnan(num), self.mean_, num)
            parts.append((num - self.mean_) / self.scale_)
        if self.text_:
            if self.embedder is None:
                from databazaar.core.embeddings import MiniLMEmbedder

                self.embedder = MiniLMEmbedder()
            for col in self.text_:
                texts = frame[col].fillna("").astype(str).tolist()
                parts.append(np.asarray(self.embedder.encode(texts), dtype=np.float64))
        return np.hstack(parts) if parts else np.zeros((len(frame), 0))


@dataclass
class ProductValue:
    """One product's value for the buyer's task."""

    slug: str
    value: float
    ci_low: float | None
    ci_high: float | None
    n_rows: int
    price_minor: int | None = None
    rank: int = 0

    @property
    def value_per_row(self) -> float:
        return self.value / self.n_rows if self.n_rows else 0.0

    @property
    def value_per_dollar(self) -> float | None:
        """Value per 100 minor units of price (``None`` without a price; inf if free)."""
        if self.price_minor is None:
            return None
        return self.value / (self.price_minor / 100) if self.price_minor else float("inf")

    def to_dict(self) -> dict[str, Any]:
        vpd = self.value_per_dollar
        return {
            "rank": self.rank,
            "slug": self.slug,
            "value": self.value,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "n_rows": self.n_rows,
            "value_per_row": self.value_per_row,
            "price_minor": self.price_minor,
            "value_per_dollar": None if vpd is None or not np.isfinite(vpd) else vpd,
        }


@dataclass
class ValueReport:
    """The ranking, with the settings and removal curves behind it."""

    products: list[ProductValue]
    k: int
    n_validation: int
    numeric_features: list[str]
    text_features: list[str]
    confidence: float | None
    chance: float
    curves: dict[str, dict[str, Any]] = field(default_factory=dict)
    method: str = "knn-shapley (group = product, gain over chance)"

    def to_dict(self, *, svg: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "method": self.method,
            "k": self.k,
            "n_validation": self.n_validation,
            "numeric_features": self.numeric_features,
            "text_features": self.text_features,
            "confidence": self.confidence,
            "chance": self.chance,
            "products": [p.to_dict() for p in self.products],
            "removal_curves": {
                name: {
                    "fractions": [float(f) for f in c["fractions"]],
                    "scores": [float(s) for s in c["scores"]],
                    "normalized_auc": float(c["normalized_auc"]),
                }
                for name, c in self.curves.items()
            },
        }
        if svg and self.curves:
            out["removal_curve_svg"] = self.removal_curve_svg()
        return out

    def to_markdown(self) -> str:
        ci = f"{round((self.confidence or 0) * 100)}% CI" if self.confidence else "CI"
        lines = [
            f"| rank | product | value | {ci} | rows | value/row | price |",
            "|---|---|---|---|---|---|---|",
        ]
        for p in self.products:
            interval = f"[{p.ci_low:.4f}, {p.ci_high:.4f}]" if p.ci_low is not None else "-"
            price = f"{p.price_minor / 100:.2f}" if p.price_minor is not None else "-"
            lines.append(
                f"| {p.rank} | {p.slug} | {p.value:.4f} | {interval} | {p.n_rows} | "
                f"{p.value_per_row:.2e} | {price} |"
            )
        return "\n".join(lines)

    def removal_curve_svg(self) -> str:
        """Validation accuracy as the highest- / lowest-valued pooled rows are removed."""
        if not self.curves:
            raise InvalidInput("the report has no removal curves", hint="rank with curves=True")
        from databazaar.core.figures import figure, svg_text

        fig = figure(6, 4)
        ax = fig.add_subplot(1, 1, 1)
        styles = {
            "high": ("remove high value first", "C3"),
            "low": ("remove low value first", "C0"),
        }
        for name, c in self.curves.items():
            label, color = styles.get(name, (name, "C7"))
            ax.plot(c["fractions"], c["scores"], marker="o", color=color, label=label)
        ax.set_xlabel("fraction of pooled rows removed")
        ax.set_ylabel(f"validation accuracy, KNN (k={self.k})")
        ax.set_title("Point removal on the buyer's task")
        ax.grid(alpha=0.3)
        ax.legend()
        return svg_text(fig)


def rank_products(
    candidates: Mapping[str, Any],
    validation: Any,
    label_column: str,
    *,
    k: int = 5,
    prices: Mapping[str, int] | None = None,
    embedder: Any = None,
    exclude: Sequence[str] = (),
    confidence: float | None = 0.95,
    n_batches: int = 10,
    curves: bool = True,
    fractions: Sequence[float] = (0.0, 0.1, 0.2, 0.3, 0.4),
    random_state: int = 0,
) -> ValueReport:
    """Rank ``candidates`` (``{slug: table}``) by KNN-Shapley value for ``validation``.

    Args:
        candidates: the products' tables; each must have ``label_column``.
        validation: the buyer's validation rows (DataFrame or list of dicts).
        label_column: the label the buyer predicts.
        k: neighbours of the KNN utility.
        prices: optional prices in minor units, for value per dollar.
        embedder: a sentence encoder with ``encode(texts)`` (default MiniLM, loaded
            only if a text column is shared).
        exclude: columns never used as features (ids, contributor groups ...).
        confidence: level of the batch-means intervals (``None``: no intervals).
        n_batches: folds of the validation set for the intervals.
        curves: compute the point-removal curves.
        fractions: removal fractions of the curves.
        random_state: seed of the fold split and the curves.
    """
    from databazaar.valuation.knn import knn_shapley

    if not isinstance(candidates, Mapping) or not candidates:
        raise InvalidInput("give at least one candidate product")
    if len(candidates) > MAX_CANDIDATES:
        raise InvalidInput(f"at most {MAX_CANDIDATES} candidates per ranking")
    val = frame_from(validation, "the validation set")
    if len(val) < MIN_VALIDATION:
        raise InvalidInput(f"the validation set needs at least {MIN_VALIDATION} rows")
    if label_column in val.columns and val[label_column].isna().any():
        raise InvalidInput("the validation set has missing labels", hint="drop unlabelled rows")
    frames = {str(s): frame_from(f, f"product {s!r}") for s, f in candidates.items()}
    for slug, f in frames.items():
        if label_column not in f.columns:
            raise InvalidInput(
                f"product {slug!r} has no label column {label_column!r}",
                hint="rank only products labelled for your task",
            )
    feat = Featurizer(label_column, exclude, embedder).fit(val, list(frames.values()))
    slugs = list(frames)
    x_val = feat.transform(val)
    y_val = val[label_column].astype(str).to_numpy()
    xs, ys, groups = [], [], []
    for gi, slug in enumerate(slugs):
        f = frames[slug].dropna(subset=[label_column])
        xs.append(feat.transform(f))
        ys.append(f[label_column].astype(str).to_numpy())
        groups.append(np.full(len(f), gi))
    x_pool, y_pool, g_pool = np.vstack(xs), np.concatenate(ys), np.concatenate(groups)
    if len(y_pool) == 0:
        raise InvalidInput("the candidate products have no labelled rows")
    sizes = np.bincount(g_pool, minlength=len(slugs)).astype(np.float64)
    n_classes = len(np.unique(np.concatenate([y_pool, y_val])))
    chance = 1.0 / n_classes
    shift = chance * sizes * min(len(y_pool), k) / (k * len(y_pool))

    point = knn_shapley(x_pool, y_pool, x_val, y_val, k=k)
    values = np.bincount(g_pool, weights=point.values, minlength=len(slugs)) - shift

    lows = highs = None
    if confidence is not None:
        if not 0 < confidence < 1:
            raise InvalidInput("confidence must be between 0 and 1")
        b = int(min(max(n_batches, 2), len(val)))
        rng = np.random.default_rng(random_state)
        folds = np.array_split(rng.permutation(len(val)), b)
        per = np.empty((b, len(slugs)))
        weights = np.array([len(fd) for fd in folds], dtype=np.float64)
        for j, fd in enumerate(folds):
            r = knn_shapley(x_pool, y_pool, x_val[fd], y_val[fd], k=k)
            per[j] = np.bincount(g_pool, weights=r.values, minlength=len(slugs)) - shift
        mean = (weights[:, None] * per).sum(axis=0) / weights.sum()
        sd = np.sqrt(
            ((weights[:, None] * (per - mean) ** 2).sum(axis=0)) / weights.sum() * b / (b - 1)
        )
        from scipy import stats

        half = stats.t.ppf(0.5 + confidence / 2, b - 1) * sd / np.sqrt(b)
        lows, highs = values - half, values + half

    products = [
        ProductValue(
            slug,
            float(values[i]),
            None if lows is None else float(lows[i]),
            None if highs is None else float(highs[i]),
            int(sizes[i]),
            None if prices is None else prices.get(slug),
        )
        for i, slug in enumerate(slugs)
    ]
    products.sort(key=lambda p: (-p.value, p.slug))
    for r, p in enumerate(products, start=1):
        p.rank = r

    curve_out: dict[str, dict[str, Any]] = {}
    if curves and len(y_pool) > k + 1 and len(np.unique(y_pool)) > 1:
        from sklearn.neighbors import KNeighborsClassifier

        from databazaar.valuation.evaluate import point_removal_curve

        for order in ("high", "low"):
            curve_out[order] = point_removal_curve(
                point.values,
                KNeighborsClassifier(n_neighbors=k),
                x_pool,
                y_pool,
                x_val,
                y_val,
                order=order,
                fractions=fractions,
                random_state=random_state,
            )
    return ValueReport(
        products, k, len(val), feat.numeric_, feat.text_, confidence, chance, curve_out
    )


def product_value(
    frame: Any,
    validation: Any,
    label_column: str,
    *,
    k: int = 5,
    exclude: Sequence[str] = (),
    embedder: Any = None,
    confidence: float = 0.95,
) -> ProductValue:
    """One product's value for the buyer's task (the input of value-based pricing)."""
    rep = rank_products(
        {"product": frame},
        validation,
        label_column,
        k=k,
        exclude=exclude,
        embedder=embedder,
        confidence=confidence,
        curves=False,
    )
    return rep.products[0]
