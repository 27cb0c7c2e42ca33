"""Value-aware search: the planted ranking, intervals, the report and its SVG."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification

from databazaar.core.errors import InvalidInput
from databazaar.market.value_search import product_value, rank_products


def _frame(x: np.ndarray, y: np.ndarray) -> pd.DataFrame:
    df = pd.DataFrame(x, columns=[f"f{i}" for i in range(x.shape[1])])
    df["label"] = np.where(y == 1, "yes", "no")
    return df


@pytest.fixture(scope="module")
def planted() -> dict[str, pd.DataFrame]:
    x, y = make_classification(
        n_samples=900, n_features=6, n_informative=4, n_redundant=0, class_sep=1.2, random_state=7
    )
    rng = np.random.default_rng(0)
    xs, ys = make_classification(
        n_samples=300, n_features=6, n_informative=4, n_redundant=0, class_sep=1.2, random_state=99
    )
    return {
        "validation": _frame(x[:100], y[:100]),
        "buyer-like": _frame(x[100:300], y[100:300]),
        "flipped": _frame(x[300:500], 1 - y[300:500]),
        "random-labels": _frame(x[500:700], rng.integers(0, 2, 200)),
        "other-task": _frame(xs[:200] + 3.0, ys[:200]),
    }


def test_planted_ranking(planted: dict[str, pd.DataFrame]) -> None:
    cands = {k: v for k, v in planted.items() if k != "validation"}
    rep = rank_products(
        cands,
        planted["validation"],
        "label",
        k=5,
        prices={"buyer-like": 1000, "flipped": 500, "random-labels": 0, "other-task": 200},
    )
    order = [p.slug for p in rep.products]
    assert order[0] == "buyer-like"
    assert order[-1] == "flipped"
    vals = {p.slug: p for p in rep.products}
    assert vals["buyer-like"].value > 0.2
    assert vals["flipped"].value < -0.1
    assert abs(vals["random-labels"].value) < 0.05
    # the interval of the winner excludes 0 and contains its value
    best = vals["buyer-like"]
    assert best.ci_low is not None and 0 < best.ci_low < best.value < best.ci_high
    assert vals["flipped"].ci_high < 0
    assert [p.rank for p in rep.products] == [1, 2, 3, 4]
    d = rep.to_dict(svg=True)
    assert d["products"][0]["value_per_dollar"] == pytest.approx(best.value / 10)
    assert vals["random-labels"].to_dict()["value_per_dollar"] is None  # free: infinite
    assert d["numeric_features"] == [f"f{i}" for i in range(6)]
    assert d["removal_curve_svg"].lstrip().startswith("<?xml") and "<svg" in d["removal_curve_svg"]
    # removing high-value rows first hurts more than removing low-value rows first
    assert rep.curves["high"]["normalized_auc"] < rep.curves["low"]["normalized_auc"]
    assert "| 1 | buyer-like |" in rep.to_markdown()


def test_single_product_value(planted: dict[str, pd.DataFrame]) -> None:
    pv = product_value(planted["buyer-like"], planted["validation"], "label")
    assert pv.value > 0.3 and pv.ci_low is not None and pv.ci_low > 0
    bad = product_value(planted["flipped"], planted["validation"], "label")
    assert bad.value < 0


@pytest.mark.slow
def test_text_columns_use_minilm() -> None:
    pos = [
        "a wonderful, delightful product, works great",
        "excellent quality, I love it",
        "superb and reliable, very happy",
    ]
    neg = [
        "terrible, broke after a day, awful",
        "poor quality and a waste of money",
        "horrible, very disappointed",
    ]
    rng = np.random.default_rng(0)

    def reviews(n: int, flip: bool = False) -> pd.DataFrame:
        rows = []
        for i in range(n):
            good = bool(rng.integers(0, 2))
            text = (pos if good else neg)[i % 3] + f" (review {i})"
            rows.append({"text": text, "label": "pos" if good != flip else "neg"})
        return pd.DataFrame(rows)

    rep = rank_products(
        {"good-reviews": reviews(40), "flipped-reviews": reviews(40, flip=True)},
        reviews(12),
        "label",
        k=3,
        n_batches=4,
        curves=False,
    )
    assert rep.text_features == ["text"] and rep.numeric_features == []
    assert [p.slug for p in rep.products] == ["good-reviews", "flipped-reviews"]
    with pytest.raises(InvalidInput, match="no removal curves"):
        rep.removal_curve_svg()


def test_value_search_errors(planted: dict[str, pd.DataFrame]) -> None:
    val = planted["validation"]
    with pytest.raises(InvalidInput, match="at least one candidate"):
        rank_products({}, val, "label")
    with pytest.raises(InvalidInput, match="no label column"):
        rank_products({"a": planted["flipped"]}, val, "target")
    with pytest.raises(InvalidInput, match="product 'a' has no label"):
        rank_products({"a": planted["flipped"].drop(columns="label")}, val, "label")
    with pytest.raises(InvalidInput, match="at least 4 rows"):
        rank_products({"a": planted["flipped"]}, val.head(2), "label")
    with pytest.raises(InvalidInput, match="share no numeric"):
        rank_products({"a": pd.DataFrame({"g": [1, 2], "label": ["x", "y"]})}, val, "label")
    with pytest.raises(InvalidInput, match="must be a table"):
        rank_products({"a": "nope"}, val, "label")
    with pytest.raises(InvalidInput, match="missing labels"):
        rank_products({"a": planted["flipped"]}, val.assign(label=None), "label")
    with pytest.raises(InvalidInput, match="confidence"):
        rank_products({"a": planted["flipped"]}, val, "label", confidence=1.5)
    # validation as a list of row objects works
    rows = val.to_dict(orient="records")
    assert (
        rank_products({"a": planted["buyer-like"]}, rows, "label", curves=False).products[0].value
        > 0
    )
