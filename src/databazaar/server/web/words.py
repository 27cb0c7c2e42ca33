"""Numbers and money as people read them: the pages' formatting filters.

The market computes in floats, minor units and basis points; the pages never show
those raw.  Every number a page prints goes through one of these:

``num``      at most 4 significant digits, thousands separators, "million"/"billion"
             for large values, never exponent notation (``1.07548e+06`` -> ``1.075 million``)
``pct``      a fraction as a percent (``0.2`` -> ``20%``)
``bps_pct``  basis points as a percent (``2000`` -> ``20%``)
``points``   a utility gain as accuracy percentage points (``0.0423`` -> ``+4.23 points``)
``between``  an interval in words (``between 1.2 and 3.4``)
``col_summary`` a column's statistics in words (a 0/1 label reads "50% are 1")
``in_words`` a stored record (an audit entry's old and new settings) as plain words
"""

from __future__ import annotations

import math
from typing import Any

SIG = 4


def num(value: Any, sig: int = SIG) -> str:
    """A number with at most ``sig`` significant digits, for people."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        if abs(value) >= 10**6:
            return num(float(value), sig)
        return f"{value:,}"
    if not isinstance(value, float):
        return str(value)
    if math.isnan(value):
        return "not a number"
    if math.isinf(value):
        return "infinite" if value > 0 else "minus infinite"
    a = abs(value)
    for size, word in ((1e12, "trillion"), (1e9, "billion"), (1e6, "million")):
        if a >= size:
            return f"{_sig(value / size, sig)} {word}"
    if a != 0 and a < 10**-(sig):
        return "about 0" if a < 1e-12 else f"{_sig(value * 1e6, sig)} millionths"
    return _sig(value, sig)


def _sig(value: float, sig: int) -> str:
    """``value`` rounded to ``sig`` significant digits, in plain decimal notation."""
    if value == 0:
        return "0"
    digits = sig - 1 - math.floor(math.log10(abs(value)))
    rounded = round(value, digits)
    text = f"{rounded:.{max(digits, 0)}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    if abs(rounded) >= 1000:
        whole, _, frac = text.partition(".")
        text = f"{int(whole):,}" + (f".{frac}" if frac else "")
    return "0" if text in ("-0", "") else text


def pct(fraction: Any, sig: int = 3) -> str:
    """A fraction as a percent with at most ``sig`` significant digits."""
    if fraction is None:
        return "-"
    return f"{num(float(fraction) * 100, sig)}%"


def bps_pct(bps: Any) -> str:
    """Basis points as a percent (``2000`` -> ``20%``)."""
    return pct(int(bps) / 10_000, 4)


def points(gain: Any) -> str:
    """A utility gain (fraction of correct votes) as signed accuracy percentage points."""
    if gain is None:
        return "-"
    p = float(gain) * 100
    sign = "+" if p > 0 else ("−" if p < 0 else "")
    return f"{sign}{num(abs(p), 3)} points"


def between(low: Any, high: Any, fmt: Any = num) -> str:
    if low is None or high is None:
        return "-"
    return f"between {fmt(low)} and {fmt(high)}"


def col_summary(stats: dict[str, Any]) -> str:
    """A column's profile statistics in words."""
    if not stats:
        return ""
    if "mean" in stats:
        lo, hi, mean = stats.get("min"), stats.get("max"), stats.get("mean")
        if lo == 0 and hi == 1 and stats.get("distinct") == 2 and mean is not None:
            return f"0 or 1; {pct(mean)} are 1"
        sd = stats.get("std")
        spread = f", typical spread ±{num(sd)}" if sd else ""
        return f"from {num(lo)} to {num(hi)}, average {num(mean)}{spread}"
    if "top" in stats:
        top = stats["top"]
        total = max(int(stats.get("count") or 0), 1)
        parts = [f"{t.get('value')} ({pct(int(t.get('count', 0)) / total)})" for t in top[:3]]
        more = int(stats.get("distinct") or 0) - len(parts)
        return "most often " + ", ".join(parts) + (f", and {more:,} more" if more > 0 else "")
    if "min" in stats:
        return f"from {stats['min']} to {stats['max']}"
    return ""


Bar = tuple[float, float, float, float]


def sparkline(stats: dict[str, Any], width: int = 96, height: int = 24) -> list[Bar] | None:
    """Bars ``(x, y, w, h)`` of a column's distribution for an inline SVG, or ``None``.

    Numeric columns use the profile's histogram, text columns the counts of their most
    frequent values.
    """
    counts: list[int] = []
    if "histogram" in stats:
        counts = [int(c) for c in stats["histogram"].get("counts", [])]
    elif "top" in stats:
        counts = [int(t.get("count", 0)) for t in stats["top"]]
    if not counts or max(counts) <= 0:
        return None
    top = max(counts)
    w = width / len(counts)
    bars = []
    for i, c in enumerate(counts):
        h = 0.0 if c == 0 else max(1.5, (height - 2) * c / top)
        x, bw = round(i * w + 0.5, 2), round(max(w - 1, 1), 2)
        bars.append((x, round(height - h, 2), bw, round(h, 2)))
    return bars


def in_words(obj: Any) -> str:
    """A stored record (audit entries, settings) as plain words: ``{"min_rows": 3}`` ->
    ``min rows 3``; numbers through :func:`num`, nested records in parentheses."""
    if obj is None:
        return "none"
    if isinstance(obj, dict):
        parts = [f"{str(k).replace('_', ' ')} {in_words(v)}" for k, v in obj.items()]
        return "; ".join(parts) if parts else "nothing"
    if isinstance(obj, list | tuple):
        return ", ".join(in_words(x) for x in obj) if obj else "none"
    if isinstance(obj, bool):
        return "yes" if obj else "no"
    if isinstance(obj, int | float):
        return num(obj)
    return str(obj).replace("_", " ")


FILTERS = {
    "in_words": in_words,
    "num": num,
    "pct": pct,
    "bps_pct": bps_pct,
    "points": points,
    "between": between,
    "col_summary": col_summary,
    "sparkline": sparkline,
}
