"""core.figures: one reproducible SVG path for every chart."""

from __future__ import annotations

import threading
from pathlib import Path

from databazaar.core.figures import figure, save_svg, svg_text


def _chart(label: str) -> str:
    fig = figure(4, 3)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([0, 1, 2], [3, 1, 2], label=label)
    ax.legend()
    return svg_text(fig)


def test_same_data_same_bytes_and_text_is_escaped() -> None:
    a, b = _chart("<b>&seller"), _chart("<b>&seller")
    assert a == b and a.startswith("<?xml")
    assert "&lt;b&gt;&amp;seller" in a and "<b>&seller" not in a
    assert "dc:date" not in a


def test_save_svg_creates_parents(tmp_path: Path) -> None:
    fig = figure(2, 2)
    fig.add_subplot(1, 1, 1).bar([0, 1], [1, 2])
    out = save_svg(fig, tmp_path / "a" / "b" / "c.svg")
    assert out.exists() and out.read_text(encoding="utf-8").rstrip().endswith("</svg>")


def test_figures_are_independent_across_threads() -> None:
    got: dict[int, str] = {}

    def draw(i: int) -> None:
        got[i] = _chart(f"series {i}")

    threads = [threading.Thread(target=draw, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(4):
        assert f"series {i}" in got[i]
        assert all(f"series {j}" not in got[i] for j in range(4) if j != i)
