"""Server-side SVG charts drawn with matplotlib.

matplotlib is imported only when a chart is drawn (pages without charts never pay for
it).  Figures are built with the object-oriented API on an Agg canvas, never through
``pyplot``, so no global figure state is shared between concurrent requests, and saved as
SVG with a fixed hash salt so the same data gives the same bytes.  Text in a chart comes
from the caller and is XML-escaped by matplotlib's SVG writer.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from databazaar.core.figures import figure, svg_text

_LOCK = threading.Lock()  # matplotlib's text layout caches are not thread-safe
ACCENT = "#1f5f8b"
GRID = "#d9dee3"
#: Charts are drawn WIDTH inches wide with FONT-point text: shown full width on a phone
#: (about 350 CSS px for 360 pt) the smallest text stays at 12 px or more.
WIDTH = 5.0
FONT = 13
_TEXT = {"font.size": FONT, "axes.titlesize": FONT, "axes.labelsize": FONT,
         "xtick.labelsize": FONT, "ytick.labelsize": FONT, "legend.fontsize": FONT}  # fmt: skip


def _fonts() -> Any:
    import matplotlib

    return matplotlib.rc_context(_TEXT)


def _style(ax: Any) -> None:
    ax.grid(True, color=GRID, linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def earnings_svg(
    points: Sequence[tuple[datetime, int]],
    *,
    currency: str = "USD",
    until: datetime | None = None,
) -> str:
    """A step chart of cumulative earnings (minor units) over time, as SVG text.

    The last total is carried on to ``until`` (for instance now) when that is later than
    the last point.  The time axis spans the sales (plus 5% each side, at least a
    minute), so sales minutes apart are minutes apart on the chart.  The pages show no
    chart before the first sale; called with no points it says so in words.
    """
    with _LOCK, _fonts():
        import matplotlib.dates as mdates

        fig = figure(WIDTH, 2.8)
        ax = fig.add_subplot(1, 1, 1)
        _style(ax)
        if points:
            times = [p[0] for p in points]
            values = [p[1] / 100 for p in points]
            # Start at zero just before the first sale so the first step is visible.
            times = [times[0], *times]
            values = [0.0, *values]
            if until is not None and until > times[-1]:
                times.append(until)
                values.append(values[-1])
            ax.step(times, values, where="post", color=ACCENT, linewidth=2)
            marks = len(points)
            ax.plot(times[1 : marks + 1], values[1 : marks + 1], "o", color=ACCENT, markersize=4)
            ax.set_ylim(bottom=0, top=max(values) * 1.15 or 1)
            # 5% of the span each side, at least a minute (a burst of sales within
            # seconds still gets a readable range).
            pad = max((times[-1] - times[0]) * 0.05, timedelta(minutes=1))
            ax.set_xlim(times[0] - pad, times[-1] + pad)
            locator = mdates.AutoDateLocator(minticks=3, maxticks=7)
            ax.xaxis.set_major_locator(locator)
            ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        else:
            ax.text(0.5, 0.5, "no sales yet", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
        ax.set_ylabel(f"earned ({currency})")
        ax.set_title("Cumulative earnings after fees", loc="left")
        return svg_text(fig)


def bar_svg(
    labels: Sequence[str],
    values: Sequence[float],
    *,
    title: str,
    xlabel: str,
    errors: Sequence[float] | None = None,
) -> str:
    """A horizontal bar chart (one bar per label, optional error bars), as SVG text."""
    with _LOCK, _fonts():
        n = max(len(labels), 1)
        fig = figure(WIDTH, 1.2 + 0.45 * n)
        ax = fig.add_subplot(1, 1, 1)
        _style(ax)
        ys = list(range(len(labels)))[::-1]
        colors = [ACCENT if v >= 0 else "#b04a2f" for v in values]
        ax.barh(ys, list(values), xerr=list(errors) if errors else None, color=colors)
        ax.set_yticks(ys, [str(x) for x in labels])
        ax.axvline(0, color="#555", linewidth=0.8)
        ax.set_xlabel(xlabel)
        ax.set_title(title, loc="left")
        return svg_text(fig)


def line_svg(
    xs: Sequence[float],
    series: dict[str, Sequence[float]],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
) -> str:
    """A line chart of one or more named series over shared ``xs``, as SVG text."""
    with _LOCK, _fonts():
        fig = figure(WIDTH, 3.4)
        ax = fig.add_subplot(1, 1, 1)
        _style(ax)
        styles = ["-", "--", ":", "-."]
        for i, (name, ys) in enumerate(series.items()):
            ax.plot(list(xs), list(ys), styles[i % len(styles)], label=str(name), linewidth=2)
        if len(series) > 1:
            ax.legend(frameon=False)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title, loc="left")
        return svg_text(fig)
