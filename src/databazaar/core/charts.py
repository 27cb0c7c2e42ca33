"""The one SVG writer: matplotlib figures on an Agg canvas, saved as reproducible SVG.

matplotlib is imported only when a figure is made. Figures use the object-oriented API,
never ``pyplot``, so no global figure state is shared between threads, and are saved
with a fixed hash salt and no date, so the same data gives the same bytes. Used by the
web pages' charts and the uncertainty benchmark's report.
"""

from __future__ import annotations

import io
from typing import Any


def figure(width: float, height: float) -> Any:
    """A matplotlib ``Figure`` of ``width`` x ``height`` inches on an Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def to_svg(fig: Any) -> str:
    """The figure as an SVG string (text kept as text, fixed hash salt, no date)."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": "databazaar", "svg.fonttype": "none"}):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    return buf.getvalue()
