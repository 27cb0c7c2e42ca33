"""Schema, statistics and preview inferred from an uploaded table.

Productization turns a raw file into a data product card: every column gets a logical
type (``integer``, ``float``, ``boolean``, ``datetime``, ``string``), a null count and
type-specific statistics (min, max, mean, standard deviation for numbers; distinct count
and the most frequent values for strings and booleans), and the card shows the first rows.
All values are JSON-safe (NaN and infinities become ``null``).
"""

from __future__ import annotations

import codecs
import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from databazaar.core.errors import DatabazaarError, InvalidInput

_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
PREVIEW_ROWS = 5
TOP_VALUES = 5
MAX_COLUMNS = 2000

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl"}
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


def format_for(filename: str) -> str:
    """``csv``, ``parquet`` or ``jsonl`` from a file name, else :class:`InvalidInput`."""
    suffix = Path(filename).suffix.lower()
    if suffix not in FORMATS:
        raise InvalidInput(
            f"unsupported file type {suffix or '(none)'!r}", hint="upload .csv, .parquet or .jsonl"
        )
    return FORMATS[suffix]


def _check_parquet_magic(path: Path) -> None:
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(4)
        fh.seek(max(size - 4, 0))
        tail = fh.read(4)
    if size < 12 or head != b"PAR1" or tail != b"PAR1":
        raise InvalidInput(
            "the file is not a Parquet file (missing the PAR1 magic bytes)",
            hint="upload a file written by a Parquet writer, or use .csv / .jsonl",
        )


def _check_utf8_text(path: Path, file_format: str) -> None:
    """Refuse NUL bytes and invalid UTF-8 in a text format (CSV, JSONL)."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
    offset = 0
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 16), b""):
            nul = chunk.find(b"\x00")
            if nul >= 0:
                raise InvalidInput(
                    f"the file is binary, not {file_format} text (NUL byte at offset "
                    f"{offset + nul})",
                    hint=f"upload UTF-8 {file_format} text",
                )
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                raise InvalidInput(
                    f"the file could not be parsed as {file_format}: invalid UTF-8 at byte "
                    f"{offset + exc.start}",
                    hint="save the file as UTF-8",
                ) from None
            offset += len(chunk)
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise InvalidInput(
                f"the file could not be parsed as {file_format}: truncated UTF-8 at the end",
                hint="save the file as UTF-8",
            ) from None


def _check_csv_header(path: Path) -> None:
    """Refuse duplicate or empty column names (pandas would silently rename them)."""
    with path.open(encoding="utf-8", newline="") as fh:
        try:
            header = next(csv.reader(fh), [])
        except csv.Error as exc:
            raise InvalidInput(f"the file could not be parsed as csv: {exc}") from None
    names = [h.strip() for h in header]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InvalidInput(
            f"column names are not unique: {', '.join(map(repr, dupes[:5]))}",
            hint="give every column its own name",
        )
    if names and any(not n for n in names):
        raise InvalidInput("the table has columns without a header", hint="name every column")


def read_upload(path: Path, file_format: str) -> pd.DataFrame:
    """Parse a staged upload, turning every parser failure into :class:`InvalidInput`.

    A server whose Parquet engine (pyarrow) cannot be imported answers Parquet uploads
    with a :class:`DatabazaarError` (HTTP 500) that says so, not with a parse error.
    """
    if file_format in ("csv", "jsonl"):
        _check_utf8_text(path, file_format)
    if file_format == "csv":
        _check_csv_header(path)
    if file_format == "parquet":
        _check_parquet_magic(path)
        try:
            import pyarrow  # noqa: F401
        except ImportError as exc:
            raise DatabazaarError(
                f"Parquet uploads are unavailable on this server: {exc}",
                hint="upload .csv or .jsonl, or repair the server's pyarrow install",
            ) from exc
    try:
        if file_format == "csv":
            df = pd.read_csv(path, encoding="utf-8")
        elif file_format == "parquet":
            df = pd.read_parquet(path)
        else:
            df = pd.read_json(path, lines=True)
    except Exception as exc:  # the parsers raise many exception types on bad bytes
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InvalidInput(
            f"the file could not be parsed as {file_format}: {first[:200]}",
            hint="check the file's format and encoding (UTF-8)",
        ) from exc
    if df.shape[0] == 0 or df.shape[1] == 0:
        raise InvalidInput("the table has no rows or no columns")
    if df.shape[1] > MAX_COLUMNS:
        raise InvalidInput(f"the table has {df.shape[1]} columns; at most {MAX_COLUMNS}")
    names = [str(c) for c in df.columns]
    if any(_CONTROL_RE.search(n) for n in names):
        raise InvalidInput(
            "a column name contains control characters", hint="use plain-text column names"
        )
    if len(set(names)) != len(names):
        raise InvalidInput("column names are not unique")
    if any(n.startswith("Unnamed: ") for n in names):
        raise InvalidInput("the table has columns without a header", hint="name every column")
    df.columns = names
    return df


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
