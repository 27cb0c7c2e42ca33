"""The seller's pricing forms: each mechanism's settings in money and percent.

Sellers never type JSON, minor units or basis points on the pages (the JSON
configuration stays for the API).  :func:`parse_pricing` turns the fields of the manage
page's pricing form into the mechanism's configuration, collecting a message per field
(:class:`PricingFormError`) so the page shows each next to its field;
:func:`form_from_config` fills the form from the saved configuration, and
:func:`settings_words` says in words what the saved settings are.  The configuration is
validated by the mechanism itself (:func:`databazaar.market.pricing.mechanism_from_config`).

Fields (``price`` is the one price entry of a posted price):

``posted``   ``price``
``value``    ``share`` (percent), ``floor`` and optional ``cap`` (money)
``query``    ``query_column`` and ``qp:<column>:<i>`` (money per value of that column)
``model``    ``model_label``, ``model_task``, ``mv<i>``/``mp<i>`` (variance, money)
``auction``  ``reserve`` (money), ``units``
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

import pandas as pd

from databazaar.core.errors import DatabazaarError, InvalidInput
from databazaar.core.money import format_minor, parse_decimal
from databazaar.server.web.words import bps_pct, num

MAX_QUERY_VALUES = 30
MODEL_ROWS = 4


class PricingFormError(InvalidInput):
    """The pricing form has mistakes; ``fields`` maps a field name to its message."""

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__(
            "check the marked fields of the pricing form",
            hint="each message is next to its field",
        )
        self.fields = fields


def query_columns(frame: pd.DataFrame) -> dict[str, list[Any]]:
    """Columns a seller can price per value: text, whole-number or yes/no columns with
    2..30 distinct values and none missing (measurements in floats are not categories)."""
    out: dict[str, list[Any]] = {}
    for col in frame.columns:
        series = frame[col]
        if series.isna().any() or pd.api.types.is_float_dtype(series):
            continue
        values = pd.unique(series)
        if 2 <= len(values) <= MAX_QUERY_VALUES:
            out[str(col)] = sorted(
                (v.item() if hasattr(v, "item") else v for v in values), key=repr
            )
    return out


def model_labels(frame: pd.DataFrame) -> list[str]:
    return [str(c) for c in frame.columns]


def _money(
    form: dict[str, str], name: str, errors: dict[str, str], what: str, *, required: bool = True
) -> int | None:
    raw = (form.get(name) or "").strip()
    if not raw:
        if required:
            errors[name] = f"enter {what} in USD, e.g. 12.50"
        return None
    try:
        return parse_decimal(raw, what)
    except DatabazaarError as exc:
        errors[name] = exc.message
        return None


def percent_bps(raw: str, errors: dict[str, str], name: str) -> int | None:
    text = raw.strip().rstrip("%").strip()
    try:
        value = Decimal(text)
        bps = value * 100  # sNaN raises here
    except InvalidOperation:
        errors[name] = "enter a percent from 0.01 to 100, e.g. 20"
        return None
    if bps != bps.to_integral_value() or not 1 <= bps <= 10_000:
        errors[name] = "enter a percent from 0.01 to 100 with at most two decimals"
        return None
    return int(bps)


def parse_pricing(
    mechanism: str, form: dict[str, str], columns: dict[str, list[Any]], labels: list[str]
) -> tuple[dict[str, Any], int]:
    """``(configuration, headline price)`` from the pricing form's fields.

    The headline price is what the catalog shows: the posted price, or the least a buyer
    pays under the other mechanisms (shown as "from ...").
    """
    errors: dict[str, str] = {}
    config: dict[str, Any] = {}
    headline = 0
    if mechanism == "posted":
        price = _money(form, "price", errors, "the price")
        config = {"price_minor": price}
        headline = price or 0
    elif mechanism == "value":
        share = percent_bps(form.get("share", ""), errors, "share")
        floor = _money(form, "floor", errors, "the minimum price")
        cap = _money(form, "cap", errors, "the maximum price", required=False)
        if floor is not None and cap is not None and cap < floor:
            errors["cap"] = "the maximum is below the minimum"
        config = {"share_bps": share, "floor_minor": floor, "cap_minor": cap}
        headline = floor or 0
    elif mechanism == "query":
        col = (form.get("query_column") or "").strip()
        if col not in columns:
            errors["query_column"] = "choose the column whose values buyers select"
        else:
            points = []
            for i, value in enumerate(columns[col]):
                price = _money(form, f"qp:{col}:{i}", errors, f"the price of {value}")
                points.append([value, price])
            config = {"price_points": {col: points}}
            prices = [p for _v, p in points if p is not None]
            headline = min(prices) if prices else 0
    elif mechanism == "model":
        label = (form.get("model_label") or "").strip()
        if label not in labels:
            errors["model_label"] = "choose the column the model predicts"
        task = form.get("model_task", "classification")
        if task not in ("classification", "regression"):
            errors["model_task"] = "choose classification or regression"
        curve = []
        for i in range(MODEL_ROWS):
            var_raw = (form.get(f"mv{i}") or "").strip()
            if not var_raw and not (form.get(f"mp{i}") or "").strip():
                continue
            try:
                variance = float(var_raw)
                if not variance > 0:
                    raise ValueError
            except ValueError:
                errors[f"mv{i}"] = "the noise variance is a number above 0, e.g. 0.1"
                continue
            price = _money(form, f"mp{i}", errors, "the price of this noise level")
            if price is not None:
                curve.append([variance, price])
        if not curve and not any(k.startswith(("mv", "mp")) for k in errors):
            errors["mv0"] = "offer at least one noise level with its price"
        config = {"curve": curve, "label_column": label, "task": task}
        headline = min((p for _v, p in curve), default=0)
    elif mechanism == "auction":
        reserve = _money(form, "reserve", errors, "the reserve price")
        units_raw = (form.get("units") or "1").strip()
        if not units_raw.isdigit() or not 1 <= int(units_raw) <= 1000:
            errors["units"] = "the number of licences is a whole number from 1 to 1000"
        config = {"reserve_minor": reserve, "units": int(units_raw) if units_raw.isdigit() else 1}
        headline = reserve or 0
    else:
        raise InvalidInput("choose how buyers pay from the list")
    if errors:
        raise PricingFormError(errors)
    return config, headline


def _plain(minor: int | None) -> str:
    return "" if minor is None else format_minor(int(minor), code=False)


def form_from_config(name: str, config: dict[str, Any]) -> dict[str, str]:
    """The pricing form's fields for a saved configuration (shown as the seller entered it)."""
    if name == "posted":
        return {"price": _plain(config.get("price_minor"))}
    if name == "value":
        return {
            "share": bps_pct(config.get("share_bps", 2000)).rstrip("%"),
            "floor": _plain(config.get("floor_minor")),
            "cap": _plain(config.get("cap_minor")),
        }
    if name == "query":
        out: dict[str, str] = {}
        for col, points in config.get("price_points", {}).items():
            out["query_column"] = col
            for i, (_value, price) in enumerate(points):
                out[f"qp:{col}:{i}"] = _plain(price)
        return out
    if name == "model":
        out = {
            "model_label": str(config.get("label_column", "")),
            "model_task": str(config.get("task", "classification")),
        }
        for i, (variance, price) in enumerate(config.get("curve", [])[:MODEL_ROWS]):
            out[f"mv{i}"] = num(float(variance))
            out[f"mp{i}"] = _plain(price)
        return out
    if name == "auction":
        return {
            "reserve": _plain(config.get("reserve_minor")),
            "units": str(config.get("units", 1)),
        }
    return {}


