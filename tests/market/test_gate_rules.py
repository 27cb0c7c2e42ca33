"""The gate's rules without a model: texts and sampling, the decision rule, bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from databazaar.core.errors import InvalidInput
from databazaar.market.gate import (
    ListingGate,
    Policy,
    Screened,
    check_policy,
    decide,
    listing_texts,
    sample_seed,
)


def test_card_chunks_and_a_seeded_sample_of_text_rows() -> None:
    frame = pd.DataFrame(
        {"n": range(50), "text": [f"row {i}" for i in range(50)], "tag": ["a", None] * 25}
    )
    card = {"title": "T", "description": "One. " * 100, "tags": ["x", "y"]}
    a = listing_texts(card, frame, sample_rows=10, seed=sample_seed("ab" * 32))
    b = listing_texts(card, frame, sample_rows=10, seed=sample_seed("ab" * 32))
    c = listing_texts(card, frame, sample_rows=10, seed=sample_seed("cd" * 32))
    assert a.texts == b.texts and a.texts != c.texts  # the file decides the sample
    assert a.sources[0] == "card: title" and a.sources[a.card_texts - 1] == "card: tags"
    assert all(len(t) <= 300 for t in a.texts[: a.card_texts])
    assert a.card_texts == 1 + 2 + 1  # title, 500 characters of sentences in 2 chunks, tags
    assert a.rows_screened == 10 and a.rows_total == 50 and a.columns == ["text", "tag"]
    rows = a.sources[a.card_texts :]
    assert rows == sorted(rows, key=lambda s: int(s.split()[1]))
    joined = [t for t in a.texts[a.card_texts :] if "|" in t]
    assert joined and all(t.endswith(" | a") for t in joined)  # even rows carry the tag
    numeric = listing_texts({"title": "T"}, frame[["n"]], sample_rows=10)
    assert numeric.rows_screened == 0 and numeric.columns == []
    with pytest.raises(InvalidInput, match="sha256"):
        sample_seed("not-hex!")


def _screened(risks: list[float], l2: list[str], n_card: int) -> Screened:
    texts = listing_texts({"title": "t"} if n_card else {}, None)
    texts.texts = [f"text {i}" for i in range(len(risks))]
    texts.sources = [f"card: {i}" if i < n_card else f"row {i}" for i in range(len(risks))]
    texts.card_texts = n_card
    texts.rows_screened = len(risks) - n_card
    frame = pd.DataFrame(
        {"risk": risks, "l2": l2, "l2_name": [f"cat {x}" for x in l2], "group_name": "g"}
    )
    return Screened(texts, frame, "test", 0.0)


def test_decision_rule_min_rows_min_share_card_and_severity() -> None:
    policy = Policy(1, "review", {"16": "block", "8": "allow"}, 0.8, 3, 0.0)
    # 2 flagged rows in 16: below min_rows -> reported, not fired -> cleared
    d = decide(_screened([0.1, 0.9, 0.95, 0.2], ["1", "16", "16", "1"], 1), policy)
    assert d.state == "cleared" and d.findings[0]["rows"] == 2 and not d.findings[0]["fired"]
    # 3 flagged rows in 16 -> fired -> block wins
    d = decide(_screened([0.1, 0.9, 0.95, 0.85, 0.99], ["1", "16", "16", "16", "8"], 1), policy)
    assert (d.decision, d.state) == ("block", "blocked")
    assert [f["l2"] for f in d.findings] == ["16", "8"]
    assert d.findings[0]["snippets"][0]["risk"] == 0.95 and d.max_risk == 0.99
    # a flagged card text fires on its own; "allow" categories never hold
    d = decide(_screened([0.9, 0.1], ["4", "1"], 1), policy)
    assert d.state == "held" and d.findings[0]["card"]
    assert decide(_screened([0.9, 0.1], ["8", "1"], 1), policy).state == "cleared"
    # min_share: 3 of 100 rows is not 5%
    share = Policy(2, "review", {}, 0.8, 1, 0.05)
    risks = [0.9] * 3 + [0.1] * 97
    assert decide(_screened(risks, ["3"] * 100, 0), share).state == "cleared"
    assert decide(_screened([0.9] * 5 + [0.1] * 95, ["3"] * 100, 0), share).state == "held"
    assert share.rows_needed(100) == 5 and share.rows_needed(10) == 1
    empty = decide(_screened([], [], 0), policy)
    assert empty.state == "cleared" and empty.findings == [] and empty.max_risk == 0.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("nope", {}, 0.5, 1, 0.0), "unknown action"),
        (("review", {"0": "block"}, 0.5, 1, 0.0), "unknown level-2 category"),
        (("review", ["3"], 0.5, 1, 0.0), "rules must map"),
        (("review", {}, 0.0, 1, 0.0), "threshold must be between"),
        (("review", {}, True, 1, 0.0), "threshold must be a number"),
        (("review", {}, 0.5, 0, 0.0), "min_rows must be an integer"),
        (("review", {}, 0.5, 2.0, 0.0), "min_rows must be an integer"),
        (("review", {}, 0.5, 1, 1.5), "min_share must be between"),
        (("review", {}, 0.5, 1, "x"), "min_share must be a number"),
    ],
)
def test_bad_policies_are_refused(args: tuple, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        check_policy(*args)


def test_policy_is_normalised() -> None:
    out = check_policy(" Review ", {16: "BLOCK", "3": "allow"}, 0.7, 2, 0.01)
    assert out == {
        "default_action": "review",
        "rules": {"3": "allow", "16": "block"},
        "threshold": 0.7,
        "min_rows": 2,
        "min_share": 0.01,
    }


def test_gate_settings_are_checked() -> None:
    from databazaar.safety.taxonomy import load_taxonomy

    taxonomy = load_taxonomy()
    with pytest.raises(InvalidInput, match="unknown screening encoder"):
        ListingGate(taxonomy, encoder="bm25")
    with pytest.raises(InvalidInput, match="sample_rows"):
        ListingGate(taxonomy, sample_rows=0)
    gate = ListingGate(taxonomy, encoder="tfidf", sample_rows=5)
    assert gate.level2["16"] == "Criminal Activities" and len(gate.level2) == 16
    assert np.isclose(gate.sample_rows, 5)
