"""One way to draw and save a figure: matplotlib's object-oriented API on an Agg canvas.

Every chart in databazaar (web pages, valuation and mixture reports, AIR-Bench heatmaps,
benchmark figures) goes through :func:`figure` and :func:`svg_text` / :func:`save_svg`:

- figures are built without ``pyplot``, so no global figure state is shared between
  threads or concurrent web requests and nothing has to be closed;
- SVG output is reproducible: a fixed hash salt, no creation date in the metadata, text
  kept as text (``svg.fonttype = none``), so the same data gives the same bytes;
- matplotlib is imported only when a chart is drawn, and a missing matplotlib is a clear
  :class:`~databazaar.core.errors.InvalidInput` with the install hint.

Text placed in a chart comes from the caller and is XML-escaped by matplotlib's SVG writer.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from databazaar.core.errors import InvalidInput

_RC: Any = {"svg.hashsalt": "databazaar", "svg.fonttype": "none"}


def figure(width: float, height: float, *, dpi: int = 100) -> Any:
    """A new matplotlib ``Figure`` of ``width`` x ``height`` inches on its own Agg canvas."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - matplotlib ships with every extra
        hint = "pip install matplotlib"
        raise InvalidInput("drawing a chart needs matplotlib", hint=hint) from exc
    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def svg_text(fig: Any, *, tight: bool = True) -> str:
    """The figure as an SVG document (str), reproducible byte for byte."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context(_RC):
        fig.savefig(
            buf, format="svg", bbox_inches="tight" if tight else None, metadata={"Date": None}
        )
    return buf.getvalue()


def save_svg(fig: Any, path: str | Path, *, tight: bool = True) -> Path:
    """Write the figure as SVG to ``path`` (parent folders created) and return the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(svg_text(fig, tight=tight), encoding="utf-8")
    return out
