"""Numbers in words and the seller's forms (pricing, private statistics) without a browser."""

from __future__ import annotations

import pandas as pd
import pytest

from databazaar.core.errors import InvalidInput
from databazaar.market.pricing import mechanism_from_config
from databazaar.server.web.dp_forms import DpFormError, dp_rows, parse_dp_form
from databazaar.server.web.pricing_forms import (
    PricingFormError,
    form_from_config,
    parse_pricing,
    query_columns,
    settings_words,
)
from databazaar.server.web.words import bps_pct, col_summary, in_words, num, pct, points, sparkline

FRAME = pd.DataFrame(
    {
        "f1": [0.5, 1.5, 2.5, 3.5],
        "region": ["north", "south", "north", "east"],
        "label": ["yes", "no", "yes", "no"],
    }
)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.2166666666666665, "0.2167"),
        (0.862877, "0.8629"),
        (1.07548e6, "1.075 million"),
        (12345.678, "12,350"),
        (3.0, "3"),
        (-0.05, "-0.05"),
        (0.01312, "0.01312"),
        (1.234e-5, "12.34 millionths"),
        (1234, "1,234"),
        (2.5e9, "2.5 billion"),
        (float("nan"), "not a number"),
        (None, "-"),
    ],
)
def test_num_keeps_four_significant_digits(value: float | None, text: str) -> None:
    assert num(value) == text


def test_percents_points_and_records_in_words() -> None:
    assert pct(0.2166) == "21.7%" and bps_pct(2000) == "20%" and bps_pct(1) == "0.01%"
    assert points(0.0423) == "+4.23 points" and points(-0.1) == "−10 points"
    assert in_words({"min_rows": 3, "rules": {"16": "block"}, "on": True}) == (
        "min rows 3; rules 16 block; on yes"
    )


def test_column_summaries_in_words_and_sparklines() -> None:
    assert col_summary({"min": 0, "max": 1, "mean": 0.5, "distinct": 2, "std": 0.5}) == (
        "0 or 1; 50% are 1"
    )
    text = col_summary({"min": 0.1, "max": 1.07548e6, "mean": 3.14159, "std": 0.862877})
    assert text == "from 0.1 to 1.075 million, average 3.142, typical spread ±0.8629"
    top = {"count": 4, "distinct": 3, "top": [{"value": "north", "count": 2}]}
    assert col_summary(top) == "most often north (50%), and 2 more"
    bars = sparkline({"histogram": {"edges": [0, 1, 2, 3], "counts": [1, 0, 4]}})
    assert bars is not None and len(bars) == 3
    assert bars[1][3] == 0.0 and bars[2][3] == 22.0  # empty bin flat, tallest full height
    assert sparkline({}) is None


def test_pricing_forms_parse_money_and_percent_into_each_mechanism() -> None:
    cols, labels = query_columns(FRAME), list(FRAME.columns)
    assert cols == {"region": ["east", "north", "south"], "label": ["no", "yes"]}
    cases = {
        "posted": ({"price": "12.50"}, {"price_minor": 1250}, 1250),
        "value": (
            {"share": "20", "floor": "1", "cap": ""},
            {"share_bps": 2000, "floor_minor": 100, "cap_minor": None},
            100,
        ),
        "query": (
            {"query_column": "region", "qp:region:0": "1.5", "qp:region:1": "3",
             "qp:region:2": "2"},
            {"price_points": {"region": [["east", 150], ["north", 300], ["south", 200]]}},
            150,
        ),
        "model": (
            {"model_label": "label", "model_task": "classification", "mv0": "0.1", "mp0": "15",
             "mv1": "1", "mp1": "5"},
            {"curve": [[0.1, 1500], [1.0, 500]], "label_column": "label", "task": "classification"},
            500,
        ),
        "auction": ({"reserve": "7.50", "units": "2"}, {"reserve_minor": 750, "units": 2}, 750),
    }  # fmt: skip
    for name, (form, config, headline) in cases.items():
        got, head = parse_pricing(name, form, cols, labels)
        assert got == config and head == headline, name
        mech = mechanism_from_config(name, got)  # the mechanism accepts what the form made
        refill = form_from_config(name, mech.config())
        again, _ = parse_pricing(name, {**form, **refill}, cols, labels)
        assert mechanism_from_config(name, again).config() == mech.config(), name
        assert settings_words(name, mech.config())
    assert settings_words("value", {"share_bps": 2000, "floor_minor": 100, "cap_minor": None}) == (
        "Buyers pay 20% of the value the data has for their task, at least 1.00 USD, with no "
        "maximum."
    )


def test_pricing_form_mistakes_are_named_per_field() -> None:
    cols, labels = query_columns(FRAME), list(FRAME.columns)
    with pytest.raises(PricingFormError) as err:
        parse_pricing("value", {"share": "120", "floor": "abc", "cap": "0.5"}, cols, labels)
    assert set(err.value.fields) == {"share", "floor"}
    with pytest.raises(PricingFormError) as err:
        parse_pricing("value", {"share": "20", "floor": "5", "cap": "1"}, cols, labels)
    assert err.value.fields == {"cap": "the maximum is below the minimum"}
    with pytest.raises(PricingFormError) as err:
        parse_pricing("query", {"query_column": "f1"}, cols, labels)
    assert "query_column" in err.value.fields
    with pytest.raises(PricingFormError) as err:
        parse_pricing("model", {"model_label": "label", "mv0": "-1", "mp0": "2"}, cols, labels)
    assert "mv0" in err.value.fields
    with pytest.raises(PricingFormError) as err:
        parse_pricing("auction", {"reserve": "5", "units": "0"}, cols, labels)
    assert "units" in err.value.fields
    with pytest.raises(InvalidInput, match="choose how buyers pay"):
        parse_pricing("barter", {}, cols, labels)


def test_private_statistics_form() -> None:
    rows = dp_rows(FRAME, None)
    assert [(r["name"], r["number"]) for r in rows] == [
        ("f1", True), ("region", False), ("label", False),
    ]  # fmt: skip
    assert rows[0]["lo"] == "0" and rows[0]["hi"] == "4"  # suggested, rounded outwards
    assert rows[1]["cats"] == "east, north, south"
    form = {"dp_on:0": "on", "dp_lo:0": "0", "dp_hi:0": "10", "dp_bins:0": "5",
            "dp_on:2": "on", "dp_cats:2": "yes, no"}  # fmt: skip
    assert parse_dp_form(FRAME, form) == {
        "f1": {"bounds": [0.0, 10.0], "bins": 5},
        "label": {"categories": ["yes", "no"]},
    }
    with pytest.raises(DpFormError) as err:
        parse_dp_form(FRAME, {**form, "dp_hi:0": "-1", "dp_cats:2": "yes, yes"})
    assert set(err.value.fields) == {"dp_hi:0", "dp_cats:2"}
    with pytest.raises(InvalidInput, match="tick at least one column"):
        parse_dp_form(FRAME, {})
