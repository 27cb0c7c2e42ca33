"""Reading and writing tables (CSV, Parquet, JSONL) with clear errors."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from databazaar.core.errors import InvalidInput, NotFound

TABLE_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl"}


def table_format(path: str | Path) -> str:
    """The format name for a path from its suffix, or :class:`InvalidInput`."""
    suffix = Path(path).suffix.lower()
    try:
        return TABLE_FORMATS[suffix]
    except KeyError:
        raise InvalidInput(
            f"unsupported file type {suffix or '(none)'!r} for {Path(path).name!r}",
            hint="use .csv, .parquet or .jsonl",
        ) from None


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV, Parquet or JSON-lines file into a DataFrame.

    Raises :class:`NotFound` for a missing file and :class:`InvalidInput` for an
    unreadable or empty one, naming the file.
    """
    p = Path(path)
    fmt = table_format(p)
    if not p.is_file():
        raise NotFound(f"file not found: {p}")
    try:
        if fmt == "csv":
            df = pd.read_csv(p)
        elif fmt == "parquet":
            df = pd.read_parquet(p)
        else:
            df = pd.read_json(p, lines=True)
    except Exception as exc:  # pandas/pyarrow raise many types for bad files
        raise InvalidInput(f"could not read {p.name} as {fmt}: {exc}") from exc
    if df.shape[0] == 0 or df.shape[1] == 0:
        raise InvalidInput(f"{p.name} has no rows or no columns")
    return df


def write_table(df: pd.DataFrame, path: str | Path) -> Path:
    """Write a DataFrame as CSV, Parquet or JSONL according to the suffix."""
    p = Path(path)
    fmt = table_format(p)
    p.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        df.to_csv(p, index=False)
    elif fmt == "parquet":
        df.to_parquet(p, index=False)
    else:
        df.to_json(p, orient="records", lines=True)
    return p
