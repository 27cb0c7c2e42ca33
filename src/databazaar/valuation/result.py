"""The one result type of every valuation method.

A :class:`ValuationResult` holds, for each data point or group, its value, the standard
error of that value (0 for exact methods), the number of samples that went into it,
optional confidence-interval bounds, and the method name with its parameters.  It turns
into a :class:`pandas.DataFrame`, ranks, and saves to / loads from CSV or Parquet (the
method and parameters travel in a JSON sidecar for CSV and in the file metadata for
Parquet).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from databazaar.core.errors import InvalidInput
from databazaar.core.io import table_format

_META_KEY = b"databazaar.valuation"


@dataclass
class ValuationResult:
    """Values of data points (or groups) with their uncertainty.

    Attributes:
        values: value per point or group.
        stderr: standard error of each value (zeros for exact methods).
        counts: number of samples (utility evaluations, permutations or test points)
            behind each value.
        ids: index or group id of each entry (defaults to ``0..n-1``).
        method: name of the method that produced the values.
        params: method parameters, JSON-serialisable.
        ci_low, ci_high: optional confidence-interval bounds.
        confidence: the confidence level of the interval, when there is one.
    """

    values: np.ndarray
    stderr: np.ndarray | None = None
    counts: np.ndarray | None = None
    ids: np.ndarray | None = None
    method: str = "unknown"
    params: dict[str, Any] = field(default_factory=dict)
    ci_low: np.ndarray | None = None
    ci_high: np.ndarray | None = None
    confidence: float | None = None

    def __post_init__(self) -> None:
        self.values = np.asarray(self.values, dtype=np.float64)
        if self.values.ndim != 1:
            raise InvalidInput(f"values must be one-dimensional, got shape {self.values.shape}")
        n = self.values.shape[0]
        self.stderr = self._column(self.stderr, n, "stderr", np.float64, 0.0)
        self.counts = self._column(self.counts, n, "counts", np.int64, 0)
        if self.ids is None:
            self.ids = np.arange(n)
        else:
            self.ids = np.asarray(self.ids)
            if self.ids.shape != (n,):
                raise InvalidInput(f"ids has shape {self.ids.shape}, expected ({n},)")
        if (self.ci_low is None) != (self.ci_high is None):
            raise InvalidInput("give both ci_low and ci_high, or neither")
        if self.ci_low is not None:
            self.ci_low = self._column(self.ci_low, n, "ci_low", np.float64, 0.0)
            self.ci_high = self._column(self.ci_high, n, "ci_high", np.float64, 0.0)

    @staticmethod
    def _column(arr: Any, n: int, name: str, dtype: Any, fill: Any) -> np.ndarray:
        if arr is None:
            return np.full(n, fill, dtype=dtype)
        out = np.asarray(arr, dtype=dtype)
        if out.shape != (n,):
            raise InvalidInput(f"{name} has shape {out.shape}, expected ({n},)")
        return out

    # -- container protocol -------------------------------------------------
    def __len__(self) -> int:
        return int(self.values.shape[0])

    def __repr__(self) -> str:
        return f"ValuationResult(method={self.method!r}, n={len(self)}, params={self.params})"

    @property
    def has_ci(self) -> bool:
        return self.ci_low is not None

    def value_of(self, id_: Any) -> float:
        """The value of the entry with id ``id_``."""
        hits = np.flatnonzero(self.ids == id_)
        if hits.size == 0:
            raise InvalidInput(f"no entry with id {id_!r}")
        return float(self.values[hits[0]])

    # -- views --------------------------------------------------------------
    def to_frame(self) -> pd.DataFrame:
        """A DataFrame with columns ``id, value, stderr, count`` (and CI bounds)."""
        df = pd.DataFrame(
            {"id": self.ids, "value": self.values, "stderr": self.stderr, "count": self.counts}
        )
        if self.ci_low is not None:
            df["ci_low"] = self.ci_low
            df["ci_high"] = self.ci_high
        return df

    def ranking(self, ascending: bool = False) -> np.ndarray:
        """Positions sorted by value (highest first unless ``ascending``); stable on ties."""
        keys = self.values if ascending else -self.values
        return np.argsort(keys, kind="stable")

    def sort(self, ascending: bool = False) -> ValuationResult:
        """A copy with entries reordered by value."""
        return self.subset(self.ranking(ascending))

    def subset(self, positions: Sequence[int] | np.ndarray) -> ValuationResult:
        """A copy restricted to (and ordered by) the given positions."""
        pos = np.asarray(positions)

        def take(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[pos]

        return ValuationResult(
            values=self.values[pos],
            stderr=take(self.stderr),
            counts=take(self.counts),
            ids=take(self.ids),
            method=self.method,
            params=dict(self.params),
            ci_low=take(self.ci_low),
            ci_high=take(self.ci_high),
            confidence=self.confidence,
        )

    def top(self, k: int) -> ValuationResult:
        return self.subset(self.ranking()[:k])

    def bottom(self, k: int) -> ValuationResult:
        return self.subset(self.ranking(ascending=True)[:k])

    # -- persistence --------------------------------------------------------
    def _meta(self) -> dict[str, Any]:
        return {"method": self.method, "params": self.params, "confidence": self.confidence}

    def save(self, path: str | Path) -> Path:
        """Save as CSV (plus ``<name>.meta.json``) or Parquet (metadata inside)."""
        p = Path(path)
        fmt = table_format(p)
        p.parent.mkdir(parents=True, exist_ok=True)
        df = self.to_frame()
        meta = json.dumps(self._meta(), default=_json_default)
        if fmt == "csv":
            df.to_csv(p, index=False)
            p.with_name(p.name + ".meta.json").write_text(meta)
        elif fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(df, preserve_index=False)
            schema_meta = dict(table.schema.metadata or {})
            schema_meta[_META_KEY] = meta.encode()
            pq.write_table(table.replace_schema_metadata(schema_meta), p)
        else:
            raise InvalidInput(
                f"cannot save valuation results as {fmt}", hint="use .csv or .parquet"
            )
        return p

    @classmethod
    def load(cls, path: str | Path) -> ValuationResult:
        """Load a result written by :meth:`save`."""
        from databazaar.core.io import read_table

        p = Path(path)
        fmt = table_format(p)
        df = read_table(p)
        meta: dict[str, Any] = {}
        if fmt == "csv":
            side = p.with_name(p.name + ".meta.json")
            if side.is_file():
                meta = json.loads(side.read_text())
        elif fmt == "parquet":
            import pyarrow.parquet as pq

            raw = (pq.read_schema(p).metadata or {}).get(_META_KEY)
            if raw:
                meta = json.loads(raw)
        missing = {"id", "value"} - set(df.columns)
        if missing:
            raise InvalidInput(f"{p.name} is not a valuation result: missing {sorted(missing)}")
        has_ci = "ci_low" in df.columns and "ci_high" in df.columns
        return cls(
            values=df["value"].to_numpy(),
            stderr=df["stderr"].to_numpy() if "stderr" in df else None,
            counts=df["count"].to_numpy() if "count" in df else None,
            ids=df["id"].to_numpy(),
            method=meta.get("method", "unknown"),
            params=meta.get("params", {}),
            ci_low=df["ci_low"].to_numpy() if has_ci else None,
            ci_high=df["ci_high"].to_numpy() if has_ci else None,
            confidence=meta.get("confidence"),
        )


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)
