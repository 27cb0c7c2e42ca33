"""``databazaar demo``: a guided tour that runs the real code paths end to end.

1. Valuation: scikit-learn's digits with 10% of the training labels flipped; exact
   KNN-Shapley finds the flipped rows, Data Banzhaf (MSR) over a logistic regression
   agrees, and removing the lowest-valued rows improves test accuracy.
2. Market: a fresh SQLite store under the data home; sellers list products, a buyer
   buys one, a replayed purchase is a no-op, and the ledger verifies.
3. Economics: the buyer ranks products by their KNN-Shapley value for its task, buys
   one under value-based pricing, and the revenue splits by Data Shapley.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

Say = Callable[[str], None]


def valuation_tour(say: Say, *, seed: int = 0) -> dict[str, Any]:
    """Value a noisy copy of the digits data and report what the values reveal."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from databazaar.valuation.evaluate import flip_labels, noisy_label_detection
    from databazaar.valuation.knn import knn_shapley

    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.3, random_state=seed, stratify=y
    )
    y_noisy, flipped = flip_labels(y_train, 0.1, random_state=seed)
    say(
        f"[bold]1. Valuation[/bold]: digits, {len(y_train)} training rows "
        f"({len(flipped)} labels flipped on purpose), {len(y_test)} test rows"
    )
    start = time.perf_counter()
    res = knn_shapley(x_train, y_noisy, x_test, y_test, k=5, n_jobs=-1)
    took = time.perf_counter() - start
    det = noisy_label_detection(res, flipped)
    say(
        f"   exact KNN-Shapley (K=5) in {took:.3f} s; flipped rows found: "
        f"AUROC {det['auroc']:.3f}, F1 of the lowest {len(flipped)} "
        f"{det['bottom_k_f1']:.3f} (random guessing: AUROC 0.5, F1 ~0.1)"
    )
    lowest = res.bottom(5)
    flipped_set = set(flipped.tolist())
    for pos, (idx, val) in enumerate(zip(lowest.ids, lowest.values, strict=True), 1):
        mark = "flipped" if idx in flipped_set else "clean"
        say(
            f"   lowest #{pos}: row {idx} label {y_noisy[idx]} (true {y_train[idx]}), "
            f"value {val:+.5f} [{mark}]"
        )
    from sklearn.neighbors import KNeighborsClassifier

    keep = np.ones(len(y_train), bool)
    keep[res.ranking(ascending=True)[: len(flipped)]] = False
    clf = KNeighborsClassifier(5)
    before = clf.fit(x_train, y_noisy).score(x_test, y_test)
    after = clf.fit(x_train[keep], y_noisy[keep]).score(x_test, y_test)
    say(
        f"   KNN test accuracy {before:.3f} on all rows -> {after:.3f} after dropping the "
        f"{len(flipped)} lowest-valued rows"
    )
    return {
        "knn_seconds": took,
        "auroc": det["auroc"],
        "bottom_k_f1": det["bottom_k_f1"],
        "accuracy_before": before,
        "accuracy_after": after,
    }


def default_demo_home() -> Path:
    """A new folder ``./databazaar-demo-YYYYMMDD-HHMMSS`` (numbered if it exists)."""
    base = Path.cwd() / time.strftime("databazaar-demo-%Y%m%d-%H%M%S")
    home, n = base, 1
    while home.exists():
        n += 1
        home = base.with_name(f"{base.name}-{n}")
    return home


def run_demo(home: Path | None, say: Say) -> dict[str, Any]:
    """Run every part of the tour; returns the numbers it printed.

    ``home`` (default :func:`default_demo_home`) becomes the demo market's data home and
    is kept, so ``databazaar --home HOME serve`` and ``ledger verify`` see the market.
    The market parts need the ``market`` extra; without it the tour stops after the
    valuation part with :class:`~databazaar.core.errors.MissingExtra`.
    """
    from importlib.util import find_spec

    from databazaar.core.errors import MissingExtra

    out: dict[str, Any] = {"valuation": valuation_tour(say)}
    if find_spec("sqlalchemy") is None:
        raise MissingExtra("market", "sqlalchemy", what="the market part of the demo")
    from databazaar.demo.economics import run_economics_demo
    from databazaar.demo.market import prepare_demo_home, run_market_demo

    home = prepare_demo_home(default_demo_home() if home is None else home)
    say(f"[bold]2. Market[/bold]: a fresh SQLite store in the data home {home}")
    out["market"] = run_market_demo(home, lambda line: say(f"   {line}"))
    say("[bold]3. Market economics[/bold]: value-aware search, pricing, revenue split")
    out["economics"] = run_economics_demo(home, lambda line: say(f"   {line}"))
    say(
        f"the demo market is kept in {home}; next: databazaar --home {home} serve "
        f"(web pages at http://127.0.0.1:8000/), databazaar --home {home} ledger verify"
    )
    out["home"] = str(home)
    return out