def settings_words(name: str, config: dict[str, Any]) -> str:
    """The saved pricing in one sentence."""
    money = format_minor
    if name == "posted":
        return f"Buyers pay {money(int(config['price_minor']))} for the whole dataset."
    if name == "value":
        cap = config.get("cap_minor")
        return (
            f"Buyers pay {bps_pct(config['share_bps'])} of the value the data has for their "
            f"task, at least {money(int(config['floor_minor']))}"
            + (f" and at most {money(int(cap))}." if cap is not None else ", with no maximum.")
        )
    if name == "query":
        parts = []
        for col, points in config.get("price_points", {}).items():
            each = ", ".join(f"{v} {money(int(p))}" for v, p in points)
            parts.append(f"by {col}: {each}")
        return "Buyers pay per selected value " + "; ".join(parts) + "."
    if name == "model":
        each = ", ".join(
            f"noise {num(float(v))}: {money(int(p))}" for v, p in config.get("curve", [])
        )
        return f"Buyers buy a model predicting {config.get('label_column')} ({each})."
    if name == "auction":
        units = int(config.get("units", 1))
        return (
            f"Sealed-bid auction of {units} licence{'' if units == 1 else 's'} with a reserve "
            f"of {money(int(config.get('reserve_minor', 0)))}."
        )
    return ""
