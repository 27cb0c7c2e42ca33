"""The one table reader (CSV, Parquet, JSON lines) and writer, with clear errors.

(Also :func:`staged_dir`, the one way a folder is written all-or-nothing.)

:func:`read_table` is used by every part of databazaar that reads a table: the CLI, the
market's uploads and stored products, and the web pages' validation uploads.  Before
parsing it refuses what a parser would silently misread: text that is not UTF-8 or
holds NUL bytes, duplicate or empty CSV header names, and *ragged* CSV rows (a row with
more or fewer fields than the header, which pandas would turn into a hidden index
column or pad with NaN); the error names the row.  After parsing it refuses empty
tables, more than :data:`MAX_COLUMNS` columns and control characters in column names.
"""

from __future__ import annotations

import codecs
import csv
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from databazaar.core.errors import DatabazaarError, InvalidInput, NotFound

TABLE_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl"}
MAX_COLUMNS = 2000
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


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


def _check_csv_rows(path: Path) -> None:
    """Refuse rows whose field count differs from the header's (blank lines are skipped)."""
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader, [])
            row_no = 0
            for fields in reader:
                if not fields:
                    continue
                row_no += 1
                if len(fields) != len(header):
                    raise InvalidInput(
                        f"the file could not be parsed as csv: row {row_no} (line "
                        f"{reader.line_num}) has {len(fields)} field"
                        f"{'s' if len(fields) != 1 else ''}, the header has {len(header)}",
                        hint="give every row exactly one field per column",
                    )
        except csv.Error as exc:
            raise InvalidInput(f"the file could not be parsed as csv: {exc}") from None


def _parse(path: Path, file_format: str) -> pd.DataFrame:
    if file_format in ("csv", "jsonl"):
        _check_utf8_text(path, file_format)
    if file_format == "csv":
        _check_csv_header(path)
        _check_csv_rows(path)
    if file_format == "parquet":
        _check_parquet_magic(path)
        try:
            import pyarrow  # noqa: F401
        except ImportError as exc:
            raise DatabazaarError(
                f"Parquet files are unavailable on this installation: {exc}",
                hint="use .csv or .jsonl, or repair the pyarrow install",
            ) from exc
    try:
        if file_format == "csv":
            df = pd.read_csv(path, encoding="utf-8", index_col=False)
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


def read_table(path: str | Path, file_format: str | None = None) -> pd.DataFrame:
    """Read a CSV, Parquet or JSON-lines file into a DataFrame (checks in the module
    docstring).

    ``file_format`` (``csv``, ``parquet``, ``jsonl``) is taken from the suffix when not
    given (a staged upload has none).  Raises :class:`NotFound` for a missing file and
    :class:`InvalidInput` for an unreadable, malformed or empty one; when the format
    comes from the file's name, the message names the file.
    """
    p = Path(path)
    named = file_format is None
    fmt = table_format(p) if file_format is None else file_format
    if fmt not in TABLE_FORMATS.values():
        raise InvalidInput(f"unsupported table format {fmt!r}", hint="use csv, parquet or jsonl")
    if not p.is_file():
        raise NotFound(f"file not found: {p}")
    try:
        return _parse(p, fmt)
    except InvalidInput as exc:
        if not named:
            raise
        raise InvalidInput(
            f"could not read {p.name} as {fmt}: {exc.message}", hint=exc.hint
        ) from exc


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


@contextmanager
def staged_dir(final: str | Path) -> Iterator[Path]:
    """Yield an empty temporary folder next to ``final``; on success it replaces ``final``.

    A folder is written in full or not at all: if the block raises, the temporary folder
    is removed and ``final`` (if it existed) is left as it was.
    """
    target = Path(final)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def read_jsonl_records(path: str | Path) -> list[dict]:
    """The JSON objects of a JSON-lines file, one per non-blank line, as dicts.

    For records with nested fields (lists of tokens, log-probabilities) that a table
    would flatten. Raises :class:`NotFound` for a missing file and :class:`InvalidInput`
    naming the file and line for text that is not UTF-8, a malformed line, a line that is
    not an object, or a file with no records.
    """
    import json

    p = Path(path)
    if not p.is_file():
        raise NotFound(f"file not found: {p}")
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{p} is not UTF-8 text: {exc}") from exc
    out: list[dict] = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInput(
                f"{p}:{n}: malformed JSON ({exc.msg} at column {exc.colno})"
            ) from None
        if not isinstance(rec, dict):
            raise InvalidInput(f"{p}:{n}: expected a JSON object, got {type(rec).__name__}")
        out.append(rec)
    if not out:
        raise InvalidInput(f"{p} holds no records", hint="one JSON object per line")
    return out
