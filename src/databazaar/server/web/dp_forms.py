"""The seller's private-statistics offer as a form: one row of fields per column.

Sellers tick the columns they offer and give, for a number column, the public bounds
values are clipped to and the histogram bins, and for a text column its categories
(comma-separated).  :func:`dp_rows` fills the form (from the saved offer, else with
suggestions the seller can edit: the column's rounded range and its distinct values);
:func:`parse_dp_form` turns the posted fields into the offer's columns
(``{"bounds": [lo, hi], "bins": n}`` or ``{"categories": [...]}``) and
:class:`DpFormError` names a message per field.  The JSON form stays for the API.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from databazaar.core.errors import InvalidInput
from databazaar.server.web.words import num

MAX_CATEGORIES = 50


class DpFormError(InvalidInput):
    """The offer form has mistakes; ``fields`` maps a field name to its message."""

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__(
            "check the marked fields of the offer", hint="each message is next to its field"
        )
        self.fields = fields


def _is_number(series: pd.Series) -> bool:
    return bool(pd.api.types.is_numeric_dtype(series)) and not pd.api.types.is_bool_dtype(series)


def dp_rows(frame: pd.DataFrame, offered: dict[str, Any] | None) -> list[dict[str, Any]]:
    """One row per column: its name, kind and the form values."""
    rows = []
    for i, col in enumerate(frame.columns):
        series = frame[col]
        pol = (offered or {}).get(str(col))
        row: dict[str, Any] = {
            "i": i,
            "name": str(col),
            "number": _is_number(series),
            "on": pol is not None,
        }
        if row["number"]:
            values = series.dropna()
            lo, hi = (pol or {}).get("bounds", [None, None])
            if lo is None and len(values):
                lo, hi = math.floor(float(values.min())), math.ceil(float(values.max()))
            row["lo"] = "" if lo is None else num(float(lo))
            row["hi"] = "" if hi is None else num(float(hi))
            row["bins"] = str((pol or {}).get("bins", 10))
        else:
            cats = (pol or {}).get("categories")
            if cats is None:
                distinct = pd.unique(series.dropna().astype(str))
                cats = sorted(distinct)[:MAX_CATEGORIES] if len(distinct) <= MAX_CATEGORIES else []
            row["cats"] = ", ".join(str(c) for c in cats)
        rows.append(row)
    return rows


def _float(raw: str, name: str, errors: dict[str, str]) -> float | None:
    try:
        value = float(raw.replace(",", "").strip())
    except ValueError:
        errors[name] = "enter a number, e.g. 0 or 10.5"
        return None
    if not math.isfinite(value):
        errors[name] = "enter a finite number"
        return None
    return value


def parse_dp_form(frame: pd.DataFrame, form: dict[str, str]) -> dict[str, Any]:
    """The offered columns from the form's fields (:class:`DpFormError` on mistakes)."""
    errors: dict[str, str] = {}
    columns: dict[str, Any] = {}
    for i, col in enumerate(frame.columns):
        if form.get(f"dp_on:{i}") != "on":
            continue
        if _is_number(frame[col]):
            lo = _float(form.get(f"dp_lo:{i}", ""), f"dp_lo:{i}", errors)
            hi = _float(form.get(f"dp_hi:{i}", ""), f"dp_hi:{i}", errors)
            if lo is not None and hi is not None and not lo < hi:
                errors[f"dp_hi:{i}"] = "the upper bound must be above the lower bound"
            bins = form.get(f"dp_bins:{i}", "10").strip()
            if not bins.isdigit() or not 1 <= int(bins) <= 100:
                errors[f"dp_bins:{i}"] = "bins is a whole number from 1 to 100"
            elif lo is not None and hi is not None:
                columns[str(col)] = {"bounds": [lo, hi], "bins": int(bins)}
        else:
            cats = [c.strip() for c in form.get(f"dp_cats:{i}", "").split(",") if c.strip()]
            if not cats:
                errors[f"dp_cats:{i}"] = "list the categories, separated by commas"
            elif len(set(cats)) != len(cats):
                errors[f"dp_cats:{i}"] = "a category is listed twice"
            else:
                columns[str(col)] = {"categories": cats}
    if errors:
        raise DpFormError(errors)
    if not columns:
        raise InvalidInput(
            "tick at least one column to offer", hint="and set its bounds or categories"
        )
    return columns
