"""Schema, statistics and preview inferred from an uploaded table.

Productization turns a raw file into a data product card: every column gets a logical
type (``integer``, ``float``, ``boolean``, ``datetime``, ``string``), a null count and
type-specific statistics (min, max, mean, standard deviation for numbers; distinct count
and the most frequent values for strings and booleans), and the card shows the first rows.
All values are JSON-safe (NaN and infinities become ``null``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
PREVIEW_ROWS = 5
TOP_VALUES = 5
HIST_BINS = 12

MEDIA_TYPES = {
    "csv": "text/csv",
    "parquet": "application/vnd.apache.parquet",
    "jsonl": "application/jsonl",
}


@dataclass
class TableProfile:
    """What productization learned about a table."""

    file_format: str
    n_rows: int
    n_columns: int
    schema: list[dict[str, Any]]
    stats: dict[str, Any]
    preview: list[dict[str, Any]]


def _json_value(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, float | np.floating):
        v = float(value)
        return None if math.isnan(v) or math.isinf(v) else v
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, pd.Timestamp):
        return None if pd.isna(value) else value.isoformat()
    if value is pd.NaT:
        return None
    if isinstance(value, bytes):
        return value.hex()
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    text = _CONTROL_RE.sub("\ufffd", str(value))  # NUL & co. are not storable everywhere
    return text if len(text) <= 200 else text[:197] + "..."


def _logical_type(series: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(series):
        return "boolean"
    if pd.api.types.is_integer_dtype(series):
        return "integer"
    if pd.api.types.is_float_dtype(series):
        return "float"
    if pd.api.types.is_datetime64_any_dtype(series):
        return "datetime"
    return "string"


def _histogram(values: np.ndarray) -> dict[str, list[Any]]:
    """Counts of a numeric column in :data:`HIST_BINS` equal-width bins (the product
    page draws them as a sparkline); a constant column is one bin."""
    lo, hi = float(values.min()), float(values.max())
    bins = HIST_BINS if hi > lo else 1
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi) if hi > lo else None)
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}


def _column_stats(series: pd.Series, kind: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "count": int(series.notna().sum()),
        "nulls": int(series.isna().sum()),
    }
    if kind in ("integer", "float"):
        values = series.dropna().astype("float64")
        values = values[np.isfinite(values)]
        if len(values):
            out.update(
                min=_json_value(values.min()),
                max=_json_value(values.max()),
                mean=_json_value(values.mean()),
                std=_json_value(values.std(ddof=1)) if len(values) > 1 else 0.0,
            )
            out["histogram"] = _histogram(values.to_numpy())
        out["distinct"] = int(series.nunique(dropna=True))
    elif kind == "datetime":
        values = series.dropna()
        if len(values):
            out.update(min=_json_value(values.min()), max=_json_value(values.max()))
    else:
        as_text = series.dropna().map(str)
        out["distinct"] = int(as_text.nunique())
        counts = as_text.value_counts().head(TOP_VALUES)
        out["top"] = [{"value": _json_value(k), "count": int(v)} for k, v in counts.items()]
    return out


def profile_table(df: pd.DataFrame, file_format: str) -> TableProfile:
    """Infer schema, per-column statistics and a preview of ``df``."""
    schema: list[dict[str, Any]] = []
    columns: dict[str, Any] = {}
    for name in df.columns:
        series = df[name]
        kind = _logical_type(series)
        schema.append({"name": name, "type": kind, "nullable": bool(series.isna().any())})
        columns[name] = _column_stats(series, kind)
    preview = [
        {str(k): _json_value(v) for k, v in row.items()}
        for row in df.head(PREVIEW_ROWS).to_dict(orient="records")
    ]
    stats = {"n_rows": int(df.shape[0]), "n_columns": int(df.shape[1]), "columns": columns}
    return TableProfile(
        file_format=file_format,
        n_rows=int(df.shape[0]),
        n_columns=int(df.shape[1]),
        schema=schema,
        stats=stats,
        preview=preview,
    )
